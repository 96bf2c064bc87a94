"""What the console shows: typed read models for its pages, no HTML.

- ``gate_view``: the gate waiting (or last decided) in a run and the full document it decides,
  one model per gate kind (``welcome``, ``proposal``, ``invoice``, ``budget``, ``agent``,
  ``connectors``), with the editable fields and their current values; ``gate_pdf`` renders the
  proposal or invoice the way the sending activity does; ``form_edits``, ``check_edits`` and
  ``edit_diff`` take an Edit form through exactly the checks the workflow applies and show the
  change as a unified diff before it is sent.
- ``runs``, ``client_view`` and ``attention`` (``operations.console_lists``): the Runs, Client
  and Attention pages.

A run that does not exist (in Temporal nor in the event log) raises ``NotFound``, an
``InvalidInput``, which the console answers with 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.kernel.models import Event
from aios.operations.common import web_ui_url
from aios.operations.console_lists import (
    Attention,
    AttentionItem,
    ClientView,
    InvoiceRow,
    MemoryPoint,
    ProposalRow,
    RunRow,
    attention,
    client_view,
    memory_points,
    runs,
)
from aios.operations.console_models import (
    FORM_ERROR,
    AgentGateDocument,
    BudgetGateDocument,
    CandidateAnswer,
    CitedMemory,
    ConnectorsGateDocument,
    EditableField,
    FailingCheck,
    FieldDiff,
    GateDocument,
    GateState,
    GateStatus,
    GateView,
    InvoiceGateDocument,
    NotFound,
    ProposalGateDocument,
    WelcomeGateDocument,
)
from aios.operations.gate_documents import gate_document, render_gate_pdf
from aios.operations.gate_edits import check_edits, edit_diff, editable_fields, form_edits
from aios.operations.gates import waiting_gates
from aios.operations.messages import PROCESS, WaitingGate

if TYPE_CHECKING:
    from aios.kernel.store import KernelStore

__all__ = [
    "FORM_ERROR",
    "AgentGateDocument",
    "Attention",
    "AttentionItem",
    "BudgetGateDocument",
    "CandidateAnswer",
    "CitedMemory",
    "ClientView",
    "ConnectorsGateDocument",
    "EditableField",
    "FailingCheck",
    "FieldDiff",
    "GateDocument",
    "GateState",
    "GateView",
    "InvoiceGateDocument",
    "InvoiceRow",
    "MemoryPoint",
    "NotFound",
    "ProposalGateDocument",
    "ProposalRow",
    "RunRow",
    "WelcomeGateDocument",
    "attention",
    "check_edits",
    "client_view",
    "edit_diff",
    "form_edits",
    "gate_pdf",
    "gate_view",
    "memory_points",
    "render_gate_pdf",
    "runs",
]

# --- the gate -----------------------------------------------------------------------------------


async def gate_view(
    client: Client,
    store: KernelStore,
    settings: Settings,
    workflow_id: str,
    *,
    run_id: str | None = None,
    gate_key: str | None = None,
) -> GateView:
    """The gate waiting in ``workflow_id`` (its latest run, or ``run_id``), else the last one
    it opened, with the full document; ``gate_key`` ("gate/welcome") picks one gate of the run.
    ``NotFound`` when the run or its gate does not exist."""
    run_status, run_id, process = await _run(client, workflow_id, run_id)
    events = store.events.for_run(workflow_id, run_id or None)
    if not run_id and events:  # Temporal no longer has the run; the event log still does
        run_id = events[-1].run_id
        events = [e for e in events if e.run_id == run_id]
    if not events and run_status == "unknown":
        raise NotFound(f"workflow {workflow_id!r} does not exist")
    waiting: WaitingGate | None = None
    note = ""
    if run_status == "running":
        try:
            gates = await waiting_gates(client, workflow_id)
            waiting = gates[0] if gates else None
        except (RPCError, WorkflowQueryFailedError):
            note = "no worker answered; the gate is shown from the event log"
    if gate_key is not None:
        opened = [e for e in events if e.kind == "gate.requested"]
        if waiting is not None and opened and not _in_gate(opened[-1], gate_key):
            waiting = None  # another gate of the run waits, not this one
        events = [e for e in events if not e.kind.startswith("gate.") or _in_gate(e, gate_key)]
    gate = _gate_state(settings, workflow_id, run_id, process, run_status, events, waiting)
    if gate is None:
        raise NotFound(
            f"workflow {workflow_id!r} has no gate" + (f" {gate_key!r}" if gate_key else "")
        )
    _projected(store, gate)
    document, doc_note = await gate_document(client, store, settings, gate)
    view = GateView(gate=gate, document=document, note=note or doc_note)
    view.fields = editable_fields(view)
    return view


async def _run(client: Client, workflow_id: str, run_id: str | None) -> tuple[str, str, str]:
    """(status, run id, process) of the run; status ``unknown`` when Temporal has no such run."""
    process = workflow_id.split("/", 1)[0]
    try:
        desc = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return "unknown", run_id or "", process
        raise
    status = desc.status.name.lower() if desc.status else "unknown"
    return status, desc.run_id, desc.typed_search_attributes.get(PROCESS) or process


def _in_gate(event: Event, gate_key: str) -> bool:
    return _gate_key(event, event.kind) == gate_key


def _projected(store: KernelStore, gate: GateState) -> None:
    """Fill in from the gate projection what the event log does not say: reminders sent, the
    next reminder, a gate closed because its run ended, and how it was answered."""
    record = store.gates.get(gate.workflow_id, gate.run_id or None, gate.gate_key)
    if record is None:
        if gate.status != "waiting":
            when = f"{gate.decided_at:%Y-%m-%d %H:%M} UTC" if gate.decided_at else "an unknown time"
            gate.answered = {
                "expired": f"expired at {when} without a decision",
                "closed": f"closed: the run ended ({gate.run_status})",
            }.get(gate.status, f"already decided by {gate.approver or 'someone'} at {when}")
        return
    gate.reminders_sent = max(gate.reminders_sent, record.reminders_sent)
    if gate.status == "waiting" and gate.next_reminder_at is None:
        gate.next_reminder_at = record.next_reminder_at
    if record.status == "closed" and gate.status in ("waiting", "closed"):
        gate.status = "closed"
    if record.status != "waiting":
        gate.answered = record.answered()


def _gate_key(event: Event, suffix: str) -> str:
    prefix = f"{event.workflow_id}/{event.run_id}/"
    return event.event_key.removeprefix(prefix).removesuffix(f"/{suffix}")


def _gate_state(
    settings: Settings,
    workflow_id: str,
    run_id: str,
    process: str,
    run_status: str,
    events: list[Event],
    waiting: WaitingGate | None,
) -> GateState | None:
    requested = [e for e in events if e.kind == "gate.requested"]
    if not requested and waiting is None:
        return None
    if waiting is not None:
        # The waiting gate's own request; none yet when its event has not landed (the run
        # answers the query before the activity that records the event has run).
        mine = [e for e in requested if e.payload.get("gate") == waiting.gate]
        last = mine[-1] if mine else None
    else:
        last = requested[-1] if requested else None
    gate_key = _gate_key(last, "gate.requested") if last else f"gate/{waiting.gate}"  # type: ignore[union-attr]
    payload = last.payload if last else {}
    ended = {_gate_key(e, e.kind): e for e in events if e.kind in ("gate.decided", "gate.expired")}
    end = ended.get(gate_key)
    status: GateStatus
    if waiting is not None:
        status = "waiting"
    elif end is not None and end.kind == "gate.expired":
        status = "expired"
    elif end is not None:
        status = {"approve": "approved", "reject": "rejected", "edit": "edited"}.get(
            str(end.payload.get("decision")), "approved"
        )  # type: ignore[assignment]
    else:
        status = "waiting" if run_status == "running" else "closed"
    name = waiting.gate if waiting else str(payload.get("gate") or gate_key.split("/")[-1])
    expires = waiting.expires_at if waiting else _when(payload.get("expires_at"))
    end_payload = end.payload if end else {}
    return GateState(
        workflow_id=workflow_id,
        run_id=run_id,
        process=process,
        gate=name,
        gate_key=gate_key,
        title=waiting.title if waiting else str(payload.get("title") or name),
        summary=waiting.summary if waiting else str(payload.get("summary") or ""),
        status=status,
        run_status=run_status,
        requested_at=waiting.requested_at if waiting else (last.occurred_at if last else None),
        expires_at=expires,
        next_reminder_at=waiting.next_reminder_at if waiting else None,
        reminders_sent=waiting.reminders_sent
        if waiting
        else int(end_payload.get("reminders_sent") or 0),
        amount=waiting.amount if waiting else _str(payload.get("amount")),
        drafted_by=waiting.drafted_by if waiting else _str(payload.get("drafted_by")),
        editable_fields=list(waiting.editable_fields)
        if waiting
        else _list(payload.get("editable_fields")) or _default_editable(name),
        rejected_signals=waiting.rejected_signals if waiting else 0,
        last_rejection=waiting.last_rejection if waiting else None,
        decision=_str(end_payload.get("decision")),
        approver=_str(end_payload.get("approver")),
        comment=str(end_payload.get("comment") or ""),
        edited_fields=_list(end_payload.get("edited_fields")),
        decided_at=end.occurred_at if end else None,
        details=dict(payload.get("details") or {}),
        web_ui_url=web_ui_url(settings, workflow_id, run_id or None),
    )


def _default_editable(gate: str) -> list[str]:
    """The fields a gate lets the operator edit (as the workflows open them)."""
    if gate == "welcome":
        from aios.activities.agents import EDITABLE_DRAFT_FIELDS

        return list(EDITABLE_DRAFT_FIELDS)
    if gate == "proposal":
        from aios.activities.proposals import EDITABLE_PROPOSAL_FIELDS

        return list(EDITABLE_PROPOSAL_FIELDS)
    return []


def _str(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _when(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


async def gate_pdf(
    client: Client,
    store: KernelStore,
    settings: Settings,
    workflow_id: str,
    *,
    run_id: str | None = None,
) -> bytes | None:
    """The PDF of the proposal or invoice a gate decides, as the client gets it (rendered
    with ``aios.documents`` like the sending activity); ``None`` for other gates."""
    view = await gate_view(client, store, settings, workflow_id, run_id=run_id)
    return render_gate_pdf(view, store, settings)
