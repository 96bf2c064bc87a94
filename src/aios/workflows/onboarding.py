"""Client onboarding, the spine process."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.agents import EDITABLE_DRAFT_FIELDS, AgentActivities
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.crm import CrmActivities
    from aios.activities.kernel import KernelActivities
    from aios.activities.memory import MemoryActivities
    from aios.activities.models import (
        CancelKickoffInput,
        ClassifyIntakeInput,
        DraftWelcomeInput,
        MirrorClientInput,
        RecallMemoryInput,
        RecordEventInput,
        RememberInput,
        ReviseDraftInput,
        SendWelcomeInput,
        UpsertClientInput,
    )
    from aios.converter import ProcessInput
    from aios.kernel.models import Client, ClientIntake
    from aios.kernel.policy import GatePolicy
    from aios.workflows.agent_steps import AgentStepStopped, run_agent_step
    from aios.workflows.attributes import CLIENT, COST_USD, PROCESS
    from aios.workflows.gates import GateHost
    from aios.workflows.mirrors import CONNECTOR_FABRIC, kickoff_event, notify, shown
    from aios.workflows.progress import OnboardingProgress
    from aios.workflows.saga import Saga
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT, KERNEL_WRITE, MEMORY

__all__ = [
    "OnboardingInput",
    "OnboardingResult",
    "OnboardingWorkflow",
    "kickoff_time",
    "onboarding_workflow_id",
]

PROCESS_NAME = "onboarding"
KICKOFF_LEAD = timedelta(days=3)
KICKOFF_AT = time(10, 0)
MEMORY_KINDS = ["onboarding_summary", "decision"]


def onboarding_workflow_id(client_key: str) -> str:
    return f"{PROCESS_NAME}/{client_key}"


def kickoff_time(now: datetime) -> datetime:
    """10:00 UTC on the first weekday at least three calendar days after ``now``'s date."""
    day = (now + KICKOFF_LEAD).date()
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, KICKOFF_AT, tzinfo=now.tzinfo)


class OnboardingInput(ProcessInput):
    client: ClientIntake
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)


class OnboardingResult(BaseModel):
    status: Literal["completed", "rejected", "expired"]
    client_key: str
    reason: str = ""
    draft_id: str | None = None
    message_id: str | None = None
    memory_id: str | None = None
    cost_usd: float = 0.0


