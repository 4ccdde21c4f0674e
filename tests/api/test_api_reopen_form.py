"""POST .../reopen and .../form: an outcome that was not agreed after all,
and the form a stage is waiting for, through the API."""

from __future__ import annotations

from api_helpers import Api
from test_api_disagreements import MANAGER, PRACTITIONER, assert_problem, state


async def test_an_outcome_not_agreed_after_all_is_reopened_then_escalated(api: Api) -> None:
    ref = await api.raise_case()
    path = f"/disagreements/{ref}"
    resolved = await api.post(f"{path}/resolve", MANAGER, {"outcome": "Agreed by phone"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "awaiting-confirmation"  # Merton: at all stages

    reopened = await api.post(
        f"{path}/reopen", PRACTITIONER, {"reason": "The letter shows no agreement"}
    )
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["status"] == "open"
    escalated = await api.post(f"{path}/escalate", PRACTITIONER, {"reason": "Still unsafe"})
    assert escalated.status_code == 200, escalated.text
    assert escalated.json()["stage"] == 1
    case = await state(api, ref)
    reopen = next(e for e in case["events"] if e["type"] == "reopened")
    assert reopen["reason"] == "The letter shows no agreement"
    # Reopening an open case is refused with the case's own reason.
    again = await api.post(f"{path}/reopen", PRACTITIONER, {"reason": "again"})
    assert_problem(again, 409, "action-refused", "only a case awaiting written confirmation")
    assert_problem(await api.post(f"{path}/reopen", PRACTITIONER, {}), 422, "validation-error")


async def test_a_form_nobody_owes_is_refused_with_the_reason(api: Api) -> None:
    ref = await api.raise_case()
    response = await api.post(f"/disagreements/{ref}/form", MANAGER, {"form": {}})
    assert_problem(response, 409, "action-refused", "no form is owed")
    too_many = {f"field-{i}": "x" for i in range(41)}
    response = await api.post(f"/disagreements/{ref}/form", MANAGER, {"form": too_many})
    assert_problem(response, 422, "validation-error")
