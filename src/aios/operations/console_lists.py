"""The console's list pages: Runs (Temporal visibility), Client (records, event timeline, memory)
and Attention (what went wrong lately), each as typed models."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from aios.config import Settings
from aios.errors import InvalidInput, StackError
from aios.kernel.models import Client as ClientRecord
from aios.kernel.models import Event
from aios.kernel.money import format_amount
from aios.kernel.stores.leads import ClientNote
from aios.operations.common import one_line, task_failure, web_ui_url
from aios.operations.console_models import NotFound
from aios.operations.messages import AWAITING_APPROVAL, OUTCOME, PROCESS
from aios.workflows.attributes import CLIENT, COST_USD

if TYPE_CHECKING:
    from aios.kernel.store import KernelStore

__all__ = [
    "OUTCOMES",
    "PROCESSES",
    "STATUSES",
    "Attention",
    "AttentionItem",
    "ClientView",
    "InvoiceRow",
    "MemoryPoint",
    "ProposalRow",
    "RunRow",
    "attention",
    "client_view",
    "memory_points",
    "runs",
]

PROCESSES = ("onboarding", "proposal", "billing", "synthetic-check")
OUTCOMES = (
    "completed",
    "rejected",
    "expired",
    "accepted",
    "declined",
    "paid",
    "cancelled",
    "failed",
)
# The statuses the Runs page offers, and their names in a visibility query.
STATUSES = {
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Canceled",
    "terminated": "Terminated",
    "timed_out": "TimedOut",
    "continued_as_new": "ContinuedAsNew",
}
CLIENT_KEY_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Runs that only read memory for a person stay out of the console's lists.
HIDDEN_TYPES = ("MemoryLookupWorkflow",)
MEMORY_WAIT = timedelta(seconds=10)
STUCK_SCAN_LIMIT = 200
IDEMPOTENCY_KEY_RE = re.compile(r"^(?P<wid>.+)/(?P<rid>[0-9a-f]{8}-[0-9a-f-]{27})/(?P<step>.+)$")


# --- Runs ---------------------------------------------------------------------------------------


class RunRow(BaseModel):
    workflow_id: str
    run_id: str
    workflow_type: str
    process: str
    client_key: str | None = None
    status: str
    outcome: str | None = None
    awaiting_approval: bool = False
    cost_usd: float | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    web_ui_url: str


def _one_of(field: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field}: {value!r} is not one of {', '.join(allowed)}")
    return value


def runs_query(
    *,
    client_key: str | None = None,
    process: str | None = None,
    outcome: str | None = None,
    status: str | None = None,
) -> str:
    """The visibility query for the Runs page's filters; every value is checked against what
    it may be first (``InvalidInput`` naming the field), so nothing else reaches the query."""
    parts = [f"WorkflowType != '{t}'" for t in HIDDEN_TYPES]
    if client_key:
        if not CLIENT_KEY_RE.match(client_key):
            raise InvalidInput(
                f"client: {client_key!r} is not a client key (lowercase letters, digits and "
                "hyphens, e.g. acme-ltd)"
            )
        parts.append(f"{CLIENT.name} = '{client_key}'")
    if process:
        parts.append(f"{PROCESS.name} = '{_one_of('process', process, PROCESSES)}'")
    if outcome:
        parts.append(f"{OUTCOME.name} = '{_one_of('outcome', outcome, OUTCOMES)}'")
    if status:
        name = STATUSES[_one_of("status", status, list(STATUSES))]
        parts.append(f"ExecutionStatus = '{name}'")
    return " AND ".join(parts)


def _status(status: WorkflowExecutionStatus | None) -> str:
    """The run's status as the Runs page names it (``running``, ``cancelled``, ``timed_out``)."""
    if status is None:
        return "unknown"
    return "cancelled" if status == WorkflowExecutionStatus.CANCELED else status.name.lower()


def _row(settings: Settings, e: WorkflowExecution) -> RunRow:
    attrs = e.typed_search_attributes
    return RunRow(
        workflow_id=e.id,
        run_id=e.run_id,
        workflow_type=e.workflow_type,
        process=attrs.get(PROCESS) or e.id.split("/", 1)[0],
        client_key=attrs.get(CLIENT),
        status=_status(e.status),
        outcome=attrs.get(OUTCOME),
        awaiting_approval=bool(attrs.get(AWAITING_APPROVAL)),
        cost_usd=attrs.get(COST_USD),
        started_at=e.start_time,
        closed_at=e.close_time,
        web_ui_url=web_ui_url(settings, e.id, e.run_id),
    )


