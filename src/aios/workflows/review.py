"""The weekly review digest: last ISO week's ``aios review`` emailed to the operator."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.review import (
        ReviewActivities,
        SendReviewDigestInput,
        SendReviewDigestResult,
    )
    from aios.converter import ProcessInput
    from aios.workflows.attributes import PROCESS
    from aios.workflows.process import Process
    from aios.workflows.steps import step
    from aios.workflows.timeouts import CONNECTOR_EFFECT

__all__ = [
    "REVIEW_WORKFLOW_ID",
    "ReviewDigestInput",
    "ReviewDigestResult",
    "ReviewDigestWorkflow",
    "digest_key",
]

PROCESS_NAME = "review"
REVIEW_WORKFLOW_ID = f"{PROCESS_NAME}/weekly"  # Temporal appends the scheduled time


def digest_key(year: int, week: int) -> str:
    """The digest's idempotency key: one email per ISO week, whichever run sends it."""
    return f"review-digest/{year}-W{week:02d}"


class ReviewDigestInput(ProcessInput):
    """``year`` and ``week`` pick an ISO week; unset, the week before the run's start."""

    year: int | None = Field(default=None, ge=2000, le=9999)
    week: int | None = Field(default=None, ge=1, le=53)


class ReviewDigestResult(BaseModel):
    digest: SendReviewDigestResult


@workflow.defn(name="ReviewDigestWorkflow")
class ReviewDigestWorkflow(Process):
    """Email one ISO week's review to the operator (``AIOS_OPERATOR_EMAIL``).

    Started every Monday by the Temporal Schedule ``aios-weekly-review`` (``aios dev up`` and
    ``aios review schedule`` create it; ``aios review digest`` triggers it now). The email's
    idempotency key is the week (``review-digest/2026-W02``), so the schedule triggered twice
    still sends one digest per week. No signals, queries or gates.

    Search attributes: ``AiosProcess=review``, ``AiosOutcome=completed``. End event
    ``review.completed`` with the week and whether this run sent it.
    """

    NAME = PROCESS_NAME

    @workflow.run
    async def run(self, inp: ReviewDigestInput) -> ReviewDigestResult:
        workflow.upsert_search_attributes([PROCESS.value_set(PROCESS_NAME)])
        if inp.year is not None and inp.week is not None:
            year, week = inp.year, inp.week
        else:
            year, week, _ = (workflow.now() - timedelta(days=7)).isocalendar()
        self.set_details(f"Sending the review of {year}-W{week:02d}.")
        sent = await step(
            ReviewActivities.send_review_digest,
            SendReviewDigestInput(idempotency_key=digest_key(year, week), year=year, week=week),
            CONNECTOR_EFFECT,
        )
        entity = f"review:{sent.week}"
        await self.end("completed", entity, {"week": sent.week, "sent_now": sent.sent_now})
        return await self.close(ReviewDigestResult(digest=sent))
