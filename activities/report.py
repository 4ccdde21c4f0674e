"""Building, keeping and mailing the quarterly theme report.

The report's email has its own small path rather than the case notices'
(``activities.notices``): it belongs to no case, names no roles and is
addressed to the partnership's business team from the role directory. It
goes out through the same transport the worker's notices use: a readable
``.eml`` file in the outbox (the embedded default) or SendGrid, with the
same ledger, so a retried activity mails nothing twice. The PDF is attached
and the CSV beside it; the email's words say only which partnership and
period.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email import SendGridSink
from activities.notices import Addressee, Attachment, NoticeSink, OutboxSink
from policies.calendar import WorkingDayCalendar
from policies.directory import Directory
from policies.loader import get_policy
from register import Register, SentEmail
from register import tables as t
from reports.build import build
from reports.period import Period
from workflows.report import ReportDue, ReportSent, SendReport

log = logging.getLogger("escalation.reports")

DUE_AT_HOUR = 9


@dataclass
class ReportEmail:
    key: str
    policy_id: str
    sender: Addressee
    to: list[Addressee]
    subject: str
    text: str
    attachments: list[Attachment] = field(default_factory=list)

    def as_message(self) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = self.sender.header()
        msg["To"] = [a.header() for a in self.to]
        msg["Date"] = formatdate(usegmt=True)
        domain = self.sender.email.partition("@")[2] or "escalation.invalid"
        msg["Message-ID"] = f"<{self.key}@{domain}>"
        msg["X-Escalation-Report"] = self.key
        msg.set_content(self.text, cte="8bit")
        for attachment in self.attachments:
            maintype, _, subtype = attachment.mime_type.partition("/")
            msg.add_attachment(
                attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
            )
        return msg


class ReportMailer(Protocol):
    def already_sent(self, key: str) -> bool: ...

    def send(self, email: ReportEmail) -> None: ...


class OutboxReportMailer:
    """The report as an ``.eml`` file in the notices' outbox, written
    atomically (the file is the ledger)."""

    def __init__(self, outbox: OutboxSink) -> None:
        self.outbox = outbox

    def already_sent(self, key: str) -> bool:
        return key in self.outbox.sent([key])

    def send(self, email: ReportEmail) -> None:
        path = self.outbox.path(email.key)
        tmp = path.with_suffix(".eml.tmp")
        tmp.write_bytes(email.as_message().as_bytes())
        os.replace(tmp, path)


class MemoryReportMailer:
    def __init__(self) -> None:
        self.sent: list[ReportEmail] = []

    def already_sent(self, key: str) -> bool:
        return any(e.key == key for e in self.sent)

    def send(self, email: ReportEmail) -> None:
        self.sent.append(email)


class SendGridReportMailer:
    """Through the notices' SendGrid client and ledger."""

    def __init__(self, sink: SendGridSink) -> None:
        self.sink = sink

    def already_sent(self, key: str) -> bool:
        return key in self.sink.sent([key])

    def send(self, email: ReportEmail) -> None:
        from sendgrid.helpers.mail import (
            Attachment as SgAttachment,
        )
        from sendgrid.helpers.mail import (
            Category,
            Disposition,
            FileContent,
            FileName,
            FileType,
            From,
            Mail,
            To,
        )

        mail = Mail(
            from_email=From(email.sender.email, email.sender.name),
            to_emails=[To(a.email, a.name) for a in email.to],
            subject=email.subject,
            plain_text_content=email.text,
        )
        mail.category = [Category("escalation-report"), Category(email.policy_id)]
        for a in email.attachments:
            mail.add_attachment(
                SgAttachment(
                    FileContent(base64.b64encode(a.content).decode("ascii")),
                    FileName(a.filename),
                    FileType(a.mime_type),
                    Disposition("attachment"),
                )
            )
        response = self.sink.post(mail.get())
        if not response.is_success:
            status = response.status_code
            retry = status == 429 or status >= 500
            raise ApplicationError(
                f"SendGrid answered {status} for report {email.key}",
                type="SendGridUnavailable" if retry else "ReportRejected",
                non_retryable=not retry,
            )
        message_id = response.headers.get("X-Message-Id")
        self.sink.ledger.record([SentEmail(email.key, email.key, "", message_id)])


