"""Any run, whatever its process: its status and events, the document its gate is about, and
cancelling it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.models import Event
from aios.operations.billing import InvoiceDocument, invoice_document, invoice_workflow_id
from aios.operations.common import (
    Session,
    describe_run,
    require_running,
    run_progress,
    task_failure,
    unanswered,
)
from aios.operations.gates import waiting_gates
from aios.operations.messages import OUTCOME, WaitingGate
from aios.operations.onboarding import WelcomeDocument, welcome_document
from aios.operations.proposals import ProposalDocument, proposal_document
from aios.workflows.gates import PendingGate

__all__ = ["Document", "RunStatus", "Shown", "cancel", "describe", "run_status", "show"]

NO_WORKER = "no worker answered the query; start one with `aios worker`"


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
    waiting_for: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    # How the run ended (search attribute AiosOutcome): "rejected" for a run whose status is
    # completed, say; None while it runs, and for runs that ended before the attribute existed.
    outcome: str | None = None
    events: list[Event] = field(default_factory=list)  # filled by ``run_status``


async def describe(client: Client, workflow_id: str) -> RunStatus:
    desc = await describe_run(client, workflow_id)
    steps: list[str] = []
    gates: list[PendingGate] = []
    note = ""
    waiting_for: str | None = None
    details: dict[str, str] = {}
    if desc.status == WorkflowExecutionStatus.RUNNING:
        stuck = None
        if desc.raw_description.pending_workflow_task.attempt > 1:
            stuck = await task_failure(client, workflow_id)
        try:
            progress = await run_progress(client, workflow_id)
            steps, gates = progress.steps_done, progress.pending_gates
            waiting_for = progress.waiting_for
            details = progress.details()
        except (RPCError, WorkflowQueryFailedError):
            note = await unanswered(client, workflow_id)
            if note == "no worker answered":
                note = NO_WORKER
        if stuck:
            note = stuck
    return RunStatus(
        waiting_for=waiting_for,
        details=details,
        workflow_id=workflow_id,
        run_id=desc.run_id,
        status=desc.status.name.lower() if desc.status else "unknown",
        started_at=desc.start_time,
        closed_at=desc.close_time,
        steps_done=steps,
        gates=gates,
        note=note,
        outcome=desc.typed_search_attributes.get(OUTCOME),
    )


async def run_status(settings: Settings, workflow_id: str) -> RunStatus:
    """``describe`` with the run's events from the kernel (``aios status``)."""
    with Session(settings) as session:
        status = await describe(await session.client(), workflow_id)
        events = session.store().events.for_run(workflow_id, status.run_id)
    return replace(status, events=events)


async def cancel(client: Client, workflow_id: str) -> None:
    """Request cancellation; the workflow runs its compensations before it ends."""
    await require_running(client, workflow_id)
    await client.get_workflow_handle(workflow_id).cancel()


# --- the document a gate is about ------------------------------------------------------------

Document = Annotated[
    WelcomeDocument | ProposalDocument | InvoiceDocument, Field(discriminator="kind")
]
SHOWN_PROCESSES = ("onboarding", "proposal", "billing")


class Shown(BaseModel):
    """What ``aios show`` prints: the run, the gate waiting (if any) and its document in full."""

    workflow_id: str
    run_id: str
    process: str
    status: str
    outcome: str | None = None
    gate: WaitingGate | None = None
    note: str = ""
    document: Document | None = None


async def show(settings: Settings, ref: str) -> Shown:
    """The full document behind a run: the welcome email of an onboarding (its latest
    version), a proposal's latest version, an invoice. ``ref`` is a workflow id
    (``onboarding/acme-ltd``, ``proposal/<id>``, ``billing/<id>``) or an invoice number."""
    with Session(settings) as session:
        client = await session.client()
        ref = ref.strip()
        if "/" in ref:
            workflow_id = ref
        elif ref.upper().startswith("INV-"):
            workflow_id = invoice_workflow_id(session.store(), ref)
        else:
            raise InvalidInput(
                f"{ref!r}: give a workflow id (onboarding/<client-key>, proposal/<id>, "
                "billing/<id>) or an invoice number (INV-000042)"
            )
        process, _, key = workflow_id.partition("/")
        if process not in SHOWN_PROCESSES or not key:
            raise InvalidInput(
                f"{workflow_id}: `aios show` shows onboarding, proposal and billing runs"
            )
        desc = await describe_run(client, workflow_id)
        running = desc.status == WorkflowExecutionStatus.RUNNING
        gate: WaitingGate | None = None
        note = ""
        if running:
            try:
                gates = await waiting_gates(client, workflow_id)
                gate = gates[0] if gates else None
            except (RPCError, WorkflowQueryFailedError):
                note = await unanswered(client, workflow_id)
                if note == "no worker answered":
                    note = NO_WORKER
        store = session.store()
        document: WelcomeDocument | ProposalDocument | InvoiceDocument | None
        if process == "onboarding":
            document = welcome_document(store, workflow_id, desc.run_id)
        elif process == "proposal":
            document = proposal_document(store, key)
        else:
            document = invoice_document(store, key)
    return Shown(
        workflow_id=workflow_id,
        run_id=desc.run_id,
        process=process,
        status=desc.status.name.lower() if desc.status else "unknown",
        outcome=desc.typed_search_attributes.get(OUTCOME),
        gate=gate,
        note=note,
        document=document,
    )
