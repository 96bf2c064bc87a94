"""What every process shows the operator, from the Process base: the outcome as a search
attribute, current details naming the exact command that answers the run, a summary on every
activity, and the kickoff in the operator's timezone."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from aios import operations
from aios.activities.kernel import KernelActivities
from aios.activities.models import RecordEventInput
from aios.config import Settings
from aios.kernel.models import ClientIntake
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.gates import GateDecision
from aios.workflows.onboarding import OnboardingInput, OnboardingWorkflow
from aios.workflows.proposal import ClientResponse
from tests.conftest import RecordingSmtp, unique_client
from tests.helpers import RUNS, replacing, start, start_at_gate, wait_for_gate
from tests.money_helpers import (
    bill,
    ends_cancelled,
    fast,
    known_client,
    progress_until,
    propose,
    waiting_for,
)


async def current_details(client: Client, workflow_id: str) -> str:
    metadata = await client.get_workflow_handle(workflow_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return metadata.current_details


async def outcome_of(client: Client, workflow_id: str) -> str | None:
    """``AiosOutcome`` of the run, through a visibility query as the Web UI filters it."""
    async with asyncio.timeout(10):
        while True:
            runs = [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
            values = [r.search_attributes.get("AiosOutcome") for r in runs]
            if values and values[0]:
                return str(values[0][0])
            await asyncio.sleep(0.1)


async def summaries(client: Client, handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The summary of every activity the run scheduled or ran locally (a kernel write)."""
    converter = client.data_converter.payload_converter
    found = []
    async for event in handle.fetch_history_events():
        local = (
            event.HasField("marker_recorded_event_attributes")
            and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        )
        if local or event.HasField("activity_task_scheduled_event_attributes"):
            payload = event.user_metadata.summary
            found.append(converter.from_payload(payload, str) if payload.data else "")
    return found


async def test_a_rejected_onboarding_says_rejected_and_its_gate_says_how_to_answer(
    client: Client, settings: Settings, worker: object
) -> None:
    handle, _, _, _ = await start_at_gate(client, settings)
    details = await current_details(client, handle.id)
    assert details.startswith("**Waiting for your decision** at gate `welcome`")
    assert f"`aios approve {handle.id}`" in details
    assert f'`aios reject {handle.id} --comment "why"`' in details
    assert (
        f"`temporal workflow signal --namespace {settings.temporal_namespace} "
        f"--workflow-id {handle.id} --name decide --input " in details
    )
    await operations.decide(
        client, handle.id, GateDecision(decision="reject", approver="pat", comment="not a fit")
    )
    assert (await handle.result()).status == "rejected"
    assert await outcome_of(client, handle.id) == "rejected"
    status = await operations.describe(client, handle.id)
    assert (status.status, status.outcome) == ("completed", "rejected")  # what aios status shows
    assert (await current_details(client, handle.id)).startswith("Ended: **rejected**. not a fit")
    names = await summaries(client, handle)
    assert names and all(names), names
    assert "record event: gate/welcome/gate.decided" in names


