"""Encryption of everything the product hands to Temporal.

Temporal keeps every workflow input, result, update, signal, query answer,
memo and piece of user metadata (summaries) in its history; for this product
that is a child's name, date of birth and the detail of a concern. The
``EncryptionCodec`` encrypts each payload with AES-256-GCM before it leaves
the process, so Temporal's database, its visibility store and anything that
reads them without the key see only ciphertext.

An encrypted payload
--------------------
The whole original payload (its metadata and data) is serialised with
``Payload.SerializeToString`` and encrypted under a fresh 96-bit random
nonce. The result is a payload with metadata::

    encoding:                binary/encrypted
    encryption-key-id:       <key id>
    encryption-partnership:  <policy id, e.g. merton>   (when the case is known)

and data ``nonce || ciphertext-with-tag``. The key id and the partnership
are bound into the ciphertext as associated data, so relabelling a payload
with another key id or another partnership (or removing its partnership)
makes it fail to decrypt rather than decrypt wrongly.

Decoding passes through any payload whose ``encoding`` is not
``binary/encrypted``: histories written before encryption was switched on
(and the replay tests' recorded histories) keep working. The data
converter's codec (``lenient``) marks such a payload as it passes
(``escalation-arrived-unencrypted`` in its metadata, see
``arrived_unencrypted``): the disagreement workflow refuses a person's action
that carries the mark (an operator's CLI input sent without the codec
endpoint), and reads everything else as it is. The mark is added on the
way in, never taken from the sender, so a plain payload cannot come without it.

A payload labelled ``binary/encrypted`` that does not decrypt (an operator's
CLI input labelled so by hand, a key missing from the ring) is an error for
whoever needs its value, never for the payloads beside it. The data
converter's codec (``lenient``) answers it with an ``binary/undecodable``
payload that says what was wrong: Temporal decodes a workflow task's inputs
together, so one bad signal would otherwise fail every task of the case. The
payload converter raises ``CodecDecodeError`` with that reason for a value
read from it, and the disagreement workflow's signal handler, which reads
its inputs raw, records it on the case as a refused action.

The partnership a payload belongs to
------------------------------------
The codec endpoint (``api/routes/codec.py``) decodes for a business-team
user only the payloads of their own partnership, so each payload says,
authenticated, whose it is. Temporal gives a codec no payload's value, only
a serialisation context naming the workflow the payload travels to or from
(``with_context``). So:

1. The product's payload converter (``escalation.converter``) labels the
   values that name their partnership (a case's start input, its state) with
   a plain ``escalation-partnership`` metadata entry inside the payload,
   which is encrypted with it.
2. Encoding a labelled payload under a workflow's context, or decoding one
   (the worker reads a case's start input before anything else of it),
   teaches the codec that workflow's partnership; every other payload of
   that workflow (updates, results, activity inputs, query answers) is then
   labelled the same. The first partnership learned for a workflow stands.
3. The API also tells it the partnership of every case it acts on, from the
   case's search attributes (``remember_partnership``).

A payload whose workflow is not known (an operator's CLI input through
``/codec/encode``, a payload written before this scheme, a worker that has
not read the case's start) carries no partnership: it still decodes
everywhere the key ring does, and through the endpoint for operators only.
The endpoint's own ``/codec/encode`` never trusts a label sent to it: it
labels with the business-team caller's partnership, or none.

The key ring
------------
Keys live outside the code, in one of (first match wins):

1. ``ESCALATION_CODEC_KEYS``: ``id:base64key[,id2:base64key...]``, e.g.
   ``2027-01:q0B1...=,2026-06:Zm9v...=``. Key ids are 1-64 characters of
   ``A-Z a-z 0-9 . _ -``; each key is 32 random bytes (AES-256) in base64
   (standard or URL-safe alphabet).
2. ``ESCALATION_CODEC_KEY_FILE``: a JSON file
   ``{"keys": [{"id": "2027-01", "key": "<base64>"}, ...]}``; it must exist.
3. The embedded default: ``<data dir>/codec-keys.json`` (same format),
   created with mode 0600 on first use when no key is configured and
   ``ESCALATION_CODEC_GENERATE_KEY`` is true (the default; turn it off in
   production, where a missing key must be an error, not a fresh key).

The FIRST key of the ring encrypts; every key in the ring decrypts. To rotate:
generate a key (``python -m escalation.codec new-key``), put it first, and keep
the old keys after it for as long as any history (open or closed, within the
namespace's retention) may hold payloads under them. A payload under a key
that is no longer in the ring fails with an error that names only its key id.

Keys that look like placeholders (all zeros, repeated bytes, printable text
such as ``changeme`` base64-encoded) are refused.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import os
import re
import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.exceptions import ApplicationError

if TYPE_CHECKING:
    from escalation.settings import Settings

log = logging.getLogger("escalation.codec")

ENCODING = b"binary/encrypted"
# What a lenient codec gives for an encrypted payload it cannot decrypt; the
# reason is in UNDECODABLE_REASON (it names at most a key id).
UNDECODABLE = b"binary/undecodable"
UNDECODABLE_REASON = "undecodable-reason"
KEY_ID_METADATA = "encryption-key-id"
PARTNERSHIP_METADATA = "encryption-partnership"
# Set by the payload converter on the plain payload of a value that names its
# partnership; travels encrypted.
LABEL_METADATA = "escalation-partnership"
# Set by the lenient codec on a payload that reached it unencrypted.
UNENCRYPTED_METADATA = "escalation-arrived-unencrypted"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE = "codec-keys.json"
_AAD_PREFIX = b"escalation-codec/v1:"
_AAD_SCOPED_PREFIX = b"escalation-codec/v2:"
_PARTNERSHIP_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# Workflows whose partnership a process remembers: far more than a worker
# caches or the API touches between restarts; the oldest are forgotten first.
MAX_REMEMBERED_CASES = 100_000
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PLACEHOLDER_WORDS = ("changeme", "changethis", "replaceme", "placeholder", "example", "secret")
NEW_KEY_HINT = "generate one with `python -m escalation.codec new-key`"


class CodecKeyError(ValueError):
    """The key ring is missing or unusable. Messages never contain key material."""


class CodecDecodeError(ValueError):
    """A payload cannot be decrypted. Messages name the key id only."""


class UnknownKeyError(CodecDecodeError):
    """A payload was encrypted under a key id that is not in the ring."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"payload was encrypted under key id {key_id!r}, which is not in the codec key "
            "ring; add that key (after the active one) to ESCALATION_CODEC_KEYS or the key file"
        )
        self.key_id = key_id


