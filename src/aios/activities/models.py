"""One typed input and one typed output per activity, named after the step.

Idempotency keys are derived in workflow code from workflow id, run id and step name, and
travel in the input so they are visible in history. Large texts (drafts) travel by id.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from aios.agents.corrections import CorrectionHint
from aios.agents.intake import IntakeFacts
from aios.kernel.commerce import InvoiceStatus, VersionSource
from aios.kernel.models import Client
from aios.kernel.money import LineItem
from aios.kernel.policy import BillingPolicy, ProposalPolicy
from aios.memory.store import RecalledMemory

__all__ = [
    "NOT_CONFIGURED",
    "AgentAttempt",
    "AgentCall",
    "AgentControls",
    "AgentHold",
    "CancelEffectInput",
    "CancelKickoffInput",
    "CheckConnectorsInput",
    "CheckConnectorsResult",
    "CheckInvoicePolicyInput",
    "CheckProposalPolicyInput",
    "ClassifyIntakeInput",
    "ClassifyIntakeResult",
    "ConnectorCheck",
    "ConnectorPlan",
    "ConnectorPlanInput",
    "CreateInvoiceInput",
    "CreditNoteRef",
    "DraftProposalInput",
    "DraftProposalResult",
    "DraftResult",
    "DraftWelcomeInput",
    "InvoiceRef",
    "InvoiceStepInput",
    "IssueCreditNoteInput",
    "IssueInvoiceInput",
    "KickoffEventInput",
    "KickoffEventResult",
    "MirrorClientInput",
    "MirrorDealInput",
    "MirrorResult",
    "OpenProposalInput",
    "OpenProposalResult",
    "ProposalVersionRef",
    "ProviderCreateInvoiceInput",
    "ProviderMarkPaidInput",
    "RecallCorrectionsInput",
    "RecallCorrectionsResult",
    "RecallForDraftInput",
    "RecallForDraftResult",
    "RecallMemoryInput",
    "RecallMemoryResult",
    "RecordEventInput",
    "RecordPaymentInput",
    "RecordPaymentResult",
    "RecordRefundInput",
    "RememberCorrectionInput",
    "RememberCorrectionResult",
    "RememberInput",
    "RememberResult",
    "RetractProposalInput",
    "ReviseDraftInput",
    "ReviseProposalInput",
    "SendGateReminderInput",
    "SendInvoiceInput",
    "SendProposalInput",
    "SendResult",
    "SendWelcomeInput",
    "UpsertClientInput",
    "UpsertClientResult",
]


class AgentAttempt(BaseModel):
    """One try of an agent step, as the ledger recorded it."""

    tier: str
    model: str
    outcome: str
    cost_usd: float
    confidence: float | None = None
    reason: str = ""
    reused: bool = False


class AgentCall(BaseModel):
    model: str
    confidence: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    provider: str = "template"
    tier: str = "template"
    attempts: list[AgentAttempt] = Field(default_factory=list)

    @property
    def label(self) -> str:
        """Who drafted it, as the operator sees it next to the draft."""
        if self.provider == "template":
            return "template (offline rules, no model)"
        return f"{self.model} ({self.provider}, {self.tier} tier, confidence {self.confidence:.2f})"


class AgentControls(BaseModel):
    """The operator's answers to earlier holds of an agent step."""

    approved_calls: list[str] = Field(default_factory=list)  # past the monthly cap, by key
    use: Literal["model", "template", "best"] = "model"
    use_reason: str = ""


class AgentHold(BaseModel):
    """An agent step that stopped for the operator: over budget, or no usable answer."""

    kind: Literal["budget", "review"]
    agent: str
    reason: str
    call_key: str = ""
    estimate_usd: float = 0.0
    fallback: Literal["template", "best"] = "template"
    attempts: list[AgentAttempt] = Field(default_factory=list)


