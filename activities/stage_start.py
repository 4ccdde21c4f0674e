"""``start_stage``: a stage's clock and the notice that it has started, in
one local activity.

Entering a stage took two: the deadline's, then the notice's, which carries
that deadline. Each local activity is a round of hand-overs between the
workflow and the activity worker and a marker in the case's history; a
thousand escalations at one instant spent a fifth of the worker's time on
them (README, Performance). The notice's sending gets one attempt here: a
refusal for good (SendGrid's 4xx) comes back for the case to record as it
records any refused notice; anything else that stops it, the case sends the
same notice (the same id, so no copy twice) by its own ``send_notice``
activity, with that activity's retries, and the deadline is not held up by
the mail service meanwhile.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deadlines import DeadlineActivities
from activities.notices import NoticeActivities
from workflows.messages import Clock, Notice, NoticeRefused, StageStart, StageStarted


class StageStartActivities:
    def __init__(self, deadlines: DeadlineActivities, notices: NoticeActivities) -> None:
        self.deadlines = deadlines
        self.notices = notices

    @activity.defn(name="start_stage")
    async def start_stage(self, start: StageStart) -> StageStarted:
        # A clock that cannot be worked out fails the activity, as its own would.
        clock = await self.deadlines.plan_stage_clock(start.clock)
        notice = start.notice.with_clock(clock)
        try:
            receipt = await self.notices.send_notice(notice)
        except ApplicationError as exc:
            if not exc.non_retryable:
                return self._not_yet(notice, exc, clock)
            # Refused for good: sent again, it would be refused again.
            refused = NoticeRefused(type=exc.type, message=exc.message)
            return StageStarted(clock=clock, refused=refused)
        except Exception as exc:  # noqa: BLE001 - the case sends it again on its own
            return self._not_yet(notice, exc, clock)
        return StageStarted(clock=clock, receipt=receipt)

    @staticmethod
    def _not_yet(notice: Notice, exc: Exception, clock: Clock) -> StageStarted:
        # Logged by id and kind only: a notice's context is case data.
        activity.logger.warning(
            "notice %s not sent with its stage's clock (%s); the case sends it on its own",
            notice.notice_id,
            type(exc).__name__,
        )
        return StageStarted(clock=clock)
