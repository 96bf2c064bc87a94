"""Inbound events: payment events that come in by themselves, each processed once.

One row per ``(source, external id)``: a Stripe event id, a bank statement line's own id.
``receive`` records the event (or finds it: a redelivery); ``finish`` writes its outcome once
(``signalled``, ``ignored``, ``notice``, ``refused``). Both are events in the log, written in
the same transaction as the row. A row whose outcome is still ``received`` was interrupted
before its outcome was written: the caller processes it again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator

from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["InboundEvent", "InboundOutcome", "InboundStore"]

InboundOutcome = Literal["received", "signalled", "ignored", "notice", "refused"]


class InboundEvent(BaseModel):
    id: int
    source: str
    external_id: str
    kind: str
    refs: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime
    outcome: InboundOutcome = "received"
    workflow_id: str | None = None
    note: str = ""
    finished_at: datetime | None = None

    @field_validator("received_at", "finished_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def done(self) -> bool:
        return self.outcome != "received"


def _event(row: InboundEvent, kind: str, payload: dict[str, Any]) -> EventDraft:
    return EventDraft(
        event_key=f"inbound/{row.id}/{kind}",
        workflow_id=row.workflow_id or "",
        run_id="",
        process="inbound",
        kind=kind,
        entity=f"inbound:{row.source}/{row.external_id}",
        payload=payload,
    )


class InboundStore(Store):
    """The ``inbound_events`` table and its events."""

    def receive(
        self,
        source: str,
        external_id: str,
        kind: str,
        *,
        refs: list[str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> tuple[InboundEvent, bool]:
        """Record an inbound event; returns it and whether it is new (False: seen before)."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO inbound_events (source, external_id, kind, refs, details)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (source, external_id) DO NOTHING
                RETURNING *
                """,
                (source, external_id, kind, refs or [], Jsonb(details or {})),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM inbound_events WHERE source = %s AND external_id = %s",
                    (source, external_id),
                ).fetchone()
                assert existing is not None
                return InboundEvent.model_validate(existing), False
            event = InboundEvent.model_validate(row)
            self._append(
                conn,
                _event(
                    event,
                    "inbound.received",
                    {"source": source, "external_id": external_id, "kind": kind, **event.details},
                ),
            )
        return event, True

    def finish(
        self,
        source: str,
        external_id: str,
        outcome: InboundOutcome,
        *,
        workflow_id: str | None = None,
        note: str = "",
    ) -> InboundEvent:
        """Write the outcome of a received event, once; a finished one is returned as it is."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                UPDATE inbound_events SET outcome = %s, workflow_id = %s, note = %s,
                                          finished_at = now()
                WHERE source = %s AND external_id = %s AND outcome = 'received'
                RETURNING *
                """,
                (outcome, workflow_id, note[:2000], source, external_id),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM inbound_events WHERE source = %s AND external_id = %s",
                    (source, external_id),
                ).fetchone()
                assert existing is not None, f"no inbound event {source}/{external_id}"
                return InboundEvent.model_validate(existing)
            event = InboundEvent.model_validate(row)
            self._append(
                conn,
                _event(
                    event,
                    f"inbound.{outcome}",
                    {"source": source, "external_id": external_id, "note": event.note},
                ),
            )
        return event

    def get(self, source: str, external_id: str) -> InboundEvent | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM inbound_events WHERE source = %s AND external_id = %s",
                (source, external_id),
            ).fetchone()
        return None if row is None else InboundEvent.model_validate(row)

    def by_ref(self, source: str, ref: str) -> InboundEvent | None:
        """The signalled payment that carried ``ref`` (a payment intent, a charge): how a later
        refund finds the run it belongs to."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                SELECT * FROM inbound_events
                WHERE source = %s AND %s = ANY (refs) AND outcome = 'signalled'
                ORDER BY id LIMIT 1
                """,
                (source, ref),
            ).fetchone()
        return None if row is None else InboundEvent.model_validate(row)

    def count(self, source: str) -> int:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM inbound_events WHERE source = %s", (source,)
            ).fetchone()
        assert row is not None
        return int(row["n"])
