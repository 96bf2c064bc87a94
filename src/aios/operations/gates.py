"""Human gates across runs: the inbox, and answering a gate (signal ``decide``).

The inbox reads the gate projection (``kernel.stores.gates``: one row per gate, kept by the
gate events) in one query, so it never asks each run in turn and lists every waiting gate in
full even while no worker runs or a worker restarts. It is reconciled with Temporal's
visibility at the same time: a count of the runs awaiting approval (``AiosAwaitingApproval =
true AND ExecutionStatus = 'Running'``) and a listing of the runs that closed while a gate
waited (terminated, cancelled, reset: their ``AiosAwaitingApproval`` stays true), usually
empty. Rows of closed runs are marked ``closed`` and left out. When the count differs from
the runs with a waiting row, one listing of the runs awaiting approval says which: a run
without a row (started before the projection existed, or its gate is being recorded right
now) is asked with query ``pending_gates``; a row whose run is not listed is closed only when
Temporal says that run is closed, and shown otherwise (the listing may lag, and the projection
is written with the gate's events).

Light on purpose (``operations.messages``): ``aios inbox`` and ``aios approve`` import this
module, the Temporal client and the kernel store, not the workflows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from aios.errors import InvalidInput, StackError
from aios.operations.common import QUERY_TIMEOUT, describe_run, open_gates, unanswered
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
    from aios.kernel.stores.gates import GateRecord
    from aios.kernel.stores.notices import Notice
    from aios.operations.common import HasGates
    from aios.workflows.gates import GateDecision, PendingGate

__all__ = [
    "Inbox",
    "InboxItem",
    "decide",
    "inbox",
    "inbox_for",
    "pending_gates",
    "waiting_gates",
]

AWAITING_QUERY = f"{AWAITING_APPROVAL.name} = true AND ExecutionStatus = 'Running'"
CLIENT_KEY = "AiosClient"
LIST_PAGE_SIZE = 1000
# A row the listing confirmed within this long counts as awaiting when the counts agree.
CONFIRMED_FOR = timedelta(minutes=10)
# A run awaiting approval without a row for this long opened its gate before the projection.
ADOPT_AFTER = timedelta(minutes=5)

# Stdlib logging: an operator action says it on stderr even where logging is not set up (the
# CLI); in a worker or the console it is a JSON line like every other.
warn = logging.getLogger("aios.gates")


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
    store: HasGates | None = None,
    *,
    settings: Settings | None = None,
) -> str:
    """Send ``decide`` to a running workflow; returns the gate it answers.

    When no gate waits, the gate projection (``store``, or ``settings`` to open it) says who
    answered it: "already decided by X at T". The usual case, a gate waiting and a worker
    answering the query, needs no database. Returns ``""`` when no worker answered the gate
    query: the signal is still recorded in the workflow's history and is validated when a
    worker runs it.
    """
    desc = await describe_run(client, workflow_id)
    running = desc.status == WorkflowExecutionStatus.RUNNING
    gates: list[WaitingGate] | None = None
    if running:
        try:
            gates = await waiting_gates(client, workflow_id)
        except (RPCError, WorkflowQueryFailedError):
            gates = None  # no worker to answer the query; the signal still waits in history
    if not gates:
        answered = await _answered(store, settings, workflow_id, desc.run_id)
        if not running:
            status = desc.status.name.lower() if desc.status else "closed"
            why = f": gate {answered.gate!r} {answered.answered()}" if answered else ""
            raise InvalidInput(
                f"workflow {workflow_id!r} is {status}; nothing waits for a decision{why}"
            )
        if answered is not None:
            raise InvalidInput(f"{workflow_id}: gate {answered.gate!r} {answered.answered()}")
        if gates is not None:
            raise InvalidInput(f"workflow {workflow_id!r} has no gate waiting for a decision")
    gate_name = ""
    if gates:
        gate_name = gates[0].gate
        unknown = sorted(set(decision.edits) - set(gates[0].editable_fields))
        if unknown:
            allowed = ", ".join(gates[0].editable_fields) or "none"
            raise InvalidInput(f"cannot edit {unknown[0]!r} at this gate (editable: {allowed})")
    await client.get_workflow_handle(workflow_id).signal(DECIDE_SIGNAL, decision)
    return gate_name


async def _answered(
    store: HasGates | None, settings: Settings | None, workflow_id: str, run_id: str | None
) -> GateRecord | None:
    """The run's latest gate when the projection shows it answered (else ``None``)."""
    if not run_id:
        return None
    if store is None:
        if settings is None:
            return None
        try:
            opened = await asyncio.to_thread(open_gates, settings)
        except StackError as exc:
            # The run checks every decision itself; only the "already decided by" line is lost.
            warn.warning("%s; deciding without the gate projection", exc)
            return None
        try:
            return await _answered(opened, None, workflow_id, run_id)
        finally:
            opened.close()
    record = await asyncio.to_thread(store.gates.get, workflow_id, run_id)
    return record if record is not None and record.status != "waiting" else None


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
        started_at=record.run_started_at or (listed.start_time if listed is not None else None),
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
    client: Client, store: HasGates | None = None, *, settings: Settings | None = None
) -> list[InboxItem]:
    """Every waiting gate across workflows, most urgent first (expiry, then amount).

    With the kernel (``store``, or ``settings`` to open it) it reads the gate projection and
    one visibility listing (see the module's docstring); without, it asks each run.
    """
    if store is None:
        if settings is None:
            return await _inbox_by_query(client)
        opened = await asyncio.to_thread(open_gates, settings)
        try:
            return await inbox(client, opened)
        finally:
            opened.close()

    rows, running = await asyncio.gather(
        asyncio.to_thread(store.gates.waiting), _count_awaiting(client)
    )
    keys = {(row.workflow_id, row.run_id) for row in rows}
    ended: dict[tuple[str, str], str] = {}
    if rows:
        closed = await _closed_awaiting(client, min(row.requested_at for row in rows))
        ended = {key: why for key, why in closed.items() if key in keys}
    listed: dict[tuple[str, str], _Listed] = {}
    missing: list[_Listed] = []
    now = datetime.now(UTC)
    confirmed = all(r.confirmed_at and now - r.confirmed_at < CONFIRMED_FOR for r in rows)
    if running is None or not confirmed or running != len(keys) - len(ended):
        # Some run awaiting approval has no row yet, a row's run no longer awaits, or a row
        # was not seen in a listing lately: list them all, ask the runs without a row; a row
        # whose run is not listed is closed only when Temporal says that run is closed.
        listed = {e.key: e for e in await _awaiting(client)}
        missing = [e for key, e in listed.items() if key not in keys]
        unlisted = sorted(keys - set(listed) - set(ended))
        endings = await asyncio.gather(*(_ended(client, w, r) for w, r in unlisted))
        ended.update({key: why for key, why in zip(unlisted, endings, strict=True) if why})
        await asyncio.to_thread(store.gates.confirm, keys & set(listed))
    if ended:
        await asyncio.to_thread(
            store.gates.close_runs, [(w, r, why) for (w, r), why in ended.items()]
        )
        rows = [row for row in rows if (row.workflow_id, row.run_id) not in ended]
    items = [_from_record(row, listed.get((row.workflow_id, row.run_id))) for row in rows]
    asked = [
        i for found in await asyncio.gather(*(_asked(client, e) for e in missing)) for i in found
    ]
    old = [i for i in asked if i.gate is not None and now - i.gate.requested_at > ADOPT_AFTER]
    if old:
        await asyncio.to_thread(_adopt, store, old, listed)
    return sorted(items + asked, key=_urgency)


