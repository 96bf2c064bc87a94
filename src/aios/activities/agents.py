"""Agent activities: run an agent, store what it produced, log the call as an event.

Every agent step goes through ``run_agent``: the runner makes (or reuses) the model calls and
writes the cost ledger; the step either returns its output or an ``AgentHold`` (over budget, or
no usable answer) that the workflow turns into a gate. ``run_cost_usd`` is what the whole run
has spent on models so far, from the ledger, for search attribute ``AiosCostUsd``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    AgentAttempt,
    AgentCall,
    AgentControls,
    AgentHold,
    ClassifyIntakeInput,
    ClassifyIntakeResult,
    DraftResult,
    DraftWelcomeInput,
    ReviseDraftInput,
)
from aios.agents.base import Agent, AgentResult, Attempt
from aios.agents.intake import IntakeAgent, IntakeRequest
from aios.agents.runner import AgentRunner, CallContext
from aios.agents.welcome import MemoryHint, WelcomeAgent, WelcomeRequest
from aios.errors import InvalidInput
from aios.identity import zone
from aios.kernel.models import Draft
from aios.kernel.store import KernelStore

__all__ = ["EDITABLE_DRAFT_FIELDS", "AgentActivities", "AgentStep", "run_agent"]

EDITABLE_DRAFT_FIELDS = ("subject", "body")

InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)


def _attempt(a: Attempt) -> AgentAttempt:
    return AgentAttempt(
        tier=a.tier,
        model=a.model,
        outcome=a.outcome,
        cost_usd=a.cost_usd,
        confidence=a.confidence,
        reason=a.reason,
        reused=a.reused,
    )


def _call(result: AgentResult[Any]) -> AgentCall:
    return AgentCall(
        model=result.model,
        confidence=result.confidence,
        cost_usd=result.cost_usd,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        provider=result.provider,
        tier=result.tier,
        attempts=[_attempt(a) for a in result.attempts],
    )


class AgentStep(BaseModel):
    """What ``run_agent`` hands back to an activity."""

    call: AgentCall | None = None
    hold: AgentHold | None = None
    run_cost_usd: float = 0.0


def run_agent(
    runner: AgentRunner,
    store: KernelStore,
    agent: Agent[InT, OutT],
    request: InT,
    *,
    key: str,
    controls: AgentControls,
    entity: str | None,
) -> tuple[AgentResult[OutT] | None, AgentStep]:
    """Run ``agent`` for the step ``key``; a hold is logged as event ``agent.held``."""
    info = activity.info()
    workflow_id = info.workflow_id or ""
    run_id = info.workflow_run_id or ""
    outcome = runner.run(
        agent,
        request,
        CallContext(
            key=key,
            workflow_id=workflow_id,
            run_id=run_id,
            process=workflow_id.split("/", 1)[0],
            approved_calls=frozenset(controls.approved_calls),
            use=controls.use,
            use_reason=controls.use_reason,
        ),
        beat=activity.heartbeat,
    )
    run_cost = float(store.costs.run_cost(workflow_id, run_id))
    if outcome.result is not None:
        return outcome.result, AgentStep(call=_call(outcome.result), run_cost_usd=run_cost)
    assert outcome.hold is not None
    held = outcome.hold
    hold = AgentHold(
        kind=held.kind,
        agent=agent.name,
        reason=held.reason,
        call_key=held.call_key,
        estimate_usd=held.estimate_usd,
        fallback=held.fallback,
        attempts=[_attempt(a) for a in outcome.attempts],
    )
    store.events.append(
        event_for_step(
            f"{key}/held/{len(outcome.attempts)}",
            "agent.held",
            entity=entity,
            payload=hold.model_dump(),
        )
    )
    return None, AgentStep(hold=hold, run_cost_usd=run_cost)


def _preview(body: str) -> str:
    line = " ".join(body.split())
    return line[:160] + ("..." if len(line) > 160 else "")


class AgentActivities:
    def __init__(
        self,
        store: KernelStore,
        runner: AgentRunner,
        *,
        operator_name: str,
        timezone: str = "UTC",
        intake: IntakeAgent | None = None,
        welcome: WelcomeAgent | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._operator_name = operator_name
        self._zone = zone(timezone)
        self._intake = intake or IntakeAgent()
        self._welcome = welcome or WelcomeAgent()

    @activity.defn(name="classify_intake")
    @translating_errors
    def classify_intake(self, inp: ClassifyIntakeInput) -> ClassifyIntakeResult:
        entity = f"client:{inp.client_key}"
        result, done = run_agent(
            self._runner,
            self._store,
            self._intake,
            IntakeRequest(name=inp.name, notes=inp.notes),
            key=inp.idempotency_key,
            controls=inp.controls,
            entity=entity,
        )
        if result is None or done.call is None:
            return ClassifyIntakeResult(hold=done.hold, run_cost_usd=done.run_cost_usd)
        call = done.call
        self._store.events.append(
            event_for_step(
                inp.idempotency_key,
                "agent.called",
                entity=entity,
                payload={
                    "agent": self._intake.name,
                    **call.model_dump(),
                    "segment": result.output.segment,
                },
            )
        )
        return ClassifyIntakeResult(facts=result.output, call=call, run_cost_usd=done.run_cost_usd)

    @activity.defn(name="draft_welcome")
    @translating_errors
    def draft_welcome(self, inp: DraftWelcomeInput) -> DraftResult:
        request = WelcomeRequest(
            client_name=inp.client_name,
            facts=inp.facts,
            kickoff_at=inp.kickoff_at.astimezone(self._zone),  # the draft words it in this zone
            operator_name=self._operator_name,
            notes=inp.notes,
            memories=[
                MemoryHint(id=m.id, text=m.text, entity=m.provenance.entity, score=m.score)
                for m in inp.memories
            ],
            corrections=inp.corrections,
        )
        result, done = run_agent(
            self._runner,
            self._store,
            self._welcome,
            request,
            key=inp.idempotency_key,
            controls=inp.controls,
            entity=f"client:{inp.client_key}",
        )
        if result is None or done.call is None:
            return DraftResult(hold=done.hold, run_cost_usd=done.run_cost_usd)
        call = done.call
        info = activity.info()
        draft = Draft(
            id=f"{inp.idempotency_key}/v1",
            workflow_id=info.workflow_id or "",
            run_id=info.workflow_run_id or "",
            kind="welcome",
            version=1,
            subject=result.output.subject,
            body=result.output.body,
            plan=result.output.plan,
            meta={
                "agent": self._welcome.name,
                "rationale": result.output.rationale,
                "memory_ids_given": result.memory_ids,
                "memory_ids_used": result.output.memory_ids_used,
                # The operator's corrections it was given and the ones it applied (cited).
                "corrections_given": [c.id for c in inp.corrections],
                "corrections": result.output.corrections_used,
                **call.model_dump(),
            },
        )
        stored = self._store.drafts.save(
            draft,
            event=event_for_step(
                inp.idempotency_key,
                "agent.called",
                entity=f"client:{inp.client_key}",
                payload={
                    "agent": self._welcome.name,
                    "draft_id": draft.id,
                    **call.model_dump(),
                    "memory_ids_used": result.output.memory_ids_used,
                    "corrections": result.output.corrections_used,
                },
            ),
        )
        return DraftResult(
            draft_id=stored.id,
            version=stored.version,
            subject=stored.subject,
            preview=_preview(stored.body),
            memory_ids_used=result.output.memory_ids_used,
            corrections_used=result.output.corrections_used,
            call=call,
            run_cost_usd=done.run_cost_usd,
        )

    @activity.defn(name="revise_draft")
    @translating_errors
    def revise_draft(self, inp: ReviseDraftInput) -> DraftResult:
        base = self._store.drafts.get(inp.draft_id)
        if base is None:
            raise InvalidInput(f"revise_draft: draft {inp.draft_id!r} does not exist")
        unknown = sorted(set(inp.edits) - set(EDITABLE_DRAFT_FIELDS))
        if unknown:
            raise InvalidInput(f"revise_draft: cannot edit field(s) {', '.join(unknown)}")
        changes = {k: v for k, v in inp.edits.items() if v.strip()}
        revised = base.model_copy(
            update={
                "id": f"{inp.idempotency_key}/v{base.version + 1}",
                "version": base.version + 1,
                **changes,
                "meta": {
                    **base.meta,
                    "edited_by": inp.editor,
                    "edit_comment": inp.comment,
                    "based_on": base.id,
                },
            }
        )
        stored = self._store.drafts.save(
            revised,
            event=event_for_step(
                inp.idempotency_key,
                "draft.revised",
                payload={
                    "draft_id": revised.id,
                    "based_on": base.id,
                    "editor": inp.editor,
                    "fields": sorted(changes),
                },
            ),
        )
        return DraftResult(
            draft_id=stored.id,
            version=stored.version,
            subject=stored.subject,
            preview=_preview(stored.body),
            memory_ids_used=list(base.meta.get("memory_ids_used", [])),
            corrections_used=list(base.meta.get("corrections", [])),
        )