# --- Keys -------------------------------------------------------------------------


def _decode_key(key_id: str, text: str) -> bytes:
    text = text.strip()
    squashed = text.lower().replace("-", "").replace("_", "")
    if any(word in squashed for word in _PLACEHOLDER_WORDS) or len(set(text)) < 8:
        raise CodecKeyError(f"codec key {key_id!r} is a placeholder; {NEW_KEY_HINT}")
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise CodecKeyError(f"codec key {key_id!r} is not valid base64; {NEW_KEY_HINT}") from None
    if len(raw) != KEY_BYTES:
        raise CodecKeyError(
            f"codec key {key_id!r} must be {KEY_BYTES} bytes (AES-256), base64-encoded; "
            f"it is {len(raw)} bytes; {NEW_KEY_HINT}"
        )
    # 32 random bytes are (all but) never all printable ASCII nor made of a
    # handful of distinct values: such a key is typed-in text or a pattern.
    if len(set(raw)) < 16 or all(0x20 <= b < 0x7F for b in raw):
        raise CodecKeyError(
            f"codec key {key_id!r} does not look random (a placeholder?); {NEW_KEY_HINT}"
        )
    return raw


def _check_key_id(key_id: str) -> str:
    key_id = key_id.strip()
    if not _KEY_ID_RE.match(key_id):
        # The id is not secret, but a malformed entry may be a key pasted in
        # the wrong place: do not echo it.
        raise CodecKeyError(
            "codec key ids must be 1-64 characters of A-Z a-z 0-9 . _ - "
            "(format: id:base64key,id2:base64key)"
        )
    return key_id