async def runs(
    client: Client,
    settings: Settings,
    *,
    client_key: str | None = None,
    process: str | None = None,
    outcome: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[RunRow]:
    """Runs from Temporal visibility, newest first, filtered by client, process, outcome and
    status (search attributes ``AiosClient``, ``AiosProcess``, ``AiosOutcome``), each with its
    Web UI link. A bad filter value is ``InvalidInput`` naming the field."""
    if not 1 <= limit <= 1000:
        raise InvalidInput(f"limit: {limit} is not between 1 and 1000")
    query = runs_query(client_key=client_key, process=process, outcome=outcome, status=status)
    return [_row(settings, e) async for e in client.list_workflows(query, limit=limit)]


# --- Client -------------------------------------------------------------------------------------


class ProposalRow(BaseModel):
    proposal_id: str
    workflow_id: str
    versions: int
    total: str = ""
    created_at: datetime | None = None


class InvoiceRow(BaseModel):
    invoice_id: str
    workflow_id: str
    number: str | None
    status: str
    total: str
    balance: str
    due_at: datetime | None = None
    issued_at: datetime | None = None


class MemoryPoint(BaseModel):
    """A memory point with its provenance: which run stored it, as which version of its kind."""

    id: str
    text: str
    entity: str
    kind: str
    version: int
    versions: int  # how many versions of this kind the entity has
    source_workflow_id: str
    source_run_id: str
    created_at: datetime
    embedder: str


class ClientView(BaseModel):
    client: ClientRecord
    proposals: list[ProposalRow] = Field(default_factory=list)
    invoices: list[InvoiceRow] = Field(default_factory=list)
    runs: list[RunRow] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)  # the timeline, oldest first
    memories: list[MemoryPoint] = Field(default_factory=list)
    memory_note: str = ""  # why memories are missing, when they are
    notes: list[ClientNote] = Field(default_factory=list)  # added by leads, oldest first


async def memory_points(
    client: Client, settings: Settings, entity: str, *, wait: timedelta = MEMORY_WAIT
) -> list[MemoryPoint]:
    """The memory points of ``entity`` (the newest 100), newest first, read as ``aios memory``
    reads them (``operations.memory.lookup_memory``: directly, or through the memory worker).
    ``TimeoutError`` when the memory worker does not answer within ``wait``."""
    from aios.memory.records import MemoryQuery
    from aios.operations.memory import lookup_memory

    view = await asyncio.wait_for(
        lookup_memory(settings, MemoryQuery(entity=entity, limit=100), client=client),
        wait.total_seconds(),
    )
    latest: dict[str, int] = {}
    for m in view.entries:
        latest[m.provenance.kind] = max(latest.get(m.provenance.kind, 0), m.provenance.version)
    return [
        MemoryPoint(
            id=m.id,
            text=m.text,
            entity=m.provenance.entity,
            kind=m.provenance.kind,
            version=m.provenance.version,
            versions=latest[m.provenance.kind],
            source_workflow_id=m.provenance.source_workflow_id,
            source_run_id=m.provenance.source_run_id,
            created_at=m.provenance.created_at,
            embedder=m.provenance.embedder,
        )
        for m in view.entries
    ]


async def client_view(
    client: Client, store: KernelStore, settings: Settings, client_key: str
) -> ClientView:
    """The Client page: the record, proposals, invoices, runs, the event timeline and memory
    points with provenance. ``NotFound`` for an unknown client."""
    if not CLIENT_KEY_RE.match(client_key):
        raise NotFound(f"client: {client_key!r} is not a client key")
    record = store.clients.get(client_key)
    if record is None:
        raise NotFound(f"client: no client with key {client_key!r}")
    proposals = store.proposals.for_client(client_key)
    invoices = store.invoices.for_client(client_key)
    proposal_rows = []
    for p in proposals:
        versions = store.proposals.versions(p.proposal_id)
        last = versions[-1] if versions else None
        proposal_rows.append(
            ProposalRow(
                proposal_id=p.proposal_id,
                workflow_id=p.workflow_id,
                versions=len(versions),
                total=format_amount(last.total_minor, last.currency) if last else "",
                created_at=p.created_at,
            )
        )
    invoice_rows = [
        InvoiceRow(
            invoice_id=i.invoice_id,
            workflow_id=i.workflow_id,
            number=i.display_number if i.number is not None else None,
            status=i.status,
            total=format_amount(i.total_minor, i.currency),
            balance=format_amount(store.invoices.balance(i.invoice_id), i.currency),
            due_at=i.due_at,
            issued_at=i.issued_at,
        )
        for i in invoices
    ]
    entities = [
        f"client:{client_key}",
        *(f"proposal:{p.proposal_id}" for p in proposals),
        *(f"invoice:{i.invoice_id}" for i in invoices),
    ]
    note = ""
    try:
        memories = await memory_points(client, settings, f"client:{client_key}")
    except TimeoutError:
        memories, note = [], "the memory worker did not answer; start one with `aios worker`"
    except (StackError, RPCError) as exc:
        memories, note = [], f"memory could not be read: {one_line(str(exc), 200)}"
    return ClientView(
        client=record,
        proposals=proposal_rows,
        invoices=invoice_rows,
        runs=await runs(client, settings, client_key=client_key, limit=50),
        events=store.events.for_entities(entities),
        memories=memories,
        memory_note=note,
        notes=store.leads.notes(client_key),
    )