def _adopt(store: HasGates, items: list[InboxItem], listed: dict[tuple[str, str], _Listed]) -> None:
    """Write the rows of gates the projection missed (opened before it existed), so the next
    inbox reads them like any other."""
    from aios.kernel.stores.gates import GateRecord

    for item in items:
        gate = item.gate
        assert gate is not None
        run = listed.get((item.workflow_id, item.run_id))
        try:
            store.gates.adopt(
                GateRecord(
                    workflow_id=item.workflow_id,
                    run_id=item.run_id,
                    gate_key="",
                    gate=gate.gate,
                    process=item.process,
                    workflow_type=run.raw.type.name if run is not None else "",
                    client_key=item.client,
                    title=gate.title,
                    summary=gate.summary,
                    amount=gate.amount,
                    amount_minor=item.amount_minor,
                    currency=item.currency,
                    drafted_by=gate.drafted_by,
                    editable_fields=gate.editable_fields,
                    requested_at=gate.requested_at,
                    expires_at=gate.expires_at,
                    next_reminder_at=gate.next_reminder_at,
                    reminders_sent=gate.reminders_sent,
                    run_started_at=item.started_at,
                    confirmed_at=None,
                )
            )
        except Exception:  # the inbox shows the gate all the same; the next one adopts it
            warn.warning("could not adopt the gate of %s into the projection", item.workflow_id)


