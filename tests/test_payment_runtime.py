"""Payment-provider calls through the connector runtime: breaker, rate limit, approval, dry run.

The billing activities run inside ``temporalio.testing.ActivityEnvironment`` (so
``activity.info()`` names a workflow run) against the real PostgreSQL of the test session and
the real ``stripe`` client talking HTTP to a ``StripeReplayServer`` (tests/stripe_replay.py).
Assertions are about what reached that server and what the outbox and event log hold.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from aios.activities.billing import BillingActivities
from aios.activities.models import (
    CreateInvoiceInput,
    InvoiceStepInput,
    IssueInvoiceInput,
    ProviderCreateInvoiceInput,
    ProviderMarkPaidInput,
    RecordPaymentInput,
)
from aios.connectors.payments.base import OPERATIONS, PaymentProvider
from aios.connectors.payments.stripe import StripeProvider
from aios.connectors.runtime import ConnectorRuntime, GuardSettings
from aios.kernel.events import EventDraft
from aios.kernel.money import LineItem
from aios.kernel.store import KernelStore
from tests.money_helpers import known_client
from tests.stripe_replay import RECORDINGS, Cassette, StripeReplayServer, load_response

API_KEY = "sk_test_51Q9xAiOsDemoReplayOnlyNotARealKey00000tK3y"
CONNECTOR = "payments:stripe"
REFERENCE = "in_1Sg4OeHXQ9xAiOsDRIabDw7K"  # the open invoice of void_open.json and mark_paid.json
TOTAL = 620_000  # EUR 6,200.00, what the cassettes' invoices come to
LINES = [
    LineItem(description="Discovery workshop (2 days)", quantity=1, unit_price_minor=240000),
    LineItem(description="Implementation sprint, per day", quantity=4, unit_price_minor=95000),
]
ISSUED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
# The key the cassettes were recorded with, and the names in them (see test_stripe_provider.py).
CASSETTE_KEY = "billing/acme-ltd/2b6f0c1e-run/provider-invoice"

R = TypeVar("R")
Start = Callable[[Cassette], StripeReplayServer]


# --- set-up -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[KernelStore]:
    kernel = KernelStore(database_url)
    yield kernel
    kernel.close()


@pytest.fixture
def start() -> Iterator[Start]:
    servers: list[StripeReplayServer] = []

    def _start(cassette: Cassette) -> StripeReplayServer:
        server = StripeReplayServer(cassette).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
    for server in servers:
        assert server.mismatches == [], server.mismatches


@dataclasses.dataclass
class Run:
    """One billing workflow run, as the activities see it through ``activity.info()``."""

    workflow_id: str
    run_id: str
    env: ActivityEnvironment

    def key(self, step: str) -> str:
        return f"{self.workflow_id}/{self.run_id}/{step}"

    def __call__(self, fn: Callable[..., R], *args: Any) -> R:
        return self.env.run(fn, *args)


def new_run(workflow_id: str | None = None) -> Run:
    env = ActivityEnvironment()
    workflow_id = workflow_id or f"billing/test-{uuid.uuid4().hex[:10]}"
    run_id = str(uuid.uuid4())
    env.info = dataclasses.replace(
        env.info, workflow_id=workflow_id, workflow_run_id=run_id, workflow_type="BillingWorkflow"
    )
    return Run(workflow_id, run_id, env)


def runtime(store: KernelStore, guard: GuardSettings | None = None, **kw: Any) -> ConnectorRuntime:
    guards = {CONNECTOR: guard} if guard is not None else None
    return ConnectorRuntime(store, guards=guards, worker="test-payments", **kw)


def billing(
    store: KernelStore, server: StripeReplayServer, rt: ConnectorRuntime
) -> BillingActivities:
    stripe: PaymentProvider = StripeProvider(SecretStr(API_KEY), api_base=server.url)
    return BillingActivities(store, {"stripe": stripe}, rt)


def issued_invoice(store: KernelStore, run: Run, *, at_stripe: bool = True) -> str:
    """An issued EUR 6,200.00 invoice of ``run``; ``at_stripe``: payable as Stripe's REFERENCE."""
    _, client_key, _ = known_client(store)
    invoice_id = f"inv_{uuid.uuid4().hex[:10]}"
    kernel = BillingActivities(store, {}, runtime(store))
    run(
        kernel.create_invoice,
        CreateInvoiceInput(
            idempotency_key=run.key("create"),
            invoice_id=invoice_id,
            client_key=client_key,
            currency="EUR",
            line_items=LINES,
        ),
    )
    run(
        kernel.issue_invoice,
        IssueInvoiceInput(
            idempotency_key=run.key("issue"),
            invoice_id=invoice_id,
            issued_at=ISSUED,
            due_at=ISSUED + timedelta(days=14),
        ),
    )
    if at_stripe:
        store.invoices.attach_provider(
            invoice_id,
            provider="stripe",
            reference=REFERENCE,
            payment_instructions="Pay online.",
            hosted_url=None,
            event=EventDraft(
                event_key=run.key("provider-create/attached"),
                workflow_id=run.workflow_id,
                run_id=run.run_id,
                process="billing",
                kind="invoice.payable",
                entity=f"invoice:{invoice_id}",
            ),
        )
    return invoice_id


