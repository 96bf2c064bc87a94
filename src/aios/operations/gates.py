"""Human gates across runs: the inbox, and answering a gate (signal ``decide``).

The inbox reads the gate projection (``kernel.stores.gates``: one row per gate, kept by the
gate events) in one query and makes one visibility listing of the runs Temporal says await
approval (``AiosAwaitingApproval = true AND ExecutionStatus = 'Running'``), so it never asks
each run in turn and lists every waiting gate in full even while no worker runs. The two are
reconciled: a row whose run Temporal reports closed (terminated, cancelled, reset, continued)
is marked ``closed`` and left out; a run listed as awaiting without a row (started before the
projection existed, or its gate is being recorded right now) is asked with query
``pending_gates``. A row whose run is not listed but still running is shown: the listing may
lag, and the projection is written with the gate's events.

Light on purpose (``operations.messages``): ``aios inbox`` and ``aios approve`` import this
module, the Temporal client and the kernel store, not the workflows.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from aios.errors import InvalidInput
from aios.operations.common import QUERY_TIMEOUT, describe_run, open_store, unanswered
from aios.operations.messages import (
    AWAITING_APPROVAL,
    DECIDE_SIGNAL,
    PENDING_GATES_QUERY,
    PROCESS,
    Decision,
    WaitingGate,
)

if TYPE_CHECKING:
    from temporalio.api.workflow.v1 import WorkflowExecutionInfo

    from aios.config import Settings
    from aios.kernel.store import KernelStore
    from aios.kernel.stores.gates import GateRecord
    from aios.workflows.gates import GateDecision, PendingGate

__all__ = ["InboxItem", "decide", "inbox", "inbox_for", "pending_gates", "waiting_gates"]

AWAITING_QUERY = f"{AWAITING_APPROVAL.name} = true AND ExecutionStatus = 'Running'"
CLIENT_KEY = "AiosClient"
LIST_PAGE_SIZE = 1000


@dataclass(frozen=True)
class _Listed:
    """A run the visibility listing returned; its search attributes are decoded on demand."""

    raw: WorkflowExecutionInfo

    @property
    def key(self) -> tuple[str, str]:
        return self.raw.execution.workflow_id, self.raw.execution.run_id

    @property
    def start_time(self) -> datetime | None:
        return (
            self.raw.start_time.ToDatetime(tzinfo=UTC) if self.raw.HasField("start_time") else None
        )

    @property
    def process(self) -> str:
        from temporalio.converter import decode_typed_search_attributes

        attrs = decode_typed_search_attributes(self.raw.search_attributes)
        return attrs.get(PROCESS) or self.raw.type.name

    @property
    def client(self) -> str | None:
        from temporalio.converter import decode_search_attributes

        value = decode_search_attributes(self.raw.search_attributes).get(CLIENT_KEY)
        return str(value[0]) if value else None


async def _awaiting(client: Client) -> list[_Listed]:
    """Every running run awaiting approval: one visibility listing, page by page.

    The raw listing, decoded only where needed: with a thousand runs, converting each into
    the SDK's ``WorkflowExecution`` costs more than the request itself.
    """
    from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest

    runs: list[_Listed] = []
    token = b""
    while True:
        page = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace,
                query=AWAITING_QUERY,
                page_size=LIST_PAGE_SIZE,
                next_page_token=token,
            ),
            retry=True,
        )
        runs.extend(_Listed(raw) for raw in page.executions)
        token = page.next_page_token
        if not token or not page.executions:
            return runs


@dataclass(frozen=True)
class InboxItem:
    """One waiting gate (or a run awaiting approval whose gate could not be read: ``note``).

    ``source``: ``projection`` (the kernel's row), ``query`` (the run answered
    ``pending_gates``) or ``unanswered`` (neither: ``gate`` is ``None`` and ``note`` says why).
    """

    workflow_id: str
    process: str
    started_at: datetime | None
    gate: WaitingGate | None
    note: str = ""
    run_id: str = ""
    client: str | None = None
    gate_key: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    source: Literal["projection", "query", "unanswered"] = "query"
    record: GateRecord | None = None

    @property
    def age(self) -> timedelta | None:
        since = self.gate.requested_at if self.gate else self.started_at
        return datetime.now(UTC) - since if since else None

    @property
    def expires_at(self) -> datetime | None:
        return self.gate.expires_at if self.gate else None


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


async def decide(
    client: Client,
    workflow_id: str,
    decision: Decision | GateDecision,
    store: KernelStore | None = None,
    *,
    settings: Settings | None = None,
) -> str:
    """Send ``decide`` to a running workflow; returns the gate it answers.

    With the kernel (``store``, or ``settings`` to open it) a gate the projection shows
    answered is refused: "already decided by X at T". Returns ``""`` when no worker answered
    the gate query: the signal is still recorded in the workflow's history and is validated
    when a worker runs it.
    """
    if store is None and settings is not None:
        opened = await asyncio.to_thread(open_store, settings)
        try:
            return await decide(client, workflow_id, decision, opened)
        finally:
            opened.close()
    desc = await describe_run(client, workflow_id)
    record = (
        await asyncio.to_thread(store.gates.get, workflow_id, desc.run_id)
        if store is not None and desc.run_id
        else None
    )
    answered = record if record is not None and record.status != "waiting" else None
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = desc.status.name.lower() if desc.status else "closed"
        why = f": gate {answered.gate!r} {answered.answered()}" if answered is not None else ""
        raise InvalidInput(
            f"workflow {workflow_id!r} is {status}; nothing waits for a decision{why}"
        )
    gate_name = ""
    try:
        gates: list[WaitingGate] | None = await waiting_gates(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        gates = None  # no worker to answer the query; the signal still waits in history
    if not gates and answered is not None:
        raise InvalidInput(f"{workflow_id}: gate {answered.gate!r} {answered.answered()}")
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


def _urgency(item: InboxItem) -> tuple[int, datetime, int]:
    """Most urgent first: expiry, then the larger amount; unreadable runs last."""
    if item.gate is None:
        return (1, item.started_at or datetime.max.replace(tzinfo=UTC), 0)
    return (0, item.gate.expires_at, -(item.amount_minor or 0))


def _from_record(record: GateRecord, listed: _Listed | None) -> InboxItem:
    client = record.client_key
    if client is None and listed is not None:
        client = listed.client
    return InboxItem(
        workflow_id=record.workflow_id,
        process=record.process,
        started_at=listed.start_time if listed is not None else None,
        gate=WaitingGate(
            gate=record.gate,
            title=record.title,
            summary=record.summary,
            requested_at=record.requested_at,
            expires_at=record.expires_at,
            next_reminder_at=record.next_reminder_at,
            reminders_sent=record.reminders_sent,
            editable_fields=record.editable_fields,
            amount=record.amount,
            drafted_by=record.drafted_by,
        ),
        run_id=record.run_id,
        client=client,
        gate_key=record.gate_key,
        amount_minor=record.amount_minor,
        currency=record.currency,
        source="projection",
        record=record,
    )


async def _asked(client: Client, listed: _Listed) -> list[InboxItem]:
    """A run awaiting approval that the projection does not know: ask it."""
    from aios.kernel.stores.gates import split_amount

    workflow_id, run_id = listed.key
    process, client_key, started = listed.process, listed.client, listed.start_time

    def item(gate: WaitingGate | None, note: str = "") -> InboxItem:
        minor, currency = split_amount(gate.amount if gate else None)
        return InboxItem(
            workflow_id=workflow_id,
            process=process,
            started_at=started,
            gate=gate,
            note=note,
            run_id=run_id,
            client=client_key,
            amount_minor=minor,
            currency=currency,
            source="query" if gate else "unanswered",
        )

    try:
        gates = await waiting_gates(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        if await _ended(client, workflow_id, run_id):
            return []  # it ended after the listing was made
        return [item(None, await unanswered(client, workflow_id))]
    return [item(g) for g in gates]


async def _ended(client: Client, workflow_id: str, run_id: str) -> str | None:
    """How the run ended (``terminated``, ``canceled``...), or ``None`` while it runs."""
    try:
        desc = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "not found"
        return None  # cannot tell: keep showing it
    if desc.status is None or desc.status == WorkflowExecutionStatus.RUNNING:
        return None
    return desc.status.name.lower()


async def inbox(
    client: Client, store: KernelStore | None = None, *, settings: Settings | None = None
) -> list[InboxItem]:
    """Every waiting gate across workflows, most urgent first (expiry, then amount).

    With the kernel (``store``, or ``settings`` to open it) it reads the gate projection and
    one visibility listing (see the module's docstring); without, it asks each run.
    """
    if store is None:
        if settings is None:
            return await _inbox_by_query(client)
        opened = await asyncio.to_thread(open_store, settings)
        try:
            return await inbox(client, opened)
        finally:
            opened.close()

    executions, rows = await asyncio.gather(
        _awaiting(client), asyncio.to_thread(store.gates.waiting)
    )
    listed = {e.key: e for e in executions}
    unlisted = sorted({(r.workflow_id, r.run_id) for r in rows} - set(listed))
    if unlisted:
        endings = await asyncio.gather(*(_ended(client, w, r) for w, r in unlisted))
        ended = [(w, r, why) for (w, r), why in zip(unlisted, endings, strict=True) if why]
        if ended:
            await asyncio.to_thread(store.gates.close_runs, ended)
            gone = {(w, r) for w, r, _ in ended}
            rows = [row for row in rows if (row.workflow_id, row.run_id) not in gone]
    items = [_from_record(row, listed.get((row.workflow_id, row.run_id))) for row in rows]
    known = {(row.workflow_id, row.run_id) for row in rows}
    missing = [e for key, e in listed.items() if key not in known]
    for asked in await asyncio.gather(*(_asked(client, e) for e in missing)):
        items.extend(asked)
    return sorted(items, key=_urgency)


async def inbox_for(settings: Settings) -> list[InboxItem]:
    """``inbox`` as ``aios inbox`` runs it: connects to Temporal while it opens the kernel."""
    from aios.temporal import connect

    opening = asyncio.create_task(asyncio.to_thread(open_store, settings))
    try:
        client = await connect(settings)
    except BaseException:
        with contextlib.suppress(Exception):
            (await opening).close()
        raise
    store = await opening
    try:
        return await inbox(client, store)
    finally:
        store.close()


async def _inbox_by_query(client: Client) -> list[InboxItem]:
    """The inbox without the kernel: ask each run awaiting approval."""
    executions = await _awaiting(client)
    items: list[InboxItem] = []
    for asked in await asyncio.gather(*(_asked(client, e) for e in executions)):
        items.extend(asked)
    return sorted(items, key=_urgency)
