"""The kill switch reaches runs in flight: real dev server, PostgreSQL and SMTP servers.

A paused step waits inside its activity (heartbeating) and goes on when resumed: the run
neither fails nor retries, the inbox shows it as "paused: <switch>", and the effect happens
exactly once. Switches are global to the database, so each test pauses its own switch and
resumes it in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from aios import operations
from aios.config import Settings
from aios.connectors.email import SmtpConfig, SmtpEmailConnector
from aios.kernel.store import KernelStore
from aios.kernel.stores.notices import Notice
from aios.kernel.stores.switches import SwitchChange
from aios.operations.control import list_switches
from aios.workers.main import WorkerTuning, build_worker
from aios.workers.services import Services, connector_runtime, pause_gate
from aios.workflows.gates import GateDecision
from aios.workflows.proposal import ClientResponse
from tests.batch_send import BatchActivities, SendBatchWorkflow
from tests.conftest import RecordingSmtp, subprocess_env, unique_client
from tests.helpers import notice_lost_worker_soon, save_history, start, start_at_gate
from tests.money_helpers import (
    bill,
    body_text,
    fast,
    known_client,
    mails_until,
    progress_until,
    propose,
    waiting_for,
)

ROOT = Path(__file__).resolve().parents[1]


def quick(settings: Settings) -> Settings:
    """A worker that reads the switches on every check and looks again every 0.2 s."""
    return settings.model_copy(update={"switch_cache_seconds": 0.01, "switch_poll_seconds": 0.2})


@contextlib.asynccontextmanager
async def switch_worker(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    cached_runs: int = WorkerTuning.cached_runs,
    heartbeat_throttle: timedelta = timedelta(seconds=1),
) -> AsyncIterator[Worker]:
    """The real activities, with the kill switches read afresh at every check: the pause a
    test writes right before a step is then certainly seen by that step. Heartbeats are sent
    at least every second (unless ``heartbeat_throttle`` says otherwise), so a cancel reaches
    a waiting step within about a second."""
    gate = pause_gate(quick(services.settings), services.store)
    runtime = connector_runtime(services.settings, services.store, pause=gate)
    svc = dataclasses.replace(services, runtime=runtime, pause=gate)
    tuning = WorkerTuning(heartbeat_throttle=heartbeat_throttle, cached_runs=cached_runs)
    async with build_worker(
        client, settings.task_queue, svc.activities(), executor, tuning=tuning
    ) as w:
        yield w


@pytest.fixture
async def quick_worker(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    async with switch_worker(client, settings, services, executor) as w:
        yield w


@contextlib.contextmanager
def email_paused(store: KernelStore) -> Iterator[SwitchChange]:
    """Connector ``email`` paused (by pat, for smtp maintenance) until the block ends."""
    change = SwitchChange(scope="connector", name="email", by="pat", reason="smtp maintenance")
    store.switches.pause(change)
    try:
        yield change
    finally:
        store.switches.resume(change)


async def notice_until(store: KernelStore, key: str, status: str, timeout: float = 30) -> Notice:
    async with asyncio.timeout(timeout):
        while True:
            notice = await asyncio.to_thread(store.notices.get, key)
            if notice is not None and notice.status == status:
                return notice
            await asyncio.sleep(0.1)


async def gate_emailed(store: KernelStore, workflow_id: str, timeout: float = 30) -> None:
    """Wait until the run's gate email went out (event ``gate.emailed``).

    A gate shows in ``pending_gates`` as soon as it opens, before its email to the operator is
    sent. A switch paused before the email went out holds the email too (and a decision then
    cancels it): the tests that pause a later step wait for the email first.
    """
    async with asyncio.timeout(timeout):
        while True:
            events = await asyncio.to_thread(store.events.for_run, workflow_id)
            if any(e.kind == "gate.emailed" for e in events):
                return
            await asyncio.sleep(0.1)


async def heartbeat_says(handle: WorkflowHandle, activity_type: str) -> str:
    """What the pending ``activity_type`` last said in its heartbeat (the Web UI shows it)."""
    converter = DataConverter.default.payload_converter
    async with asyncio.timeout(30):
        while True:
            desc = await handle.describe()
            for p in desc.raw_description.pending_activities:
                if p.activity_type.name == activity_type and p.heartbeat_details.payloads:
                    return str(converter.from_payload(p.heartbeat_details.payloads[0], str))
            await asyncio.sleep(0.1)


async def attempts_of(handle: WorkflowHandle, activity_type: str) -> list[int]:
    """The attempt number of every start of ``activity_type`` in the run's history, and no
    failure or timeout of it."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    bad = [
        e
        for e in history.events
        if e.event_type
        in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
        )
        and (
            e.activity_task_failed_event_attributes.scheduled_event_id in scheduled
            or e.activity_task_timed_out_event_attributes.scheduled_event_id in scheduled
        )
    ]
    assert bad == []
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def test_a_run_paused_between_its_gate_and_its_email_sends_it_once_after_resume(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, quick_worker
) -> None:
    store = services.store
    handle, _, _, email = await start_at_gate(client, settings)
    await gate_emailed(store, handle.id)  # the pause below holds the welcome, not the gate
    change = SwitchChange(scope="process", name="onboarding", by="pat", reason="wording check")
    store.switches.pause(change)
    try:
        approve = GateDecision(decision="approve", approver="pat", comment="fine")
        await operations.decide(client, handle.id, approve)
        key = f"paused/{handle.id}/process:onboarding"
        notice = await notice_until(store, key, "open")
        assert notice.title == "paused: process:onboarding"
        assert "wording check" in notice.summary and "aios resume process onboarding" in (
            notice.summary
        )
        # Approved, yet nothing sent: the run waits, it has not failed.
        assert smtp.to(email) == []
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        [listed] = [s for s in list_switches(store) if s.switch == "process:onboarding"]
        assert listed.paused and handle.id in listed.waiting  # `aios pause` shows who waits
        assert await heartbeat_says(handle, "send_welcome") == "paused: process:onboarding"
    finally:
        store.switches.resume(change)

    result = await handle.result()
    assert result.status == "completed"
    assert len(smtp.to(email)) == 1  # exactly one welcome email
    assert (await notice_until(store, key, "resolved")).resolved_by == "aios"
    assert await attempts_of(handle, "send_welcome") == [1]  # no retry burned
    [listed] = [s for s in list_switches(store) if s.switch == "process:onboarding"]
    assert handle.id not in listed.waiting