def cassette(name: str, key: str, step: str) -> Cassette:
    """Cassette ``name`` whose keyed POST expects our ``<key>/<step>`` Idempotency-Key."""
    loaded = Cassette.load(name)
    [keyed] = [i.request for i in loaded.interactions if isinstance(i.request.idempotency_key, str)]
    assert str(keyed.idempotency_key).endswith(f"/{step}")
    keyed.idempotency_key = f"{key}/{step}"
    return loaded


def record_payment(store: KernelStore, run: Run, invoice_id: str) -> str:
    key = run.key("payment/1")
    run(
        BillingActivities(store, {}, runtime(store)).record_payment,
        RecordPaymentInput(
            idempotency_key=key,
            invoice_id=invoice_id,
            amount_minor=TOTAL,
            currency="EUR",
            reference="transfer 42",
            paid_at=ISSUED + timedelta(days=3),
            recorded_by="pat",
        ),
    )
    return key


def kinds(store: KernelStore, run: Run) -> list[str]:
    return [e.kind for e in store.events.for_run(run.workflow_id, run.run_id)]


# --- the operations table -----------------------------------------------------------------------


def test_only_mark_paid_is_irreversible() -> None:
    assert {name: op.irreversible for name, op in OPERATIONS.items()} == {
        "create_invoice": False,
        "void_invoice": False,
        "mark_paid": True,
    }
    assert OPERATIONS["create_invoice"].compensation == "void_invoice"
    assert OPERATIONS["void_invoice"].undoes == "create_invoice"
    assert all(op.effect for op in OPERATIONS.values())


# --- the circuit breaker ------------------------------------------------------------------------


