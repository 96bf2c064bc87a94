"""The gate projection: one row per gate a run opened, kept by the gate events.

``GateStore.apply`` appends a gate event and updates the row in one transaction:
``gate.requested`` opens the row (a retried write changes nothing), ``gate.decided`` and
``gate.expired`` close it with the decision, approver, comment and time. ``reminded`` counts a
reminder the operator was sent. ``waiting`` lists every waiting gate in one query, most urgent
first (expiry, then the larger amount). The inbox (``operations.gates.inbox``) reconciles the
rows with Temporal and ``close_runs`` marks the waiting gates of runs that ended without a
decision (terminated, cancelled, reset) ``closed``.

``GateRecord`` is the row; it imports nothing of Temporal, so the console and the CLI can use
it without loading the workflows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator

from aios.errors import InvalidInput
from aios.kernel.events import EventDraft
from aios.kernel.money import normalize_currency, parse_amount
from aios.kernel.stores.database import Store

__all__ = ["GATE_EVENTS", "GateRecord", "GateStatus", "GateStore", "split_amount"]

GATE_EVENTS = frozenset({"gate.requested", "gate.decided", "gate.expired"})
GateStatus = Literal["waiting", "decided", "expired", "closed"]


class GateRecord(BaseModel):
    """One gate of one run, as the projection keeps it."""

    workflow_id: str
    run_id: str
    gate_key: str  # "gate/welcome", "gate/budget#2": the step key base of the gate's events
    gate: str
    process: str
    workflow_type: str = ""
    entity: str | None = None
    client_key: str | None = None
    title: str
    summary: str = ""
    amount: str | None = None  # as shown: "USD 4,500.00"
    amount_minor: int | None = None
    currency: str | None = None
    drafted_by: str | None = None
    editable_fields: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    requested_at: datetime
    expires_at: datetime
    next_reminder_at: datetime | None = None
    reminders_sent: int = 0
    run_started_at: datetime | None = None
    # When Temporal's listing last showed the run awaiting approval (the inbox sets it).
    confirmed_at: datetime | None = None
    status: GateStatus = "waiting"
    decision: str | None = None
    approver: str | None = None
    comment: str | None = None
    edited_fields: list[str] = Field(default_factory=list)
    decided_at: datetime | None = None
    closed_reason: str | None = None
    updated_at: datetime | None = None

    @field_validator(
        "requested_at",
        "expires_at",
        "next_reminder_at",
        "decided_at",
        "updated_at",
        "run_started_at",
        "confirmed_at",
    )
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def answered(self) -> str:
        """How the gate ended, in words: ``already decided by jo at 2026-11-30 09:12 UTC``."""
        when = f"{self.decided_at:%Y-%m-%d %H:%M} UTC" if self.decided_at else "an unknown time"
        if self.status == "decided":
            return f"already decided by {self.approver or 'someone'} at {when}"
        if self.status == "expired":
            return f"expired at {when} without a decision"
        if self.status == "closed":
            return f"closed at {when}: the run ended ({self.closed_reason or 'closed'})"
        return "waiting for a decision"


def split_amount(amount: str | None) -> tuple[int | None, str | None]:
    """``"USD 4,500.00"`` -> ``(450000, "USD")``; anything else (``"~$0.0123"``) -> nothing."""
    if not amount:
        return None, None
    parts = amount.strip().split()
    if len(parts) != 2:
        return None, None
    try:
        currency = normalize_currency(parts[0])
        return parse_amount(parts[1], currency), currency
    except InvalidInput:
        return None, None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


class GateStore(Store):
    """The ``gates`` table."""

    def apply(self, event: EventDraft, *, workflow_type: str = "") -> None:
        """Append gate event ``event`` and bring its gate's row up to date, in one transaction.

        A repeat of the same event changes nothing; an event of another kind is only appended.
        """
        with self.transaction() as conn:
            self._append(conn, event)
            if event.kind == "gate.requested":
                self._open(conn, event, workflow_type)
            elif event.kind in ("gate.decided", "gate.expired"):
                self._close(conn, event)

    @staticmethod
    def _gate_key(event: EventDraft) -> str:
        key = event.payload.get("gate_key")
        return str(key) if key else f"gate/{event.payload.get('gate', '')}"

    def _open(
        self, conn: psycopg.Connection[dict[str, Any]], event: EventDraft, workflow_type: str
    ) -> None:
        p = event.payload
        requested = _time(p.get("requested_at"))
        expires = _time(p.get("expires_at"))
        if requested is None or expires is None:
            # A gate opened by code older than the projection: the inbox asks the run (and
            # ``adopt`` writes its row then).
            return
        amount = p.get("amount") or None
        minor, currency = p.get("amount_minor"), p.get("currency")
        if minor is None:
            minor, currency = split_amount(amount)
        details = p.get("details")
        self._insert(
            conn,
            GateRecord(
                workflow_id=event.workflow_id,
                run_id=event.run_id,
                gate_key=self._gate_key(event),
                gate=str(p.get("gate", "")),
                process=event.process,
                workflow_type=workflow_type,
                entity=event.entity,
                client_key=self._client_key(conn, event.entity),
                title=str(p.get("title", "")),
                summary=str(p.get("summary", "")),
                amount=amount,
                amount_minor=minor,
                currency=currency,
                drafted_by=p.get("drafted_by") or None,
                editable_fields=_strings(p.get("editable_fields")),
                details=details if isinstance(details, dict) else {},
                requested_at=requested,
                expires_at=expires,
                next_reminder_at=_time(p.get("next_reminder_at")),
                run_started_at=_time(p.get("run_started_at")),
            ),
        )

    @staticmethod
    def _insert(conn: psycopg.Connection[dict[str, Any]], r: GateRecord) -> None:
        conn.execute(
            """
            INSERT INTO gates (
                workflow_id, run_id, gate_key, gate, process, workflow_type, entity, client_key,
                title, summary, amount, amount_minor, currency, drafted_by, editable_fields,
                details, requested_at, expires_at, next_reminder_at, reminders_sent,
                run_started_at
            )
            VALUES (
                %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                %s
            )
            ON CONFLICT (workflow_id, run_id, gate_key) DO NOTHING
            """,
            (
                r.workflow_id,
                r.run_id,
                r.gate_key,
                r.gate,
                r.process,
                r.workflow_type,
                r.entity,
                r.client_key,
                r.title,
                r.summary,
                r.amount,
                r.amount_minor,
                r.currency,
                r.drafted_by,
                Jsonb(r.editable_fields),
                Jsonb(r.details),
                r.requested_at,
                r.expires_at,
                r.next_reminder_at,
                r.reminders_sent,
                r.run_started_at,
            ),
        )

    def adopt(self, record: GateRecord) -> GateRecord:
        """Write the row of a waiting gate the projection missed (its run opened it before the
        projection existed), as the run describes it; a row already there wins.

        Without a ``gate_key`` it is found from the run's ``gate.requested`` events (the
        second opening of a gate is ``gate/<name>#2``), and the entity and client from the
        latest of them.
        """
        with self.transaction() as conn:
            opened = conn.execute(
                """
                SELECT count(*) AS n, max(id) AS last FROM events
                WHERE workflow_id = %s AND run_id = %s AND kind = 'gate.requested'
                  AND payload->>'gate' = %s
                """,
                (record.workflow_id, record.run_id, record.gate),
            ).fetchone()
            n = int(opened["n"]) if opened else 0
            update: dict[str, Any] = {}
            if not record.gate_key:
                update["gate_key"] = f"gate/{record.gate}" + (f"#{n}" if n > 1 else "")
            if record.entity is None and opened and opened["last"] is not None:
                row = conn.execute(
                    "SELECT entity FROM events WHERE id = %s", (opened["last"],)
                ).fetchone()
                entity = row["entity"] if row else None
                update["entity"] = entity
                if record.client_key is None:
                    update["client_key"] = self._client_key(conn, entity)
            adopted = record.model_copy(update=update)
            self._insert(conn, adopted)
        return adopted

    @staticmethod
    def _client_key(conn: psycopg.Connection[dict[str, Any]], entity: str | None) -> str | None:
        """The client a gate is about, from its entity (a client, proposal or invoice)."""
        kind, _, ref = (entity or "").partition(":")
        if not ref:
            return None
        if kind == "client":
            return ref
        table = {"proposal": "proposals", "invoice": "invoices"}.get(kind)
        if table is None:
            return None
        row = conn.execute(
            f"SELECT client_key FROM {table} WHERE {kind}_id = %s",  # noqa: S608 (fixed names)
            (ref,),
        ).fetchone()
        return str(row["client_key"]) if row else None

    def _close(self, conn: psycopg.Connection[dict[str, Any]], event: EventDraft) -> None:
        p = event.payload
        decided = event.kind == "gate.decided"
        when = _time(p.get("decided_at" if decided else "expired_at"))
        conn.execute(
            """
            UPDATE gates SET status = %s, decision = %s, approver = %s, comment = %s,
                edited_fields = %s, decided_at = COALESCE(%s, now()),
                reminders_sent = GREATEST(reminders_sent, %s), next_reminder_at = NULL,
                updated_at = now()
            WHERE workflow_id = %s AND run_id = %s AND gate_key = %s AND status = 'waiting'
            """,
            (
                "decided" if decided else "expired",
                p.get("decision") if decided else None,
                p.get("approver") if decided else None,
                p.get("comment") if decided else None,
                Jsonb(_strings(p.get("edited_fields"))),
                when,
                int(p.get("reminders_sent") or 0),
                event.workflow_id,
                event.run_id,
                self._gate_key(event),
            ),
        )

    def reminded(
        self,
        workflow_id: str,
        run_id: str,
        gate_key: str,
        reminder: int,
        next_reminder_at: datetime | None,
    ) -> None:
        """Count reminder ``reminder`` (1, 2...) as sent; a repeat or an older one is a no-op."""
        with self.transaction() as conn:
            conn.execute(
                """
                UPDATE gates SET reminders_sent = %s, next_reminder_at = %s, updated_at = now()
                WHERE workflow_id = %s AND run_id = %s AND gate_key = %s
                  AND status = 'waiting' AND reminders_sent < %s
                """,
                (reminder, next_reminder_at, workflow_id, run_id, gate_key, reminder),
            )

    def confirm(self, runs: Iterable[tuple[str, str]]) -> None:
        """Note that Temporal lists these runs ``(workflow_id, run_id)`` awaiting approval."""
        workflow_ids, run_ids = [], []
        for workflow_id, run_id in runs:
            workflow_ids.append(workflow_id)
            run_ids.append(run_id)
        if not workflow_ids:
            return
        with self.transaction() as conn:
            conn.execute(
                """
                UPDATE gates SET confirmed_at = now()
                FROM unnest(%s::text[], %s::text[]) AS listed (workflow_id, run_id)
                WHERE gates.status = 'waiting' AND gates.workflow_id = listed.workflow_id
                  AND gates.run_id = listed.run_id
                """,
                (workflow_ids, run_ids),
            )

    def close_runs(self, runs: Iterable[tuple[str, str, str]]) -> int:
        """Mark the waiting gates of ended runs ``(workflow_id, run_id, reason)`` closed."""
        closed = 0
        with self.transaction() as conn:
            for workflow_id, run_id, reason in runs:
                cur = conn.execute(
                    """
                    UPDATE gates SET status = 'closed', closed_reason = %s,
                        decided_at = now(), next_reminder_at = NULL, updated_at = now()
                    WHERE workflow_id = %s AND run_id = %s AND status = 'waiting'
                    """,
                    (reason, workflow_id, run_id),
                )
                closed += cur.rowcount
        return closed

    def waiting(self, limit: int | None = None) -> list[GateRecord]:
        """Every waiting gate, most urgent first: expiry, then the larger amount."""
        query = (
            "SELECT * FROM gates WHERE status = 'waiting' "
            "ORDER BY expires_at, amount_minor DESC NULLS LAST, requested_at"
        )
        with self.transaction() as conn:
            if limit is not None:
                rows = conn.execute(query + " LIMIT %s", (limit,)).fetchall()
            else:
                rows = conn.execute(query).fetchall()
        return [GateRecord.model_validate(r) for r in rows]

    def get(
        self, workflow_id: str, run_id: str | None = None, gate_key: str | None = None
    ) -> GateRecord | None:
        """One gate; without ``gate_key`` the run's latest (without ``run_id``: any run's)."""
        query = "SELECT * FROM gates WHERE workflow_id = %s"
        params: list[str] = [workflow_id]
        if run_id:
            query += " AND run_id = %s"
            params.append(run_id)
        if gate_key:
            query += " AND gate_key = %s"
            params.append(gate_key)
        with self.transaction() as conn:
            row = conn.execute(
                query + " ORDER BY requested_at DESC, updated_at DESC LIMIT 1", params
            ).fetchone()
        return GateRecord.model_validate(row) if row else None

    def for_run(self, workflow_id: str, run_id: str | None = None) -> list[GateRecord]:
        """The gates of a workflow (or of one run), oldest first."""
        query = "SELECT * FROM gates WHERE workflow_id = %s"
        params: list[str] = [workflow_id]
        if run_id:
            query += " AND run_id = %s"
            params.append(run_id)
        with self.transaction() as conn:
            rows = conn.execute(query + " ORDER BY requested_at", params).fetchall()
        return [GateRecord.model_validate(r) for r in rows]

    def for_client(self, client_key: str, limit: int = 100) -> list[GateRecord]:
        """A client's gates, newest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM gates WHERE client_key = %s ORDER BY requested_at DESC LIMIT %s",
                (client_key, limit),
            ).fetchall()
        return [GateRecord.model_validate(r) for r in rows]

    def for_entity(self, entity: str, limit: int = 100) -> list[GateRecord]:
        """The gates about ``entity`` (``proposal:<id>``...), newest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM gates WHERE entity = %s ORDER BY requested_at DESC LIMIT %s",
                (entity, limit),
            ).fetchall()
        return [GateRecord.model_validate(r) for r in rows]
