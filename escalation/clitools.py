"""Parsing and printing shared by the ``escalation`` subcommands.

Everything the user typed wrong becomes a ``CliError`` with a message that
says what was expected; ``cli.main`` prints it and exits 1, so no traceback
reaches the user.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from policies.loader import PolicyFileError, UnknownPolicyError, get_policy, load_policy_file
from policies.model import Policy

INSTANT_FORMAT = (
    "ISO 8601, e.g. 2026-12-23T11:00 (local time in the policy's zone) or 2026-12-23T11:00:00+00:00"
)


class CliError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def parse_instant(text: str, zone: str, what: str = "--raised") -> datetime:
    """An ISO 8601 instant; a naive one is local time in ``zone``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"{what}: cannot read {text!r} as a date and time; expected {INSTANT_FORMAT}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value


def resolve_policy(policy_id: str | None, policy_file: str | None) -> Policy:
    """A built-in policy by id, or a partnership's own file."""
    try:
        if policy_file:
            policy = load_policy_file(Path(policy_file))
            if policy_id and policy_id != policy.id:
                raise CliError(f"{policy_file} holds policy {policy.id!r}, not {policy_id!r}")
            return policy
        if not policy_id:
            raise CliError("name a policy id or give --policy-file")
        return get_policy(policy_id)
    except UnknownPolicyError as exc:
        raise CliError(str(exc)) from None
    except PolicyFileError as exc:
        raise CliError(str(exc)) from None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def local_text(value: datetime | None, zone: str) -> str:
    """'Mon 4 Jan 2027 17:00 GMT': how a deadline reads to a practitioner."""
    if value is None:
        return "-"
    local = value.astimezone(ZoneInfo(zone))
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"
