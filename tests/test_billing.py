"""BillingWorkflow on the real stack: gates, payments, saga, crashes, numbering."""

from __future__ import annotations

import asyncio
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from aios import operations
from aios.activities.models import ProviderMarkPaidInput
from aios.config import Settings
from aios.connectors.payments.base import ProviderReceipt
from aios.kernel.commerce import Invoice
from aios.kernel.events import EventDraft
from aios.kernel.money import LineItem
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.gates import GateDecision
from tests.conftest import RecordingSmtp, subprocess_env
from tests.helpers import notice_lost_worker_soon, replacing, save_history
from tests.money_helpers import (
    bill,
    body_text,
    ends_cancelled,
    fast,
    gate_open,
    known_client,
    mails_until,
    pdf_text,
    pdfs,
    progress_until,
    waiting_for,
)

HERE = Path(__file__).parent
PAYING = waiting_for("payment_received")


def subjects(smtp: RecordingSmtp, email: str) -> list[str]:
    return [" ".join(str(m["Subject"]).split()).split(":")[0] for m in smtp.to(email)]


@activity.defn(name="provider_mark_paid")
def provider_refuses(inp: ProviderMarkPaidInput) -> ProviderReceipt:
    raise ApplicationError(
        "payments:bank_transfer: account closed",
        type="PermanentConnectorError",
        non_retryable=True,
    )


async def test_permanent_provider_failure_after_the_invoice_went_out_runs_the_saga(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    executor: ThreadPoolExecutor,
) -> None:
    store = services.store
    _, key, email = known_client(store)
    activities = replacing(services.activities(), provider_mark_paid=provider_refuses)
    async with build_worker(client, settings.task_queue, activities, executor):
        handle = await bill(client, fast(settings), store, key, 120_000, 30_000)
        progress = await progress_until(client, handle.id, PAYING)
        number = progress.number
        # Paid in full; recording that at the provider then fails for good.
        await operations.record_payment(
            client, store, handle.id, amount=None, reference="full", recorded_by="pat"
        )
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=60)
    await save_history(handle, "billing_compensated")

    assert subjects(smtp, email) == [f"Invoice {number}", "Cancelled"]
    cancellation = smtp.to(email)[1]
    assert f"invoice {number}" in body_text(cancellation)
    [(name, credit_pdf)] = pdfs(cancellation).items()
    assert name.startswith("credit-note-CN-")
    assert "USD 1,500.00" in pdf_text(credit_pdf)

    invoice = store.invoices.get(handle.id.split("/", 1)[1])
    assert invoice is not None and invoice.status == "void"
    assert [(e.kind, e.amount_minor) for e in store.invoices.ledger(invoice.invoice_id)] == [
        ("payment", 150_000),
        ("credit_note", -150_000),
    ]
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    compensations = [k for k in kinds if k.startswith("compensation.")]
    assert compensations == [
        "compensation.credit_note_issued",
        "compensation.invoice_cancelled",
        "compensation.provider_voided",
        "compensation.invoice_voided",
    ]
    assert kinds[-1] == "billing.failed"


async def test_cancelling_a_billing_run_voids_the_invoice_and_sends_one_cancellation(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, worker: object
) -> None:
    store = services.store
    _, key, email = known_client(store)
    handle = await bill(client, fast(settings), store, key, 99_00)
    progress = await progress_until(client, handle.id, PAYING)
    number = progress.number
    await operations.cancel(client, handle.id)
    await ends_cancelled(handle)
    assert subjects(smtp, email) == [f"Invoice {number}", "Cancelled"]
    assert pdfs(smtp.to(email)[1]) == {}  # nothing was paid: no credit note
    invoice = store.invoices.get(handle.id.split("/", 1)[1])
    assert invoice is not None and invoice.status == "void" and invoice.number is not None
    assert store.invoices.ledger(invoice.invoice_id) == []
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert kinds.count("compensation.invoice_voided") == 1
    assert kinds[-1] == "billing.cancelled"


