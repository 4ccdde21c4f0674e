"""The codec endpoint scoped to the case: a business team decodes only its
own partnership's payloads, read from a real case's history as the Temporal
UI reads it (ciphertext straight from the server)."""

from __future__ import annotations

import base64
from typing import Any

from api_helpers import Api, eventually
from google.protobuf import json_format
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.testing import WorkflowEnvironment

from escalation.codec import ENCODING, PARTNERSHIP_METADATA

CHILD_NAME = "Zebedee Quillfeather"  # api_helpers.raise_body's child
ENCRYPTED = base64.b64encode(ENCODING).decode()


def _encrypted_payloads(tree: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(tree, dict):
        metadata = tree.get("metadata")
        if isinstance(metadata, dict) and metadata.get("encoding") == ENCRYPTED:
            found.append(tree)
        for value in tree.values():
            found += _encrypted_payloads(value)
    elif isinstance(tree, list):
        for value in tree:
            found += _encrypted_payloads(value)
    return found


async def _history_payloads(env: WorkflowEnvironment, reference: str) -> list[dict[str, Any]]:
    response = await env.client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=env.client.namespace,
            execution=WorkflowExecution(workflow_id=f"disagreement-{reference}"),
        )
    )
    return _encrypted_payloads(json_format.MessageToDict(response.history))


def _partnership(payload: dict[str, Any]) -> str | None:
    value = payload["metadata"].get(PARTNERSHIP_METADATA)
    return base64.b64decode(value).decode() if value else None


async def test_a_business_team_decodes_only_its_own_partnerships_cases(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    ref = await api.raise_case()
    note = await api.post(f"/disagreements/{ref}/notes", "merton-csc-manager", {"text": "Noted."})
    assert note.status_code == 200, note.text

    async def raised() -> bool:
        state = (await api.get(f"/disagreements/{ref}", "operator")).json()
        return any(e["type"] == "raised" for e in state.get("events", []))

    await eventually(raised, what="the raise recorded")
    payloads = await _history_payloads(dev_env, ref)
    # The start input, the note's update and its result, the stage clock's
    # and the notices' local activities: every one says whose it is.
    assert len(payloads) >= 4
    assert {_partnership(p) for p in payloads} == {"merton"}
    body = {"payloads": payloads}

    cheshire = await api.post("/codec/decode", "cheshire-business-team", body)
    assert cheshire.status_code == 200, cheshire.text
    assert cheshire.json() == body  # still encrypted: nothing revealed
    assert CHILD_NAME not in cheshire.text

    for user in ("merton-business-team", "operator"):
        decoded = await api.post("/codec/decode", user, body)
        assert decoded.status_code == 200, decoded.text
        texts = [base64.b64decode(p.get("data", "")) for p in decoded.json()["payloads"]]
        assert any(CHILD_NAME.encode() in t for t in texts), user
        assert not _encrypted_payloads(decoded.json())
