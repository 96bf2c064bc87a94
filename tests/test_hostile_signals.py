"""Hostile signals and inputs, sent with the real ``temporal`` CLI to a real dev server.

No payload, two payloads, a binary payload, JSON ``null``, a NUL or a lone surrogate in a text
field, an unknown signal name: each is rejected inside the workflow as ``signal.rejected``, the
run keeps waiting, and a valid signal afterwards finishes it. A run whose input does not fit
its model fails at once with a message that names the field and copies no client text.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from aios import operations
from aios.config import Settings
from aios.devstack import temporal_binary
from aios.errors import InvalidInput
from aios.workers.services import Services
from tests.conftest import RecordingSmtp
from tests.helpers import start_at_gate
from tests.money_helpers import bill, fast, known_client, progress_until, propose, waiting_for


def temporal_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(temporal_binary()),
            *args,
            "--address",
            settings.temporal_address,
            "--namespace",
            settings.temporal_namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def signal(settings: Settings, workflow_id: str, name: str, *extra: str) -> None:
    done = temporal_cli(
        settings, "workflow", "signal", "--workflow-id", workflow_id, "--name", name, *extra
    )
    assert done.returncode == 0, done.stderr


def hostile_shapes(valid: dict[str, Any], text_field: str) -> list[tuple[list[str], str]]:
    """(extra CLI arguments, what the rejection reason must say) for one signal."""

    def with_text(value: str) -> str:
        return json.dumps({**valid, text_field: value})  # json.dumps writes \u0000, \ud800

    return [
        ([], "no payload"),
        (["--input", json.dumps(valid), "--input", json.dumps(valid)], "2 payloads"),
        (
            ["--input", "approve", "--input-meta", "encoding=binary/plain"],
            "payload encoding 'binary/plain' is not json/plain",
        ),
        (["--input", "null"], "Input should be an object"),
        (["--input", with_text("ok\u0000then")], f"{text_field}: contains U+0000 (NUL)"),
    ]


async def send_hostile(
    client: Client,
    settings: Settings,
    services: Services,
    workflow_id: str,
    name: str,
    valid: dict[str, Any],
    text_field: str,
) -> None:
    """Send every hostile shape of signal ``name`` and an unknown signal; check each is
    recorded as rejected and the run still waits."""
    shapes = hostile_shapes(valid, text_field)
    for extra, _ in shapes:
        signal(settings, workflow_id, name, *extra)
    signal(settings, workflow_id, "decied\t\u202e", "--input", json.dumps(valid))
    expected = [reason for _, reason in shapes] + ["this run takes no such signal"]

    async with asyncio.timeout(30):
        while True:
            reasons = [
                (e.payload["signal"], e.payload["reason"])
                for e in services.store.events.for_run(workflow_id)
                if e.kind == "signal.rejected"
            ]
            if len(reasons) >= len(expected):
                break
            await asyncio.sleep(0.1)
    assert len(reasons) == len(expected), reasons
    for (sig, reason), want in zip(reasons[:-1], expected[:-1], strict=True):
        assert sig == name
        assert want in reason, (want, reason)
    unknown_sig, unknown_reason = reasons[-1]
    assert unknown_sig == "'decied\\t\\u202e'"
    assert name in unknown_reason
    for _, reason in reasons:
        assert "\x00" not in reason and "then" not in reason  # never echoes what was sent
    desc = await client.get_workflow_handle(workflow_id).describe()
    assert desc.status is not None and desc.status.name == "RUNNING"
    # The run answers queries: no workflow task failed.
    status = await operations.describe(client, workflow_id)
    assert status.note == "", status.note


async def test_decide_survives_every_hostile_shape_then_approves(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, worker: object
) -> None:
    handle, _, _, email = await start_at_gate(client, settings)
    valid = {"decision": "approve", "approver": "operator", "comment": "fine"}
    await send_hostile(client, settings, services, handle.id, "decide", valid, "comment")
    gate = (await operations.pending_gates(client, handle.id))[0]
    assert gate.rejected_signals == 6
    signal(settings, handle.id, "decide", "--input", json.dumps(valid))
    assert (await handle.result()).status == "completed"
    assert len(smtp.to(email)) == 1


async def test_client_response_survives_every_hostile_shape_then_declines(
    client: Client, settings: Settings, services: Services, worker: object
) -> None:
    _, key, _ = known_client(services.store, segment="consulting")
    handle = await propose(
        client, fast(settings), services.store, key, "Two-day workshop on pricing"
    )
    await progress_until(client, handle.id, waiting_for("client_response"))
    valid = {"response": "decline", "note": "not this quarter"}
    await send_hostile(client, settings, services, handle.id, "client_response", valid, "note")
    signal(settings, handle.id, "client_response", "--input", json.dumps(valid))
    assert (await handle.result()).status == "declined"


async def test_payment_received_survives_every_hostile_shape_then_pays(
    client: Client, settings: Settings, services: Services, worker: object
) -> None:
    _, key, _ = known_client(services.store)
    handle = await bill(client, fast(settings), services.store, key, 120_000)
    await progress_until(client, handle.id, waiting_for("payment_received"))
    valid = {"amount": "1200.00", "recorded_by": "operator", "reference": "SEPA 1"}
    await send_hostile(
        client, settings, services, handle.id, "payment_received", valid, "reference"
    )
    signal(settings, handle.id, "payment_received", "--input", json.dumps(valid))
    result = await handle.result()
    assert (result.status, result.paid) == ("paid", "USD 1,200.00")


async def test_refund_received_survives_every_hostile_shape_then_refunds(
    client: Client, settings: Settings, services: Services, worker: object
) -> None:
    store = services.store
    _, key, _ = known_client(store)
    handle = await bill(client, fast(settings), store, key, 120_000)
    await progress_until(client, handle.id, waiting_for("payment_received"))
    await operations.record_payment(
        client, store, handle.id, amount=Decimal(500), reference="part", recorded_by="pat"
    )
    await progress_until(client, handle.id, lambda p: p.balance_minor == 70_000)
    valid = {"amount": "200.00", "recorded_by": "operator", "reference": "refund 1"}
    await send_hostile(client, settings, services, handle.id, "refund_received", valid, "reference")
    # More than was paid is refused too; the valid refund then applies.
    signal(
        settings, handle.id, "refund_received", "--input", json.dumps({**valid, "amount": "501"})
    )
    signal(settings, handle.id, "refund_received", "--input", json.dumps(valid))
    progress = await progress_until(client, handle.id, lambda p: p.balance_minor == 90_000)
    assert progress.rejected_signals == 7
    assert progress.last_rejection is None or "refund_received" in progress.last_rejection
    ledger = [(e.kind, e.amount_minor) for e in store.invoices.ledger(handle.id.split("/", 1)[1])]
    assert ledger == [("payment", 50_000), ("refund", -20_000)]
    await operations.record_payment(
        client, store, handle.id, amount=None, reference="rest", recorded_by="pat"
    )
    result = await handle.result()
    assert (result.status, result.paid) == ("paid", "USD 1,200.00")


async def test_overpayment_is_refused_by_the_cli_path_and_by_the_signal(
    client: Client, settings: Settings, services: Services, worker: object
) -> None:
    store = services.store
    _, key, _ = known_client(store)
    handle = await bill(client, fast(settings), store, key, 380_000)
    await progress_until(client, handle.id, waiting_for("payment_received"))

    too_much = r"USD 99,999\.00 is more than the open balance USD 3,800\.00"
    with pytest.raises(InvalidInput, match=too_much):
        await operations.record_payment(
            client, store, handle.id, amount=Decimal(99999), reference="x", recorded_by="pat"
        )
    # Straight to the workflow, past the CLI: the signal is rejected too, and two payments
    # that each fit but together exceed the balance are not both taken.
    raw = client.get_workflow_handle(handle.id)
    await raw.signal("payment_received", {"amount": "99999", "recorded_by": "pat"})
    await raw.signal("payment_received", {"amount": "3000", "recorded_by": "pat"})
    await raw.signal("payment_received", {"amount": "3000", "recorded_by": "pat"})
    progress = await progress_until(client, handle.id, lambda p: p.rejected_signals == 2)
    assert progress.balance in ("USD 3,800.00", "USD 800.00")
    async with asyncio.timeout(10):
        while (
            len(
                rejected := [
                    e for e in store.events.for_run(handle.id) if e.kind == "signal.rejected"
                ]
            )
            < 2
        ):
            await asyncio.sleep(0.1)
    assert (
        "USD 99,999.00 is more than the open balance USD 3,800.00" in rejected[0].payload["reason"]
    )
    assert "USD 3,000.00 is more than the open balance USD 800.00" in rejected[1].payload["reason"]
    await progress_until(client, handle.id, lambda p: p.balance == "USD 800.00")
    await operations.record_payment(
        client, store, handle.id, amount=None, reference="rest", recorded_by="pat"
    )
    result = await handle.result()
    assert (result.status, result.paid) == ("paid", "USD 3,800.00")
    assert [e.amount_minor for e in store.invoices.ledger(result.invoice_id)] == [300_000, 80_000]


async def test_a_run_whose_input_does_not_fit_fails_at_once_without_echoing_it(
    client: Client, settings: Settings, worker: object
) -> None:
    marker = f"secret-client-text-{uuid.uuid4().hex[:6]}"
    notes = (marker + " ") * 400  # well over the 4,000-character limit
    workflow_id = f"onboarding/too-long-{uuid.uuid4().hex[:8]}"
    started = temporal_cli(
        settings,
        "workflow",
        "start",
        "--type",
        "OnboardingWorkflow",
        "--task-queue",
        settings.task_queue,
        "--workflow-id",
        workflow_id,
        "--input",
        json.dumps({"client": {"name": "Too Long", "email": "a@b.example", "notes": notes}}),
    )
    assert started.returncode == 0, started.stderr
    handle = client.get_workflow_handle(workflow_id)
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=30)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidInput" and cause.non_retryable
    assert cause.message == (
        "the run's input is not a valid OnboardingInput: "
        "client.notes: String should have at most 4000 characters"
    )
    events = (await handle.fetch_history()).events
    assert (
        marker
        in events[0].workflow_execution_started_event_attributes.input.payloads[0].data.decode()
    )
    [failed] = [e for e in events if e.HasField("workflow_execution_failed_event_attributes")]
    assert marker not in str(failed)  # no client text in the failure
    assert not any(e.HasField("workflow_task_failed_event_attributes") for e in events)


async def test_a_failing_workflow_task_shows_as_stuck_in_status_and_inbox(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, executor: Any
) -> None:
    """A bug in a signal handler fails the workflow task; status and inbox say so, and a
    fixed worker then applies the same signal and finishes the run."""
    from aios.workers.main import build_worker
    from aios.workflows import WORKFLOWS
    from tests.broken_workflows import BrokenOnDecision

    others = [w for w in WORKFLOWS if w.__name__ != "OnboardingWorkflow"]
    activities = services.activities()
    async with build_worker(
        client, settings.task_queue, activities, executor, workflows=[BrokenOnDecision, *others]
    ):
        handle, _, _, email = await start_at_gate(client, settings)
        await client.get_workflow_handle(handle.id).signal(
            "decide", {"decision": "approve", "approver": "op", "comment": "boom"}
        )
        async with asyncio.timeout(30):
            while not (status := await operations.describe(client, handle.id)).note.startswith(
                "stuck"
            ):
                await asyncio.sleep(0.2)
        assert status.status == "running"
        assert status.note.startswith("stuck: workflow task failing: ")
        assert "deliberate bug in the decide handler" in status.note
        items = [i for i in await operations.inbox(client) if i.workflow_id == handle.id]
        assert [i.note for i in items] == [status.note]
        assert smtp.to(email) == []

    async with build_worker(client, settings.task_queue, activities, executor):
        assert (await handle.result()).status == "completed"
    assert len(smtp.to(email)) == 1
