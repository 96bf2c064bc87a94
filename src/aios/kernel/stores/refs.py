"""Links from kernel records to their mirrors in outside systems."""

from __future__ import annotations

from aios.kernel.stores.database import Store

__all__ = ["ExternalRefs"]


class ExternalRefs(Store):
    """Links from kernel records to their mirrors in outside systems."""

    def link(self, entity: str, system: str, external_id: str) -> None:
        """Remember that ``entity`` is mirrored in ``system`` as ``external_id`` (upsert)."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO external_refs (entity, system, external_id) VALUES (%s, %s, %s)
                ON CONFLICT (entity, system) DO UPDATE
                SET external_id = EXCLUDED.external_id, updated_at = now()
                """,
                (entity, system, external_id),
            )

    def get(self, entity: str, system: str) -> str | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT external_id FROM external_refs WHERE entity = %s AND system = %s",
                (entity, system),
            ).fetchone()
        return None if row is None else str(row["external_id"])