class ClassifyIntakeInput(BaseModel):
    idempotency_key: str
    client_key: str
    name: str
    notes: str = ""
    controls: AgentControls = Field(default_factory=AgentControls)


class ClassifyIntakeResult(BaseModel):
    facts: IntakeFacts | None = None
    call: AgentCall | None = None
    hold: AgentHold | None = None
    run_cost_usd: float = 0.0


class UpsertClientInput(BaseModel):
    idempotency_key: str
    client: Client


class UpsertClientResult(BaseModel):
    client_key: str


class RecallMemoryInput(BaseModel):
    query: str
    kinds: list[str] = Field(default_factory=list)
    entity: str | None = None
    limit: int = Field(default=5, ge=1, le=20)


class RecallMemoryResult(BaseModel):
    memories: list[RecalledMemory]


class DraftWelcomeInput(BaseModel):
    idempotency_key: str
    client_key: str
    client_name: str
    notes: str = ""
    facts: IntakeFacts
    kickoff_at: datetime
    memories: list[RecalledMemory] = Field(default_factory=list)
    controls: AgentControls = Field(default_factory=AgentControls)
    # The operator's corrections to earlier welcome drafts for similar clients, most similar
    # first (``agents.corrections``).
    corrections: list[CorrectionHint] = Field(default_factory=list)


class DraftResult(BaseModel):
    draft_id: str = ""
    version: int = 0
    subject: str = ""
    preview: str = ""
    memory_ids_used: list[str] = Field(default_factory=list)
    corrections_used: list[str] = Field(default_factory=list)
    call: AgentCall | None = None
    hold: AgentHold | None = None
    run_cost_usd: float = 0.0


class ReviseDraftInput(BaseModel):
    idempotency_key: str
    draft_id: str
    edits: dict[str, str]
    editor: str
    comment: str = ""


class SendWelcomeInput(BaseModel):
    idempotency_key: str
    draft_id: str
    to: str
    client_name: str
    kickoff_at: datetime


class CancelKickoffInput(BaseModel):
    idempotency_key: str
    to: str
    client_name: str
    kickoff_at: datetime
    reason: str


class SendGateReminderInput(BaseModel):
    """The operator's gate email: ``reminder`` 0 when the gate opens, then 1, 2..."""

    idempotency_key: str
    gate: str
    title: str
    summary: str
    requested_at: datetime
    expires_at: datetime
    reminder: int
    # The gate's step key ("gate/welcome#2"): what the signed links name; "" in old histories.
    gate_key: str = ""
    amount: str | None = None
    drafted_by: str | None = None
    next_reminder_at: datetime | None = None


class SendResult(BaseModel):
    message_id: str
    to: str
    sent_now: bool


class RememberInput(BaseModel):
    idempotency_key: str
    text: str
    entity: str
    kind: str


class RememberResult(BaseModel):
    id: str
    version: int


class RememberCorrectionInput(BaseModel):
    """An edit at a gate, to learn from: the draft the agent wrote and the one approved."""

    idempotency_key: str
    agent: str
    gate: str
    client_key: str
    client_name: str
    # Who the client is ("<name>. <segment>. <summary>"): what a similar client is found by.
    client_profile: str
    # What the ids name: a welcome draft (drafts) or a proposal version (proposals).
    document: Literal["draft", "proposal_version"] = "draft"
    draft_before: str
    draft_after: str
    approver: str
    comment: str = ""


class RememberCorrectionResult(BaseModel):
    id: str | None = None  # None: the edit changed nothing an agent can apply
    replacements: int = 0


class RecallCorrectionsInput(BaseModel):
    agent: str
    query: str
    limit: int = Field(default=3, ge=1, le=10)


class RecallCorrectionsResult(BaseModel):
    corrections: list[CorrectionHint] = Field(default_factory=list)


class RecallForDraftInput(BaseModel):
    """Every recall an agent's draft needs, in one memory step: ``queries`` in order and, when
    given, the operator's corrections."""

    queries: list[RecallMemoryInput] = Field(min_length=1, max_length=5)
    corrections: RecallCorrectionsInput | None = None


