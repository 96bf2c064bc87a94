"""Payments that come in by themselves, on the real stack: Stripe webhooks on ``aios serve``
and bank statement imports pay billing runs, once.

The console application runs in the test's event loop (httpx's ASGI transport) against a real
worker, dev server and PostgreSQL. Stripe events are signed exactly as Stripe signs them and
verified by the real ``stripe`` library; bank statements are real files read by ``aios bank
import`` (as a subprocess) or by ``operations.inbound.import_statement``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from aios import operations
from aios.activities.billing import BillingActivities
from aios.config import Settings
from aios.connectors.payments.stripe import StripeProvider
from aios.kernel.store import KernelStore
from aios.operations.inbound import import_statement
from aios.serve.app import create_app
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.billing import BillingResult
from tests.conftest import subprocess_env
from tests.helpers import RUNS, save_history
from tests.money_helpers import bill, known_client, progress_until, waiting_for
from tests.stripe_replay import Cassette, Expected, Interaction, StripeReplayServer
from tests.test_payment_runtime import API_KEY, LINES
from tests.test_statements import camt, entry, stripe_event, stripe_signature

SECRET = "whsec_" + uuid.uuid4().hex
PAYING = waiting_for("payment_received")


@pytest.fixture(scope="module")
def hook_settings(base_settings: Settings) -> Settings:
    return base_settings.model_copy(
        update={
            "task_queue": f"inbound-{uuid.uuid4().hex[:10]}",
            "stripe_webhook_secret": SecretStr(SECRET),
        }
    )


@pytest_asyncio.fixture(scope="module")
async def module_worker(
    client: Client, hook_settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    activities = services.activities()
    async with build_worker(client, hook_settings.task_queue, activities, executor) as w:
        yield w


@pytest_asyncio.fixture
async def http(
    hook_settings: Settings, client: Client, services: Services, module_worker: Worker
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(hook_settings, store=services.store, client=client)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=hook_settings.console_url) as h:
        yield h


async def issued(
    client: Client, settings: Settings, store: KernelStore, amount_minor: int
) -> tuple[WorkflowHandle[Any, BillingResult], str, str]:
    """A billing run waiting for payment: its handle, invoice id and number."""
    _, key, _ = known_client(store)
    handle = await bill(client, settings, store, key, amount_minor)
    progress = await progress_until(client, handle.id, PAYING)
    return handle, handle.id.split("/", 1)[1], progress.number


async def deliver(http: httpx.AsyncClient, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await http.post("/hooks/stripe", content=body, headers=headers)


def invoice_paid(event_id: str, invoice_id: str, amount_minor: int, **extra: Any) -> bytes:
    return stripe_event(
        "invoice.paid",
        {
            "id": f"in_{event_id[4:]}",
            "object": "invoice",
            "amount_paid": amount_minor,
            "currency": "usd",
            "metadata": {"aios_invoice_id": invoice_id},
            **extra,
        },
        event_id=event_id,
    )


def payments(store: KernelStore, invoice_id: str) -> list[tuple[str, int]]:
    return [(e.kind, e.amount_minor) for e in store.invoices.ledger(invoice_id)]


# --- Stripe ------------------------------------------------------------------------------------


async def test_a_signed_invoice_paid_delivered_three_times_pays_once(
    http: httpx.AsyncClient, client: Client, hook_settings: Settings, services: Services
) -> None:
    store = services.store
    handle, invoice_id, _ = await issued(client, hook_settings, store, 62_000)
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    body = invoice_paid(event_id, invoice_id, 62_000, payment_intent=f"pi_{event_id[4:]}")

    first = await deliver(http, body, stripe_signature(body, SECRET))
    # Stripe retries: two more deliveries of the same event, at once, freshly signed.
    again = await asyncio.gather(
        *(deliver(http, body, stripe_signature(body, SECRET)) for _ in range(2))
    )
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "signalled" and first.json()["duplicate"] is False
    assert [r.status_code for r in again] == [200, 200]
    assert [r.json()["duplicate"] for r in again] == [True, True]

    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert (result.status, result.paid) == ("paid", "USD 620.00")
    assert payments(store, invoice_id) == [("payment", 62_000)]
    assert store.invoices.get(invoice_id).status == "paid"  # type: ignore[union-attr]
    row = store.inbound.get("stripe", event_id)
    assert row is not None and (row.outcome, row.workflow_id) == ("signalled", handle.id)
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert kinds.count("payment.recorded") == 1
    # A fourth delivery after the run ended changes nothing either.
    late = await deliver(http, body, stripe_signature(body, SECRET))
    assert (late.status_code, late.json()["duplicate"]) == (200, True)
    assert payments(store, invoice_id) == [("payment", 62_000)]


async def test_an_event_interrupted_before_its_outcome_is_settled_on_redelivery_once(
    http: httpx.AsyncClient, client: Client, hook_settings: Settings, services: Services
) -> None:
    """The crash the order guards against: the event was recorded and the run signalled, but
    the process died before the outcome was written. Stripe redelivers; the run refuses the
    payment id it already has, the outcome is written, and the money is recorded once."""
    store = services.store
    handle, invoice_id, _ = await issued(client, hook_settings, store, 100_000)
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    stripe_invoice = f"in_{event_id[4:]}"
    body = invoice_paid(event_id, invoice_id, 30_000)
    # What the first delivery did before it died: recorded, then signalled.
    store.inbound.receive("stripe", event_id, "invoice.paid", refs=[stripe_invoice])
    await operations.record_payment(
        client,
        store,
        invoice_id,
        amount=Decimal(300),
        reference=f"Stripe {stripe_invoice}",
        recorded_by="stripe",
        payment_id=f"stripe:{stripe_invoice}",
    )
    await progress_until(client, handle.id, lambda p: p.balance_minor == 70_000)

    response = await deliver(http, body, stripe_signature(body, SECRET))
    assert response.status_code == 200, response.text
    assert (response.json()["outcome"], response.json()["duplicate"]) == ("signalled", False)
    progress = await progress_until(client, handle.id, lambda p: p.rejected_signals == 1)
    assert progress.last_rejection == (
        "payment_received: payment_id: this payment was already received"
    )
    assert progress.balance_minor == 70_000
    assert payments(store, invoice_id) == [("payment", 30_000)]
    row = store.inbound.get("stripe", event_id)
    assert row is not None and row.outcome == "signalled"
    await handle.cancel()


async def test_a_payment_that_came_in_by_itself_and_is_refused_by_the_run_becomes_a_notice(
    client: Client, hook_settings: Settings, services: Services, module_worker: Worker
) -> None:
    """Past the checks before the signal (no worker answered them, or a race): the run itself
    refuses the payment, and because it came in by itself (it has an id) the run opens a
    notice; an operator's own signal gets only the rejection."""
    store = services.store
    handle, _, number = await issued(client, hook_settings, store, 10_000)
    raw = client.get_workflow_handle(handle.id)
    money_id = f"bank:camt:{uuid.uuid4().hex[:10]}"
    await raw.signal(
        "payment_received",
        {"amount": "150.00", "recorded_by": "bank", "reference": "x", "payment_id": money_id},
    )
    await raw.signal("payment_received", {"amount": "150.00", "recorded_by": "pat"})
    await progress_until(client, handle.id, lambda p: p.rejected_signals == 2)
    async with asyncio.timeout(30):
        while (notice := store.notices.get(f"payment/refused/{money_id}")) is None:
            await asyncio.sleep(0.1)
    assert (notice.kind, notice.source, notice.workflow_id) == (
        "refused_payment",
        "bank",
        handle.id,
    )
    assert notice.title == f"Payment of USD 150.00 from bank refused by {number}"
    assert notice.summary.startswith("amount: USD 150.00 is more than the open balance")
    refused = [n for n in store.notices.open_notices() if n.workflow_id == handle.id]
    assert [n.key for n in refused] == [notice.key]
    await handle.cancel()


