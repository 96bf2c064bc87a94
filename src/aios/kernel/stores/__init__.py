"""The kernel's stores, one per aggregate, over one shared ``Database``."""

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
from aios.kernel.stores.invoices import InvoiceStore
from aios.kernel.stores.operators import OperatorStore
from aios.kernel.stores.outbox import Outbox
from aios.kernel.stores.proposals import ProposalStore
from aios.kernel.stores.refs import ExternalRefs

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
    "InvoiceStore",
    "OperatorStore",
    "Outbox",
    "OutboxResult",
    "ProposalStore",
    "Store",
    "apply_migrations",
    "pool_size_for",
]
