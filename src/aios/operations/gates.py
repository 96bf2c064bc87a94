"""Human gates across runs: the inbox, and answering a gate (signal ``decide``).

Light on purpose (``operations.messages``): ``aios inbox`` and ``aios approve`` import this
module and the Temporal client, not the workflows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from aios.errors import InvalidInput
from aios.operations.common import QUERY_TIMEOUT, describe_run, unanswered
from aios.operations.messages import (
    AWAITING_APPROVAL,
    DECIDE_SIGNAL,
    PENDING_GATES_QUERY,
    PROCESS,
    Decision,
    WaitingGate,
)

if TYPE_CHECKING:
    from aios.workflows.gates import GateDecision, PendingGate

__all__ = ["InboxItem", "decide", "inbox", "pending_gates", "waiting_gates"]


@dataclass(frozen=True)
class InboxItem:
    workflow_id: str
    process: str
    started_at: datetime | None
    gate: WaitingGate | None
    note: str = ""

    @property
    def age(self) -> timedelta | None:
        since = self.gate.requested_at if self.gate else self.started_at
        return datetime.now(UTC) - since if since else None


async def waiting_gates(client: Client, workflow_id: str) -> list[WaitingGate]:
    """The run's answer to query ``pending_gates`` (raises when no worker answers)."""
    handle = client.get_workflow_handle(workflow_id)
    return await handle.query(
        PENDING_GATES_QUERY, result_type=list[WaitingGate], rpc_timeout=QUERY_TIMEOUT
    )


async def pending_gates(client: Client, workflow_id: str) -> list[PendingGate]:
    """``waiting_gates`` as the workflows' own model (``workflows.gates.PendingGate``)."""
    from aios.workflows.gates import PendingGate

    handle = client.get_workflow_handle(workflow_id)
    return await handle.query(
        PENDING_GATES_QUERY, result_type=list[PendingGate], rpc_timeout=QUERY_TIMEOUT
    )


async def decide(client: Client, workflow_id: str, decision: Decision | GateDecision) -> str:
    """Send ``decide`` to a running workflow; returns the gate it answers.

    Returns ``""`` when no worker answered the gate query: the signal is still recorded in the
    workflow's history and is validated when a worker runs it.
    """
    desc = await describe_run(client, workflow_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.status.name.lower() if desc.status else "closed"
        raise InvalidInput(f"workflow {workflow_id!r} is {status}; nothing waits for a decision")
    gate_name = ""
    try:
        gates: list[WaitingGate] | None = await waiting_gates(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        gates = None  # no worker to answer the query; the signal still waits in history
    if gates is not None:
        if not gates:
            raise InvalidInput(f"workflow {workflow_id!r} has no gate waiting for a decision")
        gate_name = gates[0].gate
        unknown = sorted(set(decision.edits) - set(gates[0].editable_fields))
        if unknown:
            allowed = ", ".join(gates[0].editable_fields) or "none"
            raise InvalidInput(f"cannot edit {unknown[0]!r} at this gate (editable: {allowed})")
    await client.get_workflow_handle(workflow_id).signal(DECIDE_SIGNAL, decision)
    return gate_name


async def inbox(client: Client) -> list[InboxItem]:
    """Every waiting gate across workflows, oldest first."""
    items: list[InboxItem] = []
    query = f"{AWAITING_APPROVAL.name} = true AND ExecutionStatus = 'Running'"
    executions = [e async for e in client.list_workflows(query)]

    async def item(execution_id: str, process: str, started: datetime | None) -> None:
        try:
            gates = await waiting_gates(client, execution_id)
        except (RPCError, WorkflowQueryFailedError):
            note = await unanswered(client, execution_id)
            items.append(InboxItem(execution_id, process, started, None, note))
            return
        items.extend(InboxItem(execution_id, process, started, g) for g in gates)

    await asyncio.gather(
        *(
            item(e.id, (e.typed_search_attributes.get(PROCESS) or e.workflow_type), e.start_time)
            for e in executions
        )
    )
    return sorted(items, key=lambda i: i.age or timedelta(0), reverse=True)