async def test_a_bad_or_missing_signature_is_400_and_records_nothing(
    http: httpx.AsyncClient, client: Client, hook_settings: Settings, services: Services
) -> None:
    store = services.store
    handle, invoice_id, _ = await issued(client, hook_settings, store, 30_000)
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    body = invoice_paid(event_id, invoice_id, 30_000)
    before = store.notices.open_notices()

    wrong_secret = await deliver(http, body, stripe_signature(body, "whsec_not_ours"))
    tampered = await deliver(http, body.replace(b"30000", b"3000"), stripe_signature(body, SECRET))
    missing = await deliver(http, body, None)
    garbage = await deliver(http, body, "t=1,v1=00")

    for response in (wrong_secret, tampered, missing, garbage):
        assert response.status_code == 400
    assert "does not match" in wrong_secret.json()["error"]
    assert "missing" in missing.json()["error"]
    assert store.inbound.get("stripe", event_id) is None
    assert store.notices.open_notices() == before
    progress = await progress_until(client, handle.id, PAYING)
    assert progress.balance_minor == 30_000 and progress.rejected_signals == 0
    assert payments(store, invoice_id) == []
    await handle.cancel()


async def test_an_unmatched_payment_becomes_a_notice_and_unknown_types_are_acknowledged(
    http: httpx.AsyncClient, services: Services
) -> None:
    store = services.store
    event_id = f"evt_{uuid.uuid4().hex[:16]}"
    body = invoice_paid(event_id, "no-such-invoice", 12_345, customer_name="Initech")
    response = await deliver(http, body, stripe_signature(body, SECRET))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "notice"
    notice = store.notices.get(f"payment/stripe/{event_id}")
    assert notice is not None and notice.status == "open"
    assert (notice.kind, notice.source) == ("unmatched_payment", "stripe")
    assert notice.title == "Payment of USD 123.45 from stripe (Initech)"
    assert "no-such-invoice, which is no invoice here" in notice.summary
    again = await deliver(http, body, stripe_signature(body, SECRET))
    assert again.json()["duplicate"] is True
    assert [n.key for n in store.notices.open_notices()].count(notice.key) == 1

    # A refund the event does not itemise (newer Stripe API versions) is noticed, not lost.
    refund_id = f"evt_{uuid.uuid4().hex[:16]}"
    refund = stripe_event(
        "charge.refunded",
        {"id": "ch_x", "currency": "usd", "amount_refunded": 2_500},
        event_id=refund_id,
    )
    noticed = await deliver(http, refund, stripe_signature(refund, SECRET))
    assert (noticed.status_code, noticed.json()["outcome"]) == (200, "notice")
    refund_notice = store.notices.get(f"payment/stripe/{refund_id}")
    assert refund_notice is not None and refund_notice.kind == "unmatched_refund"
    assert refund_notice.title == "Refund of USD 25.00 from stripe"

    other_id = f"evt_{uuid.uuid4().hex[:16]}"
    other = stripe_event("customer.created", {"id": "cus_1"}, event_id=other_id)
    ignored = await deliver(http, other, stripe_signature(other, SECRET))
    assert (ignored.status_code, ignored.json()["outcome"]) == (200, "ignored")
    assert store.notices.get(f"payment/stripe/{other_id}") is None


