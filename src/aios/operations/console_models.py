"""The console's gate page as typed models: the gate, its document per gate kind, the Edit
form's fields and an edit as a diff (``operations.console`` fills them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from aios.errors import InvalidInput
from aios.operations.billing import InvoiceDocument
from aios.operations.onboarding import WelcomeDocument
from aios.operations.proposals import ProposalDocument

__all__ = [
    "FIELD_LABELS",
    "FORM_ERROR",
    "MULTILINE_FIELDS",
    "PREVIEW_CHARS",
    "AgentGateDocument",
    "BudgetGateDocument",
    "CandidateAnswer",
    "CitedCorrection",
    "CitedMemory",
    "ConnectorsGateDocument",
    "EditableField",
    "FailingCheck",
    "FieldDiff",
    "Finding",
    "GateDocument",
    "GateState",
    "GateStatus",
    "GateView",
    "InvoiceGateDocument",
    "NotFound",
    "PostGateDocument",
    "ProposalGateDocument",
    "TopicGateDocument",
    "TopicRow",
    "WelcomeGateDocument",
]

# The key of an error in ``check_edits`` that is about the edit as a whole, not one field.
FORM_ERROR = "edits"
FIELD_LABELS = {
    "subject": "Subject",
    "body": "Body",
    "total": "Total",
    "discount_pct": "Discount (%)",
    "terms": "Terms",
    "title": "Title",
    "topic": "Topic (text, or the number of a candidate)",
}
MULTILINE_FIELDS = frozenset({"body", "terms"})
PREVIEW_CHARS = 600


class NotFound(InvalidInput):
    """No such run, gate or client: the console answers 404."""


# --- models --------------------------------------------------------------------------------------

GateStatus = Literal["waiting", "approved", "rejected", "edited", "expired", "closed"]


class GateState(BaseModel):
    """The gate itself: what it asks, since when, and how it was answered."""

    workflow_id: str
    run_id: str
    process: str
    gate: str
    gate_key: str  # "gate/welcome", "gate/budget#2": the gate's step key in its run
    title: str
    summary: str
    status: GateStatus
    run_status: str  # running, completed, failed... ("unknown" when Temporal no longer has it)
    requested_at: datetime | None = None
    expires_at: datetime | None = None
    next_reminder_at: datetime | None = None
    reminders_sent: int = 0
    amount: str | None = None
    drafted_by: str | None = None
    editable_fields: list[str] = Field(default_factory=list)
    rejected_signals: int = 0
    last_rejection: str | None = None
    decision: str | None = None  # approve, reject, edit
    approver: str | None = None
    comment: str = ""
    edited_fields: list[str] = Field(default_factory=list)
    decided_at: datetime | None = None
    # How a gate that no longer waits was answered, in words ("already decided by jo at ...").
    answered: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    web_ui_url: str


class EditableField(BaseModel):
    """One field of the Edit form, with the value the gate shows now."""

    name: str
    label: str
    value: str
    multiline: bool = False


class CitedMemory(BaseModel):
    """A memory the agent was given (and whether it says it used it), with its provenance."""

    id: str
    text: str = ""
    entity: str = ""
    kind: str = ""
    version: int | None = None
    source_workflow_id: str = ""
    source_run_id: str = ""
    created_at: datetime | None = None
    score: float | None = None
    used: bool = False


class CitedCorrection(BaseModel):
    """An operator correction the agent was given (learnt from an edit for a similar client),
    its replacements, and whether the draft applied it."""

    id: str
    client_name: str = ""
    approver: str = ""
    score: float | None = None
    replacements: list[dict[str, str]] = Field(default_factory=list)
    used: bool = False


class WelcomeGateDocument(WelcomeDocument):
    kickoff_at: datetime | None = None
    memories: list[CitedMemory] = Field(default_factory=list)
    cited_corrections: list[CitedCorrection] = Field(default_factory=list)


class ProposalGateDocument(ProposalDocument):
    version_id: str
    scope: str = ""
    valid_until: datetime | None = None
    memories: list[CitedMemory] = Field(default_factory=list)
    cited_corrections: list[CitedCorrection] = Field(default_factory=list)
    has_pdf: bool = True


class InvoiceGateDocument(InvoiceDocument):
    has_pdf: bool = True


class BudgetGateDocument(BaseModel):
    kind: Literal["budget"] = "budget"
    estimate: str  # "~$0.0123"
    pays_for: str  # what the call is for
    agent: str = ""
    reason: str = ""


class CandidateAnswer(BaseModel):
    """One try of the agent step: which model, how confident, and what it answered."""

    model: str
    tier: str = ""
    outcome: str = ""
    confidence: float | None = None
    cost_usd: float | None = None
    reason: str = ""
    preview: str = ""  # the start of the reply as received, when the cost ledger has it


class AgentGateDocument(BaseModel):
    kind: Literal["agent"] = "agent"
    agent: str = ""
    reason: str
    fallback: str = ""  # what approve does
    candidates: list[CandidateAnswer] = Field(default_factory=list)


class FailingCheck(BaseModel):
    connector: str
    detail: str


class ConnectorsGateDocument(BaseModel):
    kind: Literal["connectors"] = "connectors"
    failing: list[FailingCheck]


class TopicRow(BaseModel):
    """A candidate topic at gate ``topic``: where it came from and whether it repeats a post."""

    number: int
    topic: str
    origin: str = ""
    sources: list[str] = Field(default_factory=list)
    repeats: str | None = None
    similarity: float | None = None


class TopicGateDocument(BaseModel):
    kind: Literal["topic"] = "topic"
    post_id: str
    candidates: list[TopicRow]


class Finding(BaseModel):
    """A fact-check finding: an unsourced claim or a conflict with memory."""

    what: Literal["unsourced", "conflict"]
    text: str
    problem: str = ""


class PostGateDocument(BaseModel):
    """Gate ``content``: the version shown, rendered, with its fact-check and audience."""

    kind: Literal["content"] = "content"
    post_id: str
    version: int
    versions: int
    title: str
    summary: str
    markdown: str
    html: str  # the Markdown rendered, raw HTML disabled
    author: str
    claims: int = 0
    findings: list[Finding] = Field(default_factory=list)
    audience: int | None = None
    memories: list[CitedMemory] = Field(default_factory=list)


GateDocument = Annotated[
    WelcomeGateDocument
    | ProposalGateDocument
    | InvoiceGateDocument
    | BudgetGateDocument
    | AgentGateDocument
    | ConnectorsGateDocument
    | TopicGateDocument
    | PostGateDocument,
    Field(discriminator="kind"),
]


class GateView(BaseModel):
    """The Gate page: the gate, the full document it decides, and the Edit form's fields."""

    gate: GateState
    document: GateDocument | None = None
    fields: list[EditableField] = Field(default_factory=list)
    note: str = ""  # why something is missing ("no worker answered", "not drafted yet")


class FieldDiff(BaseModel):
    """An edited field as a unified diff (``lines``, difflib) against the current value."""

    field: str
    label: str
    before: str
    after: str
    lines: list[str]
