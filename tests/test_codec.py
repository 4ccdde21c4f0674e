"""Payload encryption (``escalation.codec``) and the converter that uses it.

The unit tests drive the codec directly; the end-to-end test runs a real
case on the time-skipping server (whose client, from ``conftest``, has the
product's converter) and reads its history with a client that has no codec:
the canary identity must not appear in it anywhere.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
)
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from escalation.codec import (
    ENCODING,
    KEY_ID_METADATA,
    UNENCRYPTED_METADATA,
    CodecDecodeError,
    CodecKeyError,
    CodecRequestError,
    EncryptionCodec,
    KeyRing,
    UnencryptedRefusal,
    UnknownKeyError,
    UnreadableValue,
    arrived_unencrypted,
    create_key_file,
    decode_payloads_json,
    encode_payloads_json,
    key_ring_from_settings,
)
from escalation.converter import data_converter
from escalation.settings import Settings
from tests.conftest import Harness, make_request, state_of
from workflows.disagreement import DisagreementWorkflow
from workflows.messages import Actor, AddNote, ChildDetails, ConfirmOutcome, Resolve

CANARY = "Zebedee Quillfeather-Canary"
CANARY_NHS = "943 476 5919"


def key() -> bytes:
    return os.urandom(32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# --- The codec ------------------------------------------------------------------------


async def test_round_trip() -> None:
    codec = EncryptionCodec(KeyRing({"k1": key()}))
    original = [plain("hello"), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await codec.encode(original)
    assert len(encoded) == 2
    for payload in encoded:
        assert dict(payload.metadata) == {"encoding": ENCODING, KEY_ID_METADATA: b"k1"}
    assert await codec.decode(encoded) == original


async def test_each_encoding_uses_a_fresh_nonce() -> None:
    codec = EncryptionCodec(KeyRing({"k1": key()}))
    first, second = await codec.encode([plain("same"), plain("same")])
    assert first.data != second.data


async def test_encrypted_bytes_do_not_contain_the_plaintext() -> None:
    codec = EncryptionCodec(KeyRing({"k1": key()}))
    [encoded] = await codec.encode([plain(CANARY)])
    wire = encoded.SerializeToString()
    assert CANARY.encode() not in wire
    assert b"Quillfeather" not in wire
    assert b"json/plain" not in wire  # the original metadata is inside the ciphertext


async def test_a_payload_under_a_rotated_out_key_still_decodes() -> None:
    old, new = key(), key()
    before = EncryptionCodec(KeyRing({"2026-01": old}))
    [under_old] = await before.encode([plain(CANARY)])

    after = EncryptionCodec(KeyRing({"2027-01": new, "2026-01": old}))
    [under_new] = await after.encode([plain(CANARY)])
    assert under_new.metadata[KEY_ID_METADATA] == b"2027-01"  # the first key encrypts
    assert await after.decode([under_old, under_new]) == [plain(CANARY), plain(CANARY)]


async def test_an_unknown_key_id_is_a_clear_error_naming_only_the_key_id() -> None:
    secret = key()
    [encoded] = await EncryptionCodec(KeyRing({"retired-2025": secret})).encode([plain("x")])
    with pytest.raises(UnknownKeyError) as raised:
        await EncryptionCodec(KeyRing({"2027-01": key()})).decode([encoded])
    message = str(raised.value)
    assert "'retired-2025'" in message
    assert b64(secret) not in message
    assert raised.value.key_id == "retired-2025"


async def test_a_wrong_key_under_a_known_id_or_a_relabelled_payload_fails() -> None:
    [encoded] = await EncryptionCodec(KeyRing({"k1": key(), "k2": key()})).encode([plain("x")])
    with pytest.raises(CodecDecodeError, match="'k1' failed authentication"):
        await EncryptionCodec(KeyRing({"k1": key()})).decode([encoded])
    # The key id is bound into the ciphertext: relabelling it does not work.
    k1, k2 = key(), key()
    codec = EncryptionCodec(KeyRing({"k1": k1, "k2": k2}))
    [encoded] = await codec.encode([plain("x")])
    encoded.metadata[KEY_ID_METADATA] = b"k2"
    with pytest.raises(CodecDecodeError, match="failed authentication"):
        await codec.decode([encoded])


async def test_unencrypted_payloads_pass_through() -> None:
    codec = EncryptionCodec(KeyRing({"k1": key()}))
    old = [plain("recorded before encryption"), Payload(metadata={"encoding": b"binary/null"})]
    [new] = await codec.encode([plain("after")])
    assert await codec.decode([*old, new]) == [*old, plain("after")]


async def test_the_converters_codec_marks_what_arrived_unencrypted() -> None:
    """The mark is added on the way in: a plain payload has it whatever its
    sender put in it, a decrypted one has it only if its encoder did, which
    ``/codec/encode`` never lets through; the codec endpoint's own decode
    (strict) adds nothing."""
    codec = EncryptionCodec(KeyRing({"k1": key()}))
    lenient = codec.lenient_copy()
    [encrypted] = await codec.encode([plain("through the codec")])
    [arrived_plain, arrived_encrypted] = await lenient.decode([plain("typed"), encrypted])
    assert arrived_unencrypted(arrived_plain)
    assert not arrived_unencrypted(arrived_encrypted)
    assert not arrived_unencrypted((await codec.decode([plain("typed")]))[0])

    forged = plain("claims to be encrypted")
    forged.metadata[UNENCRYPTED_METADATA] = b"true"
    body = {"payloads": [json_format.MessageToDict(forged)]}
    encoded = await encode_payloads_json(body, codec)
    [through_the_endpoint] = await lenient.decode(
        [json_format.ParseDict(p, Payload()) for p in encoded["payloads"]]
    )
    assert not arrived_unencrypted(through_the_endpoint)


async def test_an_action_that_does_not_validate_fails_without_what_it_held() -> None:
    """Pydantic's own message quotes the input; a note is free text about a
    child. Encrypted, the failure says what was wrong and not what was in
    it; unencrypted, it is the refusal its codec-less sender can read."""
    converter = data_converter()
    codec = converter.payload_codec
    assert codec is not None
    said = "Zebedee Quillfeather lives at 14 Orchard Row"
    note = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"text": [said]}).encode())
    [encrypted] = await codec.encode([note])
    [arrived] = await codec.decode([encrypted])
    with pytest.raises(UnreadableValue) as failed:
        converter.payload_converter.from_payloads([arrived], [AddNote])
    assert "AddNote" in str(failed.value) and "string_type" in str(failed.value)
    assert failed.value.problems == [("text", "string_type", "Input should be a valid string")]
    assert "Zebedee" not in str(failed.value) and failed.value.__cause__ is None
    [arrived_plain] = await codec.decode([note])
    with pytest.raises(UnencryptedRefusal) as refused:
        converter.payload_converter.from_payloads([arrived_plain], [AddNote])
    assert "arrived unencrypted" in refused.value.message
    assert "--codec-endpoint" in refused.value.message and "Zebedee" not in str(refused.value)


# --- Keys -------------------------------------------------------------------------------


def test_the_environment_format_first_key_active() -> None:
    a, b = key(), key()
    ring = KeyRing.parse(f" 2027-01:{b64(a)} , 2026-06:{base64.urlsafe_b64encode(b).decode()}")
    assert ring.ids == ["2027-01", "2026-06"]
    assert ring.active_id == "2027-01"
    assert ring.keys["2026-06"] == b
    assert b64(a) not in repr(ring)


@pytest.mark.parametrize(
    "text",
    [
        "k1:changeme",
        "k1:" + b64(bytes(32)),  # all zeros
        "k1:" + b64(b"changeme" * 4),  # text, base64-encoded
        "k1:" + b64(b"0123456789abcdef0123456789abcdef"),
        "k1:" + b64(bytes(range(8)) * 4),  # a short pattern
        "k1:" + b64(os.urandom(16)),  # AES-128: too short
        "k1:not base64 at all!!",
        "just-a-key-without-an-id",
        "bad id:" + b64(os.urandom(32)),
        "",
    ],
)
def test_unusable_keys_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(CodecKeyError) as raised:
        KeyRing.parse(text)
    _, _, material = text.partition(":")
    if len(material) > 8:
        assert material not in str(raised.value)


def test_a_key_id_may_appear_once() -> None:
    with pytest.raises(CodecKeyError, match="twice"):
        KeyRing.parse(f"k1:{b64(key())},k1:{b64(key())}")


def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in (
        "ESCALATION_CODEC_KEYS",
        "ESCALATION_CODEC_KEY_FILE",
        "ESCALATION_CODEC_GENERATE_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ESCALATION_DATA_DIR", str(tmp_path / "data"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_the_embedded_default_creates_a_private_key_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(tmp_path, monkeypatch)
    ring = key_ring_from_settings(config)
    path = tmp_path / "data" / "codec-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_ring_from_settings(config).keys == ring.keys  # read back, not regenerated
    assert "generated payload encryption key" in caplog.text
    assert b64(ring.keys[ring.active_id]) not in caplog.text
    assert [p.name for p in path.parent.iterdir()] == ["codec-keys.json"]


def test_processes_starting_together_share_one_generated_key(tmp_path: Path) -> None:
    path = tmp_path / "codec-keys.json"
    with ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: create_key_file(path), range(8)))
    assert len({bytes(r.keys[r.active_id]) for r in rings}) == 1
    assert KeyRing.from_file(path).keys == rings[0].keys


def test_ephemeral_keys_touch_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = key_ring_from_settings(settings(tmp_path, monkeypatch), ephemeral=True)
    assert ring.source == "ephemeral"
    assert not (tmp_path / "data").exists()


def test_ephemeral_mode_uses_the_data_folders_key_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, monkeypatch)
    made = key_ring_from_settings(config)  # as `make run` would
    assert key_ring_from_settings(config, ephemeral=True).keys == made.keys


def test_data_converter_reads_the_environment_when_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = key()
    settings(tmp_path, monkeypatch, ESCALATION_CODEC_KEYS=f"env-1:{b64(a)}")
    codec = data_converter().payload_codec
    assert isinstance(codec, EncryptionCodec)
    assert codec.ring.keys == {"env-1": a}


def test_configured_keys_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = key()
    config = settings(tmp_path, monkeypatch, ESCALATION_CODEC_KEYS=f"prod-1:{b64(a)}")
    assert key_ring_from_settings(config, ephemeral=True).keys == {"prod-1": a}
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps({"keys": [{"id": "f1", "key": b64(a)}]}))
    config = settings(tmp_path, monkeypatch, ESCALATION_CODEC_KEY_FILE=str(key_file))
    assert key_ring_from_settings(config).keys == {"f1": a}


def test_missing_or_conflicting_configuration_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, monkeypatch, ESCALATION_CODEC_GENERATE_KEY="false")
    with pytest.raises(CodecKeyError, match="no codec key configured"):
        key_ring_from_settings(config)
    config = settings(
        tmp_path, monkeypatch, ESCALATION_CODEC_KEY_FILE=str(tmp_path / "missing.json")
    )
    with pytest.raises(CodecKeyError, match="does not exist"):
        key_ring_from_settings(config)
    config = settings(
        tmp_path,
        monkeypatch,
        ESCALATION_CODEC_KEYS=f"k:{b64(key())}",
        ESCALATION_CODEC_KEY_FILE=str(tmp_path / "keys.json"),
    )
    with pytest.raises(CodecKeyError, match="not both"):
        key_ring_from_settings(config)


# --- Temporal's remote codec protocol ---------------------------------------------------


async def test_the_remote_codec_protocol_round_trips() -> None:
    codec = EncryptionCodec(KeyRing({"k1": key()}))
    body = {
        "payloads": [
            {
                "metadata": {"encoding": b64(b"json/plain")},
                "data": b64(json.dumps(CANARY).encode()),
            }
        ]
    }
    encoded = await encode_payloads_json(body, codec)
    assert encoded["payloads"][0]["metadata"]["encoding"] == b64(ENCODING)
    assert CANARY not in json.dumps(encoded)
    assert await decode_payloads_json(encoded, codec) == (body, 0)


@pytest.mark.parametrize(
    "body",
    [[], {"payloads": "nope"}, {"payloads": [{"metadata": "x"}]}, {"payloads": [{"data": 5}]}],
)
async def test_the_remote_codec_protocol_refuses_what_is_not_payloads(body: object) -> None:
    codec = EncryptionCodec(KeyRing({"k1": key()}))
    with pytest.raises(CodecRequestError):
        await decode_payloads_json(body, codec)  # type: ignore[arg-type]


# --- The converter ----------------------------------------------------------------------


async def test_failure_messages_and_stack_traces_are_encrypted() -> None:
    converter = data_converter()
    try:
        raise ApplicationError(f"cannot act for {CANARY}", type="ActionRefused")
    except ApplicationError as exc:
        error = exc
    failure = Failure()
    await converter.encode_failure(error, failure)
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    assert CANARY.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert decoded.message == f"cannot act for {CANARY}"


async def test_the_refusal_of_an_unencrypted_action_is_readable_without_the_codec() -> None:
    """Its sender has no codec: the message travels plain (it names the
    action, never its content) and carries no stack trace."""
    try:
        raise UnencryptedRefusal("the add_note update arrived unencrypted and is refused")
    except UnencryptedRefusal as exc:
        error = exc
    failure = Failure()
    await data_converter().encode_failure(error, failure)
    assert failure.message == "the add_note update arrived unencrypted and is refused"
    assert failure.stack_trace == "" and not failure.HasField("encoded_attributes")
    assert failure.application_failure_info.type == "ActionRefused"
    assert failure.application_failure_info.non_retryable


def _payload_bytes(node: object) -> list[bytes]:
    """Every base64 value in a history's JSON, decoded (payload data and metadata)."""
    found: list[bytes] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if isinstance(value, str) and (name == "data" or name == "metadata"):
                found.append(base64.b64decode(value + "=" * (-len(value) % 4)))
            elif name == "metadata" and isinstance(value, dict):
                found += [base64.b64decode(v) for v in value.values() if isinstance(v, str)]
            else:
                found += _payload_bytes(value)
    elif isinstance(node, list):
        for item in node:
            found += _payload_bytes(item)
    return found