async def test_a_stripe_refund_is_recorded_by_the_run_and_the_balance_grows_again(
    http: httpx.AsyncClient, client: Client, hook_settings: Settings, services: Services
) -> None:
    store = services.store
    handle, invoice_id, number = await issued(client, hook_settings, store, 100_000)
    pay_id, pi = f"evt_{uuid.uuid4().hex[:16]}", f"pi_{uuid.uuid4().hex[:12]}"
    part = stripe_event(
        "payment_intent.succeeded",
        {"id": pi, "amount_received": 40_000, "currency": "usd", "description": f"{number}"},
        event_id=pay_id,
    )
    paid = await deliver(http, part, stripe_signature(part, SECRET))
    assert paid.json()["outcome"] == "signalled", paid.text
    await progress_until(client, handle.id, lambda p: p.balance_minor == 60_000)

    refund_id = f"evt_{uuid.uuid4().hex[:16]}"
    refund = stripe_event(
        "charge.refunded",
        {
            "id": f"ch_{uuid.uuid4().hex[:12]}",
            "currency": "usd",
            "payment_intent": pi,
            "refunds": {
                "data": [{"id": f"re_{refund_id[4:]}", "amount": 40_000, "currency": "usd"}]
            },
        },
        event_id=refund_id,
    )
    refunded = await deliver(http, refund, stripe_signature(refund, SECRET))
    assert refunded.json()["outcome"] == "signalled", refunded.text
    progress = await progress_until(client, handle.id, lambda p: p.balance_minor == 100_000)
    assert progress.waiting_for == "payment_received"
    assert payments(store, invoice_id) == [("payment", 40_000), ("refund", -40_000)]
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert kinds.count("payment.refunded") == 1
    # The same refund again (as refund.created) is refused by the run: recorded once.
    twice = stripe_event(
        "refund.created",
        {"id": f"re_{refund_id[4:]}", "amount": 40_000, "currency": "usd", "payment_intent": pi},
        event_id=f"evt_{uuid.uuid4().hex[:16]}",
    )
    response = await deliver(http, twice, stripe_signature(twice, SECRET))
    assert response.status_code == 200
    await progress_until(client, handle.id, lambda p: p.rejected_signals == 1)
    assert payments(store, invoice_id) == [("payment", 40_000), ("refund", -40_000)]
    await operations.record_payment(
        client, store, invoice_id, amount=None, reference="rest", recorded_by="pat"
    )
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert (result.status, result.paid) == ("paid", "USD 1,000.00")
    await save_history(handle, "billing_refunded")


