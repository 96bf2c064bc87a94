"""PostgreSQL access for the kernel: plain SQL over a psycopg 3 connection pool.

Every write is idempotent: clients upsert by key, drafts and events insert by a deterministic
id and ignore a repeat, and the outbox runs an outside effect at most once per key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from aios.kernel.events import EventDraft
from aios.kernel.models import Client, Draft, Event

__all__ = ["KernelStore", "OutboxResult", "apply_migrations"]

MIGRATIONS = Path(__file__).parent / "migrations"

OutboxResult = dict[str, Any]


def apply_migrations(database_url: str) -> int:
    """Apply pending versioned migrations under a lock; returns how many were applied."""
    from yoyo import get_backend, read_migrations

    url = database_url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    backend = get_backend(url)
    try:
        migrations = read_migrations(str(MIGRATIONS))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return len(pending)
    finally:
        backend.connection.close()


class KernelStore:
    """Canonical records, drafts, the event log and the outbox, in PostgreSQL."""

    def __init__(self, database_url: str, *, max_size: int = 4) -> None:
        self._pool = ConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=True,
            name="aios-kernel",
        )
        self._pool.wait(timeout=15)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self._pool.connection() as conn:
            yield cast("psycopg.Connection[dict[str, Any]]", conn)

    # --- clients -----------------------------------------------------------------------

    def upsert_client(self, client: Client, *, event: EventDraft) -> Client:
        """Create or update the client by key and append ``event``, in one transaction."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO clients (client_key, name, email, notes, segment, facts)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (client_key) DO UPDATE SET
                    name = EXCLUDED.name, email = EXCLUDED.email, notes = EXCLUDED.notes,
                    segment = EXCLUDED.segment, facts = EXCLUDED.facts, updated_at = now()
                RETURNING *
                """,
                (
                    client.key,
                    client.name,
                    client.email,
                    client.notes,
                    client.segment,
                    Jsonb(client.facts),
                ),
            ).fetchone()
            self._append(conn, event)
        assert row is not None
        return _client(row)

    def get_client(self, key: str) -> Client | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM clients WHERE client_key = %s", (key,)).fetchone()
        return _client(row) if row else None

    # --- drafts ------------------------------------------------------------------------

    def save_draft(self, draft: Draft, *, event: EventDraft) -> Draft:
        """Store a draft version; a repeat with the same id returns the stored one unchanged."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO drafts (id, workflow_id, run_id, kind, version, subject, body,
                                    plan, meta)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (id) DO NOTHING
                """,
                (
                    draft.id,
                    draft.workflow_id,
                    draft.run_id,
                    draft.kind,
                    draft.version,
                    draft.subject,
                    draft.body,
                    Jsonb(draft.plan),
                    Jsonb(draft.meta),
                ),
            )
            self._append(conn, event)
            row = conn.execute("SELECT * FROM drafts WHERE id = %s", (draft.id,)).fetchone()
        assert row is not None
        return Draft.model_validate(row)

    def get_draft(self, draft_id: str) -> Draft | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM drafts WHERE id = %s", (draft_id,)).fetchone()
        return Draft.model_validate(row) if row else None

    # --- events ------------------------------------------------------------------------

    def append_event(self, event: EventDraft) -> None:
        """Append one event; a repeat of the same ``event_key`` is ignored."""
        with self.transaction() as conn:
            self._append(conn, event)

    def events(self, workflow_id: str, run_id: str | None = None) -> list[Event]:
        query = "SELECT * FROM events WHERE workflow_id = %s"
        params: list[str] = [workflow_id]
        if run_id:
            query += " AND run_id = %s"
            params.append(run_id)
        with self.transaction() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [Event.model_validate(r) for r in rows]

    @staticmethod
    def _append(conn: psycopg.Connection[dict[str, Any]], event: EventDraft) -> None:
        conn.execute(
            """
            INSERT INTO events (event_key, workflow_id, run_id, process, kind, entity, payload)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (event_key) DO NOTHING
            """,
            (
                event.event_key,
                event.workflow_id,
                event.run_id,
                event.process,
                event.kind,
                event.entity,
                Jsonb(event.payload),
            ),
        )

    # --- outbox ------------------------------------------------------------------------

    def run_once(
        self,
        key: str,
        *,
        connector: str,
        operation: str,
        effect: Callable[[], OutboxResult],
        event: EventDraft | None = None,
    ) -> tuple[OutboxResult, bool]:
        """Run ``effect`` at most once for ``key``; returns (result, whether it ran now).

        The outbox row is locked for the duration of the effect, so a concurrent attempt of
        the same step (an activity retried while its first attempt still runs) waits and then
        sees the first one's result. If the effect raises, nothing is recorded as done and the
        error is kept on the row for inspection; the next attempt runs the effect again.
        """
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO outbox (idempotency_key, connector, operation, status)
                VALUES (%s, %s, %s, 'pending') ON CONFLICT (idempotency_key) DO NOTHING
                """,
                (key, connector, operation),
            )
            row = conn.execute(
                "SELECT status, result FROM outbox WHERE idempotency_key = %s FOR UPDATE", (key,)
            ).fetchone()
            assert row is not None
            if row["status"] == "done":
                return cast(OutboxResult, row["result"] or {}), False
            try:
                result = effect()
            except BaseException as exc:
                conn.rollback()
                self._record_failure(key, connector, operation, exc)
                raise
            conn.execute(
                """
                UPDATE outbox SET status = 'done', result = %s, attempts = attempts + 1,
                                  last_error = NULL, updated_at = now()
                WHERE idempotency_key = %s
                """,
                (Jsonb(result), key),
            )
            if event is not None:
                self._append(conn, event)
        return result, True

    def _record_failure(self, key: str, connector: str, operation: str, exc: BaseException) -> None:
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO outbox (idempotency_key, connector, operation, status, attempts,
                                    last_error)
                VALUES (%s, %s, %s, 'pending', 1, %s)
                ON CONFLICT (idempotency_key) DO UPDATE SET
                    attempts = outbox.attempts + 1, last_error = EXCLUDED.last_error,
                    updated_at = now()
                """,
                (key, connector, operation, f"{type(exc).__name__}: {exc}"[:2000]),
            )

    def outbox_entry(self, key: str) -> dict[str, Any] | None:
        with self.transaction() as conn:
            return conn.execute(
                "SELECT * FROM outbox WHERE idempotency_key = %s", (key,)
            ).fetchone()


def _client(row: dict[str, Any]) -> Client:
    return Client(
        key=row["client_key"],
        name=row["name"],
        email=row["email"],
        notes=row["notes"],
        segment=row["segment"],
        facts=row["facts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
