"""Proposals: draft from memory, policy or human approval, send, follow up, and on acceptance
start billing."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.memory import MemoryActivities
    from aios.activities.models import (
        CancelEffectInput,
        CheckProposalPolicyInput,
        DraftProposalInput,
        OpenProposalInput,
        OpenProposalResult,
        ProposalVersionRef,
        RecallCorrectionsInput,
        RecallMemoryInput,
        RememberCorrectionInput,
        RememberInput,
        RetractProposalInput,
        ReviseProposalInput,
        SendProposalInput,
    )
    from aios.activities.proposals import EDITABLE_PROPOSAL_FIELDS, ProposalActivities
    from aios.agents.corrections import CorrectionHint
    from aios.converter import ProcessInput
    from aios.errors import InvalidInput
    from aios.kernel.money import LineItem, format_amount, parse_amount
    from aios.kernel.policy import BillingPolicy, GatePolicy, ProposalPolicy
    from aios.kernel.text import PastedText, Text
    from aios.memory.store import RecalledMemory
    from aios.workflows import versions
    from aios.workflows.agent_steps import AgentStepStopped, run_agent_step
    from aios.workflows.billing import BillingInput, BillingWorkflow, billing_workflow_id
    from aios.workflows.gates import GateOutcome
    from aios.workflows.mirrors import CONNECTOR_FABRIC, mirror_deal, notify, shown
    from aios.workflows.process import Process
    from aios.workflows.progress import ProposalProgress
    from aios.workflows.recall import OPERATOR_CORRECTIONS, recall_for_draft
    from aios.workflows.steps import record, step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT, KERNEL_WRITE, MEMORY
    from aios.workflows.waiting import Schedule, wait_until

__all__ = [
    "CLIENT_RESPONSE_SIGNAL",
    "ClientResponse",
    "ProposalInput",
    "ProposalResult",
    "ProposalWorkflow",
    "proposal_workflow_id",
]

PROCESS_NAME = "proposal"
CLIENT_RESPONSE_SIGNAL = "client_response"
OUTCOME_KIND = "proposal_outcome"
# A client's answer that arrives while its version is being sent (the email is out, the run has
# not yet heard that the send step finished: a slow or killed worker) is kept, not rejected.
EARLY_ANSWER = "early-client-answer"
PROPOSAL_AGENT = "proposal"


def proposal_workflow_id(proposal_id: str) -> str:
    return f"{PROCESS_NAME}/{proposal_id}"


class ProposalInput(ProcessInput):
    proposal_id: str
    client_key: str
    scope: PastedText = Field(min_length=1, max_length=20_000)
    currency: str
    budget_hint_minor: int | None = None
    deadline: date | None = None
    provider: str = "bank_transfer"
    policy: ProposalPolicy = Field(default_factory=ProposalPolicy)
    billing_policy: BillingPolicy = Field(default_factory=BillingPolicy)
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)
    # The draft applies the operator's corrections learnt at earlier proposal gates.
    apply_corrections: bool = True


class ClientResponse(BaseModel):
    """The payload of signal ``client_response``.

    ``{"response": "accept" | "decline" | "counter", "note": "why",
    "proposed_total": "4200.00", "version": 2}``; ``proposed_total`` (major units of the
    proposal's currency) is required for ``counter`` and not allowed otherwise; ``version``,
    when given, must be the version the client has.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    response: Literal["accept", "decline", "counter"]
    note: Text = Field(default="", max_length=2000)
    proposed_total: Decimal | None = None
    version: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _total_matches_response(self) -> ClientResponse:
        if self.response == "counter" and self.proposed_total is None:
            raise ValueError("proposed_total: a counter needs a proposed total")
        if self.response != "counter" and self.proposed_total is not None:
            raise ValueError("proposed_total: only allowed with response 'counter'")
        return self


class ProposalResult(BaseModel):
    status: Literal["accepted", "declined", "rejected", "expired"]
    proposal_id: str
    version: int
    total: str
    reason: str = ""
    billing_workflow_id: str | None = None
    memory_id: str | None = None


@workflow.defn(name="ProposalWorkflow")
class ProposalWorkflow(Process):
    """One proposal to one client, from draft to the client's answer.

    Id: ``proposal/<proposal-id>``. Input ``ProposalInput``, result ``ProposalResult``.

    An edit at the ``proposal`` gate is remembered as an ``operator_correction``: the next
    proposal for a similar client gets it (its terms apply it; a hosted model reads it).

    Signals: ``decide`` (``GateDecision``) answers the ``proposal`` gate, whose editable fields
    are ``total``, ``discount_pct`` and ``terms`` (an edit makes a new version), and the agent
    gates ``budget`` and ``agent`` of the drafting step (see ``workflows.agent_steps``);
    ``client_response`` (``ClientResponse``) records the client's answer.
    Queries: ``pending_gates``; ``progress`` -> ``ProposalProgress``.
    Search attributes: ``AiosProcess=proposal``, ``AiosClient``, ``AiosAwaitingApproval``,
    ``AiosCostUsd``.

    When HubSpot is configured, the first send creates a deal (archived by the saga on a later
    failure) that ends ``won`` or ``lost``; a configured webhook gets ``proposal.<end state>``
    for every proposal that was sent.

    End states: ``accepted`` (billing started as a child that outlives this run), ``declined``,
    ``rejected`` (the operator said no, at the proposal or an agent gate; nothing was sent),
    ``expired`` (no decision at the gate,
    or no answer from the client in time). Failed or cancelled after sending: the client gets a
    retraction (saga).
    """

    NAME = PROCESS_NAME

    def __init__(self) -> None:
        super().__init__()
        self._proposal_id = ""
        self._currency = "USD"
        self._current: ProposalVersionRef | None = None
        self._sent: ProposalVersionRef | None = None
        self._awaiting_client = False
        self._response: ClientResponse | None = None
        # The version whose send step runs, and the version an early answer is for.
        self._sending: ProposalVersionRef | None = None
        self._early_for: int | None = None
        # Who the client is, for a correction learnt from an edit (key, name, profile).
        self._client: tuple[str, str, str] = ("", "", "")
        self.accept(CLIENT_RESPONSE_SIGNAL, ClientResponse, self._client_response)

    # --- messages ----------------------------------------------------------------------

    def _client_response(self, response: ClientResponse) -> str | None:
        problem = self._check_response(response)
        if problem is None:
            self._response = response
            if not self._awaiting_client and self._sending is not None:
                self._early_for = self._sending.version
        return problem

    def _version_out(self) -> ProposalVersionRef | None:
        """The version the client may be answering: the one out while the run waits for the
        answer, else the one being sent (its email may already be out)."""
        if self._awaiting_client:
            return self._sent
        if self._sending is not None and versions.patched(EARLY_ANSWER):
            return self._sending
        return None

    def _check_response(self, response: ClientResponse) -> str | None:
        sent = self._version_out()
        if sent is None:
            return "the proposal is not waiting for the client's answer"
        # An answer already taken in this round (the response of an earlier round, to an
        # earlier version, does not count).
        taken = self._response is not None if self._awaiting_client else self._early_for is not None
        if taken:
            return "the client's answer is already recorded"
        if response.version is not None and response.version != sent.version:
            return f"version: {response.version} is not the version out (v{sent.version})"
        if response.proposed_total is not None:
            try:
                total = parse_amount(response.proposed_total, sent.currency)
            except InvalidInput as exc:
                return f"proposed_total: {exc}".replace("amount: ", "")
            if total <= 0:
                return "proposed_total: must be more than zero"
            if total >= sent.total_minor:
                return (
                    f"proposed_total: {format_amount(total, sent.currency)} is not below the "
                    f"current total {format_amount(sent.total_minor, sent.currency)}; "
                    "to agree, send accept"
                )
        return None

    @workflow.query(name="progress")
    def progress(self) -> ProposalProgress:
        current = self._current
        return ProposalProgress(
            process=PROCESS_NAME,
            proposal_id=self._proposal_id,
            steps_done=list(self._steps),
            pending_gates=self.pending_gates(),
            compensations_pending=self._saga.pending,
            waiting_for="client_response" if self._awaiting_client else None,
            takes_answer=self._awaiting_client or self._sending is not None,
            version=current.version if current else 0,
            total=format_amount(current.total_minor, current.currency) if current else "",
            total_minor=current.total_minor if current else None,
            currency=current.currency if current else "",
            rejected_signals=self.signal_log.total,
            last_rejection=self.signal_log.last,
        )

    # --- the process -------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ProposalInput) -> ProposalResult:
        self._proposal_id = inp.proposal_id
        self._currency = inp.currency
        self.begin(inp.client_key, tracks_cost=True)
        return await self.guard(lambda: self._propose(inp), entity=f"proposal:{inp.proposal_id}")

    async def _propose(self, inp: ProposalInput) -> ProposalResult:
        entity = f"proposal:{inp.proposal_id}"
        client_entity = f"client:{inp.client_key}"
        opened = await step(
            ProposalActivities.open_proposal,
            OpenProposalInput(
                idempotency_key=step_key("open"),
                proposal_id=inp.proposal_id,
                client_key=inp.client_key,
                scope=inp.scope,
                currency=inp.currency,
                budget_hint_minor=inp.budget_hint_minor,
                deadline=inp.deadline,
            ),
            KERNEL_WRITE,
        )
        self._done("open")

        profile = f"{opened.client_name}. {opened.segment}. {inp.scope[:2000]}"
        (history, similar), learnt = await recall_for_draft(
            [
                RecallMemoryInput(query=inp.scope, entity=client_entity, limit=5),
                RecallMemoryInput(
                    query=f"{opened.segment}. {inp.scope}", kinds=[OUTCOME_KIND], limit=5
                ),
            ],
            RecallCorrectionsInput(agent=PROPOSAL_AGENT, query=profile),
            apply=inp.apply_corrections,
        )
        memories: dict[str, RecalledMemory] = {m.id: m for m in history.memories}
        for m in similar.memories:
            memories.setdefault(m.id, m)
        self._done("recall")
        self._client = (inp.client_key, opened.client_name, profile)
        corrections: list[CorrectionHint] = []
        if learnt is not None:
            corrections = learnt
            self._done("recall-corrections")

        valid_until = workflow.now() + inp.policy.expire_after
        try:
            drafted = await run_agent_step(
                self,
                ProposalActivities.draft_proposal,
                lambda controls: DraftProposalInput(
                    idempotency_key=step_key("draft"),
                    proposal_id=inp.proposal_id,
                    client_key=inp.client_key,
                    valid_until=valid_until,
                    payment_terms_days=max(inp.billing_policy.payment_terms.days, 1),
                    memories=list(memories.values()),
                    controls=controls,
                    corrections=corrections,
                ),
                title=f"Proposal {inp.proposal_id} for {opened.client_name}",
                gate_policy=inp.gate_policy,
                entity=entity,
                on_cost=self.set_cost,
            )
        except AgentStepStopped as stopped:
            await self.end(stopped.status, entity, {"reason": stopped.reason})
            return await self.close(
                ProposalResult(
                    status="expired" if stopped.status == "expired" else "rejected",
                    proposal_id=inp.proposal_id,
                    version=0,
                    total="",
                    reason=stopped.reason,
                )
            )
        assert drafted.version is not None
        version = drafted.version
        self._current = version
        self._done("draft")

        counters: list[str] = []
        while True:
            verdict = await step(
                ProposalActivities.check_proposal_policy,
                CheckProposalPolicyInput(
                    idempotency_key=step_key(f"policy/v{version.version}"),
                    version_id=version.version_id,
                    policy=inp.policy,
                ),
                KERNEL_WRITE,
            )
            self._done(f"policy/v{version.version}:{verdict.rule}")
            if verdict.needs_approval:
                outcome = await self._approval(inp, opened.client_name, version, verdict.reasons)
                if outcome.status in ("rejected", "expired"):
                    reason = (
                        (outcome.decision.comment if outcome.decision else "")
                        or "(no reason given)"
                        if outcome.status == "rejected"
                        else f"no decision within {inp.gate_policy.expire_after}"
                    )
                    return await self._close(
                        inp, outcome.status, version, reason, entity, remember=False
                    )
                if outcome.status == "edited" and outcome.decision is not None:
                    version = await self._apply_edit(version, outcome)
                    self._current = version

            self._sending = version
            await step(
                ConnectorActivities.send_proposal,
                SendProposalInput(
                    idempotency_key=step_key(f"send/v{version.version}"),
                    version_id=version.version_id,
                    to=opened.client_email,
                    client_name=opened.client_name,
                    valid_until=valid_until,
                ),
                CONNECTOR_EFFECT,
            )
            first_send = self._sent is None
            if first_send:
                self._saga.add(
                    "retract-proposal", lambda: self._retract(opened.client_email, opened)
                )
            self._sent = version
            self._done(f"send/v{version.version}")
            if first_send and versions.patched(CONNECTOR_FABRIC):
                deal = await mirror_deal(inp.proposal_id, "create")
                if deal.skipped is None:
                    self._saga.add("archive-deal", lambda: mirror_deal(inp.proposal_id, "archive"))
                self._done(shown("crm-deal", deal))

            response = await self._await_client(inp, opened, version, valid_until)
            if response is None:
                return await self._close(
                    inp,
                    "expired",
                    version,
                    f"no answer by {valid_until:%Y-%m-%d %H:%M} UTC",
                    entity,
                    counters=counters,
                )
            if response.response == "decline":
                return await self._close(
                    inp,
                    "declined",
                    version,
                    response.note or "(no reason given)",
                    entity,
                    counters=counters,
                )
            if response.response == "accept":
                break
            assert response.proposed_total is not None
            proposed = parse_amount(response.proposed_total, version.currency)
            counters.append(
                f"v{version.version} {format_amount(version.total_minor, version.currency)} "
                f"countered at {format_amount(proposed, version.currency)}"
                + (f" ({response.note})" if response.note else "")
            )
            version = await step(
                ProposalActivities.revise_proposal,
                ReviseProposalInput(
                    idempotency_key=step_key(f"counter/v{version.version + 1}"),
                    base_version_id=version.version_id,
                    source="counter",
                    author="client",
                    note=response.note,
                    total_minor=proposed,
                ),
                KERNEL_WRITE,
            )
            self._current = version
            self._done(f"counter/v{version.version}")

        # Accepted: the offer stands; nothing to retract from here on.
        self._saga.discard("retract-proposal")
        billing_id = billing_workflow_id(inp.proposal_id)
        result = await self._close(
            inp,
            "accepted",
            version,
            self._response_note(),
            entity,
            counters=counters,
            billing_id=billing_id,
        )
        await workflow.start_child_workflow(
            BillingWorkflow.run,
            BillingInput(
                invoice_id=inp.proposal_id,
                client_key=inp.client_key,
                currency=version.currency,
                line_items=_invoice_lines(inp.proposal_id, version),
                proposal_id=inp.proposal_id,
                provider=inp.provider,
                policy=inp.billing_policy,
                gate_policy=inp.gate_policy,
            ),
            id=billing_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"Bill {opened.client_name}: "
            f"{format_amount(version.total_minor, version.currency)}",
        )
        self._done("billing-started")
        return await self.close(result)

    def _response_note(self) -> str:
        return (self._response.note if self._response else "") or ""

    async def _approval(
        self,
        inp: ProposalInput,
        client_name: str,
        version: ProposalVersionRef,
        reasons: list[str],
    ) -> GateOutcome:
        total = format_amount(version.total_minor, version.currency)
        lines = "; ".join(f"{i.quantity} x {i.description}" for i in version.line_items)
        return await self.wait_for_decision(
            gate="proposal",
            title=f"Proposal {inp.proposal_id} v{version.version} for {client_name}",
            summary=f"{total} ({version.discount_pct}% off): {'; '.join(reasons)}. {lines}",
            drafted_by=version.call.label if version.call else None,
            policy=inp.gate_policy,
            editable_fields=list(EDITABLE_PROPOSAL_FIELDS),
            entity=f"proposal:{inp.proposal_id}",
            amount=total,
            check_edits=lambda edits: _parse_edits(version, edits)[1],
        )

    async def _apply_edit(
        self, version: ProposalVersionRef, outcome: GateOutcome
    ) -> ProposalVersionRef:
        assert outcome.decision is not None
        (total_minor, discount_pct, terms), _ = _parse_edits(version, outcome.decision.edits)
        revised = await step(
            ProposalActivities.revise_proposal,
            ReviseProposalInput(
                idempotency_key=step_key(f"edit/v{version.version + 1}"),
                base_version_id=version.version_id,
                source="edit",
                author=outcome.decision.approver,
                note=outcome.decision.comment,
                total_minor=total_minor,
                discount_pct=discount_pct,
                terms=terms,
            ),
            KERNEL_WRITE,
        )
        self._done(f"edit/v{revised.version}")
        if versions.patched(OPERATOR_CORRECTIONS):
            client_key, client_name, profile = self._client
            await step(
                MemoryActivities.remember_correction,
                RememberCorrectionInput(
                    idempotency_key=step_key(f"remember-correction/v{revised.version}"),
                    agent=PROPOSAL_AGENT,
                    gate="proposal",
                    client_key=client_key,
                    client_name=client_name,
                    client_profile=profile,
                    document="proposal_version",
                    draft_before=version.version_id,
                    draft_after=revised.version_id,
                    approver=outcome.decision.approver,
                    comment=outcome.decision.comment,
                ),
                MEMORY,
            )
            self._done(f"remember-correction/v{revised.version}")
        return revised

    async def _await_client(
        self,
        inp: ProposalInput,
        opened: OpenProposalResult,
        version: ProposalVersionRef,
        valid_until: datetime,
    ) -> ClientResponse | None:
        early = self._early_for == version.version
        self._response = self._response if early else None
        self._early_for = None
        self._awaiting_client = True
        sent_at = workflow.now()
        schedule = Schedule(
            reminders=[t for t in inp.policy.follow_up_times(sent_at) if t < valid_until],
            deadline=valid_until,
        )

        async def follow_up(n: int) -> None:
            await step(
                ConnectorActivities.send_proposal,
                SendProposalInput(
                    idempotency_key=step_key(f"follow-up/v{version.version}/{n}"),
                    version_id=version.version_id,
                    to=opened.client_email,
                    client_name=opened.client_name,
                    valid_until=valid_until,
                    follow_up=n,
                ),
                CONNECTOR_EFFECT,
            )
            self._done(f"follow-up/v{version.version}/{n}")

        self.set_details(self._answer_details(version, valid_until))
        answered = await wait_until(
            lambda: self._response is not None,
            schedule,
            remind=follow_up,
            signals=self.signal_log,
            summary=f"client answer to v{version.version}",
            unsent=lambda n: CancelEffectInput(
                idempotency_key=step_key(f"follow-up/v{version.version}/{n}"),
                connector="email",
                operation="send_proposal",
                reason="the client answered before this follow-up was sent",
            ),
        )
        self._awaiting_client = False
        self._sending = None
        await self.signal_log.flush()
        response = self._response if answered else None
        await record(
            "proposal.client_responded" if response else "proposal.no_answer",
            f"proposal:{inp.proposal_id}",
            {
                "version": version.version,
                "response": response.response if response else None,
                "note": response.note if response else "",
                "proposed_total": str(response.proposed_total)
                if response and response.proposed_total is not None
                else None,
                "follow_ups_sent": schedule.sent,
            },
            key=f"answer/v{version.version}",
        )
        return response

    def _answer_details(self, version: ProposalVersionRef, valid_until: datetime) -> str:
        info = workflow.info()
        pid = self._proposal_id
        payload = json.dumps({"response": "accept"})
        return "\n".join(
            [
                f"**Waiting for the client's answer** to v{version.version} "
                f"({format_amount(version.total_minor, version.currency)}), until "
                f"{valid_until:%Y-%m-%d %H:%M} UTC.",
                "",
                f"- record it: `aios respond {pid} accept`, `aios respond {pid} decline --note "
                f'"why"` or `aios respond {pid} counter --total 4000 --note "..."`',
                f"- or: `temporal workflow signal --namespace {info.namespace} --workflow-id "
                f"{info.workflow_id} --name {CLIENT_RESPONSE_SIGNAL} --input '{payload}'`",
            ]
        )

    async def _retract(self, to: str, opened: OpenProposalResult) -> None:
        assert self._sent is not None
        await step(
            ConnectorActivities.retract_proposal,
            RetractProposalInput(
                idempotency_key=step_key("retract"),
                version_id=self._sent.version_id,
                to=to,
                client_name=opened.client_name,
                reason="the proposal process did not complete",
            ),
            CONNECTOR_EFFECT,
        )

    async def _close(
        self,
        inp: ProposalInput,
        status: Literal["accepted", "declined", "rejected", "expired"],
        version: ProposalVersionRef,
        reason: str,
        entity: str,
        *,
        remember: bool = True,
        counters: list[str] | None = None,
        billing_id: str | None = None,
    ) -> ProposalResult:
        total = format_amount(version.total_minor, version.currency)
        memory_id = None
        if remember:
            history = "; ".join(counters or []) or "none"
            memory = await step(
                MemoryActivities.remember,
                RememberInput(
                    idempotency_key=step_key(f"remember-{status}"),
                    entity=f"client:{inp.client_key}",
                    kind=OUTCOME_KIND,
                    text=(
                        # What code decided first, client text (reason, scope) last, so a
                        # reader of the first "Outcome:" always gets the real one.
                        f"Proposal {inp.proposal_id} v{version.version}. Outcome: {status}. "
                        f"Price: {total} (list "
                        f"{format_amount(version.subtotal_minor, version.currency)}, "
                        f"discount {version.discount_pct}%). "
                        f"Reason: {reason or 'not given'}. Counters: {history}. "
                        f"Scope: {' '.join(inp.scope.split())[:600]}"
                    ),
                ),
                MEMORY,
            )
            memory_id = memory.id
            self._done("remember")
        await self.end(
            status,
            entity,
            {
                "version": version.version,
                "total": total,
                "reason": reason,
                "memory_id": memory_id,
                "billing_workflow_id": billing_id,
            },
        )
        if self._sent is not None and versions.patched(CONNECTOR_FABRIC):
            # The client answered (or the process ended after sending): the deal is settled.
            self._saga.discard("archive-deal")
            await mirror_deal(inp.proposal_id, "won" if status == "accepted" else "lost")
            await notify(
                f"proposal.{status}",
                {
                    "proposal_id": inp.proposal_id,
                    "client_key": inp.client_key,
                    "version": version.version,
                    "total": total,
                    "reason": reason,
                    "billing_workflow_id": billing_id,
                },
            )
        result = ProposalResult(
            status=status,
            proposal_id=inp.proposal_id,
            version=version.version,
            total=total,
            reason=reason,
            billing_workflow_id=billing_id,
            memory_id=memory_id,
        )
        if status != "accepted":  # accepted: the caller starts billing, then closes
            return await self.close(result)
        return result


ParsedEdits = tuple[int | None, Decimal | None, str | None]


def _parse_edits(
    version: ProposalVersionRef, edits: dict[str, str]
) -> tuple[ParsedEdits, str | None]:
    """The operator's edits as (total, discount, terms), or a line saying what is wrong.

    Checked when the ``decide`` signal arrives, so a bad edit is rejected and the gate keeps
    waiting instead of failing the run.
    """
    none: ParsedEdits = (None, None, None)
    if "total" in edits and "discount_pct" in edits:
        return none, "edits: give total or discount_pct, not both"
    total = discount = None
    if "total" in edits:
        try:
            total = parse_amount(edits["total"], version.currency)
        except InvalidInput as exc:
            return none, f"edits.total: {exc}".replace("amount: ", "")
        if total > version.subtotal_minor:
            listed = format_amount(version.subtotal_minor, version.currency)
            return none, f"edits.total: above the list price {listed}"
    if "discount_pct" in edits:
        try:
            discount = Decimal(edits["discount_pct"].strip().rstrip("%"))
        except ArithmeticError:
            return none, f"edits.discount_pct: {edits['discount_pct']!r} is not a number"
        if not discount.is_finite() or not 0 <= discount <= 100:
            return none, "edits.discount_pct: must be between 0 and 100"
    terms = edits.get("terms")
    if terms is not None and not terms.strip():
        return none, "edits.terms: must not be empty"
    return (total, discount, terms), None


def _invoice_lines(proposal_id: str, version: ProposalVersionRef) -> list[LineItem]:
    """The accepted version as invoice lines: its own lines, or one fixed-price line if a
    discount applies (so the invoice total is exactly the accepted total)."""
    if version.total_minor == version.subtotal_minor:
        return list(version.line_items)
    listed = "; ".join(f"{i.quantity} x {i.description}" for i in version.line_items)
    return [
        LineItem(
            description=(
                f"Fixed price as accepted in proposal {proposal_id} v{version.version}: {listed}"
            )[:300],
            quantity=1,
            unit_price_minor=version.total_minor,
        )
    ]
