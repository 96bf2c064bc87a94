"""The kernel's stores, one per aggregate, over one shared ``Database``.

Names load on first use (PEP 562): an operator action that reads one store (``aios inbox``
reads the gates) loads only that store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.kernel.stores.clients import ClientStore
    from aios.kernel.stores.costs import CostLedger
    from aios.kernel.stores.database import (
        Database,
        OutboxResult,
        Store,
        apply_migrations,
        pool_size_for,
    )
    from aios.kernel.stores.drafts import DraftStore
    from aios.kernel.stores.events import EventLog
    from aios.kernel.stores.gates import GateRecord, GateStore
    from aios.kernel.stores.health import ConnectorHealth
    from aios.kernel.stores.inbound import InboundStore, SentEmail, StoredEmail
    from aios.kernel.stores.invoices import InvoiceStore
    from aios.kernel.stores.notices import Notice, NoticeDraft, NoticeStore
    from aios.kernel.stores.operators import OperatorStore
    from aios.kernel.stores.outbox import Outbox
    from aios.kernel.stores.proposals import ProposalStore
    from aios.kernel.stores.refs import ExternalRefs

_HOMES = {
    "clients": ["ClientStore"],
    "costs": ["CostLedger"],
    "database": ["Database", "OutboxResult", "Store", "apply_migrations", "pool_size_for"],
    "drafts": ["DraftStore"],
    "events": ["EventLog"],
    "gates": ["GateRecord", "GateStore"],
    "health": ["ConnectorHealth"],
    "invoices": ["InvoiceStore"],
    "notices": ["Notice", "NoticeDraft", "NoticeStore"],
    "operators": ["OperatorStore"],
    "outbox": ["Outbox"],
    "proposals": ["ProposalStore"],
    "refs": ["ExternalRefs"],
    "inbound": ["InboundStore", "SentEmail", "StoredEmail"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'aios.kernel.stores' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"aios.kernel.stores.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ClientStore",
    "ConnectorHealth",
    "CostLedger",
    "Database",
    "DraftStore",
    "EventLog",
    "ExternalRefs",
    "GateRecord",
    "GateStore",
    "InboundStore",
    "InvoiceStore",
    "Notice",
    "NoticeDraft",
    "NoticeStore",
    "OperatorStore",
    "Outbox",
    "OutboxResult",
    "ProposalStore",
    "SentEmail",
    "Store",
    "StoredEmail",
    "apply_migrations",
    "pool_size_for",
]
