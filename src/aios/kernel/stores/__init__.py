"""The kernel's stores, one per aggregate, over one shared ``Database``.

Names load on first use (PEP 562): an operator action that reads one store (``aios inbox``
reads the gates) loads only that store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.kernel.stores.clients import ClientStore
    from aios.kernel.stores.corrections import CorrectionRecord, CorrectionStore
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
    from aios.kernel.stores.inbound import InboundEvent, InboundStore
    from aios.kernel.stores.invoices import InvoiceStore
    from aios.kernel.stores.leads import ClientNote, Lead, LeadDraft, LeadStore
    from aios.kernel.stores.mail import MailStore, SentEmail, StoredEmail
    from aios.kernel.stores.newsletter import NewsletterStore
    from aios.kernel.stores.notices import Notice, NoticeDraft, NoticeStore
    from aios.kernel.stores.operators import OperatorStore
    from aios.kernel.stores.outbox import Outbox
    from aios.kernel.stores.policies import PolicyStore, PolicyVersion
    from aios.kernel.stores.posts import Post, PostStore, PostVersion
    from aios.kernel.stores.proposals import ProposalStore
    from aios.kernel.stores.refs import ExternalRefs
    from aios.kernel.stores.subscribers import SubscriberStore
    from aios.kernel.stores.switches import Switch, SwitchReader, SwitchStore

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
    "inbound": ["InboundEvent", "InboundStore"],
    "leads": ["ClientNote", "Lead", "LeadDraft", "LeadStore"],
    "switches": ["Switch", "SwitchReader", "SwitchStore"],
    "policies": ["PolicyStore", "PolicyVersion"],
    "corrections": ["CorrectionRecord", "CorrectionStore"],
    "newsletter": ["NewsletterStore"],
    "subscribers": ["SubscriberStore"],
    "posts": ["Post", "PostStore", "PostVersion"],
    "mail": ["MailStore", "SentEmail", "StoredEmail"],
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
    "ClientNote",
    "ClientStore",
    "ConnectorHealth",
    "CorrectionRecord",
    "CorrectionStore",
    "CostLedger",
    "Database",
    "DraftStore",
    "EventLog",
    "ExternalRefs",
    "GateRecord",
    "GateStore",
    "InboundEvent",
    "InboundStore",
    "InvoiceStore",
    "Lead",
    "LeadDraft",
    "LeadStore",
    "MailStore",
    "NewsletterStore",
    "Notice",
    "NoticeDraft",
    "NoticeStore",
    "OperatorStore",
    "Outbox",
    "OutboxResult",
    "PolicyStore",
    "PolicyVersion",
    "Post",
    "PostStore",
    "PostVersion",
    "ProposalStore",
    "SentEmail",
    "Store",
    "StoredEmail",
    "SubscriberStore",
    "Switch",
    "SwitchReader",
    "SwitchStore",
    "apply_migrations",
    "pool_size_for",
]
