"""``escalation worker``: run the worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging

from escalation.clitools import CliError
from escalation.settings import get_settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "worker",
        help="run the worker (connects to TEMPORAL_ADDRESS)",
        description="Host the disagreement workflow and its activities until SIGTERM or Ctrl-C.",
    )
    parser.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from register.migrate import OutOfDateError
    from workers.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The SendGrid sink's transport would log every request at INFO; the sink
    # logs each copy SendGrid accepted, by ledger key, itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    try:
        asyncio.run(run_worker(settings))
    except OutOfDateError as exc:
        raise CliError(str(exc)) from None
    except RuntimeError as exc:
        if "connect" in str(exc).lower():
            raise CliError(
                f"cannot reach Temporal at {settings.temporal_address}: is the server running? "
                "(`make run` starts one)"
            ) from None
        raise
    return 0
