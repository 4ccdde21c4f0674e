"""The raise's input: the policy snapshot travels in it compressed, reads back
whole, and inputs recorded before (the policy as it is) still read."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from escalation.converter import data_converter, plain_data_converter
from tests.conftest import make_request
from workflows.messages import PACKED_POLICY, RaiseDisagreement

HISTORIES = Path(__file__).parent / "histories"


async def test_the_policy_travels_compressed_and_reads_back_whole() -> None:
    request = make_request("staffordshire-stoke", datetime(2026, 11, 23, 10, tzinfo=UTC))
    payload = plain_data_converter().payload_converter.to_payloads([request])[0]
    sent = json.loads(payload.data)
    # Which policy and version stay readable (in the Temporal UI, through
    # the codec); the rest is compressed.
    assert {k: sent["policy"][k] for k in ("id", "version")} == {
        "id": "staffordshire-stoke",
        "version": request.policy.version,
    }
    assert len(payload.data) < len(request.policy.model_dump_json()) / 2

    # Through the product's converter (encrypted), the request comes back equal.
    converter = data_converter()
    encoded = await converter.encode([request])
    assert b"zlib_base64" not in encoded[0].data  # encrypted, like every payload
    [back] = await converter.decode(encoded, [RaiseDisagreement])
    assert back == request


def test_an_input_recorded_before_still_reads() -> None:
    history = json.loads((HISTORIES / "merton-updates.json").read_text())
    start = history["events"][0]["workflowExecutionStartedEventAttributes"]
    recorded = start["input"]["payloads"][0]
    data = base64.b64decode(recorded["data"])
    assert PACKED_POLICY not in json.loads(data)["policy"]  # the policy as it was
    payload = Payload(
        metadata={k: base64.b64decode(v) for k, v in recorded["metadata"].items()}, data=data
    )
    [request] = plain_data_converter().payload_converter.from_payloads(
        [payload], [RaiseDisagreement]
    )
    assert request.policy.id == "merton"
    assert len(request.policy.stages) >= 3


def test_a_packed_policy_is_refused_when_it_would_inflate_beyond_any_policy() -> None:
    request = make_request("merton", datetime(2026, 11, 23, 10, tzinfo=UTC))
    sent = json.loads(request.model_dump_json())
    bomb = zlib.compress(b" " * (4 << 20), 9)
    sent["policy"][PACKED_POLICY] = base64.b64encode(bomb).decode()
    with pytest.raises(ValidationError, match="larger than a policy can be"):
        RaiseDisagreement.model_validate_json(json.dumps(sent))
