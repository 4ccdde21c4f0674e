"""Sending the notices a policy requires, exactly once each.

The contract is final: a ``Notice`` names its recipients by role, its
template and the case reference, and carries a deterministic ``notice_id``.
A sink records the ids it has delivered, so an activity retried after a
crash between delivery and completion recognises the notice and sends
nothing twice. Sinks here capture notices (in memory for simulation and
tests, as files in an outbox for the embedded default); the email transport
plugs in behind the same protocol.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Protocol

from temporalio import activity

from workflows.messages import Notice, NoticeReceipt


class NoticeSink(Protocol):
    def already_sent(self, notice_id: str) -> bool: ...

    def deliver(self, notice: Notice) -> None: ...


class MemorySink:
    """Keeps every notice in order: what `escalation simulate` and the tests read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.notices: list[Notice] = []
        self._ids: set[str] = set()

    def already_sent(self, notice_id: str) -> bool:
        with self._lock:
            return notice_id in self._ids

    def deliver(self, notice: Notice) -> None:
        with self._lock:
            if notice.notice_id in self._ids:
                return
            self._ids.add(notice.notice_id)
            self.notices.append(notice)


class OutboxSink:
    """One JSON file per notice under a folder; the file's existence is the
    ledger of what was sent. Written atomically (rename), so a crash never
    leaves a half notice that would count as sent."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, notice_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in notice_id)
        return self.folder / f"{safe}.json"

    def already_sent(self, notice_id: str) -> bool:
        return self._path(notice_id).exists()

    def deliver(self, notice: Notice) -> None:
        path = self._path(notice.notice_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(notice.model_dump(mode="json"), indent=2), encoding="utf-8")
        os.replace(tmp, path)


class NoticeActivities:
    def __init__(self, sink: NoticeSink) -> None:
        self.sink = sink

    @activity.defn(name="send_notice")
    async def send_notice(self, notice: Notice) -> NoticeReceipt:
        if self.sink.already_sent(notice.notice_id):
            # Logged by id and template only: a notice's context is case data.
            activity.logger.info("notice %s already sent; not sending again", notice.notice_id)
            return NoticeReceipt(notice_id=notice.notice_id, delivered=True, duplicate=True)
        self.sink.deliver(notice)
        return NoticeReceipt(notice_id=notice.notice_id, delivered=True)
