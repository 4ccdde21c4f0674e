"""``GET /disagreements/{reference}/forms/{form}``: a policy's form as PDF,
filled from the case as it stands.

Only those who may see the case get it (a party to it, the partnership's
business team, an operator): anyone else gets the same 404 as for a case
that does not exist. The form is filled by the case workflow itself (its
``form`` query, from the policy snapshot the case runs under) and rendered
here; it carries the child's details where the source form asks for them,
so it is served ``no-store`` and every download is logged (user, reference
and form only).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.forms import pdf_filename, render_pdf
from api import cases, problems
from api.deps import CurrentUser, SettingsDep, TemporalClient
from api.problems import ProblemError
from api.routes.disagreements import RefPath
from api.users import User
from escalation.settings import Settings
from workflows.messages import FilledForm

access_log = logging.getLogger("escalation.api.access")

router = APIRouter(prefix="/disagreements", tags=["disagreements"])

FORM_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")

FormPath = Annotated[
    str,
    Path(
        max_length=64,
        description="The form's key in the case's policy, e.g. escalation-pro-forma (Merton), "
        "formal-escalation-form (Staffordshire and Stoke-on-Trent), appendix-a (Cheshire), "
        "appendix-1 / appendix-2 (Wirral), escalation-notification (Hillingdon).",
        openapi_examples={
            "merton": {"summary": "Merton's pro-forma", "value": "escalation-pro-forma"}
        },
    ),
]


def _no_form(form: str) -> ProblemError:
    return ProblemError(
        404, problems.NOT_FOUND, "Not found", f"the case's policy has no form {form!r}"
    )


@router.get(
    "/{reference}/forms/{form}",
    summary="A form filled from the case, as PDF",
    description="One of the policy's forms (e.g. Merton's pro-forma, Cheshire's Appendix A), "
    "filled from the case as it stands, as a PDF. It holds the child's details where the "
    "source form asks for them (never on Hillingdon's anonymised form).",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/pdf": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "%PDF-1.3 … (the form, filled from the case)",
                }
            },
            "description": "The form as PDF",
        },
        **problems.responses(401, 404, 409, 422, 503),
    },
)
async def get_form(
    reference: RefPath,
    form: FormPath,
    user: CurrentUser,
    client: TemporalClient,
    settings: SettingsDep,
) -> Response:
    pdf, filename = await form_pdf(client, settings, reference, user, form)
    return pdf_response(pdf, filename)


async def form_pdf(
    client: Client, settings: Settings, reference: str, user: User, form: str
) -> tuple[bytes, str]:
    """The form filled from the case, as PDF, and its file name, for whoever
    may see the case (the API and the pages); ProblemError otherwise."""
    if not FORM_RE.fullmatch(form):
        raise _no_form(form)
    case = await cases.find_case(client, reference, user, f"form {form}")
    try:
        filled: FilledForm | None = await case.handle.query(
            "form",
            form,
            result_type=FilledForm | None,  # type: ignore[arg-type]
            rpc_timeout=timedelta(seconds=settings.action_timeout_seconds),
        )
    except WorkflowQueryFailedError:
        # The only failure is "still being raised" (its message is encrypted
        # by the payload codec, so it is not read here).
        raise ProblemError(
            409,
            problems.CASE_NOT_READY,
            "The case is not ready",
            "the case is still being raised; try again in a moment",
            headers={"Retry-After": "1"},
        ) from None
    except RPCError as exc:
        raise cases.unavailable(exc) from None
    if filled is None:
        raise _no_form(form)
    pdf = await anyio.to_thread.run_sync(render_pdf, filled)
    access_log.info("form %s of %s served to user %s", form, reference, user.id)
    return pdf, pdf_filename(filled)


def pdf_response(pdf: bytes, filename: str) -> Response:
    # The form may carry the child's details: never kept in a cache.
    return Response(
        content=pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