async def test_killed_worker_during_compensation_still_compensates_exactly_once(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, tmp_path: Path
) -> None:
    store = services.store
    _, key, email = known_client(store)
    env = subprocess_env(
        settings,
        AIOS_QDRANT_PATH=str(tmp_path / "qdrant"),
        AIOS_CRASH_ACTIVITY="send_invoice_email",
        AIOS_CRASH_MATCH='"kind":"cancellation"',
    )
    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "crash_worker.py"),
        env=env,
        cwd=HERE.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    handle = await bill(client, fast(settings), store, key, 250_00)
    await progress_until(client, handle.id, PAYING, timeout=60)
    await operations.cancel(client, handle.id)
    # The worker dies inside the cancellation email step, after the SMTP server took it.
    assert await asyncio.wait_for(crashing.wait(), timeout=60) == -signal.SIGKILL
    assert subjects(smtp, email)[-1] == "Cancelled"
    await notice_lost_worker_soon(client, handle.id, "send_invoice_email")

    replacement = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=subprocess_env(settings, AIOS_QDRANT_PATH=str(tmp_path / "qdrant")),
        cwd=HERE.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await ends_cancelled(handle, timeout=120)
    finally:
        replacement.send_signal(signal.SIGTERM)
        await asyncio.wait_for(replacement.communicate(), timeout=30)

    assert subjects(smtp, email).count("Cancelled") == 1
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    for kind in (
        "compensation.invoice_cancelled",
        "compensation.provider_voided",
        "compensation.invoice_voided",
    ):
        assert kinds.count(kind) == 1, kinds
    invoice = store.invoices.get(handle.id.split("/", 1)[1])
    assert invoice is not None and invoice.status == "void"


async def test_invoice_above_the_threshold_waits_for_approval_and_a_rejection_uses_no_number(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, worker: object
) -> None:
    store = services.store
    _, key, email = known_client(store)
    before = store.invoices.numbers()
    handle = await bill(client, fast(settings), store, key, 1_500_000)  # USD 15,000 > 10,000
    progress = await progress_until(client, handle.id, gate_open)
    [gate] = progress.pending_gates
    assert gate.gate == "invoice" and gate.amount == "USD 15,000.00"
    assert "billing.approve_above" in gate.summary
    await operations.decide(
        client, handle.id, GateDecision(decision="reject", approver="pat", comment="split it")
    )
    result = await handle.result()
    assert (result.status, result.reason) == ("rejected", "split it")
    assert smtp.to(email) == []
    invoice = store.invoices.get(result.invoice_id)
    assert invoice is not None and (invoice.status, invoice.number) == ("void", None)
    assert store.invoices.numbers() == before
    [needs] = [e for e in store.events.for_run(handle.id) if e.kind == "invoice.needs_approval"]
    assert needs.payload["rule"] == "invoice.needs_approval"


async def test_bad_payment_signals_are_rejected_and_partial_payments_add_up(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, worker: object
) -> None:
    store = services.store
    _, key, email = known_client(store)
    handle = await bill(client, fast(settings), store, key, 100_000)
    await progress_until(client, handle.id, PAYING)
    raw = client.get_workflow_handle(handle.id)
    await raw.signal("payment_received", {"amount": "10.001", "recorded_by": "pat"})
    await raw.signal("payment_received", {"amount": "10", "currency": "EUR", "recorded_by": "p"})
    await raw.signal("payment_received", {"amount": "-5", "recorded_by": "pat"})
    await raw.signal("payment_received", {"amount": "10"})
    await operations.record_payment(
        client, store, handle.id, amount=Decimal(400), reference="first", recorded_by="pat"
    )
    progress = await progress_until(client, handle.id, lambda p: p.balance == "USD 600.00")
    assert progress.rejected_signals == 4
    await operations.record_payment(
        client, store, handle.id, amount=None, reference="rest", recorded_by="pat"
    )
    result = await handle.result()
    assert (result.status, result.paid) == ("paid", "USD 1,000.00")
    reasons = [
        e.payload["reason"] for e in store.events.for_run(handle.id) if e.kind == "signal.rejected"
    ]
    assert len(reasons) == 4
    assert "more than 2 decimal(s)" in reasons[0]
    assert "EUR is not the invoice's currency USD" in reasons[1]
    assert "recorded_by" in reasons[3]
    assert [e.amount_minor for e in store.invoices.ledger(result.invoice_id)] == [40_000, 60_000]
    assert subjects(smtp, email)[1:] == []  # only the invoice went out