class RecallForDraftResult(BaseModel):
    results: list[RecallMemoryResult]  # one per query, in order
    corrections: list[CorrectionHint] = Field(default_factory=list)


class RecordEventInput(BaseModel):
    idempotency_key: str
    kind: str
    entity: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class CancelEffectInput(BaseModel):
    """An effect step the run no longer needs: its outbox row is cancelled unless done."""

    idempotency_key: str  # the effect step's own key
    connector: str
    operation: str
    reason: str


# --- proposals -------------------------------------------------------------------------------


class OpenProposalInput(BaseModel):
    idempotency_key: str
    proposal_id: str
    client_key: str
    scope: str
    currency: str
    budget_hint_minor: int | None = None
    deadline: date | None = None


class OpenProposalResult(BaseModel):
    client_name: str
    client_email: str
    segment: str


class ProposalVersionRef(BaseModel):
    """A stored proposal version as workflows see it (the full record stays in PostgreSQL)."""

    version_id: str
    version: int
    source: VersionSource
    currency: str
    subtotal_minor: int
    discount_pct: Decimal
    total_minor: int
    line_items: list[LineItem]
    memory_ids_used: list[str] = Field(default_factory=list)
    call: AgentCall | None = None


class DraftProposalInput(BaseModel):
    idempotency_key: str
    proposal_id: str
    client_key: str
    valid_until: datetime
    payment_terms_days: int
    memories: list[RecalledMemory] = Field(default_factory=list)
    controls: AgentControls = Field(default_factory=AgentControls)
    # The operator's corrections to earlier proposals for similar clients, most similar first.
    corrections: list[CorrectionHint] = Field(default_factory=list)


class DraftProposalResult(BaseModel):
    """The drafted version, or why the agent step stopped for the operator."""

    version: ProposalVersionRef | None = None
    hold: AgentHold | None = None
    run_cost_usd: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _bare_version(cls, data: Any) -> Any:
        # Histories recorded before agent holds existed carry a bare ProposalVersionRef.
        if isinstance(data, dict) and "version_id" in data:
            call = data.get("call") or {}
            return {"version": data, "run_cost_usd": call.get("cost_usd", 0.0)}
        return data


class CheckProposalPolicyInput(BaseModel):
    idempotency_key: str
    version_id: str
    policy: ProposalPolicy


class ReviseProposalInput(BaseModel):
    idempotency_key: str
    base_version_id: str
    source: VersionSource
    author: str
    note: str = ""
    total_minor: int | None = None
    discount_pct: Decimal | None = None
    terms: str | None = None


class SendProposalInput(BaseModel):
    idempotency_key: str
    version_id: str
    to: str
    client_name: str
    valid_until: datetime
    follow_up: int = 0  # 0: the proposal itself; n: the n-th follow-up


class RetractProposalInput(BaseModel):
    idempotency_key: str
    version_id: str
    to: str
    client_name: str
    reason: str


# --- billing ---------------------------------------------------------------------------------


class CreateInvoiceInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    client_key: str
    proposal_id: str | None = None
    currency: str
    line_items: list[LineItem] = Field(min_length=1)


class InvoiceRef(BaseModel):
    invoice_id: str
    number: str | None
    status: InvoiceStatus
    currency: str
    total_minor: int
    client_name: str
    client_email: str


class CheckInvoicePolicyInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    policy: BillingPolicy


class IssueInvoiceInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    issued_at: datetime
    due_at: datetime


class InvoiceStepInput(BaseModel):
    """An invoice step that needs only the invoice (void, provider calls)."""

    idempotency_key: str
    invoice_id: str
    reason: str = ""


class RecordPaymentInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    amount_minor: int = Field(gt=0)
    currency: str
    reference: str = ""
    paid_at: datetime
    recorded_by: str


class RecordRefundInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    amount_minor: int = Field(gt=0)
    currency: str
    reference: str = ""
    refunded_at: datetime
    recorded_by: str


class RecordPaymentResult(BaseModel):
    balance_minor: int
    status: InvoiceStatus


class IssueCreditNoteInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    amount_minor: int = Field(gt=0)
    reason: str


class CreditNoteRef(BaseModel):
    number: str
    amount_minor: int


class ProviderCreateInvoiceInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    provider: str


class ProviderMarkPaidInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    amount_minor: int


class SendInvoiceInput(BaseModel):
    idempotency_key: str
    invoice_id: str
    kind: Literal["invoice", "reminder", "cancellation"]
    reminder: int = 0
    balance_minor: int | None = None
    reason: str = ""


# --- connector health ------------------------------------------------------------------------


class CheckConnectorsInput(BaseModel):
    idempotency_key: str


class ConnectorCheck(BaseModel):
    connector: str
    ok: bool
    detail: str = ""
    latency_ms: int = 0


class CheckConnectorsResult(BaseModel):
    results: list[ConnectorCheck]


# Why an optional connector's step did nothing: it is not configured on this stack.
NOT_CONFIGURED: dict[str, str] = {
    "webhook": "no webhook configured (AIOS_WEBHOOK_URL)",
    "caldav": "no CalDAV calendar configured (AIOS_CALDAV_URL); the emailed invitation is "
    "the calendar entry",
    "hubspot": "HubSpot is not configured (AIOS_HUBSPOT_TOKEN); the kernel is the CRM",
}


class ConnectorPlanInput(BaseModel):
    """The optional connectors a run asks about (``webhook``, ``caldav``, ``hubspot``)."""

    names: list[str] = Field(default_factory=lambda: sorted(NOT_CONFIGURED))


class ConnectorPlan(BaseModel):
    """Which of the connectors asked about are configured on the worker that answered."""

    configured: list[str]


class DeliverWebhookInput(BaseModel):
    idempotency_key: str
    event_type: str
    data: dict[str, Any] = Field(default_factory=dict)
    created: datetime  # workflow.now(): the same body on every retry
    # The key of an earlier delivery this one retracts (a saga compensation): the event goes
    # out as ``<event_type>.retracted`` with ``data.retracts`` = that delivery's id.
    retracts: str | None = None


class DeliverWebhookResult(BaseModel):
    delivery_id: str = ""
    status_code: int = 0
    delivered_now: bool = False
    dry_run: bool = False
    skipped: str | None = None  # why nothing was delivered (no webhook configured)


class KickoffEventInput(BaseModel):
    """Create (or, with ``cancel``, cancel) the kickoff event in the operator's calendar."""

    idempotency_key: str
    to: str
    client_name: str
    kickoff_at: datetime
    cancel: bool = False


class KickoffEventResult(BaseModel):
    uid: str = ""
    status: Literal["CONFIRMED", "CANCELLED", "TENTATIVE", ""] = ""
    sequence: int = 0
    changed_now: bool = False
    dry_run: bool = False
    skipped: str | None = None  # why nothing was written (no CalDAV calendar configured)


class MirrorClientInput(BaseModel):
    """Upsert the client as a HubSpot contact; irreversible, so ``approval`` is the event key
    of the gate decision that allowed it."""

    idempotency_key: str
    client_key: str
    approval: str | None = None


class MirrorDealInput(BaseModel):
    """Mirror a proposal as a HubSpot deal: ``create`` (stage open), ``won``, ``lost``, or
    ``archive`` (the saga's undo of ``create``)."""

    idempotency_key: str
    proposal_id: str
    action: Literal["create", "won", "lost", "archive"]


class MirrorResult(BaseModel):
    system: str = ""  # hubspot.contact, hubspot.deal
    external_id: str | None = None
    changed_now: bool = False
    dry_run: bool = False
    detail: str = ""
    skipped: str | None = None  # why nothing was mirrored
