"""The Stripe provider through the real ``stripe`` client, over HTTP, against recorded Stripe.

Every test starts a ``StripeReplayServer`` (tests/stripe_replay.py) on a free local port with a
cassette from tests/recordings/stripe/ and points the provider at it. Assertions are about what
reached the server (paths, forms, idempotency keys), not about what the provider says it did.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import stripe
from pydantic import SecretStr

from aios.connectors.payments.base import PaymentProvider, ProviderInvoice
from aios.connectors.payments.stripe import StripeProvider
from aios.errors import InvalidInput, PermanentConnectorError, TransientConnectorError
from aios.kernel.money import LineItem
from tests.stripe_replay import RECORD_KEY_ENV, Cassette, StripeReplayServer, load_response

API_KEY = "sk_test_51Q9xAiOsDemoReplayOnlyNotARealKey00000tK3y"
KEY = "billing/acme-ltd/2b6f0c1e-run/provider-invoice"  # what the cassettes were built with
VOID_KEY = "billing/acme-ltd/2b6f0c1e-run/provider-void"
PAY_KEY = "billing/acme-ltd/2b6f0c1e-run/payment-1"
ISSUED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

Start = Callable[[str | Cassette], StripeReplayServer]


def our_invoice(**changes: object) -> ProviderInvoice:
    base = ProviderInvoice(
        invoice_id="inv_0f9d2c41",
        number="INV-000042",
        client_key="acme-ltd",
        client_name="Acme Ltd",
        client_email="ops@acme.example",
        currency="EUR",
        line_items=[
            LineItem(
                description="Discovery workshop (2 days)", quantity=1, unit_price_minor=240000
            ),
            LineItem(
                description="Implementation sprint, per day", quantity=4, unit_price_minor=95000
            ),
        ],
        total_minor=620000,
        issued_at=ISSUED,
        due_at=ISSUED + timedelta(days=14),
    )
    return base.model_copy(update=changes)


@pytest.fixture
def start() -> Iterator[Start]:
    servers: list[StripeReplayServer] = []

    def _start(cassette: str | Cassette) -> StripeReplayServer:
        loaded = cassette if isinstance(cassette, Cassette) else Cassette.load(cassette)
        server = StripeReplayServer(loaded).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
    for server in servers:
        assert server.mismatches == [], server.mismatches


def provider(server: StripeReplayServer, **kwargs: float) -> StripeProvider:
    return StripeProvider(SecretStr(API_KEY), api_base=server.url, **kwargs)


def bodies(cassette: str) -> list[dict]:
    return [i.response.body for i in Cassette.load(cassette).interactions]


# --- create ---------------------------------------------------------------------------------


def test_create_with_new_customer_finalizes_and_keys_every_post(start: Start) -> None:
    server = start("create_new_customer")
    final = bodies("create_new_customer")[-1]

    receipt = provider(server).create_invoice(our_invoice(), idempotency_key=KEY)

    assert receipt.provider == "stripe"
    assert receipt.reference == final["id"] and receipt.reference.startswith("in_")
    assert receipt.status == "open"
    assert receipt.hosted_url == final["hosted_invoice_url"]
    assert final["hosted_invoice_url"] in receipt.payment_instructions
    assert "INV-000042" in receipt.payment_instructions
    # How to pay, not how much: a reminder quotes them under the balance still open.
    assert "6,200" not in receipt.payment_instructions
    assert len(receipt.payment_instructions.splitlines()) <= 2

    assert [(r.method, r.path) for r in server.received] == [
        ("GET", "/v1/customers"),
        ("POST", "/v1/customers"),
        ("POST", "/v1/invoices"),
        ("POST", "/v1/invoiceitems"),
        ("POST", "/v1/invoiceitems"),
        ("POST", f"/v1/invoices/{final['id']}/finalize"),
    ]
    assert [r.idempotency_key for r in server.posts()] == [
        f"{KEY}/customer",
        f"{KEY}/invoice",
        f"{KEY}/item/1",
        f"{KEY}/item/2",
        f"{KEY}/finalize",
    ]
    assert server.received[0].idempotency_key is None
    assert {r.stripe_version for r in server.received} == {stripe.api_version}
    server.assert_clean()


def test_create_sends_our_amounts_currency_and_metadata(start: Start) -> None:
    server = start("create_new_customer")
    new_customer = bodies("create_new_customer")[1]

    provider(server).create_invoice(our_invoice(), idempotency_key=KEY)

    listed, customer, invoice, item1, item2 = server.received[:5]
    assert listed.query == {"email": "ops@acme.example", "limit": "100"}
    assert customer.form == {
        "name": "Acme Ltd",
        "email": "ops@acme.example",
        "metadata[aios_client_key]": "acme-ltd",
    }
    assert invoice.form == {
        "customer": new_customer["id"],
        "collection_method": "send_invoice",
        "days_until_due": "14",
        "currency": "eur",
        "auto_advance": "false",
        "pending_invoice_items_behavior": "exclude",
        "custom_fields[0][name]": "Invoice number",
        "custom_fields[0][value]": "INV-000042",
        "metadata[aios_invoice_id]": "inv_0f9d2c41",
        "metadata[aios_invoice_number]": "INV-000042",
        "metadata[aios_client_key]": "acme-ltd",
    }
    draft_id = bodies("create_new_customer")[2]["id"]
    lines = [
        (i.form["description"], i.form["quantity"], i.form["unit_amount_decimal"])
        for i in (item1, item2)
    ]
    assert lines == [
        ("Discovery workshop (2 days)", "1", "240000"),
        ("Implementation sprint, per day", "4", "95000"),
    ]
    assert {i.form["invoice"] for i in (item1, item2)} == {draft_id}
    assert {i.form["currency"] for i in (item1, item2)} == {"eur"}
    assert (
        sum(int(i.form["quantity"]) * int(i.form["unit_amount_decimal"]) for i in (item1, item2))
        == 620000
    )
    server.assert_clean()


def test_create_reuses_the_customer_carrying_our_client_key(start: Start) -> None:
    server = start("create_existing_customer")
    listed = bodies("create_existing_customer")[0]["data"]
    ours = next(c for c in listed if c["metadata"].get("aios_client_key") == "acme-ltd")
    assert listed[0]["id"] != ours["id"]  # the match is not simply the first one

    receipt = provider(server).create_invoice(our_invoice(), idempotency_key=KEY)

    assert receipt.status == "open"
    assert not [r for r in server.received if r.path == "/v1/customers" and r.method == "POST"]
    assert server.posts()[0].path == "/v1/invoices"
    assert server.posts()[0].form["customer"] == ours["id"]
    server.assert_clean()


def test_create_never_borrows_another_clients_customer(start: Start) -> None:
    cassette = Cassette.load("create_new_customer")
    someone_else = {
        **bodies("create_existing_customer")[0]["data"][1],
        "id": "cus_T3nAntOfOthr1",
        "metadata": {"aios_client_key": "acme-holdings"},
    }
    cassette.interactions[0].response.body["data"] = [someone_else]
    server = start(cassette)

    provider(server).create_invoice(our_invoice(), idempotency_key=KEY)

    assert [r.path for r in server.posts()][:2] == ["/v1/customers", "/v1/invoices"]
    assert server.posts()[1].form["customer"] != someone_else["id"]
    server.assert_clean()


def test_repeated_create_with_the_same_key_creates_nothing_new(start: Start) -> None:
    server = start("create_repeat_same_key")
    stripe_provider = provider(server)

    first = stripe_provider.create_invoice(our_invoice(), idempotency_key=KEY)
    first_posts = list(server.posts())
    second = stripe_provider.create_invoice(our_invoice(), idempotency_key=KEY)
    second_posts = server.posts()[len(first_posts) :]

    assert second == first
    customer_posts = [r for r in server.posts() if r.path == "/v1/customers"]
    assert len(customer_posts) == 1
    # The repeat sends the very same keys, so Stripe answers from its idempotency cache.
    assert [(r.path, r.idempotency_key) for r in second_posts] == [
        (r.path, r.idempotency_key) for r in first_posts if r.path != "/v1/customers"
    ]
    replayed = Cassette.load("create_repeat_same_key").interactions[len(first_posts) + 2 :]
    assert all(i.response.headers.get("Idempotent-Replayed") == "true" for i in replayed)
    server.assert_clean()


# --- void -----------------------------------------------------------------------------------


def test_void_of_an_open_invoice_posts_void_with_a_key(start: Start) -> None:
    server = start("void_open")
    reference = bodies("void_open")[0]["id"]

    receipt = provider(server).void_invoice(reference, idempotency_key=VOID_KEY)

    assert receipt.status == "void" and receipt.reference == reference
    assert "INV-000042" in receipt.payment_instructions
    assert [(r.method, r.path, r.idempotency_key) for r in server.received] == [
        ("GET", f"/v1/invoices/{reference}", None),
        ("POST", f"/v1/invoices/{reference}/void", f"{VOID_KEY}/void"),
    ]
    server.assert_clean()


def test_void_of_a_void_invoice_changes_nothing(start: Start) -> None:
    server = start("void_already_void")
    reference = bodies("void_already_void")[0]["id"]

    receipt = provider(server).void_invoice(reference, idempotency_key=VOID_KEY)

    assert receipt.status == "void"
    assert server.posts() == []
    server.assert_clean()


def test_void_of_a_paid_invoice_is_refused(start: Start) -> None:
    server = start("void_paid")
    reference = bodies("void_paid")[0]["id"]

    with pytest.raises(
        PermanentConnectorError, match=r"paid invoice cannot be voided.*credit note"
    ):
        provider(server).void_invoice(reference, idempotency_key=VOID_KEY)

    assert [r.method for r in server.received] == ["GET"]
    server.assert_clean()


def test_void_of_a_draft_deletes_it(start: Start) -> None:
    server = start("void_draft")
    reference = bodies("void_draft")[0]["id"]

    receipt = provider(server).void_invoice(reference, idempotency_key=VOID_KEY)

    assert receipt.status == "void"
    assert [(r.method, r.path) for r in server.received] == [
        ("GET", f"/v1/invoices/{reference}"),
        ("DELETE", f"/v1/invoices/{reference}"),
    ]
    server.assert_clean()


# --- mark paid ------------------------------------------------------------------------------


def test_mark_paid_pays_out_of_band(start: Start) -> None:
    server = start("mark_paid")
    reference = bodies("mark_paid")[0]["id"]

    receipt = provider(server).mark_paid(reference, 620000, idempotency_key=PAY_KEY)

    assert receipt.status == "paid" and receipt.reference == reference
    pay = server.posts()
    assert [(r.path, r.form, r.idempotency_key) for r in pay] == [
        (f"/v1/invoices/{reference}/pay", {"paid_out_of_band": "true"}, f"{PAY_KEY}/pay")
    ]
    server.assert_clean()


def test_mark_paid_with_another_amount_is_invalid_input(start: Start) -> None:
    server = start("mark_paid")
    reference = bodies("mark_paid")[0]["id"]

    with pytest.raises(InvalidInput, match=r"500000.*620000"):
        provider(server).mark_paid(reference, 500000, idempotency_key=PAY_KEY)

    assert server.posts() == []
    server.assert_clean(all_used=False)


# --- failures -------------------------------------------------------------------------------


def test_rate_limit_is_transient_with_retry_after_then_the_retry_succeeds(start: Start) -> None:
    server = start("create_new_customer")
    server.inject(load_response("rate_limited"))
    stripe_provider = provider(server)

    with pytest.raises(TransientConnectorError, match="retry after 7 seconds"):
        stripe_provider.create_invoice(our_invoice(), idempotency_key=KEY)
    assert len(server.received) == 1 and server.received[0].injected

    receipt = stripe_provider.create_invoice(our_invoice(), idempotency_key=KEY)
    assert receipt.status == "open"
    server.assert_clean()


def test_server_error_is_transient(start: Start) -> None:
    server = start("create_new_customer")
    server.inject(load_response("api_error"), after=2)  # the invoice POST

    with pytest.raises(TransientConnectorError, match="HTTP 500"):
        provider(server).create_invoice(our_invoice(), idempotency_key=KEY)

    last = server.received[-1]
    assert (last.method, last.path, last.idempotency_key, last.injected) == (
        "POST",
        "/v1/invoices",
        f"{KEY}/invoice",
        True,
    )
    server.assert_clean(all_used=False)


def test_timeout_is_transient(start: Start) -> None:
    server = start("create_new_customer")
    server.inject(load_response("api_error"), delay_seconds=2.0)

    with pytest.raises(TransientConnectorError, match=r"cannot reach Stripe \(ReadTimeout\)"):
        provider(server, timeout_seconds=0.3).create_invoice(our_invoice(), idempotency_key=KEY)
    server.assert_clean(all_used=False)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nowhere = StripeProvider(SecretStr(API_KEY), api_base=f"http://127.0.0.1:{port}")

    with pytest.raises(TransientConnectorError, match="cannot reach Stripe") as raised:
        nowhere.create_invoice(our_invoice(), idempotency_key=KEY)
    assert "ops@acme.example" not in str(raised.value)  # the library's detail quotes the URL


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("authentication_failed", "authentication failed"),
        ("permission_denied", "permission denied"),
    ],
)
def test_auth_failures_are_permanent_and_never_show_the_key(
    start: Start, caplog: pytest.LogCaptureFixture, fault: str, message: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start("create_new_customer")
    server.inject(load_response(fault))

    with pytest.raises(PermanentConnectorError, match=f"^stripe: {message}") as raised:
        provider(server).create_invoice(our_invoice(), idempotency_key=KEY)

    error = raised.value
    shown = "\n".join([str(error), repr(error), caplog.text])
    assert API_KEY not in shown
    assert API_KEY[-4:] not in str(error)  # Stripe's text echoes the key's tail: never quoted
    assert error.__cause__ is None
    assert "Authorization" not in shown and "Bearer" not in shown
    server.assert_clean(all_used=False)


def test_invalid_request_is_permanent_with_stripes_message(start: Start) -> None:
    server = start("create_invalid_email")

    with pytest.raises(PermanentConnectorError) as raised:
        provider(server).create_invoice(our_invoice(client_email="ops@acme"), idempotency_key=KEY)

    assert "Invalid email address: ops@acme" in str(raised.value)
    assert "param: email" in str(raised.value)
    assert [r.path for r in server.posts()] == ["/v1/customers"]
    server.assert_clean()


def test_idempotency_error_is_permanent(start: Start) -> None:
    server = start("create_existing_customer")
    server.inject(load_response("idempotency_error"), after=1)

    with pytest.raises(PermanentConnectorError, match="idempotency key reused"):
        provider(server).create_invoice(our_invoice(), idempotency_key=KEY)
    server.assert_clean(all_used=False)


def test_missing_total_is_schema_drift(start: Start) -> None:
    cassette = Cassette.load("create_existing_customer")
    del cassette.interactions[-1].response.body["total"]
    server = start(cassette)

    with pytest.raises(
        PermanentConnectorError, match=r"schema drift: invoice\.total: Field required"
    ):
        provider(server).create_invoice(our_invoice(), idempotency_key=KEY)
    server.assert_clean()


def test_a_changed_field_type_is_schema_drift(start: Start) -> None:
    cassette = Cassette.load("void_open")
    cassette.interactions[0].response.body["amount_remaining"] = "620000.00"
    server = start(cassette)
    reference = cassette.interactions[0].response.body["id"]

    with pytest.raises(PermanentConnectorError, match=r"schema drift: invoice\.amount_remaining"):
        provider(server).void_invoice(reference, idempotency_key=VOID_KEY)
    server.assert_clean(all_used=False)


def test_a_total_that_differs_from_ours_is_permanent(start: Start) -> None:
    cassette = Cassette.load("create_existing_customer")
    cassette.interactions[-1].response.body["total"] = 619999
    server = start(cassette)

    with pytest.raises(PermanentConnectorError, match="expected 620000 eur"):
        provider(server).create_invoice(our_invoice(), idempotency_key=KEY)
    server.assert_clean()


def test_lines_that_do_not_add_up_never_reach_stripe(start: Start) -> None:
    server = start("create_new_customer")

    with pytest.raises(InvalidInput, match="total_minor"):
        provider(server).create_invoice(our_invoice(total_minor=1), idempotency_key=KEY)

    assert server.received == []


def test_a_reference_that_is_no_stripe_invoice_is_invalid_input(start: Start) -> None:
    server = start("void_open")

    with pytest.raises(InvalidInput, match="reference"):
        provider(server).void_invoice("INV-000042", idempotency_key=VOID_KEY)
    assert server.received == []


def test_the_provider_fits_the_payment_provider_contract() -> None:
    contract: PaymentProvider = StripeProvider(SecretStr(API_KEY))
    assert contract.name == "stripe"


# --- the replay server's record mode ----------------------------------------------------------


def test_record_mode_forwards_saves_and_strips_secrets(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_key = "sk_test_RecordModeKeyThatMustNotBeWritten0000"
    monkeypatch.setenv(RECORD_KEY_ENV, record_key)
    upstream = start("void_open")  # stands in for api.stripe.com
    saved = tmp_path / "void_open.json"
    reference = bodies("void_open")[0]["id"]

    with StripeReplayServer.recording(saved, upstream=upstream.url, meta={"note": "test"}) as rec:
        receipt = provider(rec).void_invoice(reference, idempotency_key=VOID_KEY)
    assert receipt.status == "void"
    upstream.assert_clean()

    text = saved.read_text()
    assert record_key not in text and API_KEY not in text
    assert "Authorization" not in text and "Bearer" not in text
    recorded = Cassette.load(saved)
    assert [(i.request.method, i.request.path) for i in recorded.interactions] == [
        ("GET", f"/v1/invoices/{reference}"),
        ("POST", f"/v1/invoices/{reference}/void"),
    ]
    assert recorded.interactions[1].request.idempotency_key == f"{VOID_KEY}/void"

    replayed = start(recorded)  # and the new recording replays
    assert provider(replayed).void_invoice(reference, idempotency_key=VOID_KEY) == receipt
    replayed.assert_clean()