async def test_a_completed_onboarding_books_the_kickoff_at_ten_in_the_operators_timezone(
    client: Client, settings: Settings, smtp: RecordingSmtp, worker: object
) -> None:
    name, key, email = unique_client()
    workflow_id = f"onboarding/{key}"
    handle = await client.start_workflow(
        OnboardingWorkflow.run,
        OnboardingInput(
            client=ClientIntake(name=name, key=key, email=email), timezone="America/New_York"
        ),
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
    RUNS.append(workflow_id)
    await wait_for_gate(client, workflow_id)
    await operations.decide(client, workflow_id, GateDecision(decision="approve", approver="p"))
    assert (await handle.result()).status == "completed"
    assert await outcome_of(client, workflow_id) == "completed"
    [mail] = smtp.to(email)
    [invite] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    ics = bytes(invite.get_payload(decode=True)).decode()
    start = next(line for line in ics.splitlines() if line.startswith("DTSTART"))
    # 10:00 in New York is 15:00 UTC in winter (EST) and 14:00 UTC in summer (EDT).
    assert start.endswith(("T150000Z", "T140000Z")), start


async def test_money_runs_end_with_their_outcome(
    client: Client, settings: Settings, services: Services, worker: object
) -> None:
    store = services.store
    _, key, _ = known_client(store, segment="consulting")
    proposal = await propose(client, fast(settings), store, key, "Two-day pricing workshop")
    await progress_until(client, proposal.id, waiting_for("client_response"))
    details = await current_details(client, proposal.id)
    pid = proposal.id.split("/", 1)[1]
    assert details.startswith("**Waiting for the client's answer** to v1")
    assert f"`aios respond {pid} accept`" in details
    await operations.respond(
        client, pid, ClientResponse(response="decline", note="not this quarter")
    )
    assert (await proposal.result()).status == "declined"
    assert await outcome_of(client, proposal.id) == "declined"

    paid = await bill(client, fast(settings), store, key, 50_00)
    progress = await progress_until(client, paid.id, waiting_for("payment_received"))
    details = await current_details(client, paid.id)
    assert details.startswith(f"**Waiting for payment** of {progress.number}: USD 50.00 open")
    assert f'`aios paid {progress.number} --reference "bank ref"`' in details
    await operations.record_payment(
        client, store, paid.id, amount=None, reference="r", recorded_by="pat"
    )
    assert (await paid.result()).status == "paid"
    assert await outcome_of(client, paid.id) == "paid"

    cancelled = await bill(client, fast(settings), store, key, 60_00)
    await progress_until(client, cancelled.id, waiting_for("payment_received"))
    await operations.cancel(client, cancelled.id)
    await ends_cancelled(cancelled)
    assert await outcome_of(client, cancelled.id) == "cancelled"


async def test_onboarding_starts_with_its_summary_details_and_the_operators_timezone(
    client: Client, settings: Settings, worker: object
) -> None:
    name, key, email = unique_client()
    berlin = settings.model_copy(update={"business_timezone": "Europe/Berlin"})
    started = await operations.start_onboarding(
        client, berlin, ClientIntake(name=name, key=key, email=email)
    )
    RUNS.append(started.workflow_id)
    handle = client.get_workflow_handle(started.workflow_id)
    desc = await handle.describe()
    assert await desc.static_summary() == f"Onboard {name}"
    details = await desc.static_details()
    assert details is not None and f"Client `{key}` <{email}>" in details
    assert "10:00 Europe/Berlin" in details
    await wait_for_gate(client, handle.id)
    events = [e async for e in handle.fetch_history_events()]
    started_input = events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert '"timezone":"Europe/Berlin"' in started_input.data.decode()
    await handle.terminate("test cleanup")


async def test_a_kernel_write_that_fails_retries_in_the_worker_and_the_run_goes_on(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: RecordingSmtp,
) -> None:
    """Kernel writes run as local activities: one that fails (the database refused the
    connection twice) is tried again by the worker under the step's retry policy, the run
    goes on, and the event is in the log once."""
    kernel = KernelActivities(services.store)
    attempts: list[int] = []

    @activity.defn(name="record_event")
    def record_event(inp: RecordEventInput) -> None:
        if inp.kind == "gate.decided":
            attempts.append(activity.info().attempt)
            if activity.info().attempt < 3:
                raise psycopg.OperationalError("connection to server at 127.0.0.1 refused")
        kernel.record_event(inp)

    activities = replacing(services.activities(), record_event=record_event)
    async with build_worker(client, settings.task_queue, activities, executor):
        handle, _, _, email = await start_at_gate(client, settings)
        await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed" and len(smtp.to(email)) == 1
    assert attempts == [1, 2, 3]
    kinds = [e.kind for e in services.store.events.for_run(handle.id)]
    assert kinds.count("gate.decided") == 1
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # Local: no task-queue round trip; only the gate's opening is an ordinary activity.
    assert scheduled.count("record_event") == 1


async def test_a_gate_shows_in_the_inbox_only_once_the_run_has_durably_opened_it(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: RecordingSmtp,
) -> None:
    """Operators (and their scripts) answer what the gate projection shows. Its row must never
    run ahead of the run's history: a worker lost right after writing it would otherwise
    leave a gate answered that the replayed run has not opened, and the run would turn the
    decision down. So the gate's opening is written by an ordinary activity, scheduled by a
    workflow task already in history; here that write lingers after writing, and the history
    must already show the gate open when its row appears."""
    kernel = KernelActivities(services.store)

    @activity.defn(name="record_event")
    def record_event(inp: RecordEventInput) -> None:
        kernel.record_event(inp)
        if inp.kind == "gate.requested":
            time.sleep(2)  # the row is visible; the step is not over

    activities = replacing(services.activities(), record_event=record_event)
    async with build_worker(client, settings.task_queue, activities, executor):
        name, key, email = unique_client()
        handle = await start(client, settings, name, key, email)
        async with asyncio.timeout(30):
            while services.store.gates.get(handle.id) is None:
                await asyncio.sleep(0.02)
        written = [
            e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            async for e in handle.fetch_history_events()
            if e.HasField("upsert_workflow_search_attributes_event_attributes")
        ]
        awaiting = [f["AiosAwaitingApproval"].data for f in written if "AiosAwaitingApproval" in f]
        assert awaiting == [b"true"]  # the history has the gate open
        await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed" and len(smtp.to(email)) == 1