# --- Attention ----------------------------------------------------------------------------------

AttentionKind = Literal[
    "failed_run",
    "failed_compensation",
    "effect_in_doubt",
    "overdue_invoice",
    "stuck_run",
    "connector_gate",
]


class AttentionItem(BaseModel):
    kind: AttentionKind
    title: str
    detail: str = ""
    what_to_do: str  # one line
    workflow_id: str | None = None
    run_id: str | None = None
    web_ui_url: str | None = None
    when: datetime | None = None


class Attention(BaseModel):
    since: datetime
    items: list[AttentionItem] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # parts that could not be read


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _failed_runs(client: Client, settings: Settings, since: datetime) -> list[AttentionItem]:
    query = (
        f"(ExecutionStatus = 'Failed' OR ExecutionStatus = 'TimedOut') "
        f"AND CloseTime > '{_iso(since)}'"
    )
    items = []
    async for e in client.list_workflows(query, limit=100):
        reason = await _close_failure(client, e.id, e.run_id)
        items.append(
            AttentionItem(
                kind="failed_run",
                title=f"{e.id} {_status(e.status).replace('_', ' ')}",
                detail=reason,
                what_to_do="read the failure in the Web UI, fix its cause, then start the "
                "work again (aios onboard / propose / bill)",
                workflow_id=e.id,
                run_id=e.run_id,
                web_ui_url=web_ui_url(settings, e.id, e.run_id),
                when=e.close_time,
            )
        )
    return items


async def _close_failure(client: Client, workflow_id: str, run_id: str) -> str:
    """The failure message of a closed run (its close event), or ``""``."""
    from temporalio.client import WorkflowHistoryEventFilterType

    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        async for event in handle.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                failure = event.workflow_execution_failed_event_attributes.failure
                cause = failure.cause.message if failure.HasField("cause") else ""
                return one_line(failure.message + (f": {cause}" if cause else ""), 300)
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
                return "the run timed out"
    except RPCError:
        return ""
    return ""


def _failed_compensations(
    store: KernelStore, settings: Settings, since: datetime
) -> list[AttentionItem]:
    kinds = [f"{p}.{end}" for p in PROCESSES for end in ("failed", "cancelled")]
    items = []
    for event in store.events.since(since, kinds):
        failed = event.payload.get("compensation_failed") or []
        if not failed:
            continue
        names = ", ".join(str(f) for f in failed)
        items.append(
            AttentionItem(
                kind="failed_compensation",
                title=f"{event.workflow_id}: could not undo {names}",
                detail=one_line(str(event.payload.get("error") or ""), 300),
                what_to_do=f"undo {names} by hand (the run has ended; nothing retries it)",
                workflow_id=event.workflow_id,
                run_id=event.run_id,
                web_ui_url=web_ui_url(settings, event.workflow_id, event.run_id),
                when=event.occurred_at,
            )
        )
    return items


def _effects_in_doubt(store: KernelStore, settings: Settings) -> list[AttentionItem]:
    items = []
    for row in store.outbox.in_doubt():
        key = str(row["idempotency_key"])
        match = IDEMPOTENCY_KEY_RE.match(key)
        wid, rid = (match["wid"], match["rid"]) if match else (None, None)
        error = row.get("last_error")
        items.append(
            AttentionItem(
                kind="effect_in_doubt",
                title=f"{row['connector']} {row['operation']} may or may not have happened",
                detail=f"step {match['step'] if match else key}, {row['attempts']} attempt(s)"
                + (f"; last error: {one_line(str(error), 200)}" if error else ""),
                what_to_do=f"check in {row['connector']} whether it happened; the run's next "
                "retry repeats it safely under the same key",
                workflow_id=wid,
                run_id=rid,
                web_ui_url=web_ui_url(settings, wid, rid) if wid else None,
                when=row.get("started_at"),
            )
        )
    return items


