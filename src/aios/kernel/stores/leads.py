"""Leads that came in by themselves, and the notes they add to clients.

A lead is recorded once it has been acted on: its row (channel, source, sender's address,
outcome), the note it adds to a known client, and its event (``lead.received``, or
``lead.honeypot`` for a bot) are written in one transaction. The rows also give the rate limit
its count per address, and a signed hook request keeps the digest of what was signed, so the
same signed request is taken once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["ClientNote", "Lead", "LeadDraft", "LeadStore", "RecentLeads", "RecordedLead"]

LeadChannel = Literal["form", "hook"]
LeadOutcome = Literal["started", "noted", "honeypot"]


class LeadDraft(BaseModel):
    """A lead to record. ``note`` is the text added to ``client_key`` (outcome ``noted``);
    ``signed`` the digest of a hook request's signed message (unique)."""

    channel: LeadChannel
    source: str = Field(min_length=1, max_length=64)
    address: str = Field(max_length=200)
    outcome: LeadOutcome
    client_key: str | None = None
    email: str | None = None
    workflow_id: str | None = None
    run_id: str = ""
    note: str | None = None
    signed: str | None = None


@dataclass(frozen=True)
class RecordedLead:
    id: int
    note_id: int | None
    received_at: datetime


@dataclass(frozen=True)
class RecentLeads:
    """Leads from one address within a window: how many, and the oldest's time."""

    count: int
    oldest: datetime | None


class Lead(BaseModel):
    """A lead as the kernel keeps it."""

    id: int
    channel: LeadChannel
    source: str
    address: str
    outcome: LeadOutcome
    client_key: str | None = None
    email: str | None = None
    workflow_id: str | None = None
    received_at: datetime


class ClientNote(BaseModel):
    """A note on a client (added by a lead for a client already known or in onboarding)."""

    id: int
    client_key: str
    source: str
    body: str
    lead_id: int | None = None
    created_at: datetime


class LeadStore(Store):
    """The ``leads`` and ``client_notes`` tables and their events."""

    def record(self, lead: LeadDraft) -> RecordedLead | None:
        """Record ``lead`` with its note and event; ``None`` (nothing written) when a lead with
        the same ``signed`` digest was recorded before."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO leads (channel, source, address, outcome, client_key, email,
                                   workflow_id, signed)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (signed) DO NOTHING
                RETURNING id, received_at
                """,
                (
                    lead.channel,
                    lead.source,
                    lead.address,
                    lead.outcome,
                    lead.client_key,
                    lead.email,
                    lead.workflow_id,
                    lead.signed,
                ),
            ).fetchone()
            if row is None:
                return None
            lead_id = int(row["id"])
            note_id: int | None = None
            if lead.note is not None and lead.client_key:
                note = conn.execute(
                    """
                    INSERT INTO client_notes (client_key, source, body, lead_id)
                    VALUES (%s, %s, %s, %s) RETURNING id
                    """,
                    (lead.client_key, lead.source, lead.note, lead_id),
                ).fetchone()
                assert note is not None
                note_id = int(note["id"])
            self._append(conn, _event(lead, lead_id, note_id))
        return RecordedLead(lead_id, note_id, row["received_at"])

    def seen(self, signed: str) -> bool:
        """Whether a lead with this signed digest was recorded."""
        with self.transaction() as conn:
            row = conn.execute("SELECT 1 FROM leads WHERE signed = %s", (signed,)).fetchone()
        return row is not None

    def recent(self, channel: LeadChannel, address: str, within: timedelta) -> RecentLeads:
        """Leads recorded from ``address`` through ``channel`` in the last ``within``."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                SELECT count(*) AS n, min(received_at) AS oldest FROM leads
                WHERE channel = %s AND address = %s AND received_at > now() - %s
                """,
                (channel, address, within),
            ).fetchone()
        assert row is not None
        return RecentLeads(int(row["n"]), row["oldest"])

    def client_for_email(self, email: str) -> str | None:
        """The client an earlier lead from ``email`` went to (started or noted)."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                SELECT client_key FROM leads
                WHERE lower(email) = lower(%s) AND client_key IS NOT NULL
                ORDER BY received_at DESC, id DESC LIMIT 1
                """,
                (email,),
            ).fetchone()
        return None if row is None else str(row["client_key"])

    def notes(self, client_key: str) -> list[ClientNote]:
        """The notes on ``client_key``, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM client_notes WHERE client_key = %s ORDER BY id", (client_key,)
            ).fetchall()
        return [ClientNote.model_validate(r) for r in rows]

    def for_client(self, client_key: str) -> list[Lead]:
        """The leads that went to ``client_key``, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM leads WHERE client_key = %s ORDER BY id", (client_key,)
            ).fetchall()
        return [Lead.model_validate(r) for r in rows]

    def get(self, lead_id: int) -> Lead | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM leads WHERE id = %s", (lead_id,)).fetchone()
        return None if row is None else Lead.model_validate(row)


def _event(lead: LeadDraft, lead_id: int, note_id: int | None) -> EventDraft:
    if lead.outcome == "honeypot":
        return EventDraft(
            event_key=f"lead/{lead_id}/honeypot",
            workflow_id="",
            run_id="",
            process="leads",
            kind="lead.honeypot",
            entity=f"lead:{lead_id}",
            payload={
                "lead_id": lead_id,
                "channel": lead.channel,
                "source": lead.source,
                "address": lead.address,
            },
        )
    payload: dict[str, Any] = {
        "lead_id": lead_id,
        "channel": lead.channel,
        "source": lead.source,
        "outcome": lead.outcome,
    }
    if note_id is not None:
        payload["note_id"] = note_id
    return EventDraft(
        event_key=f"lead/{lead_id}/received",
        workflow_id=lead.workflow_id or "",
        run_id=lead.run_id,
        process="leads",
        kind="lead.received",
        entity=f"client:{lead.client_key}",
        payload=payload,
    )