@dataclass(frozen=True)
class KeyRing:
    """Codec keys by id, in order: the first (``active_id``) encrypts."""

    keys: Mapping[str, bytes] = field(repr=False)
    source: str = "memory"

    def __post_init__(self) -> None:
        if not self.keys:
            raise CodecKeyError("the codec key ring is empty")

    @property
    def active_id(self) -> str:
        return next(iter(self.keys))

    @property
    def ids(self) -> list[str]:
        return list(self.keys)

    def __repr__(self) -> str:
        return f"KeyRing(ids={self.ids!r}, source={self.source!r})"

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]], source: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        for raw_id, text in pairs:
            key_id = _check_key_id(raw_id)
            if key_id in keys:
                raise CodecKeyError(f"codec key id {key_id!r} appears twice in {source}")
            keys[key_id] = _decode_key(key_id, text)
        if not keys:
            raise CodecKeyError(f"{source} holds no codec key; {NEW_KEY_HINT}")
        return cls(keys, source)

    @classmethod
    def parse(cls, text: str, source: str = "ESCALATION_CODEC_KEYS") -> KeyRing:
        """``id:base64key[,id2:base64key...]`` (first is active)."""
        pairs = []
        for entry in text.split(","):
            if not entry.strip():
                continue
            key_id, sep, key = entry.partition(":")
            if not sep:
                raise CodecKeyError(
                    f"{source}: every entry must be id:base64key (comma-separated, the "
                    "active key first)"
                )
            pairs.append((key_id, key))
        return cls.from_pairs(pairs, source)

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        """A JSON key file: ``{"keys": [{"id": ..., "key": ...}, ...]}``."""
        source = f"key file {path}"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = data["keys"]
            pairs = [(str(entry["id"]), str(entry["key"])) for entry in entries]
        except FileNotFoundError:
            raise CodecKeyError(f"codec {source} does not exist") from None
        except OSError as exc:
            raise CodecKeyError(f"codec {source} cannot be read ({exc.strerror})") from None
        except (ValueError, KeyError, TypeError):
            raise CodecKeyError(
                f'codec {source} is not {{"keys": [{{"id": "...", "key": "<base64>"}}]}}'
            ) from None
        if os.name == "posix" and path.stat().st_mode & 0o077:
            log.warning("codec key file %s is readable by other users; chmod 600 it", path)
        return cls.from_pairs(pairs, source)

    @classmethod
    def generate(cls, source: str = "memory") -> KeyRing:
        return cls({new_key_id(): secrets.token_bytes(KEY_BYTES)}, source)

    def to_json(self) -> str:
        return json.dumps(
            {
                "comment": "Payload encryption keys (AES-256-GCM). The first key encrypts; "
                "all of them decrypt. Never share or commit this file; losing it makes every "
                "case history unreadable.",
                "keys": [
                    {"id": key_id, "key": base64.b64encode(key).decode("ascii")}
                    for key_id, key in self.keys.items()
                ],
            },
            indent=2,
        )


def new_key_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"


