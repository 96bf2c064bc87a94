"""How runs end: only real exits compensate, every exit of billing voids its draft, and a
finished onboarding or a turned-down client is not started again by accident."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.client import Client

from aios import operations
from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.models import ClientIntake
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows import WORKFLOWS
from aios.workflows.gates import GateDecision
from tests.broken_workflows import BrokenAfterWelcome
from tests.conftest import RecordingSmtp, unique_client
from tests.helpers import start, start_at_gate, wait_for_gate
from tests.money_helpers import bill, ends_cancelled, fast, gate_open, progress_until, propose

APPROVE = GateDecision(decision="approve", approver="pat", comment="go")


async def test_a_bug_after_the_welcome_fails_the_task_not_the_run_and_sends_no_cancellation(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    executor: ThreadPoolExecutor,
) -> None:
    activities = services.activities()
    others = [w for w in WORKFLOWS if w.__name__ != "OnboardingWorkflow"]
    async with build_worker(
        client, settings.task_queue, activities, executor, workflows=[BrokenAfterWelcome, *others]
    ):
        handle, _, _, email = await start_at_gate(client, settings)
        await operations.decide(client, handle.id, APPROVE)
        async with asyncio.timeout(30):
            while not (status := await operations.describe(client, handle.id)).note.startswith(
                "stuck"
            ):
                await asyncio.sleep(0.2)
        assert "deliberate bug after send-welcome" in status.note
        await asyncio.sleep(2)  # the task is retried meanwhile: still nothing compensates
        assert status.status == "running"
        [welcome] = smtp.to(email)
        assert "CANCEL" not in welcome.as_string()
        kinds = [e.kind for e in services.store.events.for_run(handle.id)]
        assert not [k for k in kinds if k.startswith("compensation.")]
        assert "onboarding.failed" not in kinds

    # The fixed worker resumes the run from history: no second welcome, no cancellation.
    async with build_worker(client, settings.task_queue, activities, executor):
        result = await handle.result()
    assert result.status == "completed"
    [welcome] = smtp.to(email)
    kinds = [e.kind for e in services.store.events.for_run(handle.id)]
    assert not [k for k in kinds if k.startswith("compensation.")]
    assert kinds[-1] == "onboarding.completed"


async def test_cancelling_billing_at_its_invoice_gate_voids_the_draft_and_says_why(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, worker: object
) -> None:
    from tests.money_helpers import known_client

    store = services.store
    _, key, email = known_client(store)
    numbers = store.invoices.numbers()
    handle = await bill(client, fast(settings, billing_approve_above=100), store, key, 500_00)
    await progress_until(client, handle.id, gate_open)
    await operations.cancel(client, handle.id)
    await ends_cancelled(handle)
    invoice = store.invoices.get(handle.id.split("/", 1)[1])
    assert invoice is not None and invoice.status == "void" and invoice.number is None
    assert store.invoices.numbers() == numbers  # no number was used
    events = store.events.for_run(handle.id)
    [voided] = [e for e in events if e.kind == "compensation.invoice_voided"]
    assert "stopped before the invoice was issued" in voided.payload["reason"]
    assert events[-1].kind == "billing.cancelled"
    assert events[-1].payload["reason"] == "the run was cancelled"
    assert events[-1].payload["compensated"] == ["void-draft"]
    assert smtp.to(email) == []


async def test_onboarding_a_client_again_needs_again_and_names_the_earlier_outcome(
    client: Client, settings: Settings, smtp: RecordingSmtp, worker: object
) -> None:
    handle, _, key, email = await start_at_gate(client, settings)
    await operations.decide(client, handle.id, APPROVE)
    assert (await handle.result()).status == "completed"
    intake = ClientIntake(name="Someone", key=key, email=email)
    with pytest.raises(InvalidInput) as refused:
        await operations.start_onboarding(client, settings, intake)
    assert str(refused.value).startswith(f"{key}: onboarded before, completed on ")
    assert "(welcome sent)" in str(refused.value) and "--again" in str(refused.value)
    assert len(smtp.to(email)) == 1

    again = await operations.start_onboarding(client, settings, intake, again=True)
    assert not again.existing and again.run_id != handle.run_id
    await client.get_workflow_handle(again.workflow_id).terminate("test cleanup")


async def test_a_rejected_client_gets_no_onboarding_or_proposal_without_again(
    client: Client, settings: Settings, services: Services, worker: object
) -> None:
    name, key, email = unique_client()
    handle = await start(client, settings, name, key, email)
    await wait_for_gate(client, handle.id)
    await operations.decide(
        client, handle.id, GateDecision(decision="reject", approver="pat", comment="not a fit")
    )
    assert (await handle.result()).status == "rejected"

    intake = ClientIntake(name=name, key=key, email=email)
    with pytest.raises(InvalidInput, match=r"onboarded before, rejected on .* \(not a fit\)"):
        await operations.start_onboarding(client, settings, intake)
    with pytest.raises(
        InvalidInput,
        match=rf"client: {key}'s onboarding was rejected on .* \(not a fit\); .*--again",
    ):
        await propose(client, settings, services.store, key, "A new website")
    started = await operations.start_proposal(
        client,
        settings,
        services.store,
        operations.NewProposal(client_key=key, scope="A new website"),
        again=True,
    )
    await client.get_workflow_handle(started.workflow_id).terminate("test cleanup")
