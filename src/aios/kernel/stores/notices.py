"""Notices: the inbox's items that are not gates.

Something needs the operator's look but no run waits on a decision: a payment that matches no
invoice, an email nobody's run expects, a forged operator reply, a run waiting on a paused
switch. Each notice has a key naming what it is about, so noticing the same thing twice keeps
one notice; opening and resolving it are events in the log, in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator

from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["Notice", "NoticeDraft", "NoticeResolution", "NoticeStatus", "NoticeStore"]

NoticeStatus = Literal["open", "resolved"]
KEY_LIMIT = 300
TEXT_LIMIT = 2000


class NoticeDraft(BaseModel):
    """A notice to open. ``key`` is unique: open the same key twice, get one notice."""

    key: str = Field(min_length=1, max_length=KEY_LIMIT)
    kind: str = Field(min_length=1, max_length=80)
    title: str = Field(min_length=1, max_length=TEXT_LIMIT)
    summary: str = Field(default="", max_length=TEXT_LIMIT)
    details: dict[str, Any] = Field(default_factory=dict)
    client_key: str | None = None
    workflow_id: str | None = None
    source: str = ""
    suspicious: bool = False

    @field_validator("key", "kind", "title", "summary", "source")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains U+0000, which cannot be stored")
        return value


class Notice(NoticeDraft):
    """A notice as the kernel keeps it."""

    id: int
    status: NoticeStatus = "open"
    opened_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None

    @field_validator("opened_at", "resolved_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class NoticeResolution(BaseModel):
    """Resolve the notice ``key``: who did and how (``dismissed``, ``matched to ...``)."""

    key: str = Field(min_length=1, max_length=KEY_LIMIT)
    by: str = Field(min_length=1, max_length=200)
    resolution: str = Field(min_length=1, max_length=TEXT_LIMIT)


def _notice(row: dict[str, Any]) -> Notice:
    return Notice.model_validate(row)


def _event(notice: Notice, kind: str, payload: dict[str, Any]) -> EventDraft:
    return EventDraft(
        event_key=f"notice/{notice.id}/{kind}",
        workflow_id=notice.workflow_id or "",
        run_id="",
        process="notices",
        kind=kind,
        entity=f"client:{notice.client_key}" if notice.client_key else f"notice:{notice.id}",
        payload=payload,
    )


class NoticeStore(Store):
    """The ``notices`` table and its events."""

    def open(self, draft: NoticeDraft) -> Notice:
        """Open ``draft``; when its key is known, the existing notice is returned unchanged."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO notices (key, kind, source, title, summary, details, client_key,
                                     workflow_id, suspicious)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (key) DO NOTHING
                RETURNING *
                """,
                (
                    draft.key,
                    draft.kind,
                    draft.source,
                    draft.title,
                    draft.summary,
                    Jsonb(draft.details),
                    draft.client_key,
                    draft.workflow_id,
                    draft.suspicious,
                ),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM notices WHERE key = %s", (draft.key,)
                ).fetchone()
                assert existing is not None
                return _notice(existing)
            notice = _notice(row)
            payload = {
                "key": notice.key,
                "notice_kind": notice.kind,
                "source": notice.source,
                "title": notice.title,
                "suspicious": notice.suspicious,
            }
            self._append(conn, _event(notice, "notice.opened", payload))
        return notice

    def resolve(self, key: str, *, by: str, resolution: str) -> Notice | None:
        """Resolve the open notice ``key``; a resolved one is returned as it is, unknown: None."""
        request = NoticeResolution(key=key, by=by, resolution=resolution)
        with self.transaction() as conn:
            row = conn.execute(
                """
                UPDATE notices SET status = 'resolved', resolved_at = now(), resolved_by = %s,
                                   resolution = %s
                WHERE key = %s AND status = 'open'
                RETURNING *
                """,
                (request.by, request.resolution, request.key),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM notices WHERE key = %s", (request.key,)
                ).fetchone()
                return None if existing is None else _notice(existing)
            notice = _notice(row)
            payload = {"key": notice.key, "by": request.by, "resolution": request.resolution}
            self._append(conn, _event(notice, "notice.resolved", payload))
        return notice

    def get(self, key: str) -> Notice | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM notices WHERE key = %s", (key,)).fetchone()
        return None if row is None else _notice(row)

    def open_notices(self, limit: int = 500) -> list[Notice]:
        """The open notices, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM notices WHERE status = 'open' ORDER BY opened_at, id LIMIT %s",
                (limit,),
            ).fetchall()
        return [_notice(r) for r in rows]

    def paused_steps(self, workflow_id: str, what: str) -> list[Notice]:
        """The open ``paused`` notices of ``workflow_id`` for step ``what`` (``email
        send_gate_reminder``, as ``aios.kernel.pause`` writes it)."""
        with self.transaction() as conn:
            rows = conn.execute(
                """
                SELECT * FROM notices
                WHERE status = 'open' AND kind = 'paused' AND workflow_id = %s
                  AND details ->> 'what' = %s
                ORDER BY opened_at, id
                """,
                (workflow_id, what),
            ).fetchall()
        return [_notice(r) for r in rows]

    def for_client(self, client_key: str, limit: int = 50) -> list[Notice]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM notices WHERE client_key = %s ORDER BY opened_at DESC LIMIT %s",
                (client_key, limit),
            ).fetchall()
        return [_notice(r) for r in rows]
