"""The document behind a gate, read from the kernel, the gate's details and the run's history,
and the PDF of a proposal or an invoice rendered as the sending activity renders it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.operations.billing import invoice_document
from aios.operations.console_models import (
    PREVIEW_CHARS,
    AgentGateDocument,
    BudgetGateDocument,
    CandidateAnswer,
    CitedCorrection,
    CitedMemory,
    ConnectorsGateDocument,
    FailingCheck,
    GateDocument,
    GateState,
    GateView,
    InvoiceGateDocument,
    ProposalGateDocument,
    WelcomeGateDocument,
)
from aios.operations.onboarding import welcome_document
from aios.operations.proposals import proposal_document

if TYPE_CHECKING:
    from aios.kernel.commerce import ProposalVersion
    from aios.kernel.store import KernelStore

__all__ = ["gate_document", "render_gate_pdf"]


# --- documents ---------------------------------------------------------------


async def gate_document(
    client: Client, store: KernelStore, settings: Settings, gate: GateState
) -> tuple[GateDocument | None, str]:
    """The gate's document, or ``None`` and a line saying why there is none."""
    key = gate.workflow_id.split("/", 1)[-1]
    if gate.gate == "welcome":
        return await _welcome(client, store, gate)
    if gate.gate == "proposal":
        return await _proposal(client, store, settings, gate, key)
    if gate.gate == "invoice":
        invoice = invoice_document(store, key)
        if invoice is None:
            return None, f"invoice {key!r} is not in the kernel"
        return InvoiceGateDocument(**invoice.model_dump()), ""
    if gate.gate == "budget":
        return _budget(gate), ""
    if gate.gate == "agent":
        return _agent(store, gate), ""
    if gate.gate == "connectors":
        return _connectors(gate), ""
    if gate.gate in ("topic", "content") and gate.process == "content":
        from aios.operations.content import post_gate_document, topic_gate_document

        if gate.gate == "topic":
            return topic_gate_document(gate), ""
        return post_gate_document(store, gate)
    return None, f"gate {gate.gate!r} has no document of its own; its summary says what it asks"


async def _welcome(
    client: Client, store: KernelStore, gate: GateState
) -> tuple[GateDocument | None, str]:
    from aios.activities.models import DraftWelcomeInput

    welcome = welcome_document(store, gate.workflow_id, gate.run_id)
    if welcome is None:
        return None, "the welcome email is not drafted yet"
    draft = store.drafts.get(welcome.draft_id)
    used = _list((draft.meta if draft else {}).get("memory_ids_used"))
    given = await _scheduled_input(client, gate, "draft_welcome", DraftWelcomeInput)
    return (
        WelcomeGateDocument(
            **welcome.model_dump(),
            kickoff_at=given.kickoff_at if given else None,
            memories=_cited(given.memories if given else [], used),
            cited_corrections=_corrections(given.corrections if given else [], welcome.corrections),
        ),
        "",
    )


async def _proposal(
    client: Client, store: KernelStore, settings: Settings, gate: GateState, key: str
) -> tuple[GateDocument | None, str]:
    from aios.activities.models import DraftProposalInput

    latest = proposal_document(store, key)
    proposal = store.proposals.get(key)
    versions = store.proposals.versions(key)
    if latest is None or proposal is None or not versions:
        return None, f"proposal {key!r} has no version yet"
    version = versions[-1]
    given = await _scheduled_input(client, gate, "draft_proposal", DraftProposalInput)
    valid_until = given.valid_until if given else None
    if valid_until is None and version.created_at is not None:
        valid_until = version.created_at + settings.proposal_expire_after
    return (
        ProposalGateDocument(
            **latest.model_dump(),
            version_id=version.id,
            scope=proposal.scope,
            valid_until=valid_until,
            memories=_cited(given.memories if given else [], version.memory_ids),
            cited_corrections=_corrections(
                given.corrections if given else [], _proposal_corrections(store, gate)
            ),
        ),
        "",
    )


def _corrections(given: list[Any], used: list[str]) -> list[CitedCorrection]:
    """The operator's corrections the agent was given, and whether the draft applied each."""
    return [
        CitedCorrection(
            id=c.id,
            client_name=c.client_name,
            approver=c.approver,
            score=c.score,
            replacements=[r.model_dump() for r in c.replacements],
            used=c.id in used,
        )
        for c in given
    ]


def _proposal_corrections(store: KernelStore, gate: GateState) -> list[str]:
    """The corrections the run's proposal draft cites (its ``agent.called`` event)."""
    for event in store.events.for_run(gate.workflow_id, gate.run_id):
        if event.kind == "agent.called" and event.payload.get("agent") == "proposal":
            return _list(event.payload.get("corrections"))
    return []


def _cited(memories: list[Any], used: list[str]) -> list[CitedMemory]:
    """The memories an agent was given, with provenance; ids it used but that are not among
    them (the run's history is gone) are listed by id."""
    cited = [
        CitedMemory(
            id=m.id,
            text=m.text,
            entity=m.provenance.entity,
            kind=m.provenance.kind,
            version=m.provenance.version,
            source_workflow_id=m.provenance.source_workflow_id,
            source_run_id=m.provenance.source_run_id,
            created_at=m.provenance.created_at,
            score=getattr(m, "score", None),
            used=m.id in used,
        )
        for m in memories
    ]
    known = {c.id for c in cited}
    return cited + [CitedMemory(id=i, used=True) for i in used if i not in known]


