"""OnboardingWorkflow on a real dev server, PostgreSQL, Qdrant local mode and SMTP server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from aios import operations
from aios.activities.models import RememberInput, RememberResult
from aios.config import Settings
from aios.kernel.models import ClientIntake
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.attributes import AWAITING_APPROVAL
from aios.workflows.gates import GateDecision
from aios.workflows.onboarding import OnboardingWorkflow
from tests.conftest import RecordingSmtp, unique_client
from tests.helpers import replacing, save_history, start, start_at_gate, wait_for_gate

pytestmark = pytest.mark.usefixtures("worker")


def approve(comment: str = "looks good") -> GateDecision:
    return GateDecision(decision="approve", approver="pat", comment=comment)


async def test_approved_onboarding_sends_one_email_with_invite_and_records_everything(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    name, key, email = unique_client()
    handle = await start(client, settings, name, key, email)
    gate = await wait_for_gate(client, handle.id)
    assert gate.gate == "welcome"
    assert gate.editable_fields == ["subject", "body"]

    # The gate is visible to the inbox through the AiosAwaitingApproval search attribute.
    waiting = await operations.inbox(client)
    assert handle.id in [item.workflow_id for item in waiting]

    await operations.decide(client, handle.id, approve())
    result = await handle.result()
    await save_history(handle, "onboarding_approved")
    # No calendar, CRM or webhook configured: those steps say they skipped.
    progress = await handle.query(OnboardingWorkflow.progress)
    assert {"kickoff-event:skipped", "crm-contact:skipped", "webhook:skipped"} <= set(
        progress.steps_done
    )

    assert result.status == "completed"
    mails = smtp.to(email)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["Subject"] == f"Welcome aboard, {name}"
    assert mail["Message-ID"] == result.message_id
    [invite] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    ics = bytes(invite.get_payload(decode=True)).decode()
    assert "METHOD:REQUEST" in ics
    assert f"mailto:{email}" in ics

    stored = services.store.clients.get(key)
    assert stored is not None
    assert (stored.name, stored.email, stored.segment) == (name, email, "web")

    # The operator's gate email (gate.emailed) goes out unless the decision came first.
    events = [
        e
        for e in services.store.events.for_run(handle.id, handle.run_id)
        if e.kind != "gate.emailed"
    ]
    assert [e.kind for e in events] == [
        "agent.called",
        "client.upserted",
        "agent.called",
        "gate.requested",
        "gate.decided",
        "email.sent",
        "memory.stored",
        "onboarding.completed",
    ]
    decided = events[4].payload
    assert decided["approver"] == "pat"
    assert decided["decision"] == "approve"
    assert decided["waited_seconds"] >= 0

    assert result.memory_id is not None
    point = services.memory.get(result.memory_id)
    assert point is not None
    prov = point.provenance
    assert (prov.source_workflow_id, prov.source_run_id) == (handle.id, handle.run_id)
    assert (prov.entity, prov.kind, prov.version) == (f"client:{key}", "onboarding_summary", 1)
    assert name in point.text

    # The run is no longer in the inbox.
    assert handle.id not in [i.workflow_id for i in await operations.inbox(client)]


async def test_rejected_onboarding_sends_nothing_and_records_the_reason(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    handle, _, _, email = await start_at_gate(client, settings)
    await operations.decide(
        client, handle.id, GateDecision(decision="reject", approver="pat", comment="not a fit")
    )
    result = await handle.result()
    await save_history(handle, "onboarding_rejected")

    assert (result.status, result.reason) == ("rejected", "not a fit")
    assert smtp.to(email) == []
    kinds = [e.kind for e in services.store.events.for_run(handle.id, handle.run_id)]
    assert kinds[-2:] == ["gate.decided", "onboarding.rejected"]
    assert "email.sent" not in kinds
    rejected = services.store.events.for_run(handle.id, handle.run_id)[-1]
    assert rejected.payload["reason"] == "not a fit"


async def test_edit_decision_sends_the_edited_version(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    handle, _, _, email = await start_at_gate(client, settings)
    await operations.decide(
        client,
        handle.id,
        GateDecision(decision="edit", approver="pat", edits={"subject": "Glad to have you"}),
    )
    result = await handle.result()
    assert result.status == "completed"
    [mail] = smtp.to(email)
    assert mail["Subject"] == "Glad to have you"
    assert result.draft_id is not None and result.draft_id.endswith("/v2")
    draft = services.store.drafts.get(result.draft_id)
    assert draft is not None and draft.meta["edited_by"] == "pat"


async def test_starting_twice_gives_one_run(client: Client, settings: Settings) -> None:
    name, key, email = unique_client()
    intake = ClientIntake(name=name, key=key, email=email)
    first, second = await asyncio.gather(
        operations.start_onboarding(client, settings, intake),
        operations.start_onboarding(client, settings, intake),
    )
    assert first.run_id == second.run_id
    assert sorted([first.existing, second.existing]) == [False, True]
    # Visibility is eventually consistent: wait until the run is listed, then count.
    async with asyncio.timeout(10):
        while not (
            runs := [e async for e in client.list_workflows(f"WorkflowId = '{first.workflow_id}'")]
        ):
            await asyncio.sleep(0.1)
    assert [r.run_id for r in runs] == [first.run_id]
    await client.get_workflow_handle(first.workflow_id).terminate("test cleanup")


async def test_malformed_decide_is_rejected_and_the_gate_keeps_waiting(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    handle, _, _, email = await start_at_gate(client, settings)

    # Raw payloads, as `temporal workflow signal --input ...` would send them.
    await handle.signal("decide", {"decision": "maybe", "approver": "pat"})
    await handle.signal("decide", {"decision": "approve"})
    await handle.signal("decide", "yes please")
    await handle.signal("decide", {"decision": "edit", "approver": "pat", "edits": {"price": "1"}})
    async with asyncio.timeout(10):
        while (gate := await wait_for_gate(client, handle.id)).rejected_signals < 4:
            await asyncio.sleep(0.1)
    assert gate.last_rejection is not None and "edits.price" in gate.last_rejection

    desc = await handle.describe()
    assert desc.status is not None and desc.status.name == "RUNNING"
    assert smtp.to(email) == []

    await operations.decide(client, handle.id, approve())
    assert (await handle.result()).status == "completed"
    rejected = [
        e.payload["reason"]
        for e in services.store.events.for_run(handle.id, handle.run_id)
        if e.kind == "signal.rejected"
    ]
    assert len(rejected) == 4
    assert "decision: Input should be 'approve', 'reject' or 'edit'" in rejected[0]
    assert "approver: Field required" in rejected[1]
    assert len(smtp.to(email)) == 1


async def test_unanswered_gate_reminds_then_expires(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    quick = settings.model_copy(
        update={
            "gate_remind_after": timedelta(seconds=2),
            "gate_expire_after": timedelta(seconds=5),
        }
    )
    assert quick.gate_policy.reminder_times() == [timedelta(seconds=2), timedelta(seconds=4)]
    name, key, email = unique_client()
    handle = await start(client, quick, name, key, email)
    result = await handle.result()
    await save_history(handle, "onboarding_expired")

    assert result.status == "expired"
    assert smtp.to(email) == []
    reminders = [
        m
        for m in smtp.to(settings.operator_email)
        if handle.id in m.get_payload() and "Reminder" in m["Subject"]
    ]
    assert [m["Subject"].split(":")[0] for m in reminders] == ["Reminder 1", "Reminder 2"]
    kinds = [e.kind for e in services.store.events.for_run(handle.id, handle.run_id)]
    assert kinds.count("gate.reminded") == 2
    assert kinds[-2:] == ["gate.expired", "onboarding.expired"]
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(AWAITING_APPROVAL) is False


@activity.defn(name="remember")
def remember_fails(inp: RememberInput) -> RememberResult:
    raise ApplicationError("memory store is gone", type="PermanentFailure", non_retryable=True)


async def test_failure_after_the_welcome_cancels_the_kickoff(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, executor
) -> None:
    activities = replacing(services.activities(), remember=remember_fails)
    async with build_worker(client, f"{settings.task_queue}-broken", activities, executor):
        broken = settings.model_copy(update={"task_queue": f"{settings.task_queue}-broken"})
        name, key, email = unique_client()
        handle = await start(client, broken, name, key, email)
        await wait_for_gate(client, handle.id)
        await operations.decide(client, handle.id, approve())
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        await save_history(handle, "onboarding_compensated")

    welcome, cancel = smtp.to(email)
    assert welcome["Subject"].startswith("Welcome aboard")
    assert cancel["Subject"].startswith("Cancelled: kickoff")
    [ics] = [p for p in cancel.walk() if p.get_content_type() == "text/calendar"]
    body = bytes(ics.get_payload(decode=True)).decode()
    assert "METHOD:CANCEL" in body and "SEQUENCE:1" in body
    kinds = [e.kind for e in services.store.events.for_run(handle.id, handle.run_id)]
    assert kinds[-2:] == ["compensation.kickoff_cancelled", "onboarding.failed"]
    failed = services.store.events.for_run(handle.id, handle.run_id)[-1].payload
    assert failed["compensated"] == ["cancel-kickoff"]
