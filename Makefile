# The README's quick start is `make run` and `make test`; everything else here
# is a convenience for developers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run worker test lint histories clean bench bench-base bench-scale chaos

$(STAMP): pyproject.toml package.json package-lock.json
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# The pages' and /docs' assets, served by the app itself (never a CDN):
	@# GOV.UK Frontend compiled with the system font stack, Swagger UI, ReDoc.
	npm ci --ignore-scripts --no-audit --no-fund
	npm run --silent build
	@# Bytecode up front: the workflow sandbox (the tests) compiles the workflow
	@# module for every case when PYTHONDONTWRITEBYTECODE leaves no .pyc.
	$(BIN)/python -m compileall -q policies workflows activities workers escalation api register reports web
	@touch $(STAMP)

install: $(STAMP)

## Run the whole system on the embedded default (Ctrl-C stops everything).
run: $(STAMP)
	$(BIN)/escalation run

## Run the tests (CI runs exactly this). The register's tests need PostgreSQL's
## server binaries: installed from Debian's packages where missing.
test: $(STAMP)
	@bash .ci/system-packages
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy policies workflows activities workers escalation api register reports web chaos bench

## Re-record the workflow histories that the replay tests check.
histories: $(STAMP)
	$(BIN)/python -m tests.record_histories

## Benchmarks against the product's targets: the deadlines, the API and memory
## with 1,000 cases, then the scale rounds (about 35 minutes in all on 2 cores);
## BENCH_N=100 make bench-base for a quick run of the first part alone.
bench: bench-base bench-scale

bench-base: $(STAMP)
	$(BIN)/python -m bench.run

## At scale: 10,000 open cases with 1,000 deadlines at one instant, on one
## worker and then on two workers sharing the task queue (about 20 minutes).
bench-scale: $(STAMP)
	BENCH_ROUND=scale-one-worker BENCH_PRELOAD=9000 BENCH_N=1000 BENCH_WORKERS=1 BENCH_SKIP=simulate,register,long,spread,api $(BIN)/python -m bench.run
	BENCH_ROUND=scale-two-workers BENCH_PRELOAD=9000 BENCH_N=1000 BENCH_WORKERS=2 BENCH_SKIP=simulate,register,long,spread,api $(BIN)/python -m bench.run

## The chaos drill: cases through worker SIGKILLs and dev-server restarts, every
## email counted; CHAOS_CASES=20 CHAOS_WORKER_KILLS=5 CHAOS_SERVER_RESTARTS=1
## CHAOS_SECONDS=90 make chaos for a quick run.
chaos: $(STAMP)
	$(BIN)/python -m chaos

clean:
	rm -rf $(VENV) node_modules web/static build *.egg-info .pytest_cache .mypy_cache .ruff_cache
