"""Agent activities: run an agent, store what it produced, log the call as an event."""

from __future__ import annotations

from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    AgentCall,
    ClassifyIntakeInput,
    ClassifyIntakeResult,
    DraftResult,
    DraftWelcomeInput,
    ReviseDraftInput,
)
from aios.agents.base import AgentResult
from aios.agents.intake import IntakeAgent, IntakeRequest
from aios.agents.welcome import MemoryHint, WelcomeAgent, WelcomeRequest
from aios.errors import InvalidInput
from aios.kernel.models import Draft
from aios.kernel.store import KernelStore

__all__ = ["EDITABLE_DRAFT_FIELDS", "AgentActivities"]

EDITABLE_DRAFT_FIELDS = ("subject", "body")


def _call(result: AgentResult) -> AgentCall:
    return AgentCall(
        model=result.model,
        confidence=result.confidence,
        cost_usd=result.cost_usd,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
    )


def _preview(body: str) -> str:
    line = " ".join(body.split())
    return line[:160] + ("..." if len(line) > 160 else "")


class AgentActivities:
    def __init__(
        self,
        store: KernelStore,
        *,
        operator_name: str,
        intake: IntakeAgent | None = None,
        welcome: WelcomeAgent | None = None,
    ) -> None:
        self._store = store
        self._operator_name = operator_name
        self._intake = intake or IntakeAgent()
        self._welcome = welcome or WelcomeAgent()

    @activity.defn(name="classify_intake")
    @translating_errors
    def classify_intake(self, inp: ClassifyIntakeInput) -> ClassifyIntakeResult:
        result = self._intake.run(IntakeRequest(name=inp.name, notes=inp.notes))
        call = _call(result)
        self._store.append_event(
            event_for_step(
                inp.idempotency_key,
                "agent.called",
                entity=f"client:{inp.client_key}",
                payload={
                    "agent": self._intake.name,
                    **call.model_dump(),
                    "segment": result.output.segment,
                },
            )
        )
        return ClassifyIntakeResult(facts=result.output, call=call)

    @activity.defn(name="draft_welcome")
    @translating_errors
    def draft_welcome(self, inp: DraftWelcomeInput) -> DraftResult:
        request = WelcomeRequest(
            client_name=inp.client_name,
            facts=inp.facts,
            kickoff_at=inp.kickoff_at,
            operator_name=self._operator_name,
            notes=inp.notes,
            memories=[
                MemoryHint(id=m.id, text=m.text, entity=m.provenance.entity, score=m.score)
                for m in inp.memories
            ],
        )
        result = self._welcome.run(request)
        call = _call(result)
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
                **call.model_dump(),
            },
        )
        stored = self._store.save_draft(
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
                },
            ),
        )
        return DraftResult(
            draft_id=stored.id,
            version=stored.version,
            subject=stored.subject,
            preview=_preview(stored.body),
            memory_ids_used=result.output.memory_ids_used,
            call=call,
        )

    @activity.defn(name="revise_draft")
    @translating_errors
    def revise_draft(self, inp: ReviseDraftInput) -> DraftResult:
        base = self._store.get_draft(inp.draft_id)
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
        stored = self._store.save_draft(
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
        )
