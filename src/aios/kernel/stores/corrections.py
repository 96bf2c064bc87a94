"""The operator's corrections agents learn from: the ``operator_corrections`` table.

One row per edit at a gate: the replacements an agent can apply (``aios.agents.corrections``),
keyed by the id of the memory that makes the edit searchable by client, with the gate, the
approver and the drafts before and after. ``save`` writes event ``correction.stored`` in the
same transaction.
"""

from __future__ import annotations

from datetime import datetime

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["CorrectionRecord", "CorrectionStore"]


class CorrectionRecord(BaseModel):
    """An edit at a gate, as the replacements an agent can apply (``agents.corrections``)."""

    id: str
    agent: str
    gate: str
    client_key: str
    client_name: str
    workflow_id: str
    run_id: str
    draft_before: str
    draft_after: str
    replacements: list[dict[str, str]]
    approver: str
    comment: str = ""
    created_at: datetime | None = None


class CorrectionStore(Store):
    """The ``operator_corrections`` table; ``save`` writes event ``correction.stored``."""

    def save(self, record: CorrectionRecord) -> CorrectionRecord:
        """Store ``record``; a repeat of the same id returns the first one unchanged."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO operator_corrections (id, agent, gate, client_key, client_name,
                    workflow_id, run_id, draft_before, draft_after, replacements, approver,
                    comment)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (id) DO NOTHING
                RETURNING *
                """,
                (
                    record.id,
                    record.agent,
                    record.gate,
                    record.client_key,
                    record.client_name,
                    record.workflow_id,
                    record.run_id,
                    record.draft_before,
                    record.draft_after,
                    Jsonb(record.replacements),
                    record.approver,
                    record.comment,
                ),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM operator_corrections WHERE id = %s", (record.id,)
                ).fetchone()
                assert existing is not None
                return CorrectionRecord.model_validate(existing)
            stored = CorrectionRecord.model_validate(row)
            self._append(
                conn,
                EventDraft(
                    event_key=f"correction/{stored.id}",
                    workflow_id=stored.workflow_id,
                    run_id=stored.run_id,
                    process=stored.workflow_id.split("/", 1)[0],
                    kind="correction.stored",
                    entity=f"client:{stored.client_key}",
                    payload={
                        "correction_id": stored.id,
                        "agent": stored.agent,
                        "gate": stored.gate,
                        "approver": stored.approver,
                        "fields": sorted({r["field"] for r in stored.replacements}),
                        "draft_before": stored.draft_before,
                        "draft_after": stored.draft_after,
                    },
                ),
            )
        return stored

    def get_many(self, ids: list[str]) -> list[CorrectionRecord]:
        """The corrections with these ids, in the order given (unknown ids left out)."""
        if not ids:
            return []
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM operator_corrections WHERE id = ANY(%s)", (ids,)
            ).fetchall()
        found = {r["id"]: CorrectionRecord.model_validate(r) for r in rows}
        return [found[i] for i in ids if i in found]
