"""Each encrypted payload carries, authenticated, the partnership of the case
it belongs to (``escalation.codec``): relabelled or stripped it no longer
decrypts, payloads from before the scheme still decrypt, and the codec
learns a workflow's partnership from its start input."""

from __future__ import annotations

import base64
import json
import secrets
import uuid

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext

from escalation.codec import (
    KEY_ID_METADATA,
    LABEL_METADATA,
    PARTNERSHIP_METADATA,
    CodecDecodeError,
    EncryptionCodec,
    KeyRing,
    Partnerships,
    decode_payloads_json,
    encode_payloads_json,
    payload_partnership,
)
from escalation.converter import LabellingPayloadConverter
from policies.loader import get_policy
from workflows.messages import Actor, AddNote, RaiseDisagreement

CANARY = "Zebedee Quillfeather-Scope"


def codec() -> EncryptionCodec:
    return EncryptionCodec(KeyRing({"k1": secrets.token_bytes(32)}), Partnerships())


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def raise_request() -> RaiseDisagreement:
    return RaiseDisagreement.model_validate(
        {
            "reference": "MER-SC0PE000",
            "policy": get_policy("merton"),
            "raised_by": Actor(),
            "raising_agency": {"key": "merton-health", "name": "Merton health", "kind": "health"},
            "receiving_agency": {
                "key": "merton-childrens-social-care",
                "name": "Merton CSC",
                "kind": "childrens-social-care",
            },
            "summary": "s",
            "child": {"name": CANARY},
        }
    )


def context(workflow_id: str) -> WorkflowSerializationContext:
    return WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)


async def test_a_payload_carries_its_partnership_and_cannot_be_relabelled() -> None:
    c = codec()
    sealed = c.encode_one(plain(CANARY), "merton")
    assert sealed.metadata[PARTNERSHIP_METADATA] == b"merton"
    assert payload_partnership(sealed) == "merton"
    assert [p.data for p in await c.decode([sealed])] == [plain(CANARY).data]

    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[PARTNERSHIP_METADATA] = b"cheshire"
    with pytest.raises(CodecDecodeError, match="partnership"):
        await c.decode([relabelled])
    stripped = Payload()
    stripped.CopyFrom(sealed)
    del stripped.metadata[PARTNERSHIP_METADATA]
    with pytest.raises(CodecDecodeError):
        await c.decode([stripped])


async def test_payloads_from_before_partnerships_still_decode() -> None:
    c = codec()
    # What the codec wrote before: no partnership, the v1 associated data.
    old = c.encode_one(plain(CANARY), None)
    assert set(old.metadata) == {"encoding", KEY_ID_METADATA}
    assert payload_partnership(old) is None
    assert (await c.decode([old]))[0].data == plain(CANARY).data


async def test_the_codec_learns_a_case_from_its_start_input_and_labels_the_rest() -> None:
    c = codec()
    converter = LabellingPayloadConverter()
    workflow_id = f"disagreement-{uuid.uuid4()}"
    [start] = converter.to_payloads([raise_request()])
    assert start.metadata[LABEL_METADATA] == b"merton"
    [note] = converter.to_payloads([AddNote(text="a note")])
    assert LABEL_METADATA not in note.metadata

    # The worker's side: a fresh codec reads the start input first ...
    sealed_start = (await c.with_context(context(workflow_id)).encode([start]))[0]
    worker = EncryptionCodec(c.ring, Partnerships())
    await worker.with_context(context(workflow_id)).decode([sealed_start])
    # ... and then labels whatever else it encodes for the case, activity
    # payloads too.
    [sealed_note] = await worker.with_context(context(workflow_id)).encode([note])
    activity = ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="send_notice",
        activity_task_queue="q",
        workflow_id=workflow_id,
        workflow_type="Disagreement",
        is_local=True,
    )
    [sealed_result] = await worker.with_context(activity).encode([plain("done")])
    assert payload_partnership(sealed_start) == "merton"
    assert payload_partnership(sealed_note) == "merton"
    assert payload_partnership(sealed_result) == "merton"
    # Another workflow it knows nothing of: no partnership.
    [unknown] = await worker.with_context(context("disagreement-other")).encode([note])
    assert payload_partnership(unknown) is None


async def test_the_endpoint_never_trusts_a_label_it_is_sent() -> None:
    c = codec()
    forged = plain(CANARY)
    forged.metadata[LABEL_METADATA] = b"merton"
    body = {"payloads": [json.loads(_json(forged))]}

    for_cheshire = await encode_payloads_json(body, c, partnership="cheshire")
    by_operator = await encode_payloads_json(body, c, partnership=None)

    [cheshire] = for_cheshire["payloads"]
    assert _meta(cheshire, PARTNERSHIP_METADATA) == "cheshire"
    assert _meta(by_operator["payloads"][0], PARTNERSHIP_METADATA) is None
    decoded, withheld = await decode_payloads_json(
        for_cheshire, c, may_decode=lambda p: p == "cheshire"
    )
    assert withheld == 0
    assert _meta(decoded["payloads"][0], LABEL_METADATA) is None


async def test_decode_withholds_what_the_caller_may_not_see_unchanged() -> None:
    c = codec()
    merton = c.encode_one(plain(CANARY), "merton")
    unlabelled = c.encode_one(plain(CANARY), None)
    body = {"payloads": [json.loads(_json(merton)), json.loads(_json(unlabelled))]}

    decoded, withheld = await decode_payloads_json(body, c, may_decode=lambda p: p == "cheshire")

    assert withheld == 2
    assert decoded == body
    assert CANARY not in json.dumps(decoded)


def _json(payload: Payload) -> str:
    return json_format.MessageToJson(payload)


def _meta(payload: dict[str, object], name: str) -> str | None:
    metadata = payload.get("metadata") or {}
    assert isinstance(metadata, dict)
    value = metadata.get(name)
    return base64.b64decode(value).decode() if isinstance(value, str) else None
