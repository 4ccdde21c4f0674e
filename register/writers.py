"""One writer at a time on a SQLite register, across threads and processes.

SQLite takes one writer at a time. A writer that finds another at work waits
in SQLite's busy handler, which sleeps and tries again, each sleep longer
(up to a tenth of a second): a burst of writes then took seconds each. So
writers queue for the file instead, in the kernel: a thread of this process
first for the process's lock, then the process for an exclusive ``flock``
on a file beside the database, which the next waiting writer of any process
(two workers, the API) gets the instant it is released.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # not on Windows: the process's own lock alone
    fcntl = None  # type: ignore[assignment]


class Writers:
    """The right to write the SQLite file at ``database``, one holder at a
    time (a context manager)."""

    def __init__(self, database: Path) -> None:
        self._thread = threading.Lock()
        self._path = database.with_name(database.name + ".writers")
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread.acquire()
        if fcntl is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            # Blocks in the kernel (the interpreter lock released meanwhile).
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if fcntl is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        with self._thread:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
