"""The append-only event log."""

from __future__ import annotations

from datetime import datetime

from aios.kernel.events import EventDraft
from aios.kernel.models import Event
from aios.kernel.stores.database import Store

__all__ = ["EventLog"]


class EventLog(Store):
    """The append-only event log."""

    def append(self, event: EventDraft) -> None:
        """Append one event; a repeat of the same ``event_key`` is ignored."""
        with self.transaction() as conn:
            self._append(conn, event)

    def for_run(self, workflow_id: str, run_id: str | None = None) -> list[Event]:
        query = "SELECT * FROM events WHERE workflow_id = %s"
        params: list[str] = [workflow_id]
        if run_id:
            query += " AND run_id = %s"
            params.append(run_id)
        with self.transaction() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [Event.model_validate(r) for r in rows]

    def last(self, entity: str, kinds: list[str]) -> Event | None:
        """The newest event about ``entity`` of one of ``kinds``."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM events WHERE entity = %s AND kind = ANY(%s) "
                "ORDER BY id DESC LIMIT 1",
                (entity, kinds),
            ).fetchone()
        return Event.model_validate(row) if row else None

    def by_key(self, event_key: str) -> Event | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM events WHERE event_key = %s", (event_key,)).fetchone()
        return Event.model_validate(row) if row else None

    def for_entities(self, entities: list[str], *, limit: int = 200) -> list[Event]:
        """The newest ``limit`` events about any of ``entities``, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM events WHERE entity = ANY(%s) ORDER BY id DESC LIMIT %s",
                (entities, limit),
            ).fetchall()
        return [Event.model_validate(r) for r in reversed(rows)]

    def since(self, since: datetime, kinds: list[str], *, limit: int = 500) -> list[Event]:
        """Events of one of ``kinds`` that occurred after ``since``, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM events WHERE occurred_at > %s AND kind = ANY(%s) "
                "ORDER BY id LIMIT %s",
                (since, kinds, limit),
            ).fetchall()
        return [Event.model_validate(r) for r in rows]