def _overdue_invoices(store: KernelStore, settings: Settings, now: datetime) -> list[AttentionItem]:
    items = []
    for invoice in store.invoices.overdue(now):
        balance = store.invoices.balance(invoice.invoice_id)
        days = (now - invoice.due_at).days if invoice.due_at else 0
        items.append(
            AttentionItem(
                kind="overdue_invoice",
                title=f"{invoice.display_number} to {invoice.client_key} is overdue"
                + (f" by {days} day(s)" if days else ""),
                detail=f"{format_amount(balance, invoice.currency)} open of "
                f"{format_amount(invoice.total_minor, invoice.currency)}",
                what_to_do=f"the run reminds the client; when the money arrives, "
                f"`aios paid {invoice.display_number}`",
                workflow_id=invoice.workflow_id,
                web_ui_url=web_ui_url(settings, invoice.workflow_id),
                when=invoice.due_at,
            )
        )
    return items


async def _stuck_runs(client: Client, settings: Settings) -> list[AttentionItem]:
    """Running runs whose workflow task keeps failing (a bug, or a payload the code cannot
    handle): those Temporal marks with ``TemporalReportedProblems`` (after a few failed
    attempts), and among the newest ``STUCK_SCAN_LIMIT`` running runs those failing already."""
    query = "ExecutionStatus = 'Running' AND " + " AND ".join(
        f"WorkflowType != '{t}'" for t in HIDDEN_TYPES
    )
    running = {
        e.id: e
        async for e in client.list_workflows(
            f"{query} AND TemporalReportedProblems IS NOT NULL", limit=STUCK_SCAN_LIMIT
        )
    }
    async for e in client.list_workflows(query, limit=STUCK_SCAN_LIMIT):
        running.setdefault(e.id, e)
    limit = asyncio.Semaphore(16)

    async def check(e: WorkflowExecution) -> AttentionItem | None:
        async with limit:
            try:
                desc = await client.get_workflow_handle(e.id).describe()
                if desc.raw_description.pending_workflow_task.attempt <= 1:
                    return None
                why = await task_failure(client, e.id)
            except RPCError:
                return None
        if why is None:
            return None
        return AttentionItem(
            kind="stuck_run",
            title=f"{e.id} is stuck",
            detail=why.removeprefix("stuck: "),
            what_to_do="a bug in workflow code: deploy a fixed worker and the run resumes "
            "from its history",
            workflow_id=e.id,
            run_id=e.run_id,
            web_ui_url=web_ui_url(settings, e.id, e.run_id),
            when=e.start_time,
        )

    found = await asyncio.gather(*(check(e) for e in running.values()))
    return [item for item in found if item is not None]


async def _connector_gates(
    client: Client, store: KernelStore, settings: Settings
) -> list[AttentionItem]:
    query = (
        f"{PROCESS.name} = 'synthetic-check' AND {AWAITING_APPROVAL.name} = true "
        "AND ExecutionStatus = 'Running'"
    )
    items = []
    async for e in client.list_workflows(query, limit=50):
        requested = [
            ev for ev in store.events.for_run(e.id, e.run_id) if ev.kind == "gate.requested"
        ]
        title = str(requested[-1].payload.get("title")) if requested else "Connector check failed"
        items.append(
            AttentionItem(
                kind="connector_gate",
                title=title,
                detail=one_line(str(requested[-1].payload.get("summary") or ""), 300)
                if requested
                else "",
                what_to_do=f"fix the connector's settings or the outside system, then "
                f"acknowledge: `aios approve {e.id}`",
                workflow_id=e.id,
                run_id=e.run_id,
                web_ui_url=web_ui_url(settings, e.id, e.run_id),
                when=e.start_time,
            )
        )
    return items


async def attention(
    client: Client,
    store: KernelStore,
    settings: Settings,
    *,
    since: timedelta = timedelta(hours=24),
) -> Attention:
    """The Attention page: failed runs and failed compensations of the last ``since``, and
    what needs the operator now (effects in doubt, overdue invoices, stuck runs, open
    connector gates), each with a one-line "what to do". A part that cannot be read is named
    in ``notes`` and the rest is still shown."""
    now = datetime.now(UTC)
    start = now - since
    report = Attention(since=start)
    parts = {
        "failed runs": _failed_runs(client, settings, start),
        "stuck runs": _stuck_runs(client, settings),
        "connector gates": _connector_gates(client, store, settings),
    }
    for name, coro in parts.items():
        try:
            report.items.extend(await coro)
        except RPCError as exc:
            report.notes.append(f"{name}: Temporal did not answer ({one_line(str(exc), 120)})")
    report.items.extend(_failed_compensations(store, settings, start))
    report.items.extend(_effects_in_doubt(store, settings))
    report.items.extend(_overdue_invoices(store, settings, now))
    return report
