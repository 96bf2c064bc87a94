"""Outgoing webhooks against a local scriptable HTTP server: wire format, signatures,
idempotent ids, error classification, dry runs, bad input, and secrets kept out of sight."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from aios.connectors.webhooks import (
    MAX_BODY_BYTES,
    CheckResult,
    Delivery,
    WebhookConfig,
    WebhookConnector,
    WebhookEvent,
    delivery_id_for,
    retraction_of,
    sign,
    verify_signature,
)
from aios.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorInvalidRequest,
    InvalidInput,
    RateLimited,
    TransientConnectorError,
)
from tests.flaky_http import FlakyHttpServer, Reply

SECRET = "whsec-test-0123456789abcdef"
EVENT = WebhookEvent(type="invoice.paid", data={"invoice": "INV-0001", "amount_minor": 12000})


@pytest.fixture
def server() -> Iterator[FlakyHttpServer]:
    with FlakyHttpServer() as srv:
        yield srv


def connector_for(url: str, *, timeout: float = 2.0) -> WebhookConnector:
    return WebhookConnector(
        WebhookConfig.model_validate({"url": url, "secret": SECRET, "timeout_seconds": timeout})
    )


@pytest.fixture
def hook(server: FlakyHttpServer) -> Iterator[WebhookConnector]:
    with connector_for(server.url + "/hooks/aios") as connector:
        yield connector


@pytest.fixture
def closed_url() -> str:
    srv = FlakyHttpServer()
    url = srv.url
    srv.stop()  # nothing listens on this port any more
    return url


# -- the wire format -----------------------------------------------------------------------


def test_a_delivery_arrives_once_with_the_documented_headers_and_body(server, hook):
    delivery = hook.deliver("billing/acme/paid", EVENT)

    assert delivery == Delivery(
        delivery_id=delivery_id_for("billing/acme/paid"), status_code=200, dry_run=False
    )
    assert delivery.delivery_id.startswith("whd_") and len(delivery.delivery_id) == 36
    [request] = server.received
    assert (request.method, request.path) == ("POST", "/hooks/aios")
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "aios-webhooks/1"
    assert headers["x-aios-delivery"] == delivery.delivery_id
    assert headers["x-aios-event"] == "invoice.paid"

    body = request.json()
    assert list(body) == ["id", "type", "created", "data"]
    assert body["id"] == delivery.delivery_id
    assert body["type"] == "invoice.paid"
    assert body["data"] == EVENT.data
    created = datetime.fromisoformat(body["created"])
    assert body["created"].endswith("Z") and created.utcoffset() == UTC.utcoffset(None)
    assert abs(created.timestamp() - time.time()) < 60

    signature = headers["x-aios-signature"]
    t = int(signature.split(",")[0].removeprefix("t="))
    assert abs(t - time.time()) < 60
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + request.body, hashlib.sha256)
    assert signature == f"t={t},v1={expected.hexdigest()}"
    assert verify_signature(SECRET, signature, request.body)


def test_verify_signature_rejects_what_it_must(server, hook):
    hook.deliver("k-verify", EVENT)
    [request] = server.received
    header, body = request.headers["x-aios-signature"], request.body
    t = int(header.split(",")[0].removeprefix("t="))

    assert verify_signature(SECRET, header, body, now=t + 299)
    assert not verify_signature("another-secret-of-enough-length", header, body)
    assert not verify_signature(SECRET, header, body.replace(b"12000", b"12001"))
    assert not verify_signature(SECRET, header, body + b" ")
    assert not verify_signature(SECRET, header, body, now=t + 301)  # stale
    assert not verify_signature(SECRET, header, body, now=t - 301)  # from the future
    assert verify_signature(SECRET, header, body, now=t + 3600, tolerance_seconds=3601)
    # A replayed body under a fresh timestamp needs a fresh signature.
    v1 = header.split("v1=")[1]
    assert not verify_signature(SECRET, f"t={int(time.time()) + 1},v1={v1}", body)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "v1=" + "0" * 64,  # no timestamp
        "t=1700000000",  # no signature
        "t=abc,v1=" + "0" * 64,
        "t=-5,v1=" + "0" * 64,
        "t=1,t=2,v1=" + "0" * 64,
        "t=١٢٣,v1=" + "0" * 64,  # non-ASCII digits
        "t=1700000000,v1=zz",
        "t=1700000000,v1=" + "é" * 64,
        "t=1700000000,v1=" + "0" * 5000,
    ],
)
def test_verify_signature_rejects_malformed_headers(header):
    assert verify_signature(SECRET, header, b"{}", now=1_700_000_000) is False


def test_verify_signature_accepts_any_of_several_v1_and_ignores_unknown_schemes():
    body = b'{"id":"whd_x"}'
    good = sign(SECRET, body, 1_700_000_000)
    mixed = f"{good},v1={'0' * 64},v9=future-scheme"
    assert verify_signature(SECRET, mixed, body, now=1_700_000_000)
    assert not verify_signature("", good, body, now=1_700_000_000)


# -- idempotency ---------------------------------------------------------------------------


def test_a_retry_of_the_same_key_sends_the_same_id_and_body(server, hook):
    first = hook.deliver("onboarding/acme/step-7", EVENT)
    second = hook.deliver("onboarding/acme/step-7", EVENT)
    other = hook.deliver("onboarding/acme/step-8", EVENT)

    a, b, c = server.received
    assert first.delivery_id == second.delivery_id == a.headers["x-aios-delivery"]
    assert a.body == b.body
    assert other.delivery_id != first.delivery_id
    assert c.json()["id"] == other.delivery_id != a.json()["id"]


def test_a_given_created_makes_the_body_identical_across_workers(server):
    when = datetime(2025, 5, 1, 9, 30, 0, 123456, tzinfo=UTC)
    event = EVENT.model_copy(update={"created": when})
    for _ in range(2):  # two connectors: a retry on another worker
        with connector_for(server.url) as connector:
            connector.deliver("billing/acme/paid", event)

    a, b = server.received
    assert a.body == b.body
    assert a.json()["created"] == "2025-05-01T09:30:00.123Z"


# -- failures are classified, never retried inside -------------------------------------------


def test_two_500s_then_success_one_request_per_call(server, hook):
    server.fail(2, status=500, body=b"upstream exploded")

    for attempt in (1, 2):
        with pytest.raises(TransientConnectorError) as info:
            hook.deliver("k-flaky", EVENT)
        assert info.value.retryable
        assert not isinstance(info.value, RateLimited)
        assert "HTTP 500" in str(info.value) and "upstream exploded" in str(info.value)
        assert len(server.received) == attempt  # no internal retry

    delivery = hook.deliver("k-flaky", EVENT)
    assert delivery.status_code == 200
    assert len(server.received) == 3
    assert len({r.body for r in server.received}) == 1


def test_429_is_rate_limited_with_the_retry_after(server, hook):
    server.rate_limit(retry_after=2)
    with pytest.raises(RateLimited) as info:
        hook.deliver("k-429", EVENT)
    assert info.value.retry_after == 2
    assert info.value.retryable
    assert len(server.received) == 1


def test_a_slow_server_beyond_the_timeout_is_transient(server):
    server.slow(2.0)
    with connector_for(server.url, timeout=0.2) as hook:
        started = time.monotonic()
        with pytest.raises(TransientConnectorError) as info:
            hook.deliver("k-slow", EVENT)
    assert time.monotonic() - started < 1.5
    assert info.value.retryable
    assert "Timeout" in str(info.value)


def test_a_closed_port_is_transient(closed_url):
    with connector_for(closed_url, timeout=0.5) as hook, pytest.raises(TransientConnectorError):
        hook.deliver("k-closed", EVENT)


def test_a_hang_up_without_an_answer_is_transient(server, hook):
    server.drop()
    with pytest.raises(TransientConnectorError):
        hook.deliver("k-drop", EVENT)
    assert hook.deliver("k-drop", EVENT).status_code == 200


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, ConnectorAuthError),
        (403, ConnectorAuthError),
        (400, ConnectorInvalidRequest),
        (404, ConnectorInvalidRequest),
        (422, ConnectorInvalidRequest),
    ],
)
def test_client_errors_are_permanent(server, hook, status, error):
    server.fail(1, status=status)
    with pytest.raises(error) as info:
        hook.deliver("k-4xx", EVENT)
    assert not info.value.retryable
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [408, 502, 503])
def test_408_and_5xx_are_transient(server, hook, status):
    server.fail(1, status=status)
    with pytest.raises(TransientConnectorError):
        hook.deliver("k-5xx", EVENT)


def test_a_redirect_is_not_followed_and_names_the_location(server, hook):
    server.script(Reply(302, headers={"Location": "https://elsewhere.example/new-hook"}))
    with pytest.raises(ConnectorInvalidRequest) as info:
        hook.deliver("k-302", EVENT)
    assert "https://elsewhere.example/new-hook" in str(info.value)
    assert "HTTP 302" in str(info.value)
    assert len(server.received) == 1  # nothing followed it


# -- dry run and the check -----------------------------------------------------------------


def test_a_dry_run_sends_nothing(server, hook):
    delivery = hook.deliver("k-dry", EVENT, dry_run=True)
    assert delivery == Delivery(delivery_id=delivery_id_for("k-dry"), status_code=0, dry_run=True)
    assert server.received == []


def test_a_delivery_is_undone_by_delivering_its_retraction(server, hook):
    operation = WebhookConnector.operations["deliver"]
    assert WebhookConnector.name == "webhook"
    assert operation.effect and operation.compensation == "deliver"
    assert not operation.irreversible
    hook.deliver("k-1", EVENT)
    retraction = retraction_of("k-1", EVENT)
    hook.deliver("k-1/retracted", retraction)
    first, second = server.wait_for(2)
    assert second.headers["x-aios-event"] == f"{EVENT.type}.retracted"
    assert second.json()["data"] == {**EVENT.data, "retracts": first.json()["id"]}
    assert second.json()["id"] != first.json()["id"]


def test_a_type_too_long_to_retract_is_refused():
    event = WebhookEvent(type="x" * 64, data={})
    with pytest.raises(InvalidInput, match="too long to retract"):
        retraction_of("k", event)


@pytest.mark.parametrize("status", [200, 204, 404, 405])
def test_check_is_ok_for_any_answer_below_500_and_delivers_nothing(server, hook, status):
    server.script(Reply(status))
    result = hook.check()
    assert result == CheckResult(ok=True, detail=result.detail)
    assert f"HTTP {status}" in result.detail
    [request] = server.received
    assert request.method == "HEAD" and "x-aios-signature" not in request.headers


def test_check_fails_on_5xx_timeouts_and_closed_ports(server, closed_url):
    server.fail(1, status=503)
    with connector_for(server.url, timeout=0.2) as hook:
        down = hook.check()
        assert not down.ok and "HTTP 503" in down.detail
        server.slow(2.0)
        slow = hook.check()
        assert not slow.ok and "no answer within 0.2 s" in slow.detail
    with connector_for(closed_url, timeout=0.5) as hook:
        closed = hook.check()
        assert not closed.ok and "cannot connect" in closed.detail


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": "ftp://hooks.example/x", "secret": SECRET}, "url"),
        ({"url": "file:///etc/passwd", "secret": SECRET}, "url"),
        ({"url": "not a url", "secret": SECRET}, "url"),
        ({"url": "https://hooks.example/x", "secret": "too-short"}, "secret"),
        (
            {"url": "https://hooks.example/x", "secret": SECRET, "timeout_seconds": 0},
            "timeout_seconds",
        ),
    ],
)
def test_bad_config_names_the_field(fields, field):
    with pytest.raises(ValidationError) as info:
        WebhookConfig.model_validate(fields)
    assert [e["loc"] for e in info.value.errors()] == [(field,)]
    assert field in str(info.value)


@pytest.mark.parametrize(
    "event_type", ["", "Invoice.Paid", "invoice paid", "invoice/paid", "x" * 65, "paid\n"]
)
def test_bad_event_types_are_refused(event_type):
    with pytest.raises(ValidationError) as info:
        WebhookEvent(type=event_type, data={})
    assert info.value.errors()[0]["loc"] == ("type",)


@pytest.mark.parametrize(
    "data",
    [
        {"blob": "x" * MAX_BODY_BYTES},
        {"when": datetime.now(UTC)},
        {"ratio": float("nan")},
    ],
)
def test_bad_event_data_names_the_field(data):
    with pytest.raises(ValidationError) as info:
        WebhookEvent(type="blob.stored", data=data)
    [error] = info.value.errors()
    assert error["loc"] == ("data",)


def test_the_largest_allowed_data_still_fits_the_body_limit(server, hook):
    # Just under the limit is accepted and sent; the body never exceeds MAX_BODY_BYTES.
    event = WebhookEvent(type="x" * 64, data={"blob": "x" * (MAX_BODY_BYTES - 200)})
    hook.deliver("k-big", event)
    assert len(server.received[0].body) <= MAX_BODY_BYTES
    with pytest.raises(ValidationError, match="above the limit"):
        WebhookEvent(type="x", data={"blob": "x" * (MAX_BODY_BYTES - 20)})


def test_an_empty_key_is_invalid_input(server, hook):
    with pytest.raises(InvalidInput, match="key"):
        hook.deliver("  ", EVENT)
    assert server.received == []


# -- the secret stays hidden ---------------------------------------------------------------


def test_the_secret_is_in_no_message_and_no_repr(server, hook, closed_url):
    seen: list[str] = [repr(hook), str(hook)]
    config = WebhookConfig.model_validate({"url": server.url, "secret": SECRET})
    seen += [
        repr(config),
        str(config),
        config.model_dump_json(),
        json.dumps(config.model_dump(), default=str),
    ]
    seen += [repr(hook.deliver("k-secret", EVENT)), repr(hook.check())]
    server.fail(1, status=500)
    server.fail(1, status=401)
    server.script(Reply(302, headers={"Location": "https://elsewhere.example/"}))
    for _ in range(3):
        with pytest.raises(ConnectorError) as info:
            hook.deliver("k-secret", EVENT)
        seen += [str(info.value), repr(info.value)]
    with connector_for(closed_url, timeout=0.5) as down, pytest.raises(ConnectorError) as info:
        down.deliver("k-secret", EVENT)
    seen += [str(info.value), repr(info.value)]
    short = SECRET[:10]
    with pytest.raises(ValidationError) as bad:
        WebhookConfig.model_validate({"url": server.url, "secret": short})
    seen += [str(bad.value), repr(bad.value)]

    assert all(SECRET not in text for text in seen)
    assert short not in str(bad.value) and short not in repr(bad.value)
    assert all(SECRET not in r.body.decode() for r in server.received)
