"""Processes tell the outside world what they did: the kickoff lands in a real CalDAV calendar
(Radicale) under the UID of the emailed invitation, clients and proposals are mirrored into
HubSpot (replayed responses, the real HTTP client), and webhooks reach a local HTTP server.
Every assertion is on what those servers received or hold; a failure later in a run undoes
what can be undone (the calendar event is cancelled, the deal archived).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from email.message import Message

import pytest
from icalendar import Calendar
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from aios import operations
from aios.activities.crm import CONTACT, DEAL, CrmActivities
from aios.activities.models import MirrorClientInput
from aios.config import Settings
from aios.connectors.caldav import CalDavConfig, CalDavConnector
from aios.connectors.hubspot import HubSpotConfig, HubSpotConnector
from aios.connectors.webhooks import WebhookConfig, WebhookConnector, verify_signature
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.gates import GateDecision
from aios.workflows.onboarding import OnboardingWorkflow
from aios.workflows.proposal import ClientResponse
from tests.conftest import RecordingSmtp
from tests.flaky_http import FlakyHttpServer, Reply
from tests.helpers import save_history, start_at_gate
from tests.hubspot_replay import HubSpotReplayServer, Recording
from tests.money_helpers import (
    bill,
    ends_cancelled,
    fast,
    known_client,
    mails_until,
    progress_until,
    propose,
    waiting_for,
)
from tests.radicale_server import RadicaleServer

TOKEN = "pat-eu1-0f3c9a51-6d2e-4b7a-9c11-testtokennotreal"
SECRET = "whsec-test-0123456789abcdef"
CONTACT_ID = "151623490114"  # what the recordings answer
DEAL_ID = "38924412873"
DEALS = "/crm/v3/objects/deals"
WEBSITE = "A new website for our bakery chain, with online ordering."


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    with RadicaleServer(tmp_path_factory.mktemp("radicale-mirrors")) as server:
        yield server


@pytest.fixture
def calendar(radicale: RadicaleServer) -> CalDavConnector:
    return CalDavConnector(
        CalDavConfig.model_validate(
            {
                "url": radicale.url,
                "username": radicale.username,
                "password": radicale.password,
                "calendar": f"AiOs {uuid.uuid4().hex[:8]}",
                "create_missing": True,
            }
        )
    )


@pytest.fixture
def hubspot() -> Iterator[HubSpotReplayServer]:
    with HubSpotReplayServer(expected_token=TOKEN) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[FlakyHttpServer]:
    with FlakyHttpServer() as server:
        yield server


@pytest.fixture
async def mirrored(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    calendar: CalDavConnector,
    hubspot: HubSpotReplayServer,
    receiver: FlakyHttpServer,
) -> AsyncIterator[Services]:
    """A worker whose calendar, CRM and webhook are configured (each a real local server)."""
    crm = HubSpotConnector(
        HubSpotConfig(token=SecretStr(TOKEN), base_url=hubspot.url, timeout_seconds=5)
    )
    hook = WebhookConnector(
        WebhookConfig.model_validate(
            {"url": receiver.url + "/hooks/aios", "secret": SECRET, "timeout_seconds": 5}
        )
    )
    svc = dataclasses.replace(services, calendar=calendar, crm=crm, webhook=hook)
    try:
        async with build_worker(client, settings.task_queue, svc.activities(), executor):
            yield svc
    finally:
        crm.close()
        hook.close()


def invite_uid(mail: Message) -> str:
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    cal = Calendar.from_ical(bytes(part.get_payload(decode=True)))
    [event] = cal.walk("VEVENT")
    return str(event["UID"])


def kinds(services: Services, workflow_id: str) -> list[str]:
    return [e.kind for e in services.store.events.for_run(workflow_id)]


# --- onboarding ---------------------------------------------------------------------------------


async def test_an_approved_onboarding_books_the_kickoff_mirrors_the_client_and_notifies(
    client: Client,
    settings: Settings,
    smtp: RecordingSmtp,
    mirrored: Services,
    calendar: CalDavConnector,
    hubspot: HubSpotReplayServer,
    receiver: FlakyHttpServer,
) -> None:
    hubspot.play("contact_upsert_new", method="POST", path="/crm/v3/objects/contacts/batch/upsert")
    handle, _, key, email = await start_at_gate(client, settings)
    # Before the approval nothing went out anywhere.
    assert hubspot.received == [] and receiver.received == []
    await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
    result = await handle.result()
    await save_history(handle, "onboarding_mirrored")
    assert result.status == "completed"

    # The operator's calendar holds the very meeting the client was invited to.
    [welcome] = smtp.to(email)
    uid = invite_uid(welcome)
    event = calendar.get_event(uid)
    assert event is not None and (event.status, event.sequence) == ("CONFIRMED", 0)

    # One contact upsert, keyed by the client's email, after the approval it names.
    [upsert] = hubspot.writes()
    assert upsert.json["inputs"][0]["id"] == email
    stored = mirrored.store.clients.get(key)
    assert stored is not None
    assert upsert.json["inputs"][0]["properties"] == {"email": email, "company": stored.name}
    hubspot.assert_clean()
    assert mirrored.store.refs.get(f"client:{key}", CONTACT) == CONTACT_ID

    # One signed webhook.
    [delivery] = receiver.wait_for(1)
    assert delivery.headers["x-aios-event"] == "client.onboarded"
    assert verify_signature(SECRET, delivery.headers["x-aios-signature"], delivery.body)
    body = delivery.json()
    assert body["data"]["client_key"] == key and body["data"]["approved_by"] == "pat"

    log = kinds(mirrored, handle.id)
    for kind in ("calendar.kickoff_event_created", "crm.contact_mirrored", "webhook.delivered"):
        assert log.count(kind) == 1, kind
    assert log.index("gate.decided") < log.index("crm.contact_mirrored")
    progress = await handle.query(OnboardingWorkflow.progress)
    assert {"kickoff-event", "crm-contact", "webhook"} <= set(progress.steps_done)


async def test_a_failure_after_the_kickoff_cancels_the_calendar_event_and_the_invitation(
    client: Client,
    settings: Settings,
    smtp: RecordingSmtp,
    mirrored: Services,
    calendar: CalDavConnector,
    hubspot: HubSpotReplayServer,
    receiver: FlakyHttpServer,
) -> None:
    hubspot.play("contact_upsert_new", method="POST", path="/crm/v3/objects/contacts/batch/upsert")
    receiver.default = Reply.json({"error": "unknown endpoint"}, status=404)  # refuses for good
    handle, _, _, email = await start_at_gate(client, settings)
    await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    welcome, cancellation = smtp.to(email)
    assert cancellation["Subject"].startswith("Cancelled: kickoff")
    uid = invite_uid(welcome)
    assert invite_uid(cancellation) == uid
    event = calendar.get_event(uid)
    assert event is not None and (event.status, event.sequence) == ("CANCELLED", 1)
    assert len(receiver.received) == 1  # the refused delivery was not retried
    log = kinds(mirrored, handle.id)
    # Undone in reverse: the calendar event (made last) first, then the invitation.
    assert log[-3:] == [
        "compensation.kickoff_event_cancelled",
        "compensation.kickoff_cancelled",
        "onboarding.failed",
    ]
    # The contact upsert cannot be undone; it stays, as its approval allowed.
    assert len(hubspot.writes()) == 1


async def test_a_forged_approval_mirrors_nothing(
    mirrored: Services, hubspot: HubSpotReplayServer
) -> None:
    _, key, _ = known_client(mirrored.store)
    crm = CrmActivities(mirrored.store, mirrored.runtime, mirrored.crm)
    env = ActivityEnvironment()
    run = f"onboarding/{key}/{uuid.uuid4()}"
    env.info = dataclasses.replace(
        env.info, workflow_id=run.rsplit("/", 1)[0], workflow_run_id=run.rsplit("/", 1)[1]
    )
    with pytest.raises(ApplicationError, match="cannot be undone") as info:
        env.run(
            crm.mirror_client,
            MirrorClientInput(
                idempotency_key=f"{run}/crm-contact",
                client_key=key,
                approval=f"{run}/gate/welcome/gate.decided",  # no such decision was made
            ),
        )
    assert (info.value.type, info.value.non_retryable) == ("PolicyRefusal", True)
    assert hubspot.received == []
    assert mirrored.store.refs.get(f"client:{key}", CONTACT) is None


# --- proposals ----------------------------------------------------------------------------------


def _deal_created(hubspot: HubSpotReplayServer) -> None:
    hubspot.play("deal_search_none", method="POST", path=f"{DEALS}/search")
    hubspot.play(
        "deal_create",
        method="POST",
        path=DEALS,
        json={
            "properties": {"dealstage": "appointmentscheduled", "amount": "5600.00"},
            "associations": [{"to": {"id": CONTACT_ID}}],
        },
    )


async def test_a_sent_proposal_becomes_a_deal_that_is_won_on_acceptance(
    client: Client,
    settings: Settings,
    mirrored: Services,
    hubspot: HubSpotReplayServer,
    receiver: FlakyHttpServer,
) -> None:
    store = mirrored.store
    _, key, _ = known_client(store)
    store.refs.link(f"client:{key}", CONTACT, CONTACT_ID)  # onboarded earlier
    _deal_created(hubspot)
    won = Recording.load("deal_update_stage")
    hubspot.play(dataclasses.replace(won, interactions=won.interactions[:2]))  # GET, PATCH

    s = fast(settings, proposal_auto_approve_max_total=Decimal(10000))
    handle = await propose(client, s, store, key, WEBSITE)
    await progress_until(client, handle.id, waiting_for("client_response"))
    proposal_id = handle.id.split("/", 1)[1]
    assert store.refs.get(f"proposal:{proposal_id}", DEAL) == DEAL_ID
    assert receiver.received == []

    await operations.respond(client, handle.id, ClientResponse(response="accept"))
    result = await handle.result()
    await save_history(handle, "proposal_mirrored")
    assert result.status == "accepted"
    create, stage = hubspot.writes()
    assert (create.method, create.path) == ("POST", DEALS)
    assert (stage.method, stage.path) == ("PATCH", f"{DEALS}/{DEAL_ID}")
    assert stage.json == {"properties": {"dealstage": "closedwon"}}
    hubspot.assert_clean()

    [delivery] = receiver.wait_for(1)
    assert delivery.headers["x-aios-event"] == "proposal.accepted"
    data = delivery.json()["data"]
    assert (data["proposal_id"], data["total"]) == (proposal_id, "USD 5,600.00")
    assert data["billing_workflow_id"] == f"billing/{proposal_id}"
    await client.get_workflow_handle(f"billing/{proposal_id}").cancel()


async def test_a_proposal_cancelled_after_sending_archives_its_deal(
    client: Client,
    settings: Settings,
    smtp: RecordingSmtp,
    mirrored: Services,
    hubspot: HubSpotReplayServer,
    receiver: FlakyHttpServer,
) -> None:
    store = mirrored.store
    _, key, email = known_client(store)
    store.refs.link(f"client:{key}", CONTACT, CONTACT_ID)
    _deal_created(hubspot)
    hubspot.play("deal_archive", method="DELETE", path=f"{DEALS}/{DEAL_ID}")

    s = fast(settings, proposal_auto_approve_max_total=Decimal(10000))
    handle = await propose(client, s, store, key, WEBSITE)
    await progress_until(client, handle.id, waiting_for("client_response"))
    await handle.cancel()
    await ends_cancelled(handle)

    create, archive = hubspot.writes()
    assert (create.method, create.path) == ("POST", DEALS)
    assert (archive.method, archive.path) == ("DELETE", f"{DEALS}/{DEAL_ID}")
    hubspot.assert_clean()
    assert (await mails_until(smtp, email, 2))[1]["Subject"].startswith("Withdrawn: proposal")
    assert "compensation.deal_archived" in kinds(mirrored, handle.id)
    assert receiver.received == []  # no outcome to announce


# --- billing ------------------------------------------------------------------------------------


async def test_an_invoice_paid_in_full_is_announced_once(
    client: Client,
    settings: Settings,
    mirrored: Services,
    receiver: FlakyHttpServer,
) -> None:
    store = mirrored.store
    _, key, _ = known_client(store)
    handle = await bill(client, fast(settings), store, key, 120_000)
    progress = await progress_until(client, handle.id, waiting_for("payment_received"))
    number = progress.number
    await operations.record_payment(
        client, store, handle.id, amount=None, reference="bank ref 42", recorded_by="pat"
    )
    result = await handle.result()
    assert result.status == "paid"

    [delivery] = receiver.wait_for(1)
    assert delivery.headers["x-aios-event"] == "invoice.paid"
    assert verify_signature(SECRET, delivery.headers["x-aios-signature"], delivery.body)
    data = delivery.json()["data"]
    assert (data["number"], data["paid"], data["payments"]) == (number, "USD 1,200.00", 1)
    assert kinds(mirrored, handle.id).count("webhook.delivered") == 1