def create_key_file(path: Path) -> KeyRing:
    """Create a key file holding one new key, mode 0600, atomically; if
    another process (the worker and the API start together) created it
    first, use theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ring = KeyRing.generate(source=f"key file {path}")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(ring.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() never replaces an existing file, and the file appears
            # complete or not at all.
            os.link(temporary, path)
        except FileExistsError:
            return KeyRing.from_file(path)
    finally:
        temporary.unlink(missing_ok=True)
    log.warning(
        "no codec key was configured: generated payload encryption key %r in %s. Back this "
        "file up: without it no case history can be read.",
        ring.active_id,
        path,
    )
    return ring


def key_ring_from_settings(settings: Settings, *, ephemeral: bool = False) -> KeyRing:
    """The key ring the settings configure (see ``resolve_key_ring``)."""
    return resolve_key_ring(
        keys=settings.codec_keys.get_secret_value() if settings.codec_keys else None,
        key_file=settings.codec_key_file,
        data_dir=settings.data_dir,
        generate=settings.codec_generate_key,
        ephemeral=ephemeral,
    )


def resolve_key_ring(
    *,
    keys: str | None,
    key_file: Path | None,
    data_dir: Path,
    generate: bool,
    ephemeral: bool = False,
) -> KeyRing:
    """Keys from ESCALATION_CODEC_KEYS, else ESCALATION_CODEC_KEY_FILE, else
    the embedded default's ``<data dir>/codec-keys.json``, created if need be.

    With ``ephemeral`` (a throwaway server: tests, ``escalation simulate``) no
    key file is ever created: with none configured and none in the data dir,
    a key is made in memory for this process.
    """
    keys = (keys or "").strip()
    if keys and key_file:
        raise CodecKeyError("set ESCALATION_CODEC_KEYS or ESCALATION_CODEC_KEY_FILE, not both")
    if keys:
        return KeyRing.parse(keys)
    if key_file:
        return KeyRing.from_file(key_file)
    path = data_dir / KEY_FILE
    if path.exists():
        return KeyRing.from_file(path)
    if ephemeral:
        return KeyRing.generate(source="ephemeral")
    if not generate:
        raise CodecKeyError(
            "no codec key configured: set ESCALATION_CODEC_KEYS or ESCALATION_CODEC_KEY_FILE "
            f"({NEW_KEY_HINT})"
        )
    return create_key_file(path)


# --- The codec ----------------------------------------------------------------------


def _aad(key_id: str, partnership: str | None = None) -> bytes:
    if partnership is None:
        return _AAD_PREFIX + key_id.encode("ascii")
    return _AAD_SCOPED_PREFIX + key_id.encode("ascii") + b"\0" + partnership.encode("ascii")


def valid_partnership(value: str | None) -> str | None:
    return value if value is not None and _PARTNERSHIP_RE.fullmatch(value) else None


class Partnerships:
    """Workflow id -> partnership, learned as described in the module's
    docstring; shared by every context-bound copy of a codec."""

    def __init__(self, limit: int = MAX_REMEMBERED_CASES) -> None:
        self._known: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit

    def get(self, workflow_id: str) -> str | None:
        with self._lock:
            return self._known.get(workflow_id)

    def learn(self, workflow_id: str, partnership: str | None) -> None:
        partnership = valid_partnership(partnership)
        if partnership is None:
            return
        with self._lock:
            if workflow_id in self._known:
                self._known.move_to_end(workflow_id)
                return
            self._known[workflow_id] = partnership
            while len(self._known) > self.limit:
                self._known.popitem(last=False)


# One per process: the API's and the worker's codecs (one per key
# configuration) share what they have learned.
PARTNERSHIPS = Partnerships()


def payload_partnership(payload: Payload) -> str | None:
    """The partnership an encrypted payload says it belongs to (authenticated
    only once it decrypts), or None: unscoped, or not encrypted."""
    if payload.metadata.get("encoding") != ENCODING:
        return None
    raw = payload.metadata.get(PARTNERSHIP_METADATA)
    return raw.decode("ascii", errors="replace") if raw is not None else None


def arrived_unencrypted(payload: Payload) -> bool:
    """Whether the data converter's codec found this payload unencrypted."""
    return UNENCRYPTED_METADATA in payload.metadata


def send_through_the_codec(command: str) -> str:
    """How to send again an action that arrived unencrypted (``command``: the
    Temporal CLI's ``signal`` or ``update execute``; README, acting from the CLI)."""
    return (
        f"send it again through the codec endpoint, temporal workflow {command} "
        '--codec-endpoint <API address>/codec --codec-auth "Bearer <operator token>" '
        "(see the README on acting from the CLI)"
    )