@workflow.defn(name="OnboardingWorkflow")
class OnboardingWorkflow(GateHost):
    """Onboards one client: intake, record, recall, draft, approval, welcome, memory.

    Id: ``onboarding/<client-key>``. Input ``OnboardingInput``, result ``OnboardingResult``.

    Signals: ``decide`` (``GateDecision`` JSON) answers the ``welcome`` gate; ``edit`` may change
    ``subject`` and ``body`` of the welcome email and approves the edited version. It also
    answers the agent gates ``budget`` and ``agent`` (see ``workflows.agent_steps``).
    Queries: ``pending_gates`` -> list of ``PendingGate``; ``progress`` -> ``OnboardingProgress``.
    Search attributes: ``AiosProcess=onboarding``, ``AiosClient=<key>``,
    ``AiosAwaitingApproval`` (true while the gate waits), ``AiosCostUsd`` (agent spend).

    After the approval it also puts the kickoff in the operator's CalDAV calendar (same UID as
    the emailed invitation), mirrors the client as a HubSpot contact, and at the end delivers
    webhook ``client.onboarded``; each only when that connector is configured.

    End states: ``completed``; ``rejected`` (operator said no to the welcome or to an agent gate,
    nothing was sent); ``expired`` (no decision before the policy's expiry, nothing was sent);
    failed or cancelled after the
    welcome went out, in which case the kickoff (calendar event and invitation) is cancelled
    (saga) before the run ends.
    """

    def __init__(self) -> None:
        super().__init__()
        self._client_key = ""
        self._steps: list[str] = []
        self._saga = Saga()
        self._cost = 0.0

    @workflow.query(name="progress")
    def progress(self) -> OnboardingProgress:
        return OnboardingProgress(
            process=PROCESS_NAME,
            client_key=self._client_key,
            steps_done=list(self._steps),
            pending_gates=self.pending_gates(),
            compensations_pending=self._saga.pending,
            rejected_signals=self.signal_log.total,
            last_rejection=self.signal_log.last,
        )

    def _done(self, name: str) -> None:
        self._steps.append(name)

    def _set_cost(self, run_cost_usd: float) -> None:
        self._cost = round(run_cost_usd, 6)
        workflow.upsert_search_attributes([COST_USD.value_set(self._cost)])

    @workflow.run
    async def run(self, inp: OnboardingInput) -> OnboardingResult:
        intake = inp.client
        key = intake.key
        entity = f"client:{key}"
        self._client_key = key
        workflow.upsert_search_attributes(
            [PROCESS.value_set(PROCESS_NAME), CLIENT.value_set(key), COST_USD.value_set(0.0)]
        )

        try:
            classified = await run_agent_step(
                self,
                AgentActivities.classify_intake,
                lambda controls: ClassifyIntakeInput(
                    idempotency_key=step_key("intake"),
                    client_key=key,
                    name=intake.name,
                    notes=intake.notes,
                    controls=controls,
                ),
                title=f"Intake for {intake.name}",
                gate_policy=inp.gate_policy,
                entity=entity,
                on_cost=self._set_cost,
            )
            self._done("intake")
            facts = classified.facts
            assert facts is not None

            await step(
                KernelActivities.upsert_client,
                UpsertClientInput(
                    idempotency_key=step_key("client"),
                    client=Client(
                        key=key,
                        name=intake.name,
                        email=str(intake.email),
                        notes=intake.notes,
                        segment=facts.segment,
                        facts=facts.model_dump(),
                    ),
                ),
                KERNEL_WRITE,
            )
            self._done("client")

            recalled = await step(
                MemoryActivities.recall_memory,
                RecallMemoryInput(
                    query=f"{intake.name}. {facts.segment}. {facts.summary}", kinds=MEMORY_KINDS
                ),
                MEMORY,
            )
            self._done("recall")

            kickoff_at = kickoff_time(workflow.now())
            draft = await run_agent_step(
                self,
                AgentActivities.draft_welcome,
                lambda controls: DraftWelcomeInput(
                    idempotency_key=step_key("draft"),
                    client_key=key,
                    client_name=intake.name,
                    notes=intake.notes,
                    facts=facts,
                    kickoff_at=kickoff_at,
                    memories=recalled.memories,
                    controls=controls,
                ),
                title=f"Welcome email for {intake.name}",
                gate_policy=inp.gate_policy,
                entity=entity,
                on_cost=self._set_cost,
            )
            self._done("draft")
        except AgentStepStopped as stopped:
            await self._finish(stopped.status, entity, {"reason": stopped.reason})
            await workflow.wait_condition(workflow.all_handlers_finished)
            return OnboardingResult(
                status="expired" if stopped.status == "expired" else "rejected",
                client_key=key,
                reason=stopped.reason,
                cost_usd=self._cost,
            )

        outcome = await self.wait_for_decision(
            gate="welcome",
            title=f"Welcome email for {intake.name}",
            summary=f"{draft.subject}: {draft.preview}",
            drafted_by=draft.call.label if draft.call else None,
            policy=inp.gate_policy,
            editable_fields=list(EDITABLE_DRAFT_FIELDS),
            entity=entity,
        )
        self._done(f"gate:{outcome.status}")
        if outcome.status in ("rejected", "expired"):
            reason = (
                (outcome.decision.comment if outcome.decision else "") or "(no reason given)"
                if outcome.status == "rejected"
                else f"no decision within {inp.gate_policy.expire_after}"
            )
            await self._finish(outcome.status, entity, {"reason": reason})
            await workflow.wait_condition(workflow.all_handlers_finished)
            return OnboardingResult(
                status=outcome.status,
                client_key=key,
                reason=reason,
                draft_id=draft.draft_id,
                cost_usd=self._cost,
            )

        if outcome.status == "edited" and outcome.decision is not None:
            draft = await step(
                AgentActivities.revise_draft,
                ReviseDraftInput(
                    idempotency_key=step_key("draft-edit"),
                    draft_id=draft.draft_id,
                    edits=outcome.decision.edits,
                    editor=outcome.decision.approver,
                    comment=outcome.decision.comment,
                ),
                KERNEL_WRITE,
            )
            self._done("draft-edit")

        try:
            sent = await step(
                ConnectorActivities.send_welcome,
                SendWelcomeInput(
                    idempotency_key=step_key("send-welcome"),
                    draft_id=draft.draft_id,
                    to=str(intake.email),
                    client_name=intake.name,
                    kickoff_at=kickoff_at,
                ),
                CONNECTOR_EFFECT,
            )
            self._done("send-welcome")
            self._saga.add(
                "cancel-kickoff",
                lambda: step(
                    ConnectorActivities.cancel_kickoff,
                    CancelKickoffInput(
                        idempotency_key=step_key("cancel-kickoff"),
                        to=str(intake.email),
                        client_name=intake.name,
                        kickoff_at=kickoff_at,
                        reason="onboarding did not complete",
                    ),
                    CONNECTOR_EFFECT,
                ),
            )

            if workflow.patched(CONNECTOR_FABRIC):
                booked = await kickoff_event(
                    str(intake.email), intake.name, kickoff_at, saga=self._saga
                )
                self._done(shown("kickoff-event", booked))
                mirrored = await step(
                    CrmActivities.mirror_client,
                    MirrorClientInput(
                        idempotency_key=step_key("crm-contact"),
                        client_key=key,
                        approval=outcome.event_key,
                    ),
                    CONNECTOR_EFFECT,
                )
                self._done(shown("crm-contact", mirrored))

            approver = outcome.decision.approver if outcome.decision else "policy"
            memory = await step(
                MemoryActivities.remember,
                RememberInput(
                    idempotency_key=step_key("remember-summary"),
                    entity=entity,
                    kind="onboarding_summary",
                    text=(
                        f"Onboarded {intake.name} ({facts.segment}). Request: {facts.summary} "
                        f"Services: {', '.join(facts.services) or 'not stated'}. "
                        f"Budget: {facts.budget_hint or 'not stated'}. "
                        f"Deadline: {facts.deadline_hint or 'not stated'}. "
                        f"Kickoff {kickoff_at:%Y-%m-%d %H:%M} UTC. Welcome approved by {approver}."
                    ),
                ),
                MEMORY,
            )
            self._done("remember")
            if workflow.patched(CONNECTOR_FABRIC):
                notified = await notify(
                    "client.onboarded",
                    {
                        "client_key": key,
                        "client_name": intake.name,
                        "segment": facts.segment,
                        "kickoff_at": kickoff_at.isoformat(),
                        "approved_by": approver,
                    },
                )
                self._done(shown("webhook", notified))
            await self._finish(
                "completed",
                entity,
                {"message_id": sent.message_id, "memory_id": memory.id, "draft_id": draft.draft_id},
            )
        except BaseException as exc:  # unwind decides whether this ends the run
            await self._saga.unwind(
                exc, lambda status, details: self._finish(status, entity, details)
            )
            raise

        await workflow.wait_condition(workflow.all_handlers_finished)
        return OnboardingResult(
            status="completed",
            client_key=key,
            draft_id=draft.draft_id,
            message_id=sent.message_id,
            memory_id=memory.id,
            cost_usd=self._cost,
        )

    async def _finish(self, status: str, entity: str, payload: dict) -> None:
        await step(
            KernelActivities.record_event,
            RecordEventInput(
                idempotency_key=step_key(f"onboarding-{status}"),
                kind=f"onboarding.{status}",
                entity=entity,
                payload=payload,
            ),
            KERNEL_WRITE,
        )
        self._done(status)