def test_stripe_5xx_opens_the_breaker_fails_fast_then_one_trial_closes_it(
    store: KernelStore, start: Start
) -> None:
    run = new_run()
    invoice_id = issued_invoice(store, run)
    key = run.key("provider-void")
    server = start(cassette("void_open", key, "void"))
    server.inject(load_response("api_error"), times=2)
    rt = runtime(store, GuardSettings(rate_limit="1000/second", fail_max=2, reset_timeout=0.5))
    activities = billing(store, server, rt)
    void = InvoiceStepInput(idempotency_key=key, invoice_id=invoice_id)

    for _ in range(2):
        with pytest.raises(ApplicationError, match="HTTP 500") as failed:
            run(activities.provider_void_invoice, void)
        assert failed.value.type == "TransientConnectorError" and not failed.value.non_retryable
    assert len(server.received) == 2 and all(r.injected for r in server.received)
    assert rt.guard(CONNECTOR).snapshot()["breaker_state"] == "open"

    with pytest.raises(ApplicationError, match="circuit open") as fast:
        run(activities.provider_void_invoice, void)
    assert fast.value.type == "TransientConnectorError" and not fast.value.non_retryable
    assert fast.value.next_retry_delay is not None
    assert fast.value.next_retry_delay <= timedelta(seconds=0.5)
    assert len(server.received) == 2  # failed fast: Stripe got no further request

    deadline = time.monotonic() + 5
    while rt.guard(CONNECTOR).seconds_until_trial() > 0:  # the breaker's own reset timeout
        assert time.monotonic() < deadline
        time.sleep(0.05)
    receipt = run(activities.provider_void_invoice, void)

    assert receipt.status == "void" and receipt.reference == REFERENCE and not receipt.dry_run
    assert [(r.method, r.path, r.idempotency_key) for r in server.received[2:]] == [
        ("GET", f"/v1/invoices/{REFERENCE}", None),
        ("POST", f"/v1/invoices/{REFERENCE}/void", f"{key}/void"),
    ]
    assert rt.guard(CONNECTOR).snapshot()["breaker_state"] == "closed"
    entry = store.outbox.entry(key)
    assert entry is not None
    assert (entry["status"], entry["connector"], entry["operation"]) == (
        "done",
        CONNECTOR,
        "void_invoice",
    )
    assert kinds(store, run).count("compensation.provider_voided") == 1
    server.assert_clean()


# --- the local rate limit -----------------------------------------------------------------------


def test_the_local_rate_limit_refuses_the_second_call_before_it_reaches_stripe(
    store: KernelStore, start: Start
) -> None:
    first_run, second_run = new_run(), new_run()
    first, second = issued_invoice(store, first_run), issued_invoice(store, second_run)
    first_key, second_key = first_run.key("provider-void"), second_run.key("provider-void")
    server = start(cassette("void_open", first_key, "void"))
    activities = billing(store, server, runtime(store, GuardSettings(rate_limit="1/minute")))

    void = InvoiceStepInput(idempotency_key=first_key, invoice_id=first)
    assert first_run(activities.provider_void_invoice, void).status == "void"
    assert len(server.received) == 2
    # A repeat of the same key is answered by the outbox: no call, so no rate-limit hit.
    assert first_run(activities.provider_void_invoice, void).status == "void"
    assert len(server.received) == 2

    with pytest.raises(ApplicationError, match="local rate limit 1/minute") as limited:
        second_run(
            activities.provider_void_invoice,
            InvoiceStepInput(idempotency_key=second_key, invoice_id=second),
        )

    assert limited.value.type == "RateLimited" and not limited.value.non_retryable
    delay = limited.value.next_retry_delay
    assert delay is not None and timedelta(0) < delay <= timedelta(minutes=1)
    assert len(server.received) == 2  # Stripe heard nothing of the second invoice
    entry = store.outbox.entry(second_key)
    assert entry is None or entry["status"] != "done"
    assert "compensation.provider_voided" not in kinds(store, second_run)
    server.assert_clean()


# --- mark_paid needs the run's recorded payment -------------------------------------------------


def test_mark_paid_without_a_recorded_payment_is_refused_and_reaches_nothing(
    store: KernelStore, start: Start
) -> None:
    run = new_run()
    invoice_id = issued_invoice(store, run)
    key = run.key("provider-paid")
    server = start(cassette("mark_paid", key, "pay"))
    activities = billing(store, server, runtime(store))

    with pytest.raises(ApplicationError, match="cannot be undone") as refused:
        run(
            activities.provider_mark_paid,
            ProviderMarkPaidInput(idempotency_key=key, invoice_id=invoice_id, amount_minor=TOTAL),
        )

    assert refused.value.type == "PolicyRefusal" and refused.value.non_retryable
    assert "payments:stripe.mark_paid" in str(refused.value)
    assert server.received == []
    assert store.outbox.entry(key) is None
    assert "provider.marked_paid" not in kinds(store, run)
    server.assert_clean(all_used=False)


