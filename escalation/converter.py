"""The one data converter that the worker, the API and the simulator share:
pydantic models travel through Temporal intact, and encrypted.

Every payload (workflow and activity inputs and results, updates, signals,
queries, memos, and the summaries and details of user metadata) goes through
the ``EncryptionCodec`` (``escalation.codec``) on its way to and from the
server; failures use the failure converter that moves their message and
stack trace into an encoded attribute, so those are encrypted too (all but
the refusal of an action that arrived unencrypted, which its sender must be
able to read). Search attributes cannot be encrypted (the server indexes
them), which is why they carry only non-identifying fields.

Each encrypted payload carries the partnership of the case it belongs to
(``escalation.codec`` explains how the codec learns it): this module's
payload converter labels the values that name their partnership, and
``remember_partnership`` tells the codec a case's partnership from its
search attributes.

The key ring comes from the settings, read when ``data_converter()`` is
called (``escalation.codec`` explains where keys live). A process running a
throwaway server (the tests, ``escalation simulate``) calls
``use_ephemeral_key_when_unconfigured()`` first: with no key configured and
none in the data folder, it then encrypts under an in-memory key that dies
with the server, instead of creating the embedded default's key file.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Self

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.common import RawValue
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadConverter,
    SerializationContext,
    WithSerializationContext,
)

from escalation.codec import (
    LABEL_METADATA,
    PARTNERSHIPS,
    UNDECODABLE,
    UNDECODABLE_REASON,
    CodecDecodeError,
    EncryptionCodec,
    UnencryptedRefusal,
    UnreadableValue,
    arrived_unencrypted,
    resolve_key_ring,
    send_through_the_codec,
)
from escalation.settings import Settings
from workflows.messages import CaseState, ManagerAction, RaiseDisagreement


def _partnership_of(value: Any) -> str | None:
    if isinstance(value, RaiseDisagreement):
        return value.policy.id
    if isinstance(value, CaseState):
        return value.policy_id
    return None


# The refusal of an action that arrived unencrypted and could not even be
# read as one: its sender has no codec, so it says how to send it, plainly.
UNREADABLE_UNENCRYPTED = (
    "this action arrived unencrypted and could not be read, so it is refused: "
    + send_through_the_codec("update execute")
)


def _wants_action(type_hints: Sequence[type] | None) -> bool:
    return any(isinstance(t, type) and issubclass(t, ManagerAction) for t in type_hints or ())


class LabellingPayloadConverter(PydanticPayloadConverter):
    """Pydantic's converter, with the values that name their partnership (a
    case's start input, its state) labelled so for the codec, a payload the
    codec could not decrypt an error saying why where its value is read (a
    raw read, ``RawValue``, gets it as it is), and a manager's action whose
    payload the codec found unencrypted noted so on the action, for the
    update's validator to refuse.

    A value that does not validate fails with what was wrong and never with
    what it held (``UnreadableValue``: pydantic would quote it); a manager's
    action that also arrived unencrypted fails with the refusal its
    codec-less sender can read (``UNREADABLE_UNENCRYPTED``), which is what
    the update is rejected with."""

    def from_payloads(
        self, payloads: Sequence[Payload], type_hints: list[type] | None = None
    ) -> list[Any]:
        for index, payload in enumerate(payloads):
            wanted = type_hints[index] if type_hints and index < len(type_hints) else None
            if payload.metadata.get("encoding") == UNDECODABLE and wanted is not RawValue:
                raise CodecDecodeError(undecodable_reason(payload))
        try:
            values = super().from_payloads(payloads, type_hints)
        except ValidationError as exc:
            if _wants_action(type_hints) and any(arrived_unencrypted(p) for p in payloads):
                raise UnencryptedRefusal(UNREADABLE_UNENCRYPTED) from None
            names = ", ".join(getattr(t, "__name__", "a value") for t in type_hints or ())
            raise UnreadableValue.from_validation(exc, names or "a value") from None
        for value, payload in zip(values, payloads, strict=False):
            if isinstance(value, ManagerAction) and arrived_unencrypted(payload):
                value.note_arrived_unencrypted()
        return values

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        payloads = super().to_payloads(values)
        for value, payload in zip(values, payloads, strict=True):
            partnership = _partnership_of(value)
            if partnership:
                payload.metadata[LABEL_METADATA] = partnership.encode("ascii", "replace")
        return payloads


class EncryptingFailureConverter(DefaultFailureConverterWithEncodedAttributes):
    """Failures' messages and stack traces travel encrypted, except the
    refusal of an action that arrived unencrypted (``UnencryptedRefusal``),
    whose sender could not read it: its message only, and in plain."""

    _readable = DefaultFailureConverter()

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        if isinstance(exception, UnencryptedRefusal):
            self._readable.to_failure(exception, payload_converter, failure)
            failure.stack_trace = ""
            return
        super().to_failure(exception, payload_converter, failure)


def undecodable_reason(payload: Payload) -> str:
    return payload.metadata[UNDECODABLE_REASON].decode("utf-8", errors="replace")


_ephemeral = False


def use_ephemeral_key_when_unconfigured() -> None:
    """This process's Temporal server is throwaway: with no key configured,
    use a key made in memory rather than creating the embedded default's
    key file."""
    global _ephemeral
    _ephemeral = True


@cache
def _codec(
    keys: str | None, key_file: Path | None, data_dir: Path, generate: bool, ephemeral: bool
) -> EncryptionCodec:
    ring = resolve_key_ring(
        keys=keys, key_file=key_file, data_dir=data_dir, generate=generate, ephemeral=ephemeral
    )
    return EncryptionCodec(ring)


def payload_codec(settings: Settings | None = None) -> EncryptionCodec:
    """The codec for these settings (default: the environment's), made once
    per key configuration. The codec endpoint uses it too."""
    settings = settings or Settings()
    return _codec(
        settings.codec_keys.get_secret_value() if settings.codec_keys else None,
        settings.codec_key_file.resolve() if settings.codec_key_file else None,
        settings.data_dir.resolve(),
        settings.codec_generate_key,
        _ephemeral,
    )


# Enough for every context of the cases a worker has in hand at once; past
# it the bindings start again (each is a few small objects).
BINDINGS_KEPT = 4096


@dataclasses.dataclass(frozen=True)
class _CaseDataConverter(DataConverter):
    """The SDK's converter, bound to a case more cheaply. The SDK binds a
    converter to each workflow's context for every payload it converts, and
    since the codec takes the context (the case's partnership), it clones
    the converter with ``dataclasses.replace``, whose ``__post_init__`` builds
    a payload and a failure converter only to throw them away: 20 us a call,
    and 7% of the worker's CPU under the benchmark's load. A shallow copy
    with the bound components does the same without them.

    Bindings are kept, a bounded number, by context: the worker asks for the
    same case's bindings in every workflow task (and again for each payload
    of an activity), and a case's replay, which a query to a case not held
    needs, asks for them in every task it replays."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_bound", {})

    def with_context(self, context: SerializationContext) -> Self:
        bound_before: dict[SerializationContext, Self] = self._bound  # type: ignore[attr-defined]
        known = bound_before.get(context)
        if known is not None:
            return known
        cloned = self._bind(context)
        if len(bound_before) >= BINDINGS_KEPT:
            bound_before.clear()
        bound_before[context] = cloned
        return cloned

    def _bind(self, context: SerializationContext) -> Self:
        parts = {
            "payload_converter": self.payload_converter,
            "payload_codec": self.payload_codec,
            "failure_converter": self.failure_converter,
            "external_storage": self.external_storage,
        }
        bound = {
            name: part.with_context(context) if isinstance(part, WithSerializationContext) else part
            for name, part in parts.items()
        }
        if all(bound[name] is part for name, part in parts.items()):
            return self
        cloned = copy.copy(self)
        for name, part in bound.items():
            object.__setattr__(cloned, name, part)
        object.__setattr__(cloned, "_bound", {})
        return cloned


@cache
def _converter(codec: EncryptionCodec) -> DataConverter:
    return _CaseDataConverter(
        payload_converter_class=LabellingPayloadConverter,
        # Lenient: one payload that does not decrypt fails only its own value
        # (escalation.codec), not every payload Temporal decodes with it.
        payload_codec=codec.lenient_copy(),
        failure_converter_class=EncryptingFailureConverter,
    )


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The product's converter; its keys from ``settings`` (default: read
    from the environment now, so a changed ``ESCALATION_DATA_DIR`` counts)."""
    return _converter(payload_codec(settings))


def plain_data_converter() -> DataConverter:
    """Without encryption: only for recording the replay tests' histories,
    which hold fake cases and must replay without any key."""
    return pydantic_data_converter


def remember_partnership(workflow_id: str, partnership: str | None) -> None:
    """Tell this process's codec the partnership of a case (from its search
    attributes), so that what it encodes for the case is labelled with it."""
    PARTNERSHIPS.learn(workflow_id, partnership)