def _assert_no_canary(history: WorkflowHistory, *canaries: str) -> None:
    text = history.to_json()
    wire = b"".join(event.SerializeToString() for event in history.events)
    decoded = b"".join(_payload_bytes(json.loads(text)))
    for canary in canaries:
        assert canary not in text, canary
        assert canary.encode() not in wire, canary
        assert canary.encode() not in decoded, canary


async def _describe(client: Client, workflow_id: str) -> DescribeWorkflowExecutionResponse:
    return await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )


async def test_a_real_case_keeps_the_child_out_of_temporal(
    ts_env: WorkflowEnvironment, new_worker: Callable[[], Harness]
) -> None:
    harness = new_worker()
    request = make_request("merton", await ts_env.get_current_time())
    request = request.model_copy(
        update={
            "child": ChildDetails(
                name=CANARY, date_of_birth=date(2019, 2, 3), nhs_number=CANARY_NHS
            ),
            "summary": f"Worried about {CANARY} at home",
        }
    )
    manager = Actor(
        id="m-1",
        name="Receiving manager",
        agency=request.receiving_agency.key,
        role="manager",
    )
    async with harness.worker():
        handle = await ts_env.client.start_workflow(
            DisagreementWorkflow.run,
            request,
            id=f"disagreement-{request.reference}",
            task_queue=harness.task_queue,
            memo={"child": CANARY},
            static_summary=f"Case about {CANARY}",
            static_details=f"NHS {CANARY_NHS}",
        )
        await handle.execute_update(
            DisagreementWorkflow.add_note, AddNote(by=manager, text=f"Met {CANARY}'s school")
        )
        await handle.execute_update(
            DisagreementWorkflow.resolve, Resolve(by=manager, outcome=f"{CANARY} to be seen")
        )
        await handle.execute_update(DisagreementWorkflow.confirm, ConfirmOutcome(by=manager))
        await handle.result()

        # The product's client reads everything back.
        state = await state_of(handle)
        assert any(CANARY in note.text for note in state.notes)
        # (Client.describe() trips on how the time-skipping server returns a
        # datetime search attribute, so read the raw description.)
        described = await _describe(ts_env.client, handle.id)
        converter = data_converter()
        info, config = described.workflow_execution_info, described.execution_config
        assert await converter.decode([info.memo.fields["child"]]) == [CANARY]
        assert await converter.decode(
            [config.user_metadata.summary, config.user_metadata.details]
        ) == [f"Case about {CANARY}", f"NHS {CANARY_NHS}"]

    # A client without the codec sees only ciphertext, anywhere in the history.
    raw = Client(
        ts_env.client.service_client,
        namespace=ts_env.client.namespace,
        data_converter=pydantic_data_converter,
    )
    raw_handle = raw.get_workflow_handle(handle.id)
    history = await raw_handle.fetch_history()
    _assert_no_canary(history, CANARY, CANARY_NHS, "Quillfeather", "deadline for stage")
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == ENCODING
    assert CANARY.encode() not in (await _describe(raw, handle.id)).SerializeToString()

    # Replay works with encryption on (the histories checked in are unencrypted;
    # this one is not).
    replayer = Replayer(workflows=[DisagreementWorkflow], data_converter=data_converter())
    await replayer.replay_workflow(await handle.fetch_history())


def test_worker_api_and_simulator_share_one_converter() -> None:
    assert data_converter() is data_converter()
    assert isinstance(data_converter().payload_codec, EncryptionCodec)
