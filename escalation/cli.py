"""The ``escalation`` command. Each group of subcommands lives in its own
module with a ``register(subparsers)`` function; handlers return an exit
status and raise ``CliError`` for anything the user can fix."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from escalation.clitools import CliError


def build_parser() -> argparse.ArgumentParser:
    from escalation import policy_cli

    parser = argparse.ArgumentParser(
        prog="escalation",
        description="Multi-agency escalation of professional disagreements, "
        "run as durable workflows.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    policy_cli.register(commands)
    for name in ("worker_cli", "simulate", "run", "directory_cli", "register_cli", "report_cli"):
        try:
            module = __import__(f"escalation.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"escalation.{name}":
                raise
            continue
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        print(f"escalation: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error worth a traceback.
        sys.stderr.close()
        return 0


def run_main() -> None:
    """The console script. The Temporal SDK's Rust threads can outlive the
    event loop and abort CPython's finalisation once a command is done
    (temporalio/sdk-python#300): a finished command with its output flushed
    leaves without it, so its exit status is its own."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run_main()
