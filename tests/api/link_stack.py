"""The stack the action-link tests run against (imported as ``link_stack``;
its fixtures are the session's, through the conftest).

The API tests' worker captures notices unaddressed; action links need
notices addressed to people, so these tests have a worker of their own on
its own task queue, sending to a real ``.eml`` outbox with a role directory
in which the demonstration users hold Merton's roles, and an app of its own
whose public address (the one the links point at) is a real loopback port.
The same Temporal dev server, register and users file as the other API tests.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from api_helpers import Api, eventually
from canary_helpers import free_port
from fastapi import FastAPI
from page_helpers import serve
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.notices import OutboxSink
from api.main import create_app
from escalation.action_links import PATH, ActionLink, LinkSigner, recipient_digest
from escalation.settings import Settings
from policies.directory import load_directory
from register import Register
from workers.worker import action_links, build_worker

# Merton children's social care (the receiving side) and Merton health (raising the concerns).
TOM = "tom.okafor@merton-childrens-social-care.example.org"
PRIYA = "priya.shah@health.merton.example"
DIRECTORY = f"""\
partnerships:
  merton:
    business_team:
      - {{name: Merton business team, email: business.team@mscp.merton.example}}
    areas:
      merton:
        agencies:
          merton-health:
            name: Merton health
            kind: health
            roles:
              practitioner: [{{name: Priya Shah, email: {PRIYA}}}]
              health-line-manager: [{{name: Duty manager, email: duty@health.merton.example}}]
          merton-childrens-social-care:
            name: Merton children's social care
            kind: childrens-social-care
            roles:
              practitioner: [{{name: Tom Okafor, email: {TOM}}}]
              team-manager: [{{name: Tom Okafor, email: {TOM}}}]
"""
LINK = re.compile(r"https?://[^\s\"'<>]+/act/[A-Za-z0-9_.-]+")


@dataclass
class Outbox:
    """The worker's ``.eml`` outbox, read as a person reads their email."""

    folder: Path

    def emails(self, reference: str, to: str, template: str) -> list[EmailMessage]:
        found = []
        for path in sorted(self.folder.glob("*.eml")):
            message = BytesParser(policy=email_policy.default).parsebytes(path.read_bytes())
            assert isinstance(message, EmailMessage)
            if (
                message["X-Escalation-Reference"] == reference
                and message["X-Escalation-Template"] == template
                and to in str(message["To"])
            ):
                found.append(message)
        return found

    async def email(self, reference: str, to: str, template: str) -> str:
        """The text of this person's copy of the case's notice, once sent."""

        async def sent() -> bool:
            return bool(self.emails(reference, to, template))

        await eventually(sent, timeout=30, what=f"the {template} notice to {to}")
        (message,) = self.emails(reference, to, template)
        body = message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    async def emailed_link(self, reference: str, to: str, template: str) -> str:
        """The action link in this person's copy of the case's notice, once sent."""
        links = LINK.findall(await self.email(reference, to, template))
        assert len(links) == 1, f"expected one action link, found {links}"
        return str(links[0])


@dataclass
class LinkStack:
    site: str
    outbox: Path
    settings: Settings
    client: Client
    register: Register

    @property
    def secret(self) -> bytes:
        assert self.settings.api_secret is not None
        return self.settings.api_secret.get_secret_value().encode()

    def mint(self, reference: str, to: str, **changes: Any) -> str:
        """A link as the worker would make it, with ``changes`` (an expiry
        passed, another address): what the service's key signs, by other means."""
        link = ActionLink(
            link_id=secrets.token_hex(16),
            action="acknowledge",
            reference=reference,
            recipient=recipient_digest(self.secret, to),
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )
        link = dataclasses.replace(link, **changes)
        return f"{self.site}{PATH}{LinkSigner(self.secret).token(link)}"

    async def resolved_link(self, api: Api, reference: str) -> str:
        """The receiving manager resolves the Merton case at its practitioners
        stage (either party then confirms in writing): the link in the copy of
        the person who raised it."""
        response = await api.post(
            f"/disagreements/{reference}/resolve",
            "merton-csc-manager",
            {"outcome": "Agreed at the strategy discussion"},
        )
        assert response.status_code == 200, response.text
        return await self.emailed_link(reference, PRIYA, "resolved")

    async def emailed_link(self, reference: str, to: str, template: str) -> str:
        return await Outbox(self.outbox).emailed_link(reference, to, template)


@pytest_asyncio.fixture(scope="session")
async def link_stack(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    register: Register,
    tokens: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[LinkStack]:
    folder = tmp_path_factory.mktemp("links")
    directory_file = folder / "directory.yaml"
    directory_file.write_text(DIRECTORY, encoding="utf-8")
    port = free_port()
    own = settings.model_copy(
        update={
            "task_queue": f"links-{uuid.uuid4()}",
            "public_url": f"http://127.0.0.1:{port}",
            "directory_file": directory_file,
        }
    )
    outbox = OutboxSink(folder / "outbox")
    worker = build_worker(
        dev_env.client,
        own.task_queue,
        outbox,
        register=register,
        directory=load_directory(directory_file),
        public_url=own.public_url,
        links=action_links(own),
    )
    app: FastAPI = create_app(own, client=dev_env.client, register=register)
    async with worker, app.router.lifespan_context(app), serve(app, port) as site:
        yield LinkStack(site, outbox.folder, own, dev_env.client, register)