async def test_a_run_cancelled_while_its_step_waits_at_a_pause_leaves_no_open_notice(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, quick_worker
) -> None:
    """The operator cancels a run whose welcome waits at a paused switch: the run ends
    cancelled, nothing is sent, and its "paused" notice is resolved, saying why, instead of
    staying in the inbox for a wait nobody has any more."""
    store = services.store
    handle, _, _, email = await start_at_gate(client, settings)
    await gate_emailed(store, handle.id)
    change = SwitchChange(scope="process", name="onboarding", by="pat", reason="cancel test")
    store.switches.pause(change)
    try:
        await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
        key = f"paused/{handle.id}/process:onboarding"
        await notice_until(store, key, "open")
        await handle.cancel()
        notice = await notice_until(store, key, "resolved")
    finally:
        store.switches.resume(change)
    assert (notice.resolved_by, notice.resolution) == (
        "aios",
        "cancelled: the run no longer waits",
    )
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    # The step ended at the cancel: its welcome never reached the outbox, and was not sent.
    welcome = f"{handle.id}/{handle.run_id}/send-welcome"
    assert store.outbox.entry(welcome) is None
    assert smtp.to(email) == []


async def test_a_decision_made_while_the_gate_email_waits_at_a_pause_acts_and_cancels_it(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, quick_worker
) -> None:
    """Email paused before the gate opens: the gate's email to the operator waits. The
    operator decides in the meantime (console, CLI): the run acts on it at once, the email
    nobody needs any more is cancelled (its notice resolved, saying so) and never sent, and the
    welcome waits at the same switch under a notice of its own until the resume."""
    store = services.store
    with email_paused(store):
        handle, _, _, email = await start_at_gate(client, settings)
        first = f"paused/{handle.id}/connector:email"
        assert "send_gate_reminder" in (await notice_until(store, first, "open")).summary
        await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
        welcome = await notice_until(store, f"{first}/2", "open")
        assert "send_welcome" in welcome.summary
        gate_email = await notice_until(store, first, "resolved")
        assert gate_email.resolution == "cancelled: the run no longer waits"
        assert smtp.to(email) == []
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed" and len(smtp.to(email)) == 1
    assert (await notice_until(store, f"{first}/2", "resolved")).resolution == (
        "resumed: the step went on"
    )
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert "gate.emailed" not in kinds and kinds.count("email.sent") == 1, kinds
    assert "outbox.cancelled" in kinds
    # The email's outbox row is cancelled: no later attempt sends it, and it is not in doubt.
    run_id = (await handle.describe()).run_id
    entry = store.outbox.entry(f"{handle.id}/{run_id}/gate/welcome/reminder/0")
    assert entry is not None and entry["status"] == "cancelled", entry
    await save_history(handle, "onboarding_gate_email_cancelled")


