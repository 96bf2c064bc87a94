"""What the operator does, independent of the surface: start work, list and answer gates.

The CLI is a thin layer over these functions; tests call them directly too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.models import ClientIntake
from aios.workflows.attributes import PROCESS
from aios.workflows.gates import DECIDE_SIGNAL, PENDING_GATES_QUERY, GateDecision, PendingGate
from aios.workflows.onboarding import (
    OnboardingInput,
    OnboardingProgress,
    OnboardingWorkflow,
    onboarding_workflow_id,
)

__all__ = [
    "InboxItem",
    "RunStatus",
    "Started",
    "decide",
    "describe",
    "inbox",
    "pending_gates",
    "start_onboarding",
    "web_ui_url",
]

QUERY_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True)
class Started:
    workflow_id: str
    run_id: str
    existing: bool


@dataclass(frozen=True)
class InboxItem:
    workflow_id: str
    process: str
    started_at: datetime | None
    gate: PendingGate | None
    note: str = ""

    @property
    def age(self) -> timedelta | None:
        since = self.gate.requested_at if self.gate else self.started_at
        return datetime.now(UTC) - since if since else None


@dataclass(frozen=True)
class RunStatus:
    workflow_id: str
    run_id: str
    status: str
    started_at: datetime | None
    closed_at: datetime | None
    steps_done: list[str]
    gates: list[PendingGate]
    note: str = ""


def web_ui_url(settings: Settings, workflow_id: str, run_id: str | None = None) -> str:
    base = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}"
    url = f"{base}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url


async def start_onboarding(client: Client, settings: Settings, intake: ClientIntake) -> Started:
    """Start onboarding for ``intake``; if one is running for this client, return that one.

    The server decides (id conflict policy FAIL), so two concurrent starts give one run.
    A finished onboarding may be started again; its new run has new idempotency keys.
    """
    workflow_id = onboarding_workflow_id(intake.key)
    try:
        handle = await client.start_workflow(
            OnboardingWorkflow.run,
            OnboardingInput(client=intake, gate_policy=settings.gate_policy),
            id=workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"Onboard {intake.name}",
        )
    except WorkflowAlreadyStartedError as exc:
        return Started(workflow_id, exc.run_id or "", existing=True)
    return Started(workflow_id, handle.result_run_id or "", existing=False)


async def pending_gates(client: Client, workflow_id: str) -> list[PendingGate]:
    handle = client.get_workflow_handle(workflow_id)
    return await handle.query(
        PENDING_GATES_QUERY, result_type=list[PendingGate], rpc_timeout=QUERY_TIMEOUT
    )


async def decide(client: Client, workflow_id: str, decision: GateDecision) -> str:
    """Send ``decide`` to a running workflow; returns the gate it answers.

    Returns ``""`` when no worker answered the gate query: the signal is still recorded in the
    workflow's history and is validated when a worker runs it.
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidInput(f"workflow {workflow_id!r} does not exist") from exc
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.status.name.lower() if desc.status else "closed"
        raise InvalidInput(f"workflow {workflow_id!r} is {status}; nothing waits for a decision")
    gate_name = ""
    try:
        gates = await pending_gates(client, workflow_id)
    except RPCError:
        gates = None  # no worker to answer the query; the signal still waits in history
    if gates is not None:
        if not gates:
            raise InvalidInput(f"workflow {workflow_id!r} has no gate waiting for a decision")
        gate_name = gates[0].gate
        unknown = sorted(set(decision.edits) - set(gates[0].editable_fields))
        if unknown:
            allowed = ", ".join(gates[0].editable_fields) or "none"
            raise InvalidInput(f"cannot edit {unknown[0]!r} at this gate (editable: {allowed})")
    await handle.signal(DECIDE_SIGNAL, decision)
    return gate_name


async def inbox(client: Client) -> list[InboxItem]:
    """Every waiting gate across workflows, oldest first."""
    items: list[InboxItem] = []
    query = "AiosAwaitingApproval = true AND ExecutionStatus = 'Running'"
    executions = [e async for e in client.list_workflows(query)]

    async def item(execution_id: str, process: str, started: datetime | None) -> None:
        try:
            gates = await pending_gates(client, execution_id)
        except RPCError:
            items.append(InboxItem(execution_id, process, started, None, "no worker answered"))
            return
        items.extend(InboxItem(execution_id, process, started, g) for g in gates)

    await asyncio.gather(
        *(
            item(e.id, (e.typed_search_attributes.get(PROCESS) or e.workflow_type), e.start_time)
            for e in executions
        )
    )
    return sorted(items, key=lambda i: i.age or timedelta(0), reverse=True)


async def describe(client: Client, workflow_id: str) -> RunStatus:
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidInput(f"workflow {workflow_id!r} does not exist") from exc
        raise
    steps: list[str] = []
    gates: list[PendingGate] = []
    note = ""
    if desc.status == WorkflowExecutionStatus.RUNNING:
        try:
            progress = await handle.query(
                "progress", result_type=OnboardingProgress, rpc_timeout=QUERY_TIMEOUT
            )
            steps, gates = progress.steps_done, progress.pending_gates
        except RPCError:
            note = "no worker answered the query; start one with `aios worker`"
    return RunStatus(
        workflow_id=workflow_id,
        run_id=desc.run_id,
        status=desc.status.name.lower() if desc.status else "unknown",
        started_at=desc.start_time,
        closed_at=desc.close_time,
        steps_done=steps,
        gates=gates,
        note=note,
    )
