"""The client records."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from aios.kernel.events import EventDraft
from aios.kernel.models import Client
from aios.kernel.stores.database import Store

__all__ = ["ClientStore"]


class ClientStore(Store):
    """The client records."""

    def upsert(self, client: Client, *, event: EventDraft) -> Client:
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

    def get(self, key: str) -> Client | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM clients WHERE client_key = %s", (key,)).fetchone()
        return _client(row) if row else None

    def key_for_email(self, email: str) -> str | None:
        """The key of the client with this email address (any case), the newest if several."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT client_key FROM clients WHERE lower(email) = lower(%s) "
                "ORDER BY updated_at DESC LIMIT 1",
                (email,),
            ).fetchone()
        return None if row is None else str(row["client_key"])


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
