"""Policies as versioned data: the ``policies`` table.

 Each version is a full snapshot of the policy values
(JSON, as ``Settings`` dumps them) with who set it, when, why and which keys changed. Versions
are only ever added: version 1 from the settings (``seed``), then N+1 per change (``add``), each
with its event (``policy.seeded``, ``policy.set``) in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator

from aios.errors import InvalidInput
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["PolicyStore", "PolicyVersion"]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class PolicyVersion(BaseModel):
    """One version of the policies: a full snapshot of the values."""

    version: int = Field(ge=1)
    values: dict[str, Any]
    changed: list[str] = Field(default_factory=list)
    set_by: str
    reason: str
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _aware(value)


def _version(row: dict[str, Any]) -> PolicyVersion:
    return PolicyVersion.model_validate(row)


def _event(version: PolicyVersion, kind: str, payload: dict[str, Any]) -> EventDraft:
    return EventDraft(
        event_key=f"policy/v{version.version}",
        workflow_id="",
        run_id="",
        process="policies",
        kind=kind,
        entity="policy",
        payload={"version": version.version, **payload},
    )


class PolicyStore(Store):
    """The ``policies`` table and its events."""

    def latest(self) -> PolicyVersion | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM policies ORDER BY version DESC LIMIT 1").fetchone()
        return None if row is None else _version(row)

    def get(self, version: int) -> PolicyVersion | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM policies WHERE version = %s", (version,)).fetchone()
        return None if row is None else _version(row)

    def history(self, limit: int = 1000) -> list[PolicyVersion]:
        """Every version, newest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM policies ORDER BY version DESC LIMIT %s", (limit,)
            ).fetchall()
        return [_version(r) for r in rows]

    def seed(self, values: dict[str, Any], *, by: str) -> PolicyVersion:
        """Version 1 from ``values`` when there is no version yet; else the latest, unchanged.

        Two processes seeding at once make one version 1 (the other one's insert is ignored).
        """
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO policies (version, "values", changed, set_by, reason)
                VALUES (1, %s, '{}', %s, 'seeded from the settings')
                ON CONFLICT (version) DO NOTHING
                RETURNING *
                """,
                (Jsonb(values), by),
            ).fetchone()
            if row is not None:
                seeded = _version(row)
                self._append(conn, _event(seeded, "policy.seeded", {"by": by}))
                return seeded
        latest = self.latest()
        assert latest is not None
        return latest

    def add(
        self, values: dict[str, Any], *, after: int, changed: list[str], by: str, reason: str
    ) -> PolicyVersion:
        """Version ``after + 1`` with ``values``; ``InvalidInput`` when another change made that
        version first (nothing is written: read the policy again and decide)."""
        try:
            with self.transaction() as conn:
                row = conn.execute(
                    """
                    INSERT INTO policies (version, "values", changed, set_by, reason)
                    VALUES (%s, %s, %s, %s, %s)
                    RETURNING *
                    """,
                    (after + 1, Jsonb(values), changed, by, reason),
                ).fetchone()
                assert row is not None
                added = _version(row)
                self._append(
                    conn,
                    _event(
                        added,
                        "policy.set",
                        {
                            "previous": after,
                            "changed": {k: values.get(k) for k in changed},
                            "by": by,
                            "reason": reason,
                        },
                    ),
                )
        except psycopg.errors.UniqueViolation:
            raise InvalidInput(
                f"policy: version {after + 1} was just set by someone else; look at "
                "`aios policy show` and try again"
            ) from None
        return added