async def test_a_run_evicted_after_every_step_cancels_its_waiting_gate_email_all_the_same(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    executor: ThreadPoolExecutor,
) -> None:
    """A worker that keeps no run in its cache evicts the run after every workflow task (the
    SDK cancels an evicted run's tasks) while the gate's email waits at a paused switch beside
    the gate: no eviction leaves an error behind, and the run, replayed each time, acts on the
    decision and cancels the email."""
    store = services.store
    unraisable: list[str] = []
    before = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}")
    with email_paused(store) as change:
        try:
            async with switch_worker(client, settings, services, executor, cached_runs=0):
                handle, _, _, email = await start_at_gate(client, settings)
                first = f"paused/{handle.id}/connector:email"
                assert "send_gate_reminder" in (await notice_until(store, first, "open")).summary
                decision = GateDecision(decision="approve", approver="pat")
                await operations.decide(client, handle.id, decision)
                gate_email = await notice_until(store, first, "resolved")
                assert gate_email.resolution == "cancelled: the run no longer waits"
                store.switches.resume(change)
                result = await asyncio.wait_for(handle.result(), 60)
            gc.collect()
        finally:
            sys.unraisablehook = before
    assert result.status == "completed" and len(smtp.to(email)) == 1
    run_id = (await handle.describe()).run_id
    entry = store.outbox.entry(f"{handle.id}/{run_id}/gate/welcome/reminder/0")
    assert entry is not None and entry["status"] == "cancelled", entry
    assert unraisable == []


async def test_the_notice_of_a_cancelled_waiting_step_is_resolved_as_the_run_moves_on(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    executor: ThreadPoolExecutor,
) -> None:
    """Heartbeats held back as a worker does by default: the gate email waiting at the pause
    hears of its cancel only with a later heartbeat's answer. Its notice is resolved by the
    run as it cancels the email, so the inbox is right by the time the decision is logged."""
    store = services.store
    default = WorkerTuning.heartbeat_throttle
    with email_paused(store) as change:
        async with switch_worker(client, settings, services, executor, heartbeat_throttle=default):
            handle, _, _, email = await start_at_gate(client, settings)
            first = f"paused/{handle.id}/connector:email"
            await notice_until(store, first, "open")
            decision = GateDecision(decision="approve", approver="pat")
            await operations.decide(client, handle.id, decision)
            async with asyncio.timeout(30):
                while not any(e.kind == "gate.decided" for e in store.events.for_run(handle.id)):
                    await asyncio.sleep(0.05)
            notice = store.notices.get(first)
            assert notice is not None and notice.status == "resolved", notice
            assert notice.resolution == "cancelled: the run no longer waits"
            store.switches.resume(change)
            result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed" and len(smtp.to(email)) == 1
    assert [m for m in smtp.to(settings.operator_email) if handle.id in str(m)] == []