async def _count_awaiting(client: Client) -> int | None:
    """How many running runs await approval (``None`` when Temporal cannot say)."""
    try:
        return (await client.count_workflows(AWAITING_QUERY)).count
    except RPCError:
        return None


async def _closed_awaiting(client: Client, since: datetime) -> dict[tuple[str, str], str]:
    """Runs that closed since ``since`` while a gate waited (terminated, cancelled, reset),
    and how each ended. Their ``AiosAwaitingApproval`` stays true, so visibility names them."""
    from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest

    after = (since - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = (
        f"{AWAITING_APPROVAL.name} = true AND ExecutionStatus != 'Running' "
        f"AND CloseTime >= '{after}'"
    )
    found: dict[tuple[str, str], str] = {}
    token = b""
    while True:
        page = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace,
                query=query,
                page_size=LIST_PAGE_SIZE,
                next_page_token=token,
            ),
            retry=True,
        )
        for raw in page.executions:
            status = WorkflowExecutionStatus(raw.status).name.lower()
            found[(raw.execution.workflow_id, raw.execution.run_id)] = status
        token = page.next_page_token
        if not token or not page.executions:
            return found


@dataclass(frozen=True)
class Inbox:
    """What ``aios inbox`` shows: the waiting gates and the open notices. ``notices`` is None
    when the kernel could not be reached (the gates then come from the runs themselves)."""

    items: list[InboxItem]
    notices: list[Notice] | None


async def inbox_for(settings: Settings) -> Inbox:
    """``inbox`` as ``aios inbox`` runs it: connects to Temporal while it opens the kernel, and
    reads the open notices over the same connection."""
    from aios.temporal import connect

    opening = asyncio.create_task(asyncio.to_thread(open_gates, settings))
    try:
        client = await connect(settings)
    except BaseException:
        with contextlib.suppress(Exception):
            (await opening).close()
        raise
    try:
        store = await opening
    except StackError as exc:
        warn.warning("%s; asking each run awaiting approval instead", exc)
        return Inbox(await _inbox_by_query(client), None)
    try:
        items = await inbox(client, store)
        notices = await asyncio.to_thread(store.notices.open_notices)
        return Inbox(items, notices)
    finally:
        store.close()


async def _inbox_by_query(client: Client) -> list[InboxItem]:
    """The inbox without the kernel: ask each run awaiting approval."""
    executions = await _awaiting(client)
    items: list[InboxItem] = []
    for asked in await asyncio.gather(*(_asked(client, e) for e in executions)):
        items.extend(asked)
    return sorted(items, key=_urgency)
