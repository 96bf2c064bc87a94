"""The canonical work model: clients, drafts, the append-only event log, the outbox."""

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
