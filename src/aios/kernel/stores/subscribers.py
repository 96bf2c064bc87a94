"""The newsletter's subscribers: double opt-in, unsubscribe, bounce, removal.

An address is on the list once (lower-cased, unique). It starts ``pending``; the signed link in
its confirmation email makes it ``confirmed``, and only confirmed subscribers receive issues.
Unsubscribing (the one-click link in every issue), a permanent bounce and the operator's
removal each end that. Every change is a ``subscriber.*`` event in the same transaction as the
row, so the list's history is in the log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store
from aios.kernel.text import Line

__all__ = ["Subscriber", "SubscriberDraft", "SubscriberStatus", "SubscriberStore"]

SubscriberStatus = Literal["pending", "confirmed", "unsubscribed", "bounced", "removed"]
PROCESS = "subscribers"


class SubscriberDraft(BaseModel):
    """An address to add: a valid single address and an optional one-line name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr
    name: Line = Field(default="", max_length=200)

    @field_validator("email", mode="before")
    @classmethod
    def _one_line(cls, value: object) -> object:
        if isinstance(value, str):
            if any(ch in value for ch in "\r\n\x00"):
                raise ValueError("contains a line break or NUL; an address is one line")
            if any(ch in value for ch in ",;<>\"'"):
                raise ValueError("must be one plain address (no name, list or brackets)")
        return value

    @field_validator("email", mode="after")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class Subscriber(BaseModel):
    """A subscriber as the kernel keeps it."""

    id: int
    email: str
    name: str
    status: SubscriberStatus
    source: str = ""
    created_at: datetime
    confirm_sent_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    bounced_at: datetime | None = None
    bounce_reason: str | None = None
    updated_at: datetime


def _event(row: dict[str, Any], kind: str, payload: dict[str, Any]) -> EventDraft:
    # One event per change: the row's updated_at names the change.
    return EventDraft(
        event_key=f"subscriber/{row['id']}/{kind}/{row['updated_at'].isoformat()}",
        workflow_id=str(payload.pop("workflow_id", "")),
        run_id="",
        process=PROCESS,
        kind=kind,
        entity=f"subscriber:{row['id']}",
        payload={"email": row["email"], "status": row["status"], **payload},
    )


class SubscriberStore(Store):
    """The ``subscribers`` table and its events."""

    def add(self, draft: SubscriberDraft, *, source: str = "cli") -> tuple[Subscriber, bool]:
        """Add ``draft`` as pending; an address already on the list is returned unchanged
        (``False``), except a removed one, which becomes pending again."""
        with self.transaction() as conn:
            return self._add(conn, draft, source)

    def add_many(
        self, drafts: list[SubscriberDraft], *, source: str
    ) -> list[tuple[Subscriber, bool]]:
        """``add`` for each draft, all in one transaction (an import is all or nothing)."""
        with self.transaction() as conn:
            return [self._add(conn, d, source) for d in drafts]

    def _add(
        self, conn: psycopg.Connection[dict[str, Any]], draft: SubscriberDraft, source: str
    ) -> tuple[Subscriber, bool]:
        row = conn.execute(
            """
            INSERT INTO subscribers (email, name, source) VALUES (%s, %s, %s)
            ON CONFLICT (email) DO UPDATE SET status = 'pending', name = EXCLUDED.name,
                source = EXCLUDED.source, confirm_sent_at = NULL, confirmed_at = NULL,
                updated_at = now()
            WHERE subscribers.status = 'removed'
            RETURNING *
            """,
            (draft.email, draft.name, source),
        ).fetchone()
        if row is None:
            existing = conn.execute(
                "SELECT * FROM subscribers WHERE email = %s", (draft.email,)
            ).fetchone()
            assert existing is not None
            return Subscriber.model_validate(existing), False
        self._append(conn, _event(row, "subscriber.added", {"name": row["name"], "source": source}))
        return Subscriber.model_validate(row), True

    def _transition(
        self,
        subscriber_id: int,
        kind: str,
        sql_set: str,
        allowed: tuple[str, ...],
        params: tuple[Any, ...] = (),
        payload: dict[str, Any] | None = None,
    ) -> tuple[Subscriber | None, bool]:
        """Move one subscriber from one of ``allowed`` statuses; (row, whether it changed)."""
        with self.transaction() as conn:
            row = conn.execute(
                f"UPDATE subscribers SET {sql_set}, updated_at = now() "  # noqa: S608
                "WHERE id = %s AND status = ANY(%s) RETURNING *",
                (*params, subscriber_id, list(allowed)),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM subscribers WHERE id = %s", (subscriber_id,)
                ).fetchone()
                return (Subscriber.model_validate(existing) if existing else None), False
            self._append(conn, _event(row, kind, dict(payload or {})))
        return Subscriber.model_validate(row), True

    def mark_confirmation_sent(self, subscriber_id: int) -> None:
        """Note when the confirmation email went out (its event, ``subscriber.
        confirmation_emailed``, is the outbox's, written with the effect)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE subscribers SET confirm_sent_at = now() WHERE id = %s AND status = "
                "'pending'",
                (subscriber_id,),
            )

    def confirm(self, subscriber_id: int, *, via: str) -> tuple[Subscriber | None, bool]:
        """Pending -> confirmed (the signed link was followed); anything else: unchanged."""
        return self._transition(
            subscriber_id,
            "subscriber.confirmed",
            "status = 'confirmed', confirmed_at = now()",
            ("pending",),
            payload={"via": via},
        )

    def unsubscribe(self, subscriber_id: int, *, via: str) -> tuple[Subscriber | None, bool]:
        """Pending or confirmed -> unsubscribed."""
        return self._transition(
            subscriber_id,
            "subscriber.unsubscribed",
            "status = 'unsubscribed', unsubscribed_at = now()",
            ("pending", "confirmed"),
            payload={"via": via},
        )

    def bounce(
        self, subscriber_id: int, *, reason: str, workflow_id: str = ""
    ) -> tuple[Subscriber | None, bool]:
        """A permanent SMTP failure: the address gets nothing more."""
        return self._transition(
            subscriber_id,
            "subscriber.bounced",
            "status = 'bounced', bounced_at = now(), bounce_reason = %s",
            ("pending", "confirmed"),
            params=(reason[:1000],),
            payload={"reason": reason[:1000], "workflow_id": workflow_id},
        )

    def remove(self, email: str, *, by: str) -> tuple[Subscriber | None, bool]:
        """The operator takes an address off the list (it is kept, as ``removed``)."""
        found = self.by_email(email)
        if found is None:
            return None, False
        return self._transition(
            found.id,
            "subscriber.removed",
            "status = 'removed'",
            ("pending", "confirmed", "unsubscribed", "bounced"),
            payload={"by": by},
        )

    def get(self, subscriber_id: int) -> Subscriber | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM subscribers WHERE id = %s", (subscriber_id,)
            ).fetchone()
        return Subscriber.model_validate(row) if row else None

    def by_email(self, email: str) -> Subscriber | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM subscribers WHERE email = %s", (email.strip().lower(),)
            ).fetchone()
        return Subscriber.model_validate(row) if row else None

    def list(
        self, *, status: SubscriberStatus | None = None, limit: int = 10_000
    ) -> list[Subscriber]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM subscribers WHERE (%s::text IS NULL OR status = %s) "
                "ORDER BY id LIMIT %s",
                (status, status, limit),
            ).fetchall()
        return [Subscriber.model_validate(r) for r in rows]

    def confirmed_count(self) -> int:
        """The audience of the next issue."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM subscribers WHERE status = 'confirmed'"
            ).fetchone()
        return int(row["n"]) if row else 0
