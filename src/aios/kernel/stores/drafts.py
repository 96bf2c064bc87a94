"""Immutable draft versions of documents."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from aios.kernel.events import EventDraft
from aios.kernel.models import Draft
from aios.kernel.stores.database import Store

__all__ = ["DraftStore"]


class DraftStore(Store):
    """Immutable draft versions of documents."""

    def save(self, draft: Draft, *, event: EventDraft) -> Draft:
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

    def get(self, draft_id: str) -> Draft | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM drafts WHERE id = %s", (draft_id,)).fetchone()
        return Draft.model_validate(row) if row else None