def stripe_cassette() -> Cassette:
    """Creating the EUR 6,200.00 invoice at "Stripe" (the recorded responses, requests matched
    by method, path, amounts and the presence of an idempotency key), then the retrieve that
    finds it paid when the run marks it paid."""
    cassette = Cassette.load("create_new_customer")
    kept = ("currency", "quantity", "unit_amount_decimal", "collection_method")
    for interaction in cassette.interactions:
        request = interaction.request
        request.query = {}
        request.form = {k: v for k, v in request.form.items() if k in kept}
        if isinstance(request.idempotency_key, str):
            request.idempotency_key = True
    paid = Cassette.load("mark_paid").interactions[1].response
    cassette.interactions.append(
        Interaction(Expected("GET", f"/v1/invoices/{paid.body['id']}", idempotency_key=False), paid)
    )
    return cassette


async def test_a_signed_invoice_paid_ends_a_stripe_billing_run_paid(
    http: httpx.AsyncClient,
    client: Client,
    hook_settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
) -> None:
    store = services.store
    settings = hook_settings.model_copy(
        update={
            "task_queue": f"inbound-stripe-{uuid.uuid4().hex[:8]}",
            "payment_provider": "stripe",
            "currency": "EUR",
        }
    )
    with StripeReplayServer(stripe_cassette()) as server:
        stripe_billing = BillingActivities(
            store,
            {
                **services.providers,
                "stripe": StripeProvider(SecretStr(API_KEY), api_base=server.url),
            },
            services.runtime,
        )
        swapped = {"provider_create_invoice", "provider_void_invoice", "provider_mark_paid"}
        activities = [
            getattr(stripe_billing, a.__name__) if a.__name__ in swapped else a
            for a in services.activities()
        ]
        async with build_worker(client, settings.task_queue, activities, executor):
            _, key, _ = known_client(store)
            started = await operations.start_billing(
                client, settings, store, operations.NewInvoice(client_key=key, items=LINES)
            )
            RUNS.append(started.workflow_id)
            handle = client.get_workflow_handle(started.workflow_id, result_type=BillingResult)
            await progress_until(client, handle.id, PAYING)
            invoice_id = handle.id.split("/", 1)[1]
            invoice = store.invoices.get(invoice_id)
            assert invoice is not None and invoice.provider == "stripe"

            event_id = f"evt_{uuid.uuid4().hex[:16]}"
            paid = Cassette.load("mark_paid").interactions[1].response.body
            body = stripe_event(
                "invoice.paid",
                {**paid, "metadata": {**paid["metadata"], "aios_invoice_id": invoice_id}},
                event_id=event_id,
            )
            response = await deliver(http, body, stripe_signature(body, SECRET))
            assert response.json()["outcome"] == "signalled", response.text
            result = await asyncio.wait_for(handle.result(), timeout=60)
    assert (result.status, result.paid) == ("paid", "EUR 6,200.00")
    assert server.mismatches == []
    assert not any(r.path.endswith("/pay") for r in server.received)  # paid at Stripe already
    assert payments(store, invoice_id) == [("payment", 620_000)]
    assert store.invoices.get(invoice_id).status == "paid"  # type: ignore[union-attr]


