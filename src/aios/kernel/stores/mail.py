"""Inbound mail: the emails the poller fetched, once per Message-ID, and what became of them.

``save`` keeps a message (and its attachments up to the size limit) once per key; ``handled``
records the outcome its workflow reached. ``sent_email`` finds, among Message-IDs an inbound
email answers, the one AiOs sent (the outbox keeps every sent email's Message-ID and the step
that sent it: ``<workflow id>/<run id>/<step>``).
"""

from __future__ import annotations

import re
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from aios.connectors.imap import InboundEmail
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["MailStore", "SentEmail", "StoredEmail"]

# <workflow id>/<run id>/<step>: the run id is a UUID, the workflow id and step may hold "/".
_STEP_KEY = re.compile(
    r"^(?P<workflow_id>.+?)/(?P<run_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{12})/(?P<step>.+)$"
)


class SentEmail(BaseModel):
    """An email AiOs sent, as the outbox knows it."""

    message_id: str
    idempotency_key: str
    operation: str  # send_proposal, send_gate_reminder...
    workflow_id: str
    run_id: str
    step: str  # send/v1, gate/proposal/reminder/0...


class StoredEmail(BaseModel):
    message_key: str
    message_id: str
    mailbox: str
    sender: str
    sender_name: str
    recipients: list[str]
    subject: str
    in_reply_to: list[str]
    refs: list[str]
    body: str
    attachments: list[dict[str, Any]]
    status: str
    outcome: str | None = None
    workflow_id: str | None = None

    @property
    def answers(self) -> list[str]:
        """The Message-IDs this email answers, the direct parent first."""
        seen: list[str] = []
        for mid in [*self.in_reply_to, *reversed(self.refs)]:
            if mid not in seen:
                seen.append(mid)
        return seen


def _event(key: str, kind: str, payload: dict[str, Any], workflow_id: str = "") -> EventDraft:
    return EventDraft(
        event_key=f"email/{key}/{kind}",
        workflow_id=workflow_id,
        run_id="",
        process="inbound-mail",
        kind=kind,
        entity=f"email:{key}",
        payload=payload,
    )


class MailStore(Store):
    """Tables ``inbound_messages`` and ``inbound_attachments``."""

    def save(self, email: InboundEmail, *, mailbox: str) -> tuple[StoredEmail, bool]:
        """Keep ``email`` once per Message-ID; returns (the stored email, whether it is new).

        Event ``email.received`` (sender, subject, attachments; never the body)."""
        listed = [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "kept": a.content is not None,
            }
            for a in email.attachments
        ]
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO inbound_messages (message_key, message_id, mailbox, sender,
                    sender_name, recipients, subject, in_reply_to, refs, body, attachments)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (message_key) DO NOTHING
                RETURNING *
                """,
                (
                    email.key,
                    email.message_id,
                    mailbox,
                    email.sender,
                    email.sender_name,
                    Jsonb(email.recipients),
                    email.subject,
                    Jsonb(email.in_reply_to),
                    Jsonb(email.references),
                    email.text,
                    Jsonb(listed),
                ),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM inbound_messages WHERE message_key = %s", (email.key,)
                ).fetchone()
                assert existing is not None
                return StoredEmail.model_validate(existing), False
            for n, att in enumerate(email.attachments):
                if att.content is not None:
                    conn.execute(
                        """
                        INSERT INTO inbound_attachments (message_key, n, filename,
                            content_type, content) VALUES (%s, %s, %s, %s, %s)
                        """,
                        (email.key, n, att.filename, att.content_type, att.content),
                    )
            self._append(
                conn,
                _event(
                    email.key,
                    "email.received",
                    {
                        "message_id": email.message_id,
                        "from": email.sender,
                        "subject": email.subject,
                        "attachments": listed,
                    },
                ),
            )
        return StoredEmail.model_validate(row), True

    def get(self, message_key: str) -> StoredEmail | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM inbound_messages WHERE message_key = %s", (message_key,)
            ).fetchone()
        return None if row is None else StoredEmail.model_validate(row)

    def attachment(self, message_key: str, n: int) -> bytes | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT content FROM inbound_attachments WHERE message_key = %s AND n = %s",
                (message_key, n),
            ).fetchone()
        return None if row is None else bytes(row["content"])

    def handled(self, message_key: str, *, outcome: str, workflow_id: str) -> None:
        """Record what became of the email (once); event ``email.handled``."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                UPDATE inbound_messages SET status = 'handled', outcome = %s, workflow_id = %s,
                                            handled_at = now()
                WHERE message_key = %s AND status = 'received'
                RETURNING message_key
                """,
                (outcome, workflow_id, message_key),
            ).fetchone()
            if row is not None:
                self._append(
                    conn,
                    _event(message_key, "email.handled", {"outcome": outcome}, workflow_id),
                )

    def sent_email(self, message_ids: list[str]) -> SentEmail | None:
        """The first of ``message_ids`` that AiOs sent, or None."""
        if not message_ids:
            return None
        with self.transaction() as conn:
            rows = conn.execute(
                """
                SELECT idempotency_key, operation, result ->> 'message_id' AS message_id
                FROM outbox
                WHERE connector = 'email' AND status = 'done'
                  AND result ->> 'message_id' = ANY(%s)
                """,
                (message_ids,),
            ).fetchall()
        found = {r["message_id"]: r for r in rows}
        for mid in message_ids:
            row = found.get(mid)
            if row is None:
                continue
            match = _STEP_KEY.match(row["idempotency_key"])
            if match is None:
                continue
            return SentEmail(
                message_id=mid,
                idempotency_key=row["idempotency_key"],
                operation=row["operation"],
                **match.groupdict(),
            )
        return None
