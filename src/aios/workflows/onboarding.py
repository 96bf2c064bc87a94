"""Client onboarding, the spine process."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.agents import EDITABLE_DRAFT_FIELDS, AgentActivities
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.kernel import KernelActivities
    from aios.activities.memory import MemoryActivities
    from aios.activities.models import (
        CancelKickoffInput,
        ClassifyIntakeInput,
        DraftWelcomeInput,
        RecallCorrectionsInput,
        RecallMemoryInput,
        RememberCorrectionInput,
        RememberInput,
        ReviseDraftInput,
        SendWelcomeInput,
        UpsertClientInput,
    )
    from aios.agents.corrections import CorrectionHint
    from aios.converter import ProcessInput
    from aios.kernel.models import Client, ClientIntake
    from aios.kernel.policy import GatePolicy, kickoff_time, known_timezone
    from aios.workflows import versions
    from aios.workflows.agent_steps import AgentStepStopped, run_agent_step
    from aios.workflows.mirrors import (
        CONNECTOR_FABRIC,
        kickoff_event,
        mirror_client,
        notify,
        shown,
    )
    from aios.workflows.process import Process
    from aios.workflows.progress import OnboardingProgress
    from aios.workflows.recall import OPERATOR_CORRECTIONS, recall_for_draft
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT, LOCAL_WRITE, MEMORY

__all__ = [
    "OnboardingInput",
    "OnboardingResult",
    "OnboardingWorkflow",
    "kickoff_time",
    "onboarding_workflow_id",
]

PROCESS_NAME = "onboarding"
MEMORY_KINDS = ["onboarding_summary", "decision"]
WELCOME_AGENT = "welcome"


def onboarding_workflow_id(client_key: str) -> str:
    return f"{PROCESS_NAME}/{client_key}"


class OnboardingInput(ProcessInput):
    client: ClientIntake
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)
    # The operator's timezone (IANA name): the kickoff is at 10:00 there.
    timezone: str = "UTC"
    # The welcome draft applies the operator's corrections learnt at earlier gates.
    apply_corrections: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_timezone(value)


class OnboardingResult(BaseModel):
    status: Literal["completed", "rejected", "expired"]
    client_key: str
    reason: str = ""
    draft_id: str | None = None
    message_id: str | None = None
    memory_id: str | None = None
    cost_usd: float = 0.0


@workflow.defn(name="OnboardingWorkflow")
class OnboardingWorkflow(Process):
    """Onboards one client: intake, record, recall, draft, approval, welcome, memory.

    Id: ``onboarding/<client-key>``. Input ``OnboardingInput``, result ``OnboardingResult``.

    Signals: ``decide`` (``GateDecision`` JSON) answers the ``welcome`` gate; ``edit`` may change
    ``subject`` and ``body`` of the welcome email and approves the edited version; the edit is
    remembered as an ``operator_correction`` the next welcome for a similar client applies. It also
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

    NAME = PROCESS_NAME
    END_KEY = "onboarding-{outcome}"

    def __init__(self) -> None:
        super().__init__()
        self._client_key = ""

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

    @workflow.run
    async def run(self, inp: OnboardingInput) -> OnboardingResult:
        self._client_key = inp.client.key
        self.begin(inp.client.key, tracks_cost=True)
        return await self.guard(lambda: self._onboard(inp), entity=f"client:{inp.client.key}")

    async def _onboard(self, inp: OnboardingInput) -> OnboardingResult:
        intake = inp.client
        key = intake.key
        entity = f"client:{key}"
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
                on_cost=self.set_cost,
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
                LOCAL_WRITE,
            )
            self._done("client")

            profile = f"{intake.name}. {facts.segment}. {facts.summary}"
            (recalled,), learnt = await recall_for_draft(
                [RecallMemoryInput(query=profile, kinds=MEMORY_KINDS)],
                RecallCorrectionsInput(agent=WELCOME_AGENT, query=profile),
                apply=inp.apply_corrections,
            )
            self._done("recall")
            corrections: list[CorrectionHint] = []
            if learnt is not None:
                corrections = learnt
                self._done("recall-corrections")

            kickoff_at = kickoff_time(workflow.now(), inp.timezone)
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
                    corrections=corrections,
                ),
                title=f"Welcome email for {intake.name}",
                gate_policy=inp.gate_policy,
                entity=entity,
                on_cost=self.set_cost,
            )
            self._done("draft")
        except AgentStepStopped as stopped:
            await self.end(stopped.status, entity, {"reason": stopped.reason})
            return await self.close(
                OnboardingResult(
                    status="expired" if stopped.status == "expired" else "rejected",
                    client_key=key,
                    reason=stopped.reason,
                    cost_usd=self._cost,
                )
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
            await self.end(outcome.status, entity, {"reason": reason})
            return await self.close(
                OnboardingResult(
                    status=outcome.status,
                    client_key=key,
                    reason=reason,
                    draft_id=draft.draft_id,
                    cost_usd=self._cost,
                )
            )

        if outcome.status == "edited" and outcome.decision is not None:
            drafted = draft
            draft = await step(
                AgentActivities.revise_draft,
                ReviseDraftInput(
                    idempotency_key=step_key("draft-edit"),
                    draft_id=draft.draft_id,
                    edits=outcome.decision.edits,
                    editor=outcome.decision.approver,
                    comment=outcome.decision.comment,
                ),
                LOCAL_WRITE,
            )
            self._done("draft-edit")
            if versions.patched(OPERATOR_CORRECTIONS):
                await step(
                    MemoryActivities.remember_correction,
                    RememberCorrectionInput(
                        idempotency_key=step_key("remember-correction"),
                        agent=WELCOME_AGENT,
                        gate="welcome",
                        client_key=key,
                        client_name=intake.name,
                        client_profile=profile,
                        draft_before=drafted.draft_id,
                        draft_after=draft.draft_id,
                        approver=outcome.decision.approver,
                        comment=outcome.decision.comment,
                    ),
                    MEMORY,
                )
                self._done("remember-correction")

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

        if versions.patched(CONNECTOR_FABRIC):
            booked = await kickoff_event(
                str(intake.email), intake.name, kickoff_at, saga=self._saga
            )
            self._done(shown("kickoff-event", booked))
            mirrored = await mirror_client(key, outcome.event_key)
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
        if versions.patched(CONNECTOR_FABRIC):
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
        await self.end(
            "completed",
            entity,
            {"message_id": sent.message_id, "memory_id": memory.id, "draft_id": draft.draft_id},
        )
        return await self.close(
            OnboardingResult(
                status="completed",
                client_key=key,
                draft_id=draft.draft_id,
                message_id=sent.message_id,
                memory_id=memory.id,
                cost_usd=self._cost,
            )
        )
