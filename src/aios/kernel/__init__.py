"""The canonical work model: clients, drafts, the append-only event log, the outbox.

Names load on first use (PEP 562): a module that needs only the text rules, money or the
policies (the settings do) loads neither the entity models (with their email validation) nor,
until ``KernelStore`` is asked for, the database driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.kernel.events import EventDraft
    from aios.kernel.models import (
        Client,
        ClientIntake,
        Draft,
        Event,
        client_key_for,
    )
    from aios.kernel.policy import GatePolicy
    from aios.kernel.store import KernelStore, apply_migrations

_MODULE_OF = {
    "EventDraft": "events",
    "Client": "models",
    "ClientIntake": "models",
    "Draft": "models",
    "Event": "models",
    "client_key_for": "models",
    "GatePolicy": "policy",
    "KernelStore": "store",
    "apply_migrations": "store",
}

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
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'aios.kernel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"aios.kernel.{module}"), name)
    globals()[name] = value
    return value
