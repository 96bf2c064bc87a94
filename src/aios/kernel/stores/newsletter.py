"""Newsletter issues and their deliveries.

The content process stages an issue (``stage_issue``: subject and Markdown, by post id and
version) before it starts the send, so the text travels by id and never enters workflow
history. Each delivery is one row per post and subscriber, whatever the version: a subscriber
gets a post once, and a send started again (after a crash, a cancel, a new version) passes over
everyone who already has it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from aios.errors import InvalidInput
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store
from aios.kernel.text import find_unsafe

__all__ = ["DeliveryStatus", "Issue", "NewsletterStore", "Recipient"]

DeliveryStatus = Literal["sent", "bounced", "failed"]
PROCESS = "newsletter"
SUBJECT_LIMIT = 300
MARKDOWN_LIMIT = 500_000


class Issue(BaseModel):
    post_id: str
    version: int
    subject: str
    markdown: str
    staged_at: datetime


class Recipient(BaseModel):
    """A confirmed subscriber who does not have the post yet."""

    id: int
    email: str
    name: str


class NewsletterStore(Store):
    """The ``newsletter_issues`` and ``newsletter_deliveries`` tables and their events."""

    def stage_issue(self, post_id: str, version: int, subject: str, markdown: str) -> None:
        """Keep the issue ``post_id`` at ``version`` for sending; staging it again is a no-op
        (the first text staged for a version is the one sent)."""
        if not post_id.strip() or version < 1:
            raise InvalidInput("newsletter issue: post_id must be set and version >= 1")
        problem = find_unsafe(subject, multiline=False)
        if problem or not subject.strip() or len(subject) > SUBJECT_LIMIT:
            raise InvalidInput(
                f"newsletter issue subject: {problem or f'1-{SUBJECT_LIMIT} characters'}"
            )
        if not markdown.strip() or len(markdown) > MARKDOWN_LIMIT or "\x00" in markdown:
            raise InvalidInput(f"newsletter issue body: 1-{MARKDOWN_LIMIT} characters, no NUL")
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO newsletter_issues (post_id, version, subject, markdown)
                VALUES (%s, %s, %s, %s) ON CONFLICT (post_id, version) DO NOTHING
                RETURNING post_id
                """,
                (post_id, version, subject.strip(), markdown),
            ).fetchone()
            if row is not None:
                self._append(
                    conn,
                    EventDraft(
                        event_key=f"newsletter/{post_id}/v{version}/staged",
                        workflow_id="",
                        run_id="",
                        process=PROCESS,
                        kind="newsletter.staged",
                        entity=f"post:{post_id}",
                        payload={"post_id": post_id, "version": version, "subject": subject},
                    ),
                )

    def issue(self, post_id: str, version: int) -> Issue | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM newsletter_issues WHERE post_id = %s AND version = %s",
                (post_id, version),
            ).fetchone()
        return Issue.model_validate(row) if row else None

    def pending_recipients(self, post_id: str, *, after: int, limit: int) -> list[Recipient]:
        """Confirmed subscribers with id above ``after`` who have no delivery of ``post_id``,
        by id."""
        with self.transaction() as conn:
            rows = conn.execute(
                """
                SELECT s.id, s.email, s.name FROM subscribers s
                WHERE s.status = 'confirmed' AND s.id > %s
                  AND NOT EXISTS (SELECT 1 FROM newsletter_deliveries d
                                  WHERE d.post_id = %s AND d.subscriber_id = s.id)
                ORDER BY s.id LIMIT %s
                """,
                (after, post_id, limit),
            ).fetchall()
        return [Recipient.model_validate(r) for r in rows]

    def delivery(self, post_id: str, subscriber_id: int) -> dict[str, Any] | None:
        with self.transaction() as conn:
            return conn.execute(
                "SELECT * FROM newsletter_deliveries WHERE post_id = %s AND subscriber_id = %s",
                (post_id, subscriber_id),
            ).fetchone()

    def record_delivery(
        self,
        post_id: str,
        version: int,
        subscriber_id: int,
        status: DeliveryStatus,
        *,
        message_id: str | None = None,
        detail: str = "",
        workflow_id: str = "",
    ) -> bool:
        """Record what happened to ``post_id`` for one subscriber; the first record stands
        (returns whether this one was new)."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO newsletter_deliveries (post_id, subscriber_id, version, status,
                                                   message_id, detail, workflow_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (post_id, subscriber_id) DO NOTHING RETURNING post_id
                """,
                (post_id, subscriber_id, version, status, message_id, detail[:1000], workflow_id),
            ).fetchone()
            if row is None:
                return False
            self._append(
                conn,
                EventDraft(
                    event_key=f"newsletter/{post_id}/{subscriber_id}/{status}",
                    workflow_id=workflow_id,
                    run_id="",
                    process=PROCESS,
                    kind=f"newsletter.{status}",
                    entity=f"subscriber:{subscriber_id}",
                    payload={
                        "post_id": post_id,
                        "version": version,
                        "message_id": message_id,
                        "detail": detail[:1000],
                    },
                ),
            )
        return True

    def delivery_counts(self, post_id: str) -> dict[str, int]:
        """How many deliveries of ``post_id`` there are, by status."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT status, count(*) AS n FROM newsletter_deliveries WHERE post_id = %s "
                "GROUP BY status",
                (post_id,),
            ).fetchall()
        return {r["status"]: int(r["n"]) for r in rows}