def test_mark_paid_after_the_recorded_payment_pays_at_stripe_exactly_once(
    store: KernelStore, start: Start
) -> None:
    run = new_run()
    invoice_id = issued_invoice(store, run)
    payment_key = record_payment(store, run, invoice_id)
    assert payment_key == f"{run.workflow_id}/{run.run_id}/payment/1"
    key = run.key("provider-paid")
    server = start(cassette("mark_paid", key, "pay"))
    activities = billing(store, server, runtime(store))
    paid = ProviderMarkPaidInput(idempotency_key=key, invoice_id=invoice_id, amount_minor=TOTAL)

    first = run(activities.provider_mark_paid, paid)
    again = run(activities.provider_mark_paid, paid)

    assert first == again
    assert first.status == "paid" and first.reference == REFERENCE and not first.dry_run
    assert [(r.method, r.path, r.form, r.idempotency_key) for r in server.received] == [
        ("GET", f"/v1/invoices/{REFERENCE}", {}, None),
        ("POST", f"/v1/invoices/{REFERENCE}/pay", {"paid_out_of_band": "true"}, f"{key}/pay"),
    ]
    entry = store.outbox.entry(key)
    assert entry is not None and (entry["status"], entry["attempts"]) == ("done", 1)
    assert kinds(store, run).count("provider.marked_paid") == 1
    server.assert_clean()


def test_a_payment_recorded_in_another_run_is_no_approval(store: KernelStore, start: Start) -> None:
    earlier = new_run()
    invoice_id = issued_invoice(store, earlier)
    record_payment(store, earlier, invoice_id)
    assert "payment.recorded" in kinds(store, earlier)
    run = new_run(earlier.workflow_id)  # the same workflow id, a new run (e.g. continue-as-new)
    key = run.key("provider-paid")
    server = start(cassette("mark_paid", key, "pay"))
    activities = billing(store, server, runtime(store))

    with pytest.raises(ApplicationError, match=r"cannot be undone.*none was given") as refused:
        run(
            activities.provider_mark_paid,
            ProviderMarkPaidInput(idempotency_key=key, invoice_id=invoice_id, amount_minor=TOTAL),
        )

    assert refused.value.type == "PolicyRefusal" and refused.value.non_retryable
    assert server.received == []
    assert store.outbox.entry(key) is None
    server.assert_clean(all_used=False)


def test_a_payment_recorded_for_another_invoice_of_the_run_is_no_approval(
    store: KernelStore, start: Start
) -> None:
    run = new_run()
    other = issued_invoice(store, run)
    record_payment(store, run, other)
    invoice_id = issued_invoice(store, run)
    key = run.key("provider-paid")
    server = start(cassette("mark_paid", key, "pay"))
    activities = billing(store, server, runtime(store))

    with pytest.raises(ApplicationError, match=r"cannot be undone.*none was given") as refused:
        run(
            activities.provider_mark_paid,
            ProviderMarkPaidInput(idempotency_key=key, invoice_id=invoice_id, amount_minor=TOTAL),
        )

    assert refused.value.type == "PolicyRefusal" and refused.value.non_retryable
    assert server.received == []
    assert store.outbox.entry(key) is None
    server.assert_clean(all_used=False)


# --- creating through the runtime ---------------------------------------------------------------


