"""Proposals: start one for a known client, record the client's answer, show a version."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.money import format_amount, normalize_currency, parse_amount
from aios.kernel.store import KernelStore
from aios.kernel.text import PastedText
from aios.operations.common import (
    DocumentLine,
    NewId,
    Session,
    Started,
    document_lines,
    new_id,
    require_running,
    run_progress,
    start_new,
    workflow_id_for,
)
from aios.operations.onboarding import require_client
from aios.workflows.progress import ProposalProgress
from aios.workflows.proposal import (
    CLIENT_RESPONSE_SIGNAL,
    ClientResponse,
    ProposalInput,
    ProposalWorkflow,
    proposal_workflow_id,
)

__all__ = [
    "NewProposal",
    "ProposalDocument",
    "proposal_document",
    "proposal_progress",
    "propose",
    "respond",
    "start_proposal",
]


class NewProposal(BaseModel):
    """What the operator gives ``aios propose``. Validated before anything starts."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    client_key: str = Field(min_length=1, max_length=64)
    scope: PastedText = Field(min_length=1, max_length=20_000)
    budget: Decimal | None = Field(default=None, description="major units")
    deadline: date | None = None
    currency: str | None = None
    proposal_id: NewId | None = None

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value < 0:
            raise ValueError("budget must not be negative")
        return value


async def start_proposal(
    client: Client, settings: Settings, store: KernelStore, new: NewProposal, *, again: bool = False
) -> Started:
    """Start ``ProposalWorkflow`` for a known client; bad input raises and starts nothing.

    A client whose onboarding was rejected or expired gets a proposal only with ``again``."""
    currency = normalize_currency(new.currency or settings.currency)
    budget = parse_amount(new.budget, currency) if new.budget is not None else None
    if new.deadline is not None and new.deadline < datetime.now(UTC).date():
        raise InvalidInput(f"deadline: {new.deadline} is in the past")
    require_client(store, new.client_key, again=again)
    proposal_id = new.proposal_id or new_id(new.client_key, datetime.now(UTC).date())
    return await start_new(
        client,
        ProposalWorkflow.run,
        ProposalInput(
            proposal_id=proposal_id,
            client_key=new.client_key,
            scope=new.scope,
            currency=currency,
            budget_hint_minor=budget,
            deadline=new.deadline,
            provider=settings.payment_provider,
            policy=settings.proposal_policy,
            billing_policy=settings.billing_policy,
            gate_policy=settings.gate_policy,
            apply_corrections=settings.agent_apply_corrections,
        ),
        proposal_workflow_id(proposal_id),
        settings,
        f"Proposal for {new.client_key}",
    )


async def propose(settings: Settings, new: NewProposal, *, again: bool = False) -> Started:
    """``start_proposal`` with its own connections (``aios propose``); the run pins the
    latest policy version (``operations.policies.pin``)."""
    from aios.operations.policies import pin

    with Session(settings) as session:
        client = await session.client()
        store = session.store()
        return await start_proposal(client, pin(settings, store), store, new, again=again)


async def proposal_progress(client: Client, workflow_id: str) -> ProposalProgress | None:
    """The proposal run's progress, or ``None`` when no worker answered."""
    try:
        progress = await run_progress(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        return None
    assert isinstance(progress, ProposalProgress)
    return progress


async def respond(client: Client, proposal_ref: str, response: ClientResponse) -> bool:
    """Send the client's answer; returns False when no worker confirmed a proposal waits."""
    workflow_id = workflow_id_for("proposal", proposal_ref)
    await require_running(client, workflow_id)
    progress = await proposal_progress(client, workflow_id)
    if progress is not None:
        if progress.waiting_for != CLIENT_RESPONSE_SIGNAL and not progress.takes_answer:
            where = progress.steps_done[-1] if progress.steps_done else "starting"
            raise InvalidInput(
                f"{workflow_id} is not waiting for the client's answer (last step: {where})"
            )
        version = progress.version
        if response.version is not None and version and response.version != version:
            raise InvalidInput(f"version: v{response.version} is not the version out (v{version})")
        total, currency = progress.total_minor, progress.currency
        if response.proposed_total is not None and total is not None and currency:
            proposed = parse_amount(response.proposed_total, currency)
            if proposed <= 0 or proposed >= total:
                raise InvalidInput(
                    f"total: {format_amount(proposed, currency)} is not below the current total "
                    f"{format_amount(total, currency)}; to agree, send accept"
                )
    await client.get_workflow_handle(workflow_id).signal(CLIENT_RESPONSE_SIGNAL, response)
    return progress is not None


class ProposalDocument(BaseModel):
    """A proposal's latest version, as ``aios show`` prints it."""

    kind: Literal["proposal"] = "proposal"
    proposal_id: str
    client_key: str
    version: int
    versions: int
    source: str
    author: str
    currency: str
    lines: list[DocumentLine]
    subtotal: str
    subtotal_minor: int
    discount_pct: Decimal
    discount: str
    discount_minor: int
    total: str
    total_minor: int
    terms: str
    rationale: str = ""
    note: str = ""
    created_at: datetime | None = None


def proposal_document(store: KernelStore, proposal_id: str) -> ProposalDocument | None:
    """The latest version of the proposal; ``None`` before the agent has drafted one."""
    proposal = store.proposals.get(proposal_id)
    versions = store.proposals.versions(proposal_id)
    if proposal is None or not versions:
        return None
    latest = versions[-1]
    currency = latest.currency
    return ProposalDocument(
        proposal_id=proposal_id,
        client_key=proposal.client_key,
        version=latest.version,
        versions=len(versions),
        source=latest.source,
        author=latest.author,
        currency=currency,
        lines=document_lines(latest.line_items, currency),
        subtotal=format_amount(latest.subtotal_minor, currency),
        subtotal_minor=latest.subtotal_minor,
        discount_pct=latest.discount_pct,
        discount=format_amount(latest.discount_minor, currency),
        discount_minor=latest.discount_minor,
        total=format_amount(latest.total_minor, currency),
        total_minor=latest.total_minor,
        terms=latest.terms,
        rationale=latest.rationale,
        note=latest.note,
        created_at=latest.created_at,
    )