def report_mailer(sink: NoticeSink) -> ReportMailer:
    """The report's mail path for the worker's notice transport."""
    if isinstance(sink, OutboxSink):
        return OutboxReportMailer(sink)
    if isinstance(sink, SendGridSink):
        return SendGridReportMailer(sink)
    return MemoryReportMailer()


def report_id(policy_id: str, period: Period) -> str:
    return f"{policy_id}-{period.label}"


class ReportActivities:
    def __init__(
        self,
        register: Register,
        mailer: ReportMailer,
        directory: Directory | None,
        sender: Addressee | None,
        extra_closures: Iterable[date] = (),
    ) -> None:
        self.register = register
        self.mailer = mailer
        self.directory = directory
        self.sender = sender or Addressee("Escalation service", "escalation@example.org")
        self.extra_closures = tuple(extra_closures)

    @activity.defn(name="report_due_at")
    async def report_due_at(self, due: ReportDue) -> datetime:
        """09:00 local on the first working day on or after the schedule fired."""
        policy = get_policy(due.policy_id)
        calendar = WorkingDayCalendar(policy.calendar_spec(), self.extra_closures)
        day = due.started_at.astimezone(ZoneInfo(policy.time_zone)).date()
        if not calendar.is_working_day(day):
            day = calendar.next_working_day(day)
        return calendar.at_local_time(day, time(DUE_AT_HOUR)).astimezone(UTC)

    @activity.defn(name="send_quarterly_report")
    async def send_quarterly_report(self, job: SendReport) -> ReportSent:
        # Counting, drawing and mailing block: off the worker's event loop.
        return await asyncio.to_thread(self._send, job)

    def _send(self, job: SendReport) -> ReportSent:
        policy = get_policy(job.policy_id)
        local = job.at.astimezone(ZoneInfo(policy.time_zone)).date()
        period = Period.containing(local).previous()
        # matplotlib and the PDF library load with the first report, not
        # with the worker: most of a worker's life builds none.
        from reports.render import as_csv, as_pdf

        figures = build(self.register.engine, policy, period, now=job.at, directory=self.directory)
        pdf, csv = as_pdf(figures), as_csv(figures)
        key = f"report-{report_id(policy.id, period)}"
        team = self.directory.business_team(policy.id, None) if self.directory else ()
        to = [Addressee(p.name, p.email) for p in team]
        if to and not self.mailer.already_sent(key):
            base = f"escalation-report-{policy.id}-{period.label}"
            self.mailer.send(
                ReportEmail(
                    key=key,
                    policy_id=policy.id,
                    sender=self.sender,
                    to=to,
                    subject=f"Escalation report {period.label}: {policy.partnership}",
                    text=(
                        f"The escalation report for {policy.partnership}, "
                        f"{period.describe()}, is attached as a PDF, with its figures as "
                        "CSV.\n\nIt is anonymised: no child's details or free text, and no "
                        "count from 1 to 4.\n"
                    ),
                    attachments=[
                        Attachment(f"{base}.pdf", pdf),
                        Attachment(f"{base}.csv", csv.encode("utf-8"), "text/csv"),
                    ],
                )
            )
        elif not to:
            log.warning("report %s: no business team in the directory to mail it to", key)
        self.register.save_report(
            t.Report(
                id=report_id(policy.id, period),
                policy_id=policy.id,
                period=period.label,
                period_from=period.first.isoformat(),
                period_to=period.last.isoformat(),
                generated_at=job.at,
                emailed_to=len(to),
                figures=figures.data,
                csv=csv,
                pdf=pdf,
            )
        )
        return ReportSent(
            report_id=report_id(policy.id, period), period=period.label, emailed_to=len(to)
        )
