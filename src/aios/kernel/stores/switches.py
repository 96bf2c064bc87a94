"""Kill switches: the rows the operator pauses and resumes, and a cached reader of them.

A switch is ``all``, ``agent:<name>``, ``connector:<name>`` or ``process:<name>``. The table
``switches`` keeps one row per switch that was ever changed: paused or not, who changed it
last, when and why. Pausing a paused switch (or resuming a running one) changes nothing and
records nothing; every real change is an event (``switch.paused`` / ``switch.resumed``) in
the same transaction, keyed by the row's version, so the log holds each change once.

``SwitchReader`` is what the agent runner and the connector runtime consult before every
model call and effect: one query for all paused switches, cached for ``ttl`` seconds (about
one), so a check costs nothing most of the time and a change is seen within a second or two
by every worker. The waiting itself lives in ``aios.kernel.pause``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from aios.errors import InvalidInput
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = [
    "SCOPES",
    "Switch",
    "SwitchChange",
    "SwitchReader",
    "SwitchScope",
    "SwitchStore",
    "switch_label",
]

SwitchScope = Literal["all", "agent", "connector", "process"]
SCOPES: tuple[SwitchScope, ...] = ("all", "agent", "connector", "process")
REASON_LIMIT = 500


def switch_label(scope: str, name: str = "") -> str:
    """``all``, or ``<scope>:<name>`` (``agent:proposal``, ``connector:email``)."""
    return "all" if scope == "all" else f"{scope}:{name}"


class Switch(BaseModel):
    """One switch as the kernel keeps it."""

    scope: SwitchScope
    name: str = ""
    paused: bool
    reason: str = ""
    changed_by: str
    changed_at: datetime
    paused_at: datetime | None = None
    version: int = 1

    @field_validator("changed_at", "paused_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def label(self) -> str:
        return switch_label(self.scope, self.name)


class SwitchChange(BaseModel):
    """A pause or resume as asked: which switch, by whom, why."""

    scope: SwitchScope
    name: str = Field(default="", max_length=200)
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=REASON_LIMIT)

    @field_validator("name", "by", "reason")
    @classmethod
    def _clean(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains U+0000, which cannot be stored")
        return value.strip()


def _switch(row: dict[str, Any]) -> Switch:
    return Switch.model_validate(row)


def _event(switch: Switch, kind: str) -> EventDraft:
    return EventDraft(
        event_key=f"switch/{switch.label}/{switch.version}",
        workflow_id="",
        run_id="",
        process="control",
        kind=kind,
        entity=f"switch:{switch.label}",
        payload={
            "switch": switch.label,
            "scope": switch.scope,
            "name": switch.name,
            "by": switch.changed_by,
            "reason": switch.reason,
        },
    )


class SwitchStore(Store):
    """The ``switches`` table and its events."""

    def pause(self, change: SwitchChange) -> tuple[Switch, bool]:
        """Pause the switch; returns it and whether this call changed it."""
        _check_name(change)
        with self.transaction() as conn:
            row = conn.execute(
                """
                INSERT INTO switches AS s (scope, name, paused, reason, changed_by, paused_at)
                VALUES (%s, %s, true, %s, %s, now())
                ON CONFLICT (scope, name) DO UPDATE
                    SET paused = true, reason = EXCLUDED.reason,
                        changed_by = EXCLUDED.changed_by, changed_at = now(),
                        paused_at = now(), version = s.version + 1
                    WHERE NOT s.paused
                RETURNING *
                """,
                (change.scope, change.name, change.reason, change.by),
            ).fetchone()
            if row is None:
                return self._current(conn, change), False
            switch = _switch(row)
            self._append(conn, _event(switch, "switch.paused"))
        return switch, True

    def resume(self, change: SwitchChange) -> tuple[Switch | None, bool]:
        """Resume the switch; returns it (None: never paused) and whether this call changed it."""
        _check_name(change)
        with self.transaction() as conn:
            row = conn.execute(
                """
                UPDATE switches SET paused = false, reason = %s, changed_by = %s,
                                    changed_at = now(), version = version + 1
                WHERE scope = %s AND name = %s AND paused
                RETURNING *
                """,
                (change.reason, change.by, change.scope, change.name),
            ).fetchone()
            if row is None:
                existing = conn.execute(
                    "SELECT * FROM switches WHERE scope = %s AND name = %s",
                    (change.scope, change.name),
                ).fetchone()
                return (None if existing is None else _switch(existing)), False
            switch = _switch(row)
            self._append(conn, _event(switch, "switch.resumed"))
        return switch, True

    def _current(self, conn: Any, change: SwitchChange) -> Switch:
        row = conn.execute(
            "SELECT * FROM switches WHERE scope = %s AND name = %s", (change.scope, change.name)
        ).fetchone()
        assert row is not None
        return _switch(row)

    def all(self) -> list[Switch]:
        """Every switch ever changed, paused first, then by scope and name."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM switches ORDER BY paused DESC, scope, name"
            ).fetchall()
        return [_switch(r) for r in rows]

    def paused(self) -> list[Switch]:
        """The switches paused now (one query)."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM switches WHERE paused ORDER BY scope, name"
            ).fetchall()
        return [_switch(r) for r in rows]


def _check_name(change: SwitchChange) -> None:
    if change.scope == "all" and change.name:
        raise InvalidInput(f"switch all: takes no name (got {change.name!r})")
    if change.scope != "all" and not change.name:
        raise InvalidInput(f"switch {change.scope}: a name is required")


class SwitchReader:
    """The paused switches, read with one query at most every ``ttl`` seconds (thread-safe)."""

    def __init__(
        self,
        store: SwitchStore,
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._paused: dict[str, Switch] = {}

    def paused(self) -> dict[str, Switch]:
        """Label -> switch, for every switch paused now (as of at most ``ttl`` seconds ago)."""
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl:
                self._paused = {s.label: s for s in self._store.paused()}
                self._read_at = now
            return dict(self._paused)

    def blocking(self, labels: Iterable[str]) -> Switch | None:
        """The first of ``labels`` that is paused now, or None."""
        paused = self.paused()
        if not paused:
            return None
        for label in labels:
            if label in paused:
                return paused[label]
        return None
