"""The one connection helper every kernel store shares: a psycopg 3 pool and transactions.

``Database`` owns the pool; each store (``ClientStore``, ``EventLog``, ``InvoiceStore``...) is
a small class over it that owns its own tables. A store writes its event in the same
transaction as its record (``Store._append``), so a record never exists without its event.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from aios.kernel.events import EventDraft

__all__ = ["Database", "OutboxResult", "Store", "apply_migrations", "pool_size_for"]

MIGRATIONS = Path(__file__).parent.parent / "migrations"

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


def pool_size_for(activity_slots: int) -> int:
    """Connections a worker with ``activity_slots`` concurrent activities needs: each may hold
    two at once (an outbox row locked for the duration of its effect, and a write the effect
    makes meanwhile, such as a link to an outside record), plus one for the worker itself."""
    return 2 * activity_slots + 1


class Database:
    """A connection pool of ``max_size`` connections to ``database_url``."""

    def __init__(
        self,
        database_url: str,
        *,
        max_size: int = 4,
        timeout: float = 30.0,
        connect_wait: float = 15.0,
    ) -> None:
        self.max_size = max_size
        self._pool = ConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=True,
            name="aios-kernel",
        )
        self._pool.wait(timeout=connect_wait)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection in a transaction: committed when the block ends, rolled back on error."""
        with self._pool.connection() as conn:
            yield cast("psycopg.Connection[dict[str, Any]]", conn)


class Store:
    """Base of the kernel's stores: the shared database and the event write."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def transaction(self) -> Any:
        return self._db.transaction()

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