async def test_a_decision_made_while_a_gate_reminder_waits_at_a_pause_acts_and_cancels_it(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, quick_worker
) -> None:
    """The gate's first email went out; then email is paused and the reminder due two seconds
    after the gate opened waits at the switch. A decision acts at once (the gate is decided
    while email is still paused), the reminder is cancelled and never sent, and it does not
    count as sent."""
    store = services.store
    quick = settings.model_copy(
        update={"gate_remind_after": timedelta(seconds=2), "gate_expire_after": timedelta(hours=1)}
    )
    name, key, email = unique_client()
    handle = await start(client, quick, name, key, email)
    await gate_emailed(store, handle.id)
    with email_paused(store):
        held = await notice_until(store, f"paused/{handle.id}/connector:email", "open")
        assert "send_gate_reminder" in held.summary
        await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
        async with asyncio.timeout(30):
            while (gate := await asyncio.to_thread(store.gates.get, handle.id)) is None or (
                gate.status == "waiting"
            ):
                await asyncio.sleep(0.1)
        assert gate.status == "decided" and gate.decision == "approve"
        decided = [e for e in store.events.for_run(handle.id) if e.kind == "gate.decided"]
        assert [e.payload["reminders_sent"] for e in decided] == [0]
        run_id = (await handle.describe()).run_id
        entry = store.outbox.entry(f"{handle.id}/{run_id}/gate/welcome/reminder/1")
        assert entry is not None and entry["status"] == "cancelled", entry
        assert smtp.to(email) == []  # the welcome waits at the switch
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed" and len(smtp.to(email)) == 1
    to_operator = [m["Subject"] for m in smtp.to(settings.operator_email) if handle.id in str(m)]
    assert len(to_operator) == 1 and not to_operator[0].startswith("Reminder"), to_operator
    await save_history(handle, "onboarding_gate_reminder_cancelled")


async def test_a_client_answer_while_a_follow_up_waits_at_a_pause_acts_and_cancels_it(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, quick_worker
) -> None:
    """The proposal went out; email is paused and the follow-up due two seconds later waits at
    the switch. The client's answer ends the run at once, with email still paused, and the
    follow-up nobody needs is cancelled: never sent, not counted."""
    store = services.store
    s = fast(
        settings,
        proposal_auto_approve_max_total=Decimal(10000),
        proposal_follow_up_every=timedelta(seconds=2),
        proposal_expire_after=timedelta(minutes=1),
    )
    _, key, email = known_client(store)
    handle = await propose(client, s, store, key, "A new website with online ordering")
    await progress_until(client, handle.id, waiting_for("client_response"))
    await mails_until(smtp, email, 1)
    with email_paused(store):
        held = await notice_until(store, f"paused/{handle.id}/connector:email", "open")
        assert "send_proposal" in held.summary
        answer = ClientResponse(response="decline", note="later")
        await operations.respond(client, handle.id, answer)
        result = await asyncio.wait_for(handle.result(), 30)
        resolved = await notice_until(store, held.key, "resolved")
        assert resolved.resolution == "cancelled: the run no longer waits"
    assert (result.status, result.reason) == ("declined", "later")
    assert len(smtp.to(email)) == 1  # the proposal; no follow-up
    entry = store.outbox.entry(f"{handle.id}/{handle.run_id}/follow-up/v1/1")
    assert entry is not None and entry["status"] == "cancelled", entry
    events = store.events.for_run(handle.id)
    [answered] = [e for e in events if e.kind == "proposal.client_responded"]
    assert answered.payload["follow_ups_sent"] == 0
    await save_history(handle, "proposal_follow_up_cancelled")


