"""Helpers for the canary test (``tests/test_canary.py``): the `make run`
stack as a subprocess, the canary strings in every form they might take at
rest, and a byte search that reports a hit without dumping binary."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import html
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

STARTUP_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """``escalation run`` (what ``make run`` does) with its own data folder
    and free ports. Its stdout and stderr are kept whole, to be searched."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {"temporal": free_port(), "ui": free_port(), "api": free_port()}
        self.process: subprocess.Popen[bytes] | None = None
        self._chunks: list[bytes] = []
        self._reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['temporal']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def output(self) -> bytes:
        return b"".join(self._chunks)

    def start(self) -> None:
        self._chunks = []  # a restart shows only its own output
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "escalation.cli",
                "run",
                "--data-dir",
                str(self.data_dir),
                "--temporal-port",
                str(self.ports["temporal"]),
                "--ui-port",
                str(self.ports["ui"]),
                "--api-port",
                str(self.ports["api"]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ESCALATION_DATA_DIR": str(self.data_dir)},
        )
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in iter(stdout.readline, b""):
                self._chunks.append(line)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while b"\n  Logs " not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    "the stack did not start:\n" + self.output.decode(errors="replace")[-3000:]
                )
            time.sleep(0.1)

    def stop(self) -> int:
        """Ctrl-C, as a user stops `make run`; the launcher's exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._reader is not None:
            self._reader.join(10)
        return int(self.process.returncode)

    def kill(self) -> None:
        """Last resort (a failed test): the launcher and the services it
        started (each in its own session, so killed through its group)."""
        if self.process is None or self.process.poll() is not None:
            return
        children = _children(self.process.pid)
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            for pid in children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()


def _children(pid: int) -> list[int]:
    """The launcher's direct children (Linux /proc), so that a last-resort
    kill does not leave its services running."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(x) for x in task.read_text().split()]
    return found


def read_tokens(path: Path) -> dict[str, str]:
    """``user-id<TAB>token`` lines, ``#`` comments skipped."""
    tokens = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        user, _, token = line.partition("\t")
        if token.strip():
            tokens[user.strip()] = token.strip()
    return tokens


# --- Canaries -----------------------------------------------------------------------


def base64_forms(text: str) -> set[bytes]:
    """The base64 (standard and URL-safe) that ``text`` turns into inside any
    longer base64 string, whatever its alignment: for each of the three
    alignments, the characters that encode whole 3-byte groups of it."""
    raw = text.encode("utf-8")
    forms: set[bytes] = set()
    for skip in range(3):
        part = raw[skip:]
        whole = len(part) // 3 * 3
        if whole < 6:
            continue
        encoded = base64.b64encode(part[:whole])
        forms.add(encoded)
        forms.add(base64.urlsafe_b64encode(part[:whole]))
    return forms


@dataclass(frozen=True)
class Needle:
    label: str  # e.g. "child name", or "child name (base64)"
    data: bytes
    case_insensitive: bool


def needles(canaries: dict[str, str]) -> list[Needle]:
    """Every canary as plain text (any case) and as base64 (exact), but for
    canaries of digits alone: at some alignment their base64 is the base64
    of any digits that contain them, and Temporal keeps timestamps (a local
    activity's nanoseconds) base64-encoded, so the test would fail by chance.
    Their forms with separators (a dashed date, a spaced NHS number) keep
    their base64 needles."""
    out = []
    for label, text in canaries.items():
        out.append(Needle(label, text.encode("utf-8").lower(), case_insensitive=True))
        if text.isdigit():
            continue
        for form in sorted(base64_forms(text)):
            out.append(Needle(f"{label} (base64)", form, case_insensitive=False))
    return out


@dataclass(frozen=True)
class Hit:
    where: str
    label: str
    count: int
    offset: int
    context: str

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.label} found {self.count}x "
            f"(first at byte {self.offset}; around it: {self.context!r})"
        )


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)


