"""The kernel in PostgreSQL: one ``KernelStore`` holding a store per aggregate.

Each store owns its tables and nothing else, and all share one connection pool
(``stores.database``):

- ``clients``; ``drafts``; ``events``, the append-only log; ``costs``, the cost ledger of model
  calls; ``outbox``; ``refs``, links to outside mirrors; ``health``, connector guards and
  synthetic checks;
- ``proposals``; ``invoices``, with payments, refunds and credit notes;
- ``operators``, the console's sign-in; ``gates``, the gate projection the inbox reads;
  ``notices``, the inbox's items that are not gates;
- ``inbound``, payment events that came in by themselves, each processed once;
- ``leads``, leads that came in by themselves, and the notes they add to clients;
- ``switches``, the kill switches;
- ``policies``, versioned policy values, and ``corrections``, the operator's edits agents learn
  from;
- ``subscribers``, the newsletter's list, and ``newsletter``, staged issues with one delivery
  per post and subscriber;
- ``posts``, the content process's posts with every version;
- ``mail``, the emails the IMAP poller fetched, once per Message-ID, and what became of them.

Every write is idempotent: clients upsert by key, drafts and events insert by a deterministic
id and ignore a repeat, notices open once per key, switches change once per pause or resume,
and the outbox runs an outside effect at most once per key.
"""

from __future__ import annotations

from aios.kernel.stores import (
    ClientStore,
    ConnectorHealth,
    CorrectionStore,
    CostLedger,
    Database,
    DraftStore,
    EventLog,
    ExternalRefs,
    GateStore,
    InboundStore,
    InvoiceStore,
    LeadStore,
    MailStore,
    NewsletterStore,
    NoticeStore,
    OperatorStore,
    Outbox,
    OutboxResult,
    PolicyStore,
    PostStore,
    ProposalStore,
    SubscriberStore,
    SwitchStore,
    apply_migrations,
)

__all__ = ["KernelStore", "OutboxResult", "apply_migrations"]


class KernelStore:
    """The kernel's stores over one pool of ``max_size`` connections."""

    def __init__(self, database_url: str, *, max_size: int = 4, connect_wait: float = 15.0) -> None:
        self.db = Database(database_url, max_size=max_size, connect_wait=connect_wait)
        self.clients = ClientStore(self.db)
        self.drafts = DraftStore(self.db)
        self.events = EventLog(self.db)
        self.costs = CostLedger(self.db)
        self.outbox = Outbox(self.db)
        self.refs = ExternalRefs(self.db)
        self.health = ConnectorHealth(self.db)
        self.proposals = ProposalStore(self.db)
        self.invoices = InvoiceStore(self.db)
        self.gates = GateStore(self.db)
        self.operators = OperatorStore(self.db)
        self.notices = NoticeStore(self.db)
        self.inbound = InboundStore(self.db)
        self.leads = LeadStore(self.db)
        self.switches = SwitchStore(self.db)
        self.policies = PolicyStore(self.db)
        self.corrections = CorrectionStore(self.db)
        self.subscribers = SubscriberStore(self.db)
        self.newsletter = NewsletterStore(self.db)
        self.posts = PostStore(self.db)
        self.mail = MailStore(self.db)

    def close(self) -> None:
        self.db.close()
