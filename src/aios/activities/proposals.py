"""Proposal activities: open a proposal, draft and revise versions, apply the policy."""

from __future__ import annotations

from temporalio import activity

from aios.activities.agents import run_agent
from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    AgentCall,
    CheckProposalPolicyInput,
    DraftProposalInput,
    DraftProposalResult,
    OpenProposalInput,
    OpenProposalResult,
    ProposalVersionRef,
    ReviseProposalInput,
)
from aios.agents.corrections import apply_corrections
from aios.agents.proposal import ProposalAgent, ProposalRequest, price_lines, proposal_terms
from aios.agents.runner import AgentRunner
from aios.agents.welcome import MemoryHint
from aios.errors import InvalidInput
from aios.kernel.commerce import Proposal, ProposalVersion
from aios.kernel.money import LineItem, format_amount
from aios.kernel.policy import PolicyVerdict, evaluate_proposal
from aios.kernel.store import KernelStore

__all__ = ["EDITABLE_PROPOSAL_FIELDS", "ProposalActivities", "version_ref"]

EDITABLE_PROPOSAL_FIELDS = ("total", "discount_pct", "terms")


def version_ref(version: ProposalVersion, call: AgentCall | None = None) -> ProposalVersionRef:
    return ProposalVersionRef(
        version_id=version.id,
        version=version.version,
        source=version.source,
        currency=version.currency,
        subtotal_minor=version.subtotal_minor,
        discount_pct=version.discount_pct,
        total_minor=version.total_minor,
        line_items=version.line_items,
        memory_ids_used=version.memory_ids,
        call=call,
    )