class UnreadableValue(ValueError):
    """A payload that did not validate as the value wanted, told by where and
    what was wrong and never by what it held: pydantic's own message quotes
    the input, and a person's action is free text about a child, which must
    reach no log line and no error."""

    def __init__(self, wanted: str, problems: list[tuple[str, str, str]]) -> None:
        # (where, what kind of problem, pydantic's message for it)
        self.wanted = wanted
        self.problems = problems
        kinds = ", ".join(sorted({kind for _, kind, _ in problems}))
        super().__init__(
            f"a payload could not be read as {wanted} ({len(problems)} problems: {kinds})"
        )

    @classmethod
    def from_validation(cls, error: ValidationError, wanted: str) -> UnreadableValue:
        return cls(
            wanted,
            [
                (".".join(str(part) for part in e["loc"]) or "input", e["type"], e["msg"])
                for e in error.errors(include_url=False, include_input=False)
            ],
        )


class UnencryptedRefusal(ApplicationError):
    """The refusal of a person's action that arrived unencrypted. Whoever
    sent it has no codec to read an encrypted answer with, so the data
    converter leaves this one's message readable: it says how to send the
    action, never what it carried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="ActionRefused", non_retryable=True)


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over whole serialised payloads, tagged with the key id
    and the partnership of the case they belong to."""

    def __init__(
        self, ring: KeyRing, partnerships: Partnerships | None = None, *, lenient: bool = False
    ) -> None:
        self.ring = ring
        self.lenient = lenient
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}
        self.partnerships = partnerships or PARTNERSHIPS
        self.workflow_id: str | None = None

    def __repr__(self) -> str:
        return f"EncryptionCodec({self.ring!r})"

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        workflow_id = getattr(context, "workflow_id", None)
        if workflow_id == self.workflow_id:
            return self
        bound = copy.copy(self)
        bound.workflow_id = workflow_id
        return bound

    def remember(self, workflow_id: str, partnership: str | None) -> None:
        self.partnerships.learn(workflow_id, partnership)

    def _partnership_for(self, payload: Payload) -> str | None:
        label = valid_partnership(
            payload.metadata[LABEL_METADATA].decode("ascii", errors="replace")
            if LABEL_METADATA in payload.metadata
            else None
        )
        if self.workflow_id is None:
            return label
        if label is not None:
            self.partnerships.learn(self.workflow_id, label)
        return self.partnerships.get(self.workflow_id) or label

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encode_one(payload, self._partnership_for(payload)) for payload in payloads]

    def encode_one(self, payload: Payload, partnership: str | None) -> Payload:
        """Encrypt one payload as belonging to ``partnership`` (None: to no
        partnership in particular)."""
        key_id = self.ring.active_id
        partnership = valid_partnership(partnership)
        metadata = {"encoding": ENCODING, KEY_ID_METADATA: key_id.encode("ascii")}
        if partnership is not None:
            metadata[PARTNERSHIP_METADATA] = partnership.encode("ascii")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(
            nonce, payload.SerializeToString(), _aad(key_id, partnership)
        )
        return Payload(metadata=metadata, data=nonce + sealed)

    def lenient_copy(self) -> EncryptionCodec:
        """The same keys and partnerships, answering an undecryptable payload
        with an ``binary/undecodable`` one instead of raising, and marking an
        unencrypted one (``arrived_unencrypted``)."""
        copied = copy.copy(self)
        copied.lenient = True
        return copied

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = [self._decode_or_mark(payload) for payload in payloads]
        if self.workflow_id is not None:
            for payload in decoded:
                if LABEL_METADATA in payload.metadata:
                    self.partnerships.learn(
                        self.workflow_id,
                        payload.metadata[LABEL_METADATA].decode("ascii", errors="replace"),
                    )
        return decoded

    def _decode_or_mark(self, payload: Payload) -> Payload:
        if not self.lenient:
            return self._decode_one(payload)
        if payload.metadata.get("encoding") != ENCODING:
            marked = Payload()
            marked.CopyFrom(payload)
            marked.metadata[UNENCRYPTED_METADATA] = b"true"
            return marked
        try:
            return self._decode_one(payload)
        except CodecDecodeError as error:
            return Payload(
                metadata={
                    "encoding": UNDECODABLE,
                    UNDECODABLE_REASON: str(error).encode("utf-8", errors="replace"),
                }
            )

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise CodecDecodeError(f"encrypted payload has no {KEY_ID_METADATA} metadata")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(key_id)
        raw_partnership = payload.metadata.get(PARTNERSHIP_METADATA)
        partnership = None
        if raw_partnership is not None:
            partnership = valid_partnership(raw_partnership.decode("ascii", errors="replace"))
            if partnership is None:
                raise CodecDecodeError(f"encrypted payload's {PARTNERSHIP_METADATA} is malformed")
        data = payload.data
        if len(data) < NONCE_BYTES + 16:  # a nonce and the tag, at the least
            raise CodecDecodeError(f"payload under key id {key_id!r} is too short to be encrypted")
        try:
            plain = cipher.decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id, partnership)
            )
        except InvalidTag:
            raise CodecDecodeError(
                f"payload under key id {key_id!r} failed authentication: the key in the ring "
                "under that id is not the one it was encrypted with, or the payload (or its "
                "partnership) was altered"
            ) from None
        return Payload.FromString(plain)


