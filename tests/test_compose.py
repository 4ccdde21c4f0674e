"""docker-compose.yml is the production shape: it parses, every project
service runs a command that exists in the project, every variable it sets is
a documented setting (or a documented variable of a Temporal or PostgreSQL
image), and its one-shot setup registers exactly the search attributes the
workflow uses."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from escalation import search_attributes
from escalation.settings import Settings
from escalation.temporal_bin import temporal_cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"

# Variables documented by the images' own READMEs / config templates.
IMAGE_VARIABLES: dict[str, set[str]] = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA"},
    "temporalio/admin-tools": {
        "DB",
        "DB_PORT",
        "POSTGRES_USER",
        "POSTGRES_PWD",
        "POSTGRES_SEEDS",
        "SQL_PASSWORD",
        "TEMPORAL_ADDRESS",
    },
    "temporalio/server": {
        "DB",
        "DB_PORT",
        "POSTGRES_USER",
        "POSTGRES_PWD",
        "POSTGRES_SEEDS",
        "BIND_ON_IP",
        "DYNAMIC_CONFIG_FILE_PATH",
        "DEFAULT_NAMESPACE",
        "NUM_HISTORY_SHARDS",
    },
    "temporalio/ui": {
        "TEMPORAL_ADDRESS",
        "TEMPORAL_CORS_ORIGINS",
        "TEMPORAL_CODEC_ENDPOINT",
        "TEMPORAL_CODEC_PASS_ACCESS_TOKEN",
    },
}
# Variables the `temporal` CLI reads (`temporal options`).
TEMPORAL_CLI_VARIABLES = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"}
_CLI_TYPES = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime", "BOOL": "Bool",
              "KEYWORD_LIST": "KeywordList"}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def settings_variables() -> dict[str, str]:
    """Environment name -> description, for every Settings field."""
    out = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices), name
        assert field.description, f"Settings.{name} has no description"
        for choice in alias.choices:
            assert isinstance(choice, str)
            out[choice] = field.description
    return out


def project_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def image_name(service: dict[str, Any]) -> str:
    return str(service["image"]).split(":")[0]


def script_lines(service: dict[str, Any]) -> list[str]:
    """The shell lines of a `sh -ec` service, as the container sees them."""
    command = service["command"]
    text = command[0] if isinstance(command, list) else command
    lines = [line.strip() for line in text.replace("$$", "$").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


SHELL_WORDS = {"until", "do", "done", "then", "fi", "if", "while", "for", "in"}


def script_programs(service: dict[str, Any]) -> list[str]:
    """The programs a `sh -ec` script runs (first word of each simple command)."""
    programs = []
    for line in script_lines(service):
        for segment in re.split(r";|\|\||&&|\|", line):
            words = [w for w in shlex.split(segment) if w not in SHELL_WORDS]
            if words:
                programs.append(words[0])
    return programs


def console_scripts() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(pyproject["project"]["scripts"])


def installed(program: str) -> bool:
    return (Path(sysconfig.get_path("scripts")) / program).is_file()


def test_the_production_shape(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgresql", "temporal", "temporal-ui", "worker", "api", "temporal-setup"} <= set(
        services
    )
    temporal = services["temporal"]
    assert image_name(temporal) == "temporalio/server"
    assert temporal["environment"]["DB"] == "postgres12"
    assert image_name(services[temporal["environment"]["POSTGRES_SEEDS"]]) == "postgres"
    assert image_name(services["temporal-ui"]) == "temporalio/ui"
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    # Worker and API are separate services of the project image, after the setup.
    for name in ("worker", "api"):
        depends = services[name]["depends_on"]
        assert depends["temporal-setup"]["condition"] == "service_completed_successfully"
    assert services["worker"]["command"][:2] == ["escalation", "worker"]
    # As many worker processes as make run starts, each on its own core.
    processes = Settings.model_fields["worker_processes"].default
    assert services["worker"]["deploy"]["replicas"] == processes
    assert services["api"]["command"][:2] == ["uvicorn", "api.main:app"]
    # Production: no demo users, and secrets must come from the environment.
    api_env = services["api"]["environment"]
    assert api_env["ESCALATION_DEMO_USERS"] == "false"
    # One key ring for worker and API, never generated per container.
    for name in ("worker", "api"):
        env = services[name]["environment"]
        assert env["ESCALATION_CODEC_GENERATE_KEY"] == "false"
        assert env["ESCALATION_CODEC_KEYS"].startswith("${ESCALATION_CODEC_KEYS:?")
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|PWD|CODEC_KEYS", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (key, value)


def test_project_commands_exist(compose: dict[str, Any]) -> None:
    from escalation.cli import build_parser

    scripts = console_scripts()
    for name, service in project_services(compose).items():
        assert service["build"] == "." and (ROOT / "Dockerfile").is_file()
        command = service["command"]
        if service.get("entrypoint") == ["/bin/sh", "-ec"]:
            for program in script_programs(service):
                assert program in {"temporal", "sleep"}, (name, program)
            assert Path(temporal_cli()).is_file()
            continue
        program, *args = command
        if program in scripts:
            build_parser().parse_args(args)  # the subcommand exists
        elif program == "uvicorn":
            assert installed("uvicorn")
            module_name, _, attribute = args[0].partition(":")
            module = import_module(module_name)
            assert hasattr(module, attribute), args[0]
        elif program in ("python", "python3") and args[:1] == ["-m"]:
            import_module(args[1])
        else:
            pytest.fail(f"{name}: {program!r} is not a project command")


def test_every_variable_is_known(compose: dict[str, Any]) -> None:
    documented = settings_variables()
    for name, service in compose["services"].items():
        keys = set((service.get("environment") or {}).keys())
        if "build" in service:
            unknown = keys - set(documented) - TEMPORAL_CLI_VARIABLES
        else:
            unknown = keys - IMAGE_VARIABLES[image_name(service)]
        assert not unknown, f"{name}: unknown variables {sorted(unknown)}"


def test_the_dockerfile_installs_the_project() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in packages:
        assert f"COPY {package.rstrip('*')} " in text, package
    documented = settings_variables()
    for key in re.findall(r"^ENV\s+([A-Z_]+)=", text, flags=re.MULTILINE):
        if key.startswith(("ESCALATION_", "TEMPORAL_")):
            assert key in documented, key


def test_setup_registers_exactly_the_search_attributes(compose: dict[str, Any]) -> None:
    wanted = {key.name: _CLI_TYPES[key.indexed_value_type.name] for key in search_attributes.ALL}
    registered: dict[str, str] = {}
    for line in script_lines(compose["services"]["temporal-setup"]):
        words = shlex.split(line)
        if words[:4] == ["temporal", "operator", "search-attribute", "create"]:
            names = [words[i + 1] for i, w in enumerate(words) if w == "--name"]
            kind = words[words.index("--type") + 1]
            registered.update(dict.fromkeys(names, kind))
    assert registered == wanted


async def test_the_setup_script_runs_against_a_server(compose: dict[str, Any]) -> None:
    """Run the one-shot's script against a fresh dev server (no attributes yet)."""
    env = await WorkflowEnvironment.start_local(
        # A busy machine can take longer than the SDK's 5 s to start one.
        dev_server_startup_timeout=timedelta(seconds=60),
        dev_server_existing_path=temporal_cli(),
        dev_server_log_level="error",
    )
    try:
        target = env.client.service_client.config.target_host
        script = "\n".join(script_lines(compose["services"]["temporal-setup"]))
        path = os.pathsep.join([str(Path(temporal_cli()).parent), os.environ.get("PATH", "")])
        result = subprocess.run(
            ["/bin/sh", "-ec", script],
            env={
                **os.environ,
                "PATH": path,
                "TEMPORAL_ADDRESS": target,
                "TEMPORAL_NAMESPACE": "default",
            },  # fmt: skip
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        response = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        got = {name: int(kind) for name, kind in response.custom_attributes.items()}
        for key in search_attributes.ALL:
            assert got.get(key.name) == int(key.indexed_value_type), key.name
    finally:
        await env.shutdown()


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="docker compose is not installed",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        env={
            **os.environ,
            "POSTGRES_PASSWORD": "a-real-password-for-the-check",
            "ESCALATION_API_SECRET": "x" * 8 + "-a-real-secret-for-the-check-only",
            "ESCALATION_CODEC_KEYS": "k1:" + "A" * 43 + "=",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_with_this_interpreter() -> None:
    # The image's Python and the project's floor agree.
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    version = re.search(r"^FROM python:(\d+\.\d+)", text, flags=re.MULTILINE)
    assert version is not None
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    floor = pyproject["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, version.group(1).split("."))) >= tuple(map(int, floor.split(".")))
    assert sys.version_info >= (3, 11)