class ProposalActivities:
    def __init__(
        self,
        store: KernelStore,
        runner: AgentRunner,
        *,
        operator_name: str,
        rate_card: dict[str, list[LineItem]],
        payment_provider: str,
        agent: ProposalAgent | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._operator_name = operator_name
        self._rate_card = rate_card
        self._provider = payment_provider
        self._agent = agent or ProposalAgent()

    @activity.defn(name="open_proposal")
    @translating_errors
    def open_proposal(self, inp: OpenProposalInput) -> OpenProposalResult:
        client = self._store.clients.get(inp.client_key)
        if client is None:
            raise InvalidInput(f"client: no client with key {inp.client_key!r}")
        info = activity.info()
        self._store.proposals.open(
            Proposal(
                proposal_id=inp.proposal_id,
                client_key=inp.client_key,
                workflow_id=info.workflow_id or "",
                scope=inp.scope,
                currency=inp.currency,
                budget_hint_minor=inp.budget_hint_minor,
                deadline=inp.deadline,
            ),
            event=event_for_step(
                inp.idempotency_key,
                "proposal.opened",
                entity=f"proposal:{inp.proposal_id}",
                payload={"client": inp.client_key, "currency": inp.currency},
            ),
        )
        return OpenProposalResult(
            client_name=client.name, client_email=client.email, segment=client.segment
        )

    @activity.defn(name="draft_proposal")
    @translating_errors
    def draft_proposal(self, inp: DraftProposalInput) -> DraftProposalResult:
        proposal = self._store.proposals.get(inp.proposal_id)
        client = self._store.clients.get(inp.client_key)
        if proposal is None or client is None:
            raise InvalidInput(f"draft_proposal: proposal {inp.proposal_id!r} is not open")
        result, done = run_agent(
            self._runner,
            self._store,
            self._agent,
            ProposalRequest(
                client_name=client.name,
                segment=client.segment,
                scope=proposal.scope,
                currency=proposal.currency,
                budget_hint_minor=proposal.budget_hint_minor,
                deadline=proposal.deadline,
                operator_name=self._operator_name,
                rate_card=self._rate_card,
                memories=[
                    MemoryHint(id=m.id, text=m.text, entity=m.provenance.entity, score=m.score)
                    for m in inp.memories
                ],
                corrections=inp.corrections,
            ),
            key=inp.idempotency_key,
            controls=inp.controls,
            entity=f"proposal:{inp.proposal_id}",
        )
        if result is None or done.call is None:
            return DraftProposalResult(hold=done.hold, run_cost_usd=done.run_cost_usd)
        draft = result.output
        call = done.call
        # The terms are ours, not the model's: the operator's corrections apply to them here.
        fields, applied = apply_corrections(
            {
                "terms": proposal_terms(
                    valid_until=inp.valid_until,
                    payment_terms_days=inp.payment_terms_days,
                    provider=self._provider,
                )
            },
            inp.corrections,
            client_name=client.name,
        )
        cited = list(dict.fromkeys([*draft.corrections_used, *applied]))
        version = ProposalVersion.priced(
            line_items=price_lines(self._rate_card, draft.lines),
            discount_pct=draft.discount_pct,
            id=f"{inp.idempotency_key}/v1",
            proposal_id=inp.proposal_id,
            version=1,
            source="agent",
            author=f"agent:{self._agent.name}",
            currency=proposal.currency,
            terms=fields["terms"],
            rationale=draft.rationale,
            memory_ids=draft.memory_ids_used,
        )
        stored = self._store.proposals.save_version(
            version,
            event=event_for_step(
                inp.idempotency_key,
                "agent.called",
                entity=f"proposal:{inp.proposal_id}",
                payload={
                    "agent": self._agent.name,
                    "version_id": version.id,
                    "total": format_amount(version.total_minor, version.currency),
                    "discount_pct": str(version.discount_pct),
                    "memory_ids_given": result.memory_ids,
                    "memory_ids_used": draft.memory_ids_used,
                    "corrections_given": [c.id for c in inp.corrections],
                    "corrections": cited,
                    **call.model_dump(),
                },
            ),
        )
        return DraftProposalResult(
            version=version_ref(stored, call), run_cost_usd=done.run_cost_usd
        )

    @activity.defn(name="revise_proposal")
    @translating_errors
    def revise_proposal(self, inp: ReviseProposalInput) -> ProposalVersionRef:
        base = self._store.proposals.get_version(inp.base_version_id)
        if base is None:
            raise InvalidInput(f"revise_proposal: version {inp.base_version_id!r} does not exist")
        if inp.total_minor is not None and inp.discount_pct is not None:
            raise InvalidInput("revise_proposal: give a new total or a discount, not both")
        if inp.total_minor is not None and inp.total_minor > base.subtotal_minor:
            raise InvalidInput(
                f"total: {format_amount(inp.total_minor, base.currency)} is above the list "
                f"price {format_amount(base.subtotal_minor, base.currency)}"
            )
        keep_price = inp.total_minor is None and inp.discount_pct is None
        number = base.version + 1
        version = ProposalVersion.priced(
            line_items=base.line_items,
            total_minor=base.total_minor if keep_price else inp.total_minor,
            discount_pct=inp.discount_pct,
            id=f"{inp.idempotency_key}/v{number}",
            proposal_id=base.proposal_id,
            version=number,
            source=inp.source,
            author=inp.author,
            currency=base.currency,
            terms=inp.terms if inp.terms and inp.terms.strip() else base.terms,
            rationale=base.rationale,
            note=inp.note,
            memory_ids=base.memory_ids,
            based_on=base.id,
        )
        stored = self._store.proposals.save_version(
            version,
            event=event_for_step(
                inp.idempotency_key,
                {"edit": "proposal.edited", "counter": "proposal.countered"}.get(
                    inp.source, "proposal.revised"
                ),
                entity=f"proposal:{base.proposal_id}",
                payload={
                    "version": number,
                    "based_on": base.id,
                    "author": inp.author,
                    "total": format_amount(version.total_minor, version.currency),
                    "discount_pct": str(version.discount_pct),
                    "note": inp.note,
                },
            ),
        )
        return version_ref(stored)

    @activity.defn(name="check_proposal_policy")
    @translating_errors
    def check_proposal_policy(self, inp: CheckProposalPolicyInput) -> PolicyVerdict:
        version = self._store.proposals.get_version(inp.version_id)
        if version is None:
            raise InvalidInput(f"check_proposal_policy: version {inp.version_id!r} does not exist")
        verdict = evaluate_proposal(
            total_minor=version.total_minor,
            discount_pct=version.discount_pct,
            currency=version.currency,
            policy=inp.policy,
        )
        self._store.events.append(
            event_for_step(
                inp.idempotency_key,
                "proposal.needs_approval" if verdict.needs_approval else "proposal.auto_approved",
                entity=f"proposal:{version.proposal_id}",
                payload={"version": version.version, **verdict.model_dump()},
            )
        )
        return verdict