def search(where: str, data: bytes, found: list[Needle]) -> list[Hit]:
    """The needles in ``data``, each with a short printable-only context
    (never more than ~80 characters, so a binary file is not dumped)."""
    lowered = data.lower()
    hits = []
    for needle in found:
        haystack = lowered if needle.case_insensitive else data
        offset = haystack.find(needle.data)
        if offset < 0:
            continue
        count = haystack.count(needle.data)
        context = _printable(data[max(0, offset - 30) : offset + len(needle.data) + 30])
        hits.append(Hit(where, needle.label, count, offset, context))
    return hits


# --- Notices (.eml) -------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    email: str  # the .eml file
    filename: str
    template: str  # X-Escalation-Template
    roles: str  # X-Escalation-Roles
    text: str  # the PDF's text, as a reader sees it


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def search_text(where: str, text: str, found: list[Needle]) -> list[Hit]:
    """The plain-text needles in text extracted from a document, whatever
    the line breaks: spaces normalised, and with all whitespace removed."""
    spaced = " ".join(text.split()).lower()
    squashed = "".join(text.split()).lower()
    hits = []
    for needle in found:
        if not needle.case_insensitive:
            continue  # base64 forms mean nothing in extracted text
        plain = needle.data.decode("utf-8")
        label, haystack = needle.label, spaced
        if plain not in spaced:
            label, haystack, plain = (
                f"{label} (across line breaks)",
                squashed,
                "".join(plain.split()),
            )
        offset = haystack.find(plain)
        if offset < 0:
            continue
        context = haystack[max(0, offset - 30) : offset + len(plain) + 30]
        hits.append(Hit(where, label, haystack.count(plain), offset, context))
    return hits


def search_email(name: str, raw: bytes, found: list[Needle]) -> tuple[list[Hit], list[Attachment]]:
    """An outbox ``.eml``: its words (every header, decoded; every text part,
    decoded from quoted-printable or base64; the HTML unescaped too; and the
    raw file without its attachments) searched for the needles; its
    attachments returned as text, for the caller to judge."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    hits: list[Hit] = []
    attachments: list[Attachment] = []
    rest = raw
    headers = "\n".join(f"{k}: {v}" for k, v in message.items())
    hits += search_text(f"{name} (headers)", headers, found)
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            encoded = part.get_payload(decode=False)
            if isinstance(encoded, str):
                rest = rest.replace(encoded.encode("ascii", "replace"), b"[attachment]")
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename() or "(unnamed)"
            if filename.lower().endswith(".pdf"):
                content = pdf_text(data)
            else:
                content = data.decode("utf-8", errors="replace")
                hits += search(f"{name} attachment {filename}", data, found)
            attachments.append(
                Attachment(
                    name,
                    filename,
                    str(message.get("X-Escalation-Template", "")),
                    str(message.get("X-Escalation-Roles", "")),
                    content,
                )
            )
            continue
        words = part.get_content()
        if isinstance(words, bytes):
            words = words.decode("utf-8", errors="replace")
        kind = part.get_content_type()
        hits += search_text(f"{name} ({kind})", words, found)
        if kind == "text/html":
            hits += search_text(f"{name} ({kind}, unescaped)", html.unescape(words), found)
    hits += search(f"{name} (raw, attachments aside)", rest, found)
    return hits, attachments


def search_files(root: Path, found: list[Needle]) -> tuple[list[Path], list[Hit], list[Attachment]]:
    """Every file under ``root`` (recursively), read as bytes; an ``.eml``
    (a notice) read as an email too, its attachments returned as text."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    hits: list[Hit] = []
    attachments: list[Attachment] = []
    for path in files:
        name, data = str(path.relative_to(root)), path.read_bytes()
        if path.suffix == ".eml":
            found_here, attached = search_email(name, data, found)
            hits += found_here
            attachments += attached
        else:
            hits += search(name, data, found)
    return files, hits, attachments