async def test_a_payment_while_an_invoice_reminder_waits_at_a_pause_is_recorded_at_once(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, quick_worker
) -> None:
    """The invoice went out; email is paused and the first reminder, due two seconds later,
    waits at the switch. A part payment is recorded at once (email still paused) and the
    reminder that would have asked for the old balance is cancelled; on the resume the
    reminder goes out once, asking for what is still open."""
    store = services.store
    _, key, email = known_client(store)
    s = fast(settings, billing_payment_terms=timedelta(seconds=2), billing_max_reminders=1)
    handle = await bill(client, s, store, key, 1000_00)
    await progress_until(client, handle.id, waiting_for("payment_received"))
    await mails_until(smtp, email, 1)
    with email_paused(store):
        held = await notice_until(store, f"paused/{handle.id}/connector:email", "open")
        assert "send_invoice_reminder" in held.summary
        await operations.record_payment(
            client, store, handle.id, amount=Decimal("400.00"), reference="part", recorded_by="pat"
        )
        progress = await progress_until(client, handle.id, lambda p: p.balance_minor == 600_00)
        assert progress.reminders_sent == 0
        entry = store.outbox.entry(f"{handle.id}/{handle.run_id}/reminder/1")
        assert entry is not None and entry["status"] == "cancelled", entry
        assert len(smtp.to(email)) == 1
    _, reminder = await mails_until(smtp, email, 2)
    assert str(reminder["Subject"]).startswith("Reminder 1")
    text = body_text(reminder)
    assert "600.00" in text and "1,000.00" not in text, text
    await progress_until(client, handle.id, lambda p: p.reminders_sent == 1)
    await operations.record_payment(
        client, store, handle.id, amount=None, reference="rest", recorded_by="pat"
    )
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.status == "paid" and len(smtp.to(email)) == 2
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert kinds.count("invoice.reminded") == 1 and "outbox.cancelled" in kinds
    await save_history(handle, "billing_reminder_cancelled")


class SlowSmtp(RecordingSmtp):
    """A real SMTP server that takes a quarter of a second to accept each message."""

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(0.25)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_smtp() -> Iterator[SlowSmtp]:
    server = SlowSmtp()
    server.controller.start()
    yield server
    server.controller.stop()


async def test_pausing_email_stops_a_batch_send_and_resume_sends_one_per_recipient(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    slow_smtp: SlowSmtp,
) -> None:
    """Models a newsletter: one step sends to 20 recipients through the connector runtime,
    one outbox key each, to an SMTP server that takes 0.25 s per message. The worker reads
    the switches as configured by default (at most once a second, looking again every
    second while paused). Pausing connector ``email`` after the third message stops the batch
    before its end; resuming sends each remaining recipient one message, and nobody two."""
    store = services.store
    tag = uuid.uuid4().hex[:8]
    recipients = [f"reader-{n}-{tag}@news.example" for n in range(20)]
    email = SmtpEmailConnector(
        SmtpConfig(host="127.0.0.1", port=slow_smtp.port, sender=services.settings.mail_from)
    )
    batch = BatchActivities(services.runtime, email)
    change = SwitchChange(scope="connector", name="email", by="pat", reason="typo in the news")
    async with build_worker(
        client,
        settings.task_queue,
        [batch.send_batch],
        executor,
        workflows=[SendBatchWorkflow],
        memory_queue=False,
    ):
        handle = await client.start_workflow(
            SendBatchWorkflow.run,
            recipients,
            id=f"newsletter/{tag}",
            task_queue=settings.task_queue,
        )
        try:
            async with asyncio.timeout(30):
                while slow_smtp.count < 3:
                    await asyncio.sleep(0.05)
            store.switches.pause(change)
            paused_at = time.monotonic()
            key = f"paused/{handle.id}/connector:email"
            await notice_until(store, key, "open")
            stopped_after = time.monotonic() - paused_at
            sent_while_paused = slow_smtp.count
            assert 3 <= sent_while_paused < len(recipients)  # stopped mid-batch
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            assert slow_smtp.count == sent_while_paused  # the waiting step sends nothing
        finally:
            store.switches.resume(change)
        result = await handle.result()
    print(f"\nbatch stopped {stopped_after:.2f} s after the pause, at {sent_while_paused}/20")
    assert [len(slow_smtp.to(r)) for r in recipients] == [1] * len(recipients)
    assert len(set(result.message_ids)) == len(recipients)
    assert await attempts_of(handle, "test_send_batch") == [1]
    assert (await notice_until(store, key, "resolved")).status == "resolved"


