"""Onboarding: start it (once per client), tell how an earlier one ended, show its welcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.models import ClientIntake
from aios.kernel.store import KernelStore
from aios.operations.common import Started, one_line
from aios.workflows.onboarding import (
    OnboardingInput,
    OnboardingResult,
    OnboardingWorkflow,
    onboarding_workflow_id,
)

__all__ = [
    "ONBOARDING_ENDS",
    "WelcomeDocument",
    "earlier_onboarding",
    "require_client",
    "start_onboarding",
    "welcome_document",
]

ONBOARDING_ENDS = [
    f"onboarding.{end}" for end in ("completed", "rejected", "expired", "failed", "cancelled")
]


async def earlier_onboarding(client: Client, workflow_id: str) -> str | None:
    """How the client's last onboarding ended ("completed on 2026-11-21"), or ``None`` when
    there is none or it is still running."""
    handle = client.get_workflow_handle(workflow_id, result_type=OnboardingResult)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if desc.status == WorkflowExecutionStatus.RUNNING:
        return None
    when = f"{desc.close_time:%Y-%m-%d}" if desc.close_time else "earlier"
    outcome = desc.status.name.lower() if desc.status else "closed"
    reason = ""
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        try:
            result = await handle.result(follow_runs=False)
        except Exception:  # an unreadable old result still counts as an earlier run
            result = None
        if result is not None:
            outcome = result.status
            reason = result.reason if result.status != "completed" else "welcome sent"
    return f"{outcome} on {when}" + (f" ({one_line(reason)})" if reason else "")


async def start_onboarding(
    client: Client, settings: Settings, intake: ClientIntake, *, again: bool = False
) -> Started:
    """Start onboarding for ``intake``; if one is running for this client, return that one.

    The server decides (id conflict policy FAIL), so two concurrent starts give one run.
    A client whose onboarding already ended (completed, rejected, expired, failed, cancelled)
    is onboarded again only with ``again``: otherwise ``InvalidInput`` names the earlier
    outcome and nothing starts. The new run has new idempotency keys.
    """
    workflow_id = onboarding_workflow_id(intake.key)
    if not again:
        earlier = await earlier_onboarding(client, workflow_id)
        if earlier is not None:
            raise InvalidInput(
                f"{intake.key}: onboarded before, {earlier}; "
                "to onboard again (a new welcome email), add --again"
            )
    try:
        handle = await client.start_workflow(
            OnboardingWorkflow.run,
            OnboardingInput(
                client=intake,
                gate_policy=settings.gate_policy,
                timezone=settings.business_timezone,
                apply_corrections=settings.agent_apply_corrections,
            ),
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"Onboard {intake.name}",
            static_details=(
                f"Client `{intake.key}` <{intake.email}>. Welcome email and kickoff (10:00 "
                f"{settings.business_timezone}) after your approval at gate `welcome`; "
                f"see `aios status {workflow_id}`."
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        return Started(workflow_id, exc.run_id or "", existing=True)
    return Started(workflow_id, handle.result_run_id or "", existing=False)


def require_client(store: KernelStore, key: str, *, again: bool = False) -> None:
    """The client exists; unless ``again``, their last onboarding was not turned down."""
    if store.clients.get(key) is None:
        raise InvalidInput(
            f"client: no client with key {key!r}; onboard them first with `aios onboard`"
        )
    if again:
        return
    last = store.events.last(f"client:{key}", ONBOARDING_ENDS)
    if last is not None and last.kind in ("onboarding.rejected", "onboarding.expired"):
        outcome = last.kind.removeprefix("onboarding.")
        reason = one_line(str(last.payload.get("reason") or ""))
        raise InvalidInput(
            f"client: {key}'s onboarding was {outcome} on {last.occurred_at:%Y-%m-%d}"
            + (f" ({reason})" if reason else "")
            + "; to go ahead anyway, add --again"
        )


class WelcomeDocument(BaseModel):
    """The welcome email of an onboarding run, as ``aios show`` prints it: the latest version
    (an edit at the gate makes version 2)."""

    kind: Literal["welcome"] = "welcome"
    draft_id: str
    version: int
    subject: str
    body: str
    plan: list[str]
    drafted_by: str | None = None
    edited_by: str | None = None
    created_at: datetime | None = None
    # The operator's corrections (memory ids) the agent applied to this draft.
    corrections: list[str] = []


def welcome_document(store: KernelStore, workflow_id: str, run_id: str) -> WelcomeDocument | None:
    """The run's latest welcome draft, found through the events that name it; ``None`` before
    one is written (the run is still at intake, or waits at a budget or agent gate)."""
    draft_id: str | None = None
    for event in store.events.for_run(workflow_id, run_id):
        named = event.payload.get("draft_id")
        if isinstance(named, str) and named:
            draft_id = named
    draft = store.drafts.get(draft_id) if draft_id else None
    if draft is None:
        return None
    edited_by = draft.meta.get("edited_by")
    return WelcomeDocument(
        draft_id=draft.id,
        version=draft.version,
        subject=draft.subject,
        body=draft.body,
        plan=list(draft.plan),
        drafted_by=_drafted_by(draft.meta),
        edited_by=str(edited_by) if edited_by else None,
        created_at=draft.created_at,
        corrections=[str(c) for c in draft.meta.get("corrections") or []],
    )


def _drafted_by(meta: dict[str, Any]) -> str | None:
    """Who wrote the draft, as the gate shows it (the agent call stored in the draft's meta)."""
    from aios.activities.models import AgentCall

    fields = {name: meta[name] for name in AgentCall.model_fields if name in meta}
    try:
        return AgentCall.model_validate(fields).label
    except ValidationError:
        return None
