"""Reading policy files: the five built in, or a partnership's own.

A bad file never surfaces as a traceback: ``PolicyFileError`` carries one
problem per invalid field, each naming the file, the field's path and what is
wrong, for the command line and the API to print as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from policies.model import Policy

BUILTIN_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class DataFileError(Exception):
    """A YAML data file (a policy, a role directory) with one problem per
    invalid field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PolicyFileError(DataFileError):
    pass


class UnknownPolicyError(KeyError):
    def __init__(self, policy_id: str, known: list[str]) -> None:
        self.policy_id = policy_id
        self.known = known
        super().__init__(policy_id)

    def __str__(self) -> str:
        return f"unknown policy {self.policy_id!r}; known policies: {', '.join(self.known)}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("working_days", "hours", "same_working_day", "none"):
            # pydantic names the union member it tried; the user wrote `kind:`
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through tuples, unions,
    optionals and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out += _models_in(arg)
    return out


def allowed_fields(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The fields a model allows at the mapping that holds ``loc``'s last
    part, or None if the path leaves the models (a dict of free keys)."""
    current: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        tagged = [m for m in current if _kind_of(m) == part]
        if tagged:  # pydantic names the union member it tried by its tag
            current = tagged
            continue
        found: list[type[BaseModel]] = []
        for m in current:
            field = m.model_fields.get(part)
            if field is not None:
                found += _models_in(field.annotation)
        if not found:
            return None
        current = found
    if len(current) != 1:
        return None
    return list(current[0].model_fields)


def _kind_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    return field.default if field is not None and isinstance(field.default, str) else None


def validation_problems(
    exc: ValidationError,
    file: str,
    kind: str,
    explain: Callable[[Any], str | None] = lambda err: None,
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """One plain-English problem per invalid field; ``explain`` may word a
    file kind's own errors better. With the file's ``model``, an unknown
    field is answered with the fields allowed in its place."""
    problems = []
    for err in exc.errors(include_url=False):
        message = explain(err) or err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            allowed = allowed_fields(model, err["loc"]) if model is not None else None
            if allowed:
                message = f"unknown field; the fields allowed here are {', '.join(allowed)}"
            else:
                message = f"unknown field (check its spelling against the {kind} format)"
        elif err["type"] == "union_tag_invalid":
            tags = err.get("ctx", {}).get("expected_tags", "")
            message = f"unknown kind {err.get('input', {}).get('kind')!r}; one of {tags}"
        problems.append(Problem(file, _field_path(err["loc"]), message))
    return problems


def read_yaml(path: str | Path, error: type[DataFileError]) -> tuple[str, Any]:
    """The file's name and its YAML content, or ``error`` saying what is wrong."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error([Problem(name, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([Problem(name, "", f"cannot be read: {exc}")]) from None
    try:
        return name, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise error([Problem(name, where, f"not valid YAML: {reason}")]) from None


def parse_policy(data: Any, file: str) -> Policy:
    if not isinstance(data, dict):
        raise PolicyFileError([Problem(file, "", "a policy file must be a YAML mapping")])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError(validation_problems(exc, file, "policy", model=Policy)) from None


def load_policy_file(path: str | Path) -> Policy:
    name, data = read_yaml(path, PolicyFileError)
    return parse_policy(data, name)


@cache
def builtin_policies() -> dict[str, Policy]:
    policies: dict[str, Policy] = {}
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        if path.name.startswith("directory."):
            continue  # the example role directory (policies/directory.py), not a policy
        policy = load_policy_file(path)
        policies[policy.id] = policy
    return policies


def get_policy(policy_id: str) -> Policy:
    policies = builtin_policies()
    try:
        return policies[policy_id]
    except KeyError:
        raise UnknownPolicyError(policy_id, sorted(policies)) from None