async def test_pausing_the_proposal_agent_holds_proposals_before_the_model_call(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, quick_worker
) -> None:
    store = services.store
    s = fast(settings, proposal_auto_approve_max_total=Decimal(10000))
    _, key, email = known_client(store)
    change = SwitchChange(scope="agent", name="proposal", by="pat", reason="new rate card")
    store.switches.pause(change)
    try:
        handle = await propose(client, s, store, key, "A new website with online ordering")
        notice = await notice_until(store, f"paused/{handle.id}/agent:proposal", "open")
        assert notice.title == "paused: agent:proposal"
        # Waiting before the model call: nothing in the cost ledger, nothing sent.
        assert [c for c in store.costs.for_workflow(handle.id) if c.agent == "proposal"] == []
        assert smtp.to(email) == []
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    finally:
        store.switches.resume(change)
    await progress_until(client, handle.id, waiting_for("client_response"))
    calls = [c for c in store.costs.for_workflow(handle.id) if c.agent == "proposal"]
    assert len(calls) == 1  # one call, made after the resume
    assert len(smtp.to(email)) == 1
    assert await attempts_of(handle, "draft_proposal") == [1]


async def retry_started(handle: WorkflowHandle, activity_type: str, attempt: int) -> None:
    """Until the run's pending ``activity_type`` is running its attempt ``attempt``."""
    async with asyncio.timeout(90):
        while True:
            desc = await handle.describe()
            for p in desc.raw_description.pending_activities:
                if (
                    p.activity_type.name == activity_type
                    and p.attempt >= attempt
                    and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                ):
                    return
            await asyncio.sleep(0.2)


async def test_a_worker_killed_while_a_step_waits_hands_it_back_and_the_retry_waits_again(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """The real `aios worker` runs the step that would email the operator about a new gate
    while connector ``email`` is paused, and is killed (SIGKILL) as the step waits. Temporal
    hands the step to the next worker after its heartbeat timeout; that attempt checks the
    switch again and waits too. After the resume the operator gets one gate email."""
    store = services.store
    change = SwitchChange(scope="connector", name="email", by="pat", reason="SMTP migration")
    store.switches.pause(change)
    env = subprocess_env(settings, AIOS_QDRANT_PATH=str(tmp_path / "qdrant"))
    first = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        name, key, _ = unique_client()
        handle = await start(client, settings, name, key, f"ops@{key}.example")
        notice = f"paused/{handle.id}/connector:email"
        await notice_until(store, notice, "open", timeout=90)
        first.kill()
        await first.wait()
        await notice_lost_worker_soon(client, handle.id, "send_gate_reminder")

        def gate_emails() -> list[object]:
            return [m for m in smtp.to(settings.operator_email) if handle.id in str(m)]

        async with build_worker(client, settings.task_queue, services.activities(), executor):
            await retry_started(handle, "send_gate_reminder", 2)
            assert gate_emails() == []  # the retry checked the switch: it waits too
            assert (await store_notice(store, notice)).status == "open"
            store.switches.resume(change)
            async with asyncio.timeout(30):
                while not gate_emails():
                    await asyncio.sleep(0.1)
            await notice_until(store, notice, "resolved")
            assert len(gate_emails()) == 1
    finally:
        store.switches.resume(change)
        if first.returncode is None:
            first.kill()
            await first.wait()


async def store_notice(store: KernelStore, key: str) -> Notice:
    notice = await asyncio.to_thread(store.notices.get, key)
    assert notice is not None
    return notice