def test_create_goes_through_the_outbox_once_and_attaches_the_stripe_invoice(
    store: KernelStore, start: Start, tmp_path: Path
) -> None:
    run = new_run()
    invoice_id = issued_invoice(store, run, at_stripe=False)
    invoice = store.invoices.get(invoice_id)
    client = store.clients.get(invoice.client_key) if invoice else None
    assert invoice is not None and client is not None
    key = run.key("provider-create")
    text = (RECORDINGS / "create_existing_customer.json").read_text()
    for ours, theirs in (
        (key, CASSETTE_KEY),
        (client.key, "acme-ltd"),
        (client.email, "ops@acme.example"),
        (invoice_id, "inv_0f9d2c41"),
        (invoice.display_number, "INV-000042"),
    ):
        assert theirs in text
        text = text.replace(theirs, ours)
    (tmp_path / "create.json").write_text(text)
    server = start(Cassette.load(tmp_path / "create.json"))
    final = json.loads(text)["interactions"][-1]["response"]["body"]
    activities = billing(store, server, runtime(store))
    create = ProviderCreateInvoiceInput(
        idempotency_key=key, invoice_id=invoice_id, provider="stripe"
    )

    receipt = run(activities.provider_create_invoice, create)
    sent = len(server.received)
    assert run(activities.provider_create_invoice, create) == receipt

    assert receipt.reference == final["id"] and receipt.status == "open" and not receipt.dry_run
    assert len(server.received) == sent == 5  # the repeat was answered by the outbox
    assert [r.idempotency_key for r in server.posts()] == [
        f"{key}/invoice",
        f"{key}/item/1",
        f"{key}/item/2",
        f"{key}/finalize",
    ]
    entry = store.outbox.entry(key)
    assert entry is not None
    assert (entry["status"], entry["connector"], entry["operation"]) == (
        "done",
        CONNECTOR,
        "create_invoice",
    )
    attached = store.invoices.get(invoice_id)
    assert attached is not None
    assert (attached.provider, attached.provider_reference) == ("stripe", final["id"])
    assert kinds(store, run).count("provider.invoice_created") == 1
    server.assert_clean()


# --- dry run ------------------------------------------------------------------------------------


def test_a_dry_run_sends_nothing_to_stripe_and_writes_no_outbox_row(
    store: KernelStore, start: Start
) -> None:
    run = new_run()
    at_stripe = issued_invoice(store, run)
    unsent = issued_invoice(store, run, at_stripe=False)
    server = start(Cassette())  # any request would be recorded (and be a mismatch)
    activities = billing(store, server, runtime(store, dry_run=True))
    keys = [run.key(s) for s in ("provider-create", "provider-paid", "provider-void", "paid-2")]
    before = kinds(store, run)

    created = run(
        activities.provider_create_invoice,
        ProviderCreateInvoiceInput(idempotency_key=keys[0], invoice_id=unsent, provider="stripe"),
    )
    # No payment recorded: a dry run needs no approval, since it changes nothing.
    paid = run(
        activities.provider_mark_paid,
        ProviderMarkPaidInput(idempotency_key=keys[1], invoice_id=at_stripe, amount_minor=TOTAL),
    )
    voided = run(
        activities.provider_void_invoice,
        InvoiceStepInput(idempotency_key=keys[2], invoice_id=at_stripe),
    )
    # The invoice the dry run "created" stays unattached; its later steps are rehearsed too.
    paid_unsent = run(
        activities.provider_mark_paid,
        ProviderMarkPaidInput(idempotency_key=keys[3], invoice_id=unsent, amount_minor=TOTAL),
    )

    assert [(r.dry_run, r.provider, r.status) for r in (created, paid, voided)] == [
        (True, "stripe", "open"),
        (True, "stripe", "paid"),
        (True, "stripe", "void"),
    ]
    assert (paid.reference, voided.reference) == (REFERENCE, REFERENCE)
    assert paid_unsent.dry_run and paid_unsent.status == "paid"
    assert all("Dry run" in r.payment_instructions for r in (created, paid, voided, paid_unsent))
    assert server.received == []
    assert [store.outbox.entry(k) for k in keys] == [None] * 4
    invoice = store.invoices.get(unsent)
    assert invoice is not None and (invoice.provider, invoice.provider_reference) == (None, None)
    assert kinds(store, run) == before  # no provider event, no invoice.payable
