"""The HubSpot connector over real HTTP against recorded HubSpot responses.

Every test drives ``HubSpotConnector`` (its real ``httpx`` client) against
``tests/hubspot_replay.py`` serving ``tests/recordings/hubspot/*.json``; see the README there
for where the recorded bodies come from.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pydantic import SecretStr, ValidationError

from aios.connectors.hubspot import (
    AIOS_KEY_PROPERTY,
    ContactInput,
    DealInput,
    HubSpotConfig,
    HubSpotConnector,
    aios_key_for,
)
from aios.errors import (
    ConnectorAuthError,
    ConnectorInvalidRequest,
    InvalidInput,
    RateLimited,
    SchemaDrift,
    TransientConnectorError,
)
from tests.hubspot_replay import HubSpotReplayServer, Recording

TOKEN = "pat-eu1-0f3c9a51-6d2e-4b7a-9c11-testtokennotreal"
KEY = "onboarding/acme-ltd/7f3c2a91-run/hubspot-deal"  # the recordings carry its aios_key
CONTACT_ID = "151623490114"
DEAL_ID = "38924412873"
ACME = ContactInput(
    email="ops@acme.example", firstname="Olivia", lastname="Park", company="Acme Ltd"
)
DEAL = DealInput(
    name="Acme Ltd: website and webshop",
    amount_minor=620000,
    currency="EUR",
    contact_id=CONTACT_ID,
)


@pytest.fixture
def server() -> Iterator[HubSpotReplayServer]:
    with HubSpotReplayServer(expected_token=TOKEN) as replay:
        yield replay


def connect(server: HubSpotReplayServer, **config: object) -> HubSpotConnector:
    settings = {"token": SecretStr(TOKEN), "base_url": server.url, "timeout_seconds": 5, **config}
    return HubSpotConnector(HubSpotConfig.model_validate(settings))


@pytest.fixture
def hubspot(server: HubSpotReplayServer) -> Iterator[HubSpotConnector]:
    with connect(server) as connector:
        yield connector


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_token(exc: BaseException) -> None:
    assert TOKEN not in str(exc)
    assert TOKEN not in repr(exc.args)
    assert exc.__cause__ is None


# --- contacts ---------------------------------------------------------------------------------


def test_upsert_contact_creates_a_new_contact_by_email(server, hubspot):
    server.play("contact_upsert_new")

    result = hubspot.upsert_contact(ACME, idempotency_key=KEY + "/contact")

    assert result.created is True
    assert result.contact is not None
    assert result.contact.id == CONTACT_ID
    assert (result.contact.email, result.contact.company) == ("ops@acme.example", "Acme Ltd")
    (sent,) = server.received
    assert (sent.authorization, sent.token_matches) == ("bearer", True)
    (item,) = sent.json["inputs"]
    assert item["idProperty"] == "email" and item["id"] == "ops@acme.example"
    assert item["objectWriteTraceId"] == aios_key_for(KEY + "/contact")
    server.assert_clean()


def test_upsert_contact_updates_the_existing_contact(server, hubspot):
    server.play("contact_upsert_existing")

    result = hubspot.upsert_contact(ACME, idempotency_key=KEY + "/contact")

    assert result.created is False
    assert result.contact is not None and result.contact.id == CONTACT_ID
    server.assert_clean()


def test_empty_contact_fields_are_left_out_not_cleared():
    contact = ContactInput(email="ops@acme.example", firstname="  ", lastname=None)
    assert contact.properties() == {"email": "ops@acme.example"}


# --- deals ------------------------------------------------------------------------------------


def test_create_deal_searches_first_and_creates_once_with_key_and_association(server, hubspot):
    server.play("deal_search_none")
    server.play("deal_create")
    server.play("deal_search_found")

    first = hubspot.create_deal(DEAL, idempotency_key=KEY)
    again = hubspot.create_deal(DEAL, idempotency_key=KEY)  # a retry after a lost reply

    assert first.created is True and first.deal is not None
    assert first.deal.id == DEAL_ID
    assert first.deal.amount == Decimal("6200.00")
    assert first.deal.aios_key == aios_key_for(KEY)
    assert again.created is False
    assert again.deal == first.deal
    search, create, search_again = server.received
    assert (search.method, search.path) == ("POST", "/crm/v3/objects/deals/search")
    assert search.json["filterGroups"][0]["filters"][0] == {
        "propertyName": AIOS_KEY_PROPERTY,
        "operator": "EQ",
        "value": aios_key_for(KEY),
    }
    assert (create.method, create.path) == ("POST", "/crm/v3/objects/deals")
    assert create.json["properties"][AIOS_KEY_PROPERTY] == aios_key_for(KEY)
    assert create.json["associations"] == [
        {
            "to": {"id": CONTACT_ID},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
        }
    ]
    assert search_again.path == "/crm/v3/objects/deals/search"
    assert [(w.method, w.path) for w in server.writes()] == [("POST", "/crm/v3/objects/deals")]
    assert all(r.token_matches for r in server.received)
    server.assert_clean()


def test_find_deal_and_get_deal(server, hubspot):
    server.play("deal_search_found")
    server.play("deal_get")
    server.play("error_404")

    found = hubspot.find_deal(idempotency_key=KEY)
    got = hubspot.get_deal(DEAL_ID)
    missing = hubspot.get_deal("38924412999")

    assert found is not None and got is not None
    assert found.id == got.id == DEAL_ID
    assert (got.dealstage, got.pipeline, got.dealname) == (
        "appointmentscheduled",
        "default",
        "Acme Ltd: website and webshop",
    )
    assert missing is None
    assert server.writes() == []
    server.assert_clean()


def test_update_deal_stage_writes_once_and_reports_the_previous_stage(server, hubspot):
    server.play("deal_update_stage")

    moved = hubspot.update_deal_stage(DEAL_ID, "won", idempotency_key=KEY + "/won")
    again = hubspot.update_deal_stage(DEAL_ID, "won", idempotency_key=KEY + "/won")

    assert moved.changed is True
    assert moved.deal.dealstage == "closedwon"
    assert (moved.previous_dealstage, moved.previous_stage) == ("appointmentscheduled", "open")
    assert again.changed is False
    assert again.deal.dealstage == "closedwon"
    assert [(w.method, w.path) for w in server.writes()] == [
        ("PATCH", f"/crm/v3/objects/deals/{DEAL_ID}")
    ]
    server.assert_clean()


def test_update_stage_of_a_missing_deal_is_an_invalid_request(server, hubspot):
    server.play("error_404")

    with pytest.raises(ConnectorInvalidRequest, match="does not exist"):
        hubspot.update_deal_stage("38924412999", "lost", idempotency_key=KEY + "/lost")

    assert server.writes() == []
    server.assert_clean()


def test_archive_deal_and_again_when_already_gone(server, hubspot):
    server.play("deal_archive")
    server.play("error_404", method="DELETE", path=f"/crm/v3/objects/deals/{DEAL_ID}")

    first = hubspot.archive_deal(DEAL_ID, idempotency_key=KEY + "/archive")
    again = hubspot.archive_deal(DEAL_ID, idempotency_key=KEY + "/archive")

    assert (first.deal_id, first.archived) == (DEAL_ID, True)
    assert again.archived is False
    server.assert_clean()


def test_dry_runs_send_no_writes(server, hubspot):
    server.play("deal_search_none")  # create_deal still reads
    server.play("deal_get")  # update_deal_stage reads the current stage
    server.play("deal_get")  # archive_deal reads whether the deal is there

    contact = hubspot.upsert_contact(ACME, idempotency_key=KEY + "/contact", dry_run=True)
    deal = hubspot.create_deal(DEAL, idempotency_key=KEY, dry_run=True)
    stage = hubspot.update_deal_stage(DEAL_ID, "won", idempotency_key=KEY + "/won", dry_run=True)
    archive = hubspot.archive_deal(DEAL_ID, idempotency_key=KEY + "/archive", dry_run=True)

    assert server.writes() == []
    assert len(server.received) == 3
    assert contact.dry_run and contact.contact is None and contact.planned is not None
    assert contact.planned.path == "/crm/v3/objects/contacts/batch/upsert"
    assert deal.dry_run and not deal.created and deal.planned is not None
    assert isinstance(deal.planned.body, dict)
    assert deal.planned.body["properties"][AIOS_KEY_PROPERTY] == aios_key_for(KEY)
    assert stage.dry_run and not stage.changed and stage.planned is not None
    assert stage.planned.body == {"properties": {"dealstage": "closedwon"}}
    assert archive.dry_run and not archive.archived and archive.planned is not None
    assert (archive.planned.method, archive.planned.path) == (
        "DELETE",
        f"/crm/v3/objects/deals/{DEAL_ID}",
    )
    server.assert_clean()


# --- errors -----------------------------------------------------------------------------------


def test_expired_token_is_an_auth_error_without_the_token(server, hubspot):
    server.play("error_401_expired")

    with pytest.raises(ConnectorAuthError) as caught:
        hubspot.get_deal(DEAL_ID)

    assert not caught.value.retryable
    assert "EXPIRED_AUTHENTICATION" in str(caught.value)
    assert "019a2f4e-000e-7c1d-9b2e-5d8f0000000e" in str(caught.value)  # correlationId
    assert_no_token(caught.value)
    server.assert_clean()


def test_rate_limit_gives_retry_after_from_the_header(server, hubspot):
    server.play("deal_search_none")
    server.play("error_429")

    with pytest.raises(RateLimited) as caught:
        hubspot.create_deal(DEAL, idempotency_key=KEY)

    assert caught.value.retryable
    assert caught.value.retry_after == 3.0
    assert "TEN_SECONDLY_ROLLING" in str(caught.value)
    server.assert_clean()


def test_rate_limit_without_retry_after_waits_the_rolling_window(server, hubspot):
    limited = Recording.load("error_429")
    del limited.interactions[0].response.headers["Retry-After"]
    server.play("deal_search_none")
    server.play(limited)

    with pytest.raises(RateLimited) as caught:
        hubspot.create_deal(DEAL, idempotency_key=KEY)

    assert caught.value.retry_after == 10.0  # X-HubSpot-RateLimit-Interval-Milliseconds
    server.assert_clean()


def test_validation_error_carries_hubspots_message(server):
    server.play("deal_search_none")
    server.play("error_400_validation")
    stages = {"open": "negotiation", "won": "closedwon", "lost": "closedlost"}

    with (
        connect(server, deal_stages=stages) as hubspot,
        pytest.raises(ConnectorInvalidRequest) as caught,
    ):
        hubspot.create_deal(DEAL, idempotency_key=KEY)

    message = str(caught.value)
    assert not caught.value.retryable
    assert "VALIDATION_ERROR" in message
    assert "dealstage: negotiation was not one of the allowed options" in message
    assert "correlationId 019a2f4e-0010-7c1d-9b2e-5d8f00000010" in message
    server.assert_clean()


def test_server_error_is_transient(server, hubspot):
    server.play("error_500")

    with pytest.raises(TransientConnectorError) as caught:
        hubspot.get_deal(DEAL_ID)

    assert caught.value.retryable
    assert not isinstance(caught.value, RateLimited)
    assert "HTTP 500" in str(caught.value)
    server.assert_clean()


def test_conflict_on_create_is_transient_so_the_retry_finds_the_deal(server, hubspot):
    conflict = Recording.load("error_404")
    response = conflict.interactions[0].response
    response.status = 409
    response.body = {
        "status": "error",
        "message": f"A deal with aios_key {aios_key_for(KEY)} already exists",
        "correlationId": "019a2f4e-0099-7c1d-9b2e-5d8f00000099",
        "category": "CONFLICT",
    }
    server.play("deal_search_none")
    server.play(conflict, method="POST", path="/crm/v3/objects/deals")

    with pytest.raises(TransientConnectorError, match="search does not show it yet"):
        hubspot.create_deal(DEAL, idempotency_key=KEY)
    server.assert_clean()


def test_drifted_reply_names_the_missing_field(server, hubspot):
    server.play("deal_drifted")

    with pytest.raises(SchemaDrift, match=r"properties\.dealstage"):
        hubspot.get_deal(DEAL_ID)
    server.assert_clean()


def test_unreachable_server_is_transient():
    config = HubSpotConfig(
        token=SecretStr(TOKEN), base_url=f"http://127.0.0.1:{closed_port()}", timeout_seconds=2
    )
    with HubSpotConnector(config) as hubspot, pytest.raises(TransientConnectorError) as caught:
        hubspot.get_deal(DEAL_ID)

    assert "cannot reach the server" in str(caught.value)
    assert_no_token(caught.value)


# --- check ------------------------------------------------------------------------------------


def test_check_ok(server, hubspot):
    server.play("check_ok")

    result = hubspot.check()

    assert result.ok, result.detail
    assert server.writes() == []
    server.assert_clean()


def test_check_not_ok_on_auth(server, hubspot):
    server.play("error_401_expired", path="/crm/v3/objects/contacts")

    result = hubspot.check()

    assert not result.ok
    assert result.detail.startswith("auth:")
    assert TOKEN not in result.detail
    server.assert_clean()


def test_check_not_ok_when_the_aios_key_property_is_missing(server, hubspot):
    contacts_only = Recording.load("check_ok")
    del contacts_only.interactions[1:]
    server.play(contacts_only)
    server.play("error_404", path=f"/crm/v3/properties/deals/{AIOS_KEY_PROPERTY}")

    result = hubspot.check()

    assert not result.ok
    assert AIOS_KEY_PROPERTY in result.detail and result.detail.startswith("setup:")
    server.assert_clean()


def test_check_not_ok_on_drift(server, hubspot):
    drifted = Recording.load("check_ok")
    drifted.interactions[0].response.body = {"results": [{"id": 151623490114}]}
    del drifted.interactions[1:]
    server.play(drifted)

    result = hubspot.check()

    assert not result.ok
    assert result.detail.startswith("drift:")
    assert "results.0.id" in result.detail
    server.assert_clean()


def test_check_not_ok_when_unreachable():
    config = HubSpotConfig(token=SecretStr(TOKEN), base_url=f"http://127.0.0.1:{closed_port()}")
    with HubSpotConnector(config) as hubspot:
        result = hubspot.check()

    assert not result.ok
    assert result.detail.startswith("unreachable:")


# --- contract and input -----------------------------------------------------------------------


def test_operations_table_is_honest():
    ops = HubSpotConnector.operations

    assert set(ops) == {
        "upsert_contact",
        "create_deal",
        "update_deal_stage",
        "archive_deal",
        "get_deal",
        "find_deal",
    }
    assert ops["create_deal"].compensation == "archive_deal"
    assert ops["update_deal_stage"].compensation == "update_deal_stage"
    assert ops["archive_deal"].undoes == "create_deal"
    # An upsert may overwrite what HubSpot had: nothing can undo it, so it needs an approval.
    assert {name for name, op in ops.items() if op.irreversible} == {"upsert_contact"}
    assert not ops["get_deal"].effect and not ops["find_deal"].effect
    for op in ops.values():
        assert callable(getattr(HubSpotConnector, op.name))
        assert op.compensation is None or op.compensation in ops
        assert op.undoes is None or op.undoes in ops


def test_aios_key_is_a_stable_digest_of_the_idempotency_key():
    assert aios_key_for(KEY) == aios_key_for(KEY)
    assert aios_key_for(KEY) != aios_key_for(KEY + "x")
    assert len(aios_key_for(KEY)) == 64
    assert KEY not in aios_key_for(KEY)


def test_bad_input_is_refused_before_any_request(server, hubspot):
    with pytest.raises(InvalidInput, match="deal_id"):
        hubspot.get_deal("../contacts")
    with pytest.raises(InvalidInput, match="idempotency_key"):
        hubspot.archive_deal(DEAL_ID, idempotency_key="  ")
    with pytest.raises(InvalidInput, match="stage"):
        hubspot.update_deal_stage(DEAL_ID, "paused", idempotency_key=KEY)
    with pytest.raises(ValidationError, match="currency"):
        DealInput(name="Acme", amount_minor=100)
    with pytest.raises(ValidationError, match="email"):
        ContactInput(email="not-an-address")
    with pytest.raises(ValidationError, match="deal_stages"):
        HubSpotConfig(token=SecretStr(TOKEN), deal_stages={"open": "a", "lost": "b"})
    assert server.received == []


def test_record_mode_forwards_the_env_token_and_saves_no_secret(tmp_path, monkeypatch):
    record_token = "pat-eu1-record-token-from-env"
    monkeypatch.setenv("AIOS_HUBSPOT_RECORD_TOKEN", record_token)
    saved = tmp_path / "recorded.json"
    with HubSpotReplayServer(expected_token=record_token) as upstream:  # plays "HubSpot"
        upstream.play("deal_get")
        recorder = HubSpotReplayServer.recording(saved, upstream=upstream.url)
        with recorder, connect(recorder) as hubspot:  # the client's token is not forwarded
            deal = hubspot.get_deal(DEAL_ID)
        upstream.assert_clean()
        assert upstream.received[0].token_matches is True

    assert deal is not None and deal.id == DEAL_ID
    text = saved.read_text()
    assert TOKEN not in text and record_token not in text
    assert "authorization" not in text.lower()
    (interaction,) = Recording.load(saved).interactions
    assert interaction.request.path == f"/crm/v3/objects/deals/{DEAL_ID}"
    kept = {name.lower() for name in interaction.response.headers}
    assert {"x-hubspot-correlation-id", "x-hubspot-ratelimit-remaining"} <= kept