# --- Temporal's remote codec protocol -------------------------------------------------
#
# POST {endpoint}/encode and {endpoint}/decode take and return the proto3 JSON
# form of temporal.api.common.v1.Payloads:
#     {"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}


class CodecRequestError(ValueError):
    """The body is not the JSON form of Payloads."""


def _payloads_from_json(body: Any) -> Payloads:
    if not isinstance(body, dict):
        raise CodecRequestError('expected a JSON object {"payloads": [...]}')
    try:
        return json_format.ParseDict(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError):
        raise CodecRequestError(
            'expected {"payloads": [{"metadata": {...}, "data": "<base64>"}]}'
        ) from None


def _payloads_to_json(payloads: Sequence[Payload]) -> dict[str, Any]:
    return json_format.MessageToDict(Payloads(payloads=payloads))


def _shared_codec() -> EncryptionCodec:
    from escalation.converter import payload_codec

    return payload_codec()


async def encode_payloads_json(
    body: dict[str, Any], codec: EncryptionCodec | None = None, *, partnership: str | None = None
) -> dict[str, Any]:
    """The remote codec protocol's /encode: JSON Payloads in, encrypted out,
    as belonging to ``partnership`` (or to none). A label or an
    unencrypted mark inside the given payloads is not trusted: it is removed."""
    payloads = list(_payloads_from_json(body).payloads)
    codec = codec or _shared_codec()
    for payload in payloads:
        for untrusted in (LABEL_METADATA, UNENCRYPTED_METADATA):
            if untrusted in payload.metadata:
                del payload.metadata[untrusted]
    return _payloads_to_json([codec.encode_one(payload, partnership) for payload in payloads])


async def decode_payloads_json(
    body: dict[str, Any],
    codec: PayloadCodec | None = None,
    *,
    may_decode: Callable[[str | None], bool] | None = None,
) -> tuple[dict[str, Any], int]:
    """The remote codec protocol's /decode: JSON Payloads in, decrypted out,
    and how many were withheld: a payload whose partnership ``may_decode``
    refuses is answered as it came, still encrypted. Raises
    ``CodecDecodeError`` for a payload that cannot be decrypted."""
    payloads = list(_payloads_from_json(body).payloads)
    codec = codec or _shared_codec()
    withheld = 0
    out: list[Payload] = []
    for payload in payloads:
        encrypted = payload.metadata.get("encoding") == ENCODING
        if encrypted and may_decode is not None and not may_decode(payload_partnership(payload)):
            withheld += 1
            out.append(payload)
            continue
        [decoded] = await codec.decode([payload])
        out.append(decoded)
    return _payloads_to_json(out), withheld


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["new-key"]:
        print("usage: python -m escalation.codec new-key", file=sys.stderr)
        return 2
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
    print(f"{new_key_id()}:{key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
