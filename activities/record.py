"""Writing a case to the register: the one activity that does.

The workflow calls ``record_case`` after every change, with the case as it
stands and the events the register may not yet have (``RecordCase``); the
register writes them by reference and sequence number, so a retry or a
replay changes nothing twice. A register that cannot be reached fails the
attempt as retryable: the workflow's retry policy keeps trying while the
case goes on.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from register import Register, RegisterUnavailableError
from workflows.messages import RecordCase, RecordReceipt


class RecordActivities:
    def __init__(self, register: Register) -> None:
        self.register = register

    @activity.defn(name="record_case")
    async def record_case(self, update: RecordCase) -> RecordReceipt:
        try:
            # SQLAlchemy is synchronous: a thread keeps the worker's event loop free.
            return await asyncio.to_thread(self.register.record, update)
        except RegisterUnavailableError as exc:
            raise ApplicationError(str(exc), type="RegisterUnavailable") from None
