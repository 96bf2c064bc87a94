"""The weekly review digest: compute last week's review and email it to the operator, once."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.connectors.email import OPERATIONS as EMAIL
from aios.connectors.email import OutgoingEmail, SmtpEmailConnector
from aios.connectors.runtime import ConnectorRuntime
from aios.kernel.store import KernelStore
from aios.operations.review import compute_review, digest_text, iso_week_window

__all__ = ["ReviewActivities", "SendReviewDigestInput", "SendReviewDigestResult"]


class SendReviewDigestInput(BaseModel):
    """The ISO week to review. ``idempotency_key`` names the week, not the run, so a second
    run for the same week (the schedule triggered twice) sends nothing more."""

    idempotency_key: str
    year: int = Field(ge=2000, le=9999)
    week: int = Field(ge=1, le=53)


class SendReviewDigestResult(BaseModel):
    week: str
    to: str
    message_id: str
    sent_now: bool
    gates_decided: int


class ReviewActivities:
    def __init__(
        self,
        store: KernelStore,
        email: SmtpEmailConnector,
        runtime: ConnectorRuntime,
        *,
        operator_email: str,
    ) -> None:
        self._store = store
        self._email = email
        self._runtime = runtime
        self._operator_email = operator_email

    @activity.defn(name="send_review_digest")
    @translating_errors
    def send_review_digest(self, inp: SendReviewDigestInput) -> SendReviewDigestResult:
        """Email the week's review to the operator, at most once per idempotency key."""
        window = iso_week_window(inp.year, inp.week)
        review = compute_review(self._store, window)
        email = OutgoingEmail(
            to=self._operator_email,
            subject=f"AiOs weekly review {window.label}: {review.gates_decided} gate(s) "
            f"decided, {review.interruptions} interruption(s)",
            body=digest_text(review),
            idempotency_key=inp.idempotency_key,
        )
        result, ran = self._runtime.committing_effect(
            self._email.name,
            EMAIL["send"],
            inp.idempotency_key,
            lambda dry_run, commit: self._email.send(email, dry_run=dry_run, commit=commit),
            step="send_review_digest",
            event=event_for_step(
                inp.idempotency_key,
                "review.digest_sent",
                entity=f"review:{window.label}",
                payload={"to": email.to, "subject": email.subject, "week": window.label},
            ),
        )
        return SendReviewDigestResult(
            week=window.label,
            to=str(result.get("to", email.to)),
            message_id=str(result.get("message_id", "")),
            sent_now=ran,
            gates_decided=review.gates_decided,
        )