# --- bank statements ---------------------------------------------------------------------------


async def test_camt053_and_csv_imports_pay_bank_transfer_invoices_once(
    client: Client,
    hook_settings: Settings,
    services: Services,
    module_worker: Worker,
    tmp_path: Path,
) -> None:
    store = services.store
    by_camt, camt_invoice, camt_number = await issued(client, hook_settings, store, 450_000)
    by_csv, csv_invoice, csv_number = await issued(client, hook_settings, store, 12_050)
    over, over_invoice, over_number = await issued(client, hook_settings, store, 10_000)
    _, _, other_number = await issued(client, hook_settings, store, 10_000)
    tag = uuid.uuid4().hex[:8]

    statement = tmp_path / "camt053.xml"
    statement.write_bytes(
        camt(
            entry("4500.00", ref=f"R-{tag}-1", ustrd=f"Invoice {camt_number}", ccy="USD")
            + entry("80.00", ind="DBIT", ref=f"R-{tag}-2", ccy="USD")
        )
    )
    report = await import_statement(hook_settings, statement)
    assert [(r.outcome, r.duplicate, r.workflow_id) for r in report.results] == [
        ("signalled", False, by_camt.id)
    ]
    assert (await asyncio.wait_for(by_camt.result(), timeout=60)).status == "paid"

    csv_file = tmp_path / "export.csv"
    csv_file.write_text(
        "Date;Amount;Reference;Name\n"
        f"2026-11-21;120,50;{csv_number.lower().replace('-', ' ')} thank you;Globex\n"
        f"2026-11-21;150,00;{over_number};Globex\n"
        f"2026-11-22;100,00;{over_number} {other_number};Initech\n",
        encoding="cp1252",
    )
    env_settings = hook_settings.model_copy(update={"bank_csv_decimal": ","})
    done = aios_env(env_settings, "bank", "import", str(csv_file))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"line 2: USD 120.50 paid -> {by_csv.id}" in done.stdout
    refusal = f"line 3: amount: USD 150.00 is more than the open balance USD 100.00 of {over.id}"
    assert refusal in done.stderr
    assert "line 4: USD 100.00 to the inbox" in done.stdout
    assert (await asyncio.wait_for(by_csv.result(), timeout=60)).paid == "USD 120.50"
    assert payments(store, csv_invoice) == [("payment", 12_050)]
    assert payments(store, over_invoice) == []
    ambiguous = [n for n in store.notices.open_notices() if n.kind == "ambiguous_payment"]
    assert any(over_number in n.details["candidates"] for n in ambiguous)
    refused = [n for n in store.notices.open_notices() if n.kind == "refused_payment"]
    assert any(n.workflow_id == over.id for n in refused)

    # The same files again: nothing new anywhere.
    notices = store.notices.open_notices()
    events = len(store.events.for_run(by_camt.id)) + len(store.events.for_run(by_csv.id))
    again = await import_statement(hook_settings, statement)
    assert [r.duplicate for r in again.results] == [True]
    done = aios_env(env_settings, "bank", "import", str(csv_file), "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["new"], [c["duplicate"] for c in document["credits"]]) == (
        0,
        [True, True, True],
    )
    assert store.notices.open_notices() == notices
    assert payments(store, camt_invoice) == [("payment", 450_000)]
    assert payments(store, csv_invoice) == [("payment", 12_050)]
    after = len(store.events.for_run(by_camt.id)) + len(store.events.for_run(by_csv.id))
    assert after == events
    await over.cancel()


def aios_env(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(
        settings,
        AIOS_BANK_CSV_DECIMAL=settings.bank_csv_decimal,
        AIOS_CURRENCY=settings.currency,
    )
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_bad_statement_is_refused_whole_and_records_nothing(
    hook_settings: Settings, services: Services, tmp_path: Path
) -> None:
    store = services.store
    before = store.inbound.count("bank")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "Date,Amount,Reference\n2026-11-21,10.00,INV-000001\n2026-11-21,ten,INV-000002\n"
    )
    done = aios_env(hook_settings, "bank", "import", str(bad))
    assert done.returncode == 1
    assert "bad.csv line 3, field 'Amount': 'ten' is not an amount" in done.stderr
    assert store.inbound.count("bank") == before
