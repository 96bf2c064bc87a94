"""Newsletter activities: pick the next batch of recipients, send a batch, count deliveries.

``send_newsletter_batch`` sends one message per recipient through the connector runtime (rate
limit, circuit breaker, outbox), each with idempotency key ``newsletter/<post>/<subscriber>``
and a ``newsletter_deliveries`` row once it is done, so a batch run again (after a worker died,
a retry, a cancel and a new start) passes over everyone who has the post. A recipient who
unsubscribed meanwhile is skipped. A permanent SMTP refusal (5xx) marks the address bounced
and is not retried; a transient one fails the batch, which Temporal retries with backoff.

No subscriber gets an issue twice, whenever the worker dies: the outbox row is committed as
done just before the terminating dot of each message's DATA (``aios.connectors.email``), so a
message the server can have delivered is always on record, and a retry passes over it. A
batch keeps one SMTP connection (no connect and QUIT per message).

The activity heartbeats after every message (the recipient's position), so a lost worker is
noticed within the heartbeat timeout, and a cancel stops it between two messages, never in
the middle of one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import CancelledError

from aios.activities.errors import translating_errors
from aios.connectors.email import OPERATIONS as EMAIL
from aios.connectors.email import OutgoingEmail, SmtpEmailConnector, SmtpSession
from aios.connectors.runtime import ConnectorRuntime
from aios.errors import (
    ConnectorAuthError,
    ConnectorInvalidRequest,
    InvalidInput,
    PermanentConnectorError,
    RateLimited,
)
from aios.kernel.store import KernelStore
from aios.kernel.stores.newsletter import Issue
from aios.serve.subscriber_links import SubscriberLinks
from aios.templates.newsletter import issue_html, render_issue

__all__ = [
    "BatchResult",
    "NewsletterActivities",
    "NextBatchInput",
    "NextBatchResult",
    "SendBatchInput",
    "TallyInput",
    "TallyResult",
]

DEFAULT_BATCH_SIZE = 100


class NextBatchInput(BaseModel):
    post_id: str
    version: int
    after: int = Field(ge=0)
    batches: int = Field(default=1, ge=1, le=20)  # how many batches' worth of recipients


class NextBatchResult(BaseModel):
    subscriber_ids: list[int]
    batch_size: int = DEFAULT_BATCH_SIZE  # recipients per batch (AIOS_NEWSLETTER_BATCH_SIZE)


class SendBatchInput(BaseModel):
    post_id: str
    version: int
    subscriber_ids: list[int] = Field(max_length=1000)


class BatchResult(BaseModel):
    sent: int = 0
    bounced: int = 0
    skipped_unsubscribed: int = 0
    failed: int = 0
    already_delivered: int = 0


class TallyInput(BaseModel):
    post_id: str


class TallyResult(BaseModel):
    sent: int = 0
    bounced: int = 0
    failed: int = 0


class NewsletterActivities:
    """Over the kernel, the SMTP connector and the connector runtime of this worker."""

    def __init__(
        self,
        store: KernelStore,
        email: SmtpEmailConnector,
        runtime: ConnectorRuntime,
        links: SubscriberLinks,
        *,
        sender_name: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._store = store
        self._email = email
        self._runtime = runtime
        self._links = links
        self._sender_name = sender_name
        self._batch_size = batch_size

    def _issue(self, post_id: str, version: int) -> Issue:
        issue = self._store.newsletter.issue(post_id, version)
        if issue is None:
            raise InvalidInput(
                f"newsletter issue {post_id} version {version} is not staged; "
                "stage it (KernelStore.newsletter.stage_issue) before the send starts"
            )
        return issue

    @activity.defn(name="newsletter_next_batch")
    @translating_errors
    def next_batch(self, inp: NextBatchInput) -> NextBatchResult:
        """The next confirmed subscribers (by id, above ``after``) who lack the post: up to
        ``batches`` batches' worth, and the batch size to cut them by."""
        self._issue(inp.post_id, inp.version)
        recipients = self._store.newsletter.pending_recipients(
            inp.post_id, after=inp.after, limit=self._batch_size * inp.batches
        )
        return NextBatchResult(
            subscriber_ids=[r.id for r in recipients], batch_size=self._batch_size
        )

    @activity.defn(name="newsletter_tally")
    @translating_errors
    def tally(self, inp: TallyInput) -> TallyResult:
        """What the kernel records for the post: deliveries by outcome."""
        counts = self._store.newsletter.delivery_counts(inp.post_id)
        return TallyResult(
            sent=counts.get("sent", 0),
            bounced=counts.get("bounced", 0),
            failed=counts.get("failed", 0),
        )

    @activity.defn(name="send_newsletter_batch")
    @translating_errors
    def send_batch(self, inp: SendBatchInput) -> BatchResult:
        """Send the issue to each subscriber of the batch who does not have it yet."""
        issue = self._issue(inp.post_id, inp.version)
        body_html = issue_html(issue.markdown)
        info = activity.info()
        workflow_id = info.workflow_id or ""
        details = info.heartbeat_details
        start = details[0] if details and isinstance(details[0], int) else 0
        result = BatchResult()
        with self._email.session() as smtp:  # one connection for the batch
            for index in range(start, len(inp.subscriber_ids)):
                if activity.is_cancelled():
                    raise CancelledError("the send was cancelled; the rest of the batch waits")
                with activity.shield_thread_cancel_exception():
                    outcome = self._deliver(
                        issue, body_html, inp.subscriber_ids[index], workflow_id, smtp
                    )
                setattr(result, outcome, getattr(result, outcome) + 1)
                activity.heartbeat(index + 1)
        return result

    def _deliver(
        self,
        issue: Issue,
        body_html: str,
        subscriber_id: int,
        workflow_id: str,
        smtp: SmtpSession | None = None,
    ) -> str:
        news = self._store.newsletter
        if news.delivery(issue.post_id, subscriber_id) is not None:
            return "already_delivered"
        subscriber = self._store.subscribers.get(subscriber_id)
        if subscriber is None or subscriber.status != "confirmed":
            return "skipped_unsubscribed"
        unsubscribe = self._links.url(
            "unsubscribe", subscriber.id, subscriber.email, datetime.now(UTC)
        )
        message = render_issue(
            subject=issue.subject,
            markdown=issue.markdown,
            body_html=body_html,
            name=subscriber.name,
            sender=self._sender_name,
            unsubscribe_url=unsubscribe,
        )
        key = f"newsletter/{issue.post_id}/{subscriber.id}"
        outgoing = OutgoingEmail(
            to=subscriber.email,
            subject=message.subject,
            body=message.text,
            html=message.html,
            idempotency_key=key,
            headers=(
                ("List-Unsubscribe", f"<{unsubscribe}>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ("Precedence", "bulk"),
            ),
        )
        while True:
            try:
                sent, _ = self._runtime.committing_effect(
                    self._email.name,
                    EMAIL["send"],
                    key,
                    lambda dry_run, commit: self._email.send(
                        outgoing, dry_run=dry_run, session=smtp, commit=commit
                    ),
                    step="send_newsletter",
                )
                break
            except RateLimited as exc:  # wait for the window here: the batch keeps its place
                activity.heartbeat()
                time.sleep(min(exc.retry_after or 0.2, 5.0))
            except (ConnectorAuthError, ConnectorInvalidRequest):
                raise  # the server or our settings are wrong, not this address
            except PermanentConnectorError as exc:
                self._store.subscribers.bounce(
                    subscriber.id, reason=str(exc), workflow_id=workflow_id
                )
                news.record_delivery(
                    issue.post_id,
                    issue.version,
                    subscriber.id,
                    "bounced",
                    detail=str(exc),
                    workflow_id=workflow_id,
                )
                return "bounced"
            except InvalidInput as exc:  # this address cannot be written as a message
                news.record_delivery(
                    issue.post_id,
                    issue.version,
                    subscriber.id,
                    "failed",
                    detail=str(exc),
                    workflow_id=workflow_id,
                )
                return "failed"
        if sent.get("dry_run"):
            return "sent"  # rehearsed: nothing recorded, so the real send still goes out
        news.record_delivery(
            issue.post_id,
            issue.version,
            subscriber.id,
            "sent",
            message_id=str(sent.get("message_id", "")),
            workflow_id=workflow_id,
        )
        return "sent"
