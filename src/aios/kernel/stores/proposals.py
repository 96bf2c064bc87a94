"""Proposals and their immutable versions."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from aios.errors import InvalidInput
from aios.kernel.commerce import (
    Proposal,
    ProposalVersion,
)
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["ProposalStore"]


class ProposalStore(Store):
    """Proposals and their immutable versions."""

    def open(self, proposal: Proposal, *, event: EventDraft) -> Proposal:
        """Record a new proposal; a repeat with the same id returns the stored one."""
        with self.transaction() as conn:
            if not conn.execute(
                "SELECT 1 FROM clients WHERE client_key = %s", (proposal.client_key,)
            ).fetchone():
                raise InvalidInput(f"client: no client with key {proposal.client_key!r}")
            conn.execute(
                """
                INSERT INTO proposals (proposal_id, client_key, workflow_id, scope, currency,
                                       budget_hint_minor, deadline)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (proposal_id) DO NOTHING
                """,
                (
                    proposal.proposal_id,
                    proposal.client_key,
                    proposal.workflow_id,
                    proposal.scope,
                    proposal.currency,
                    proposal.budget_hint_minor,
                    proposal.deadline,
                ),
            )
            self._append(conn, event)
            row = conn.execute(
                "SELECT * FROM proposals WHERE proposal_id = %s", (proposal.proposal_id,)
            ).fetchone()
        assert row is not None
        return Proposal.model_validate(row)

    def get(self, proposal_id: str) -> Proposal | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM proposals WHERE proposal_id = %s", (proposal_id,)
            ).fetchone()
        return Proposal.model_validate(row) if row else None

    def save_version(self, version: ProposalVersion, *, event: EventDraft) -> ProposalVersion:
        """Store a new immutable version; a repeat with the same id returns the stored one."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO proposal_versions (id, proposal_id, version, source, author, currency,
                    line_items, subtotal_minor, discount_pct, total_minor, terms, rationale, note,
                    memory_ids, based_on)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING
                """,
                (
                    version.id,
                    version.proposal_id,
                    version.version,
                    version.source,
                    version.author,
                    version.currency,
                    Jsonb([item.model_dump() for item in version.line_items]),
                    version.subtotal_minor,
                    version.discount_pct,
                    version.total_minor,
                    version.terms,
                    version.rationale,
                    version.note,
                    Jsonb(version.memory_ids),
                    version.based_on,
                ),
            )
            row = conn.execute(
                "SELECT * FROM proposal_versions WHERE id = %s", (version.id,)
            ).fetchone()
            if row is None:
                raise InvalidInput(
                    f"proposal {version.proposal_id!r} already has a version {version.version}"
                )
            self._append(conn, event)
        return ProposalVersion.model_validate(row)

    def for_client(self, client_key: str) -> list[Proposal]:
        """The client's proposals, newest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM proposals WHERE client_key = %s ORDER BY created_at DESC",
                (client_key,),
            ).fetchall()
        return [Proposal.model_validate(r) for r in rows]

    def get_version(self, version_id: str) -> ProposalVersion | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM proposal_versions WHERE id = %s", (version_id,)
            ).fetchone()
        return ProposalVersion.model_validate(row) if row else None

    def versions(self, proposal_id: str) -> list[ProposalVersion]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM proposal_versions WHERE proposal_id = %s ORDER BY version",
                (proposal_id,),
            ).fetchall()
        return [ProposalVersion.model_validate(r) for r in rows]