async def _scheduled_input(client: Client, gate: GateState, activity: str, model: type[Any]) -> Any:
    """The input of the last ``activity`` the run scheduled (from its history), or ``None``
    when Temporal no longer has the run."""
    handle = client.get_workflow_handle(gate.workflow_id, run_id=gate.run_id or None)
    payloads = None
    try:
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                if attrs.activity_type.name == activity:
                    payloads = attrs.input.payloads
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return None
        raise
    if not payloads:
        return None
    try:
        [value] = await client.data_converter.decode(list(payloads), [model])
    except Exception:  # an input of an older shape: shown without it
        return None
    return value


def _budget(gate: GateState) -> BudgetGateDocument:
    d = gate.details
    estimate = d.get("estimate_usd")
    return BudgetGateDocument(
        estimate=f"~${float(estimate):.4f}" if estimate is not None else (gate.amount or ""),
        pays_for=str(d.get("pays_for") or gate.title.removesuffix(": budget exceeded")),
        agent=str(d.get("agent") or ""),
        reason=str(d.get("reason") or gate.summary),
    )


def _agent(store: KernelStore, gate: GateState) -> AgentGateDocument:
    d = gate.details
    attempts = d.get("attempts") if isinstance(d.get("attempts"), list) else []
    agent = str(d.get("agent") or "")
    replies = {
        (c.model, c.tier): c.content or ""
        for c in store.costs.for_workflow(gate.workflow_id)
        if c.run_id == gate.run_id and (not agent or c.agent == agent) and c.content
    }
    candidates = []
    for a in attempts or []:
        if not isinstance(a, dict):
            continue
        model, tier = str(a.get("model") or ""), str(a.get("tier") or "")
        candidates.append(
            CandidateAnswer(
                model=model,
                tier=tier,
                outcome=str(a.get("outcome") or ""),
                confidence=a.get("confidence"),
                cost_usd=a.get("cost_usd"),
                reason=str(a.get("reason") or ""),
                preview=str(a.get("preview") or replies.get((model, tier), ""))[:PREVIEW_CHARS],
            )
        )
    return AgentGateDocument(
        agent=agent,
        reason=str(d.get("reason") or gate.summary),
        fallback=str(d.get("fallback") or ""),
        candidates=candidates,
    )


def _connectors(gate: GateState) -> ConnectorsGateDocument:
    failing = gate.details.get("failing")
    if isinstance(failing, list) and all(isinstance(f, dict) for f in failing):
        checks = [
            FailingCheck(connector=str(f.get("connector") or ""), detail=str(f.get("detail") or ""))
            for f in failing
        ]
    else:  # older gates: "smtp: refused; crm: timeout"
        checks = []
        for part in gate.summary.split("; "):
            connector, _, detail = part.partition(": ")
            checks.append(FailingCheck(connector=connector, detail=detail))
    return ConnectorsGateDocument(failing=checks)


def render_gate_pdf(view: GateView, store: KernelStore, settings: Settings) -> bytes | None:
    """``gate_pdf`` for a view already read. An invoice not issued yet is rendered as its draft:
    number "(draft)", dated today, due after the billing policy's payment terms."""
    from aios import documents

    doc = view.document
    identity = settings.business_identity
    if isinstance(doc, ProposalGateDocument):
        proposal = store.proposals.get(doc.proposal_id)
        version = store.proposals.get_version(doc.version_id)
        client = store.clients.get(doc.client_key)
        if proposal is None or version is None or client is None:
            return None
        issued = version.created_at or datetime.now(UTC)
        valid_until = max(doc.valid_until or issued, issued)
        return documents.render_proposal(
            _proposal_pdf_doc(proposal.scope, version, client.name, settings, issued, valid_until)
        )
    if isinstance(doc, InvoiceGateDocument):
        invoice = store.invoices.get(doc.invoice_id)
        client = store.clients.get(doc.client_key)
        if invoice is None or client is None:
            return None
        issued = invoice.issued_at or datetime.now(UTC)
        due = invoice.due_at or issued + settings.billing_policy.payment_terms
        return documents.render_invoice(
            documents.InvoiceDocument(
                invoice_id=invoice.invoice_id,
                number=invoice.display_number,
                client_name=client.name,
                client_email=client.email,
                operator_name=settings.operator_name,
                business=identity,
                issued_at=issued,
                due_at=max(due, issued),
                currency=invoice.currency,
                line_items=invoice.line_items,
                total_minor=invoice.total_minor,
                payment_instructions=invoice.payment_instructions or "",
                reference=f"Proposal {invoice.proposal_id}" if invoice.proposal_id else None,
            )
        )
    return None


def _proposal_pdf_doc(
    scope: str,
    version: ProposalVersion,
    client_name: str,
    settings: Settings,
    issued: datetime,
    valid_until: datetime,
) -> Any:
    from aios import documents

    return documents.ProposalDocument(
        proposal_id=version.proposal_id,
        version=version.version,
        client_name=client_name,
        operator_name=settings.operator_name,
        business=settings.business_identity,
        issued_at=issued,
        valid_until=valid_until,
        currency=version.currency,
        scope=scope,
        line_items=version.line_items,
        subtotal_minor=version.subtotal_minor,
        discount_pct=version.discount_pct,
        discount_minor=version.discount_minor,
        total_minor=version.total_minor,
        terms=version.terms,
    )


def _list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
