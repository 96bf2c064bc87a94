"""The canonical work model: clients, drafts, the append-only event log, the outbox.

``KernelStore`` and ``apply_migrations`` (PostgreSQL, psycopg) load on first use, so a module
that needs only the models or the text rules does not load the database driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aios.kernel.events import EventDraft
from aios.kernel.models import (
    Client,
    ClientIntake,
    Draft,
    Event,
    client_key_for,
)
from aios.kernel.policy import GatePolicy

if TYPE_CHECKING:
    from aios.kernel.store import KernelStore, apply_migrations

__all__ = [
    "Client",
    "ClientIntake",
    "Draft",
    "Event",
    "EventDraft",
    "GatePolicy",
    "KernelStore",
    "apply_migrations",
    "client_key_for",
]


def __getattr__(name: str) -> Any:
    if name in ("KernelStore", "apply_migrations"):
        from aios.kernel import store

        return getattr(store, name)
    raise AttributeError(f"module 'aios.kernel' has no attribute {name!r}")