async def test_payment_reminders_survive_a_worker_restart_without_loss_or_doubling(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    executor: ThreadPoolExecutor,
) -> None:
    store = services.store
    _, key, email = known_client(store)
    s = fast(
        settings,
        billing_payment_terms=timedelta(seconds=2),
        billing_remind_every=timedelta(seconds=2),
        billing_max_reminders=2,
    )
    acts = services.activities()
    async with build_worker(client, settings.task_queue, acts, executor):
        handle = await bill(client, s, store, key, 50_00)
        await progress_until(client, handle.id, PAYING)
    # No worker while the first reminder's timer fires (due 2 s after issue).
    await asyncio.sleep(3)
    assert subjects(smtp, email) == [subjects(smtp, email)[0]]
    async with build_worker(client, settings.task_queue, acts, executor):
        await progress_until(client, handle.id, lambda p: p.reminders_sent == 2)
        await mails_until(smtp, email, 3)
        await operations.record_payment(
            client, store, handle.id, amount=None, reference="", recorded_by="pat"
        )
        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.status == "paid"
    assert subjects(smtp, email)[1:] == ["Reminder 1", "Reminder 2"]
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert kinds.count("invoice.reminded") == 2 and kinds.count("invoice.overdue") == 1


async def test_concurrent_billing_runs_get_distinct_gap_free_numbers(
    client: Client, settings: Settings, services: Services, worker: object
) -> None:
    store = services.store
    _, key, _ = known_client(store)
    handles = await asyncio.gather(
        *(bill(client, fast(settings), store, key, 10_00 + i) for i in range(10))
    )
    numbers = []
    for h in handles:
        p = await progress_until(client, h.id, PAYING, timeout=60)
        numbers.append(int(p.number.split("-")[1]))
    assert len(set(numbers)) == 10
    assert sorted(numbers) == list(range(min(numbers), min(numbers) + 10))
    for h in handles:
        await h.cancel()
    for h in handles:
        await ends_cancelled(h)


def test_gap_free_numbers_under_concurrent_issues_and_failed_transactions(
    services: Services,
) -> None:
    """Straight at the kernel: 40 threads issue at once, some transactions fail after taking
    a number; the committed numbers are still a contiguous run with no duplicates."""
    store = services.store
    _, key, _ = known_client(store)
    now = datetime.now(UTC)
    ids = [f"num-{key}-{i}" for i in range(40)]
    for invoice_id in ids:
        store.invoices.create(
            Invoice(
                invoice_id=invoice_id,
                client_key=key,
                workflow_id="test",
                currency="USD",
                line_items=[LineItem(description="x", quantity=1, unit_price_minor=100)],
                total_minor=100,
                status="draft",
            ),
            event=EventDraft(
                event_key=f"test/{invoice_id}",
                workflow_id="test",
                run_id="t",
                process="test",
                kind="invoice.drafted",
            ),
        )

    def take_number_then_fail() -> None:
        with store.db.transaction() as conn:
            store.invoices._next_number(conn, "INV")
            raise RuntimeError("crash before commit")

    def issue(invoice_id: str) -> int | None:
        event = EventDraft(
            event_key=f"test/{invoice_id}/issue",
            workflow_id="test",
            run_id="t",
            process="test",
            kind="invoice.issued",
        )
        if invoice_id.endswith(("3", "7")):  # take a number, then fail before commit
            with pytest.raises(RuntimeError):
                take_number_then_fail()
            return None
        return store.invoices.issue(invoice_id, issued_at=now, due_at=now, event=event).number

    with ThreadPoolExecutor(max_workers=8) as pool:
        issued = [n for n in pool.map(issue, ids) if n is not None]
    assert len(issued) == 32 and len(set(issued)) == 32
    numbers = store.invoices.numbers()
    assert numbers == list(range(1, len(numbers) + 1))  # every issued invoice, no gaps
