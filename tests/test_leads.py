"""Leads that come in by themselves: the public form (/lead) and the signed JSON hook
(/hooks/lead) of `aios serve`, against a real dev server, worker and PostgreSQL.

A lead starts onboarding; the same person again is a note on that client and starts nothing; a
bot that fills the honeypot gets the same answer and starts nothing; a missing, wrong or old
signature, an oversize body, too many leads from one address and odd characters are refused
with a clear answer and record nothing (or are stored cleaned).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from aios.config import Settings
from aios.connectors.webhooks import sign
from aios.kernel.models import MAX_NOTES
from aios.kernel.store import KernelStore
from aios.operations.leads import (
    LeadRejected,
    check_signature,
    parse_lead,
    signed_digest,
)
from aios.serve.app import create_app
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.onboarding import onboarding_workflow_id
from tests.conftest import ROOT, free_port, unique_client
from tests.helpers import wait_for_gate

SECRET = "lead-hook-secret-0123456789"
TOKEN = "operator-token-for-the-lead-tests"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def lead_settings(base_settings: Settings) -> Settings:
    return base_settings.model_copy(
        update={
            "task_queue": f"leads-{uuid.uuid4().hex[:10]}",
            "lead_webhook_secret": SecretStr(SECRET),
            "business_name": "Bakery Studio",
            "operator_token": SecretStr(TOKEN),
        }
    )


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[KernelStore]:
    kernel = KernelStore(database_url, max_size=4)
    yield kernel
    kernel.close()


@pytest_asyncio.fixture(scope="module")
async def module_worker(
    client: Client, lead_settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    activities = services.activities()
    async with build_worker(client, lead_settings.task_queue, activities, executor) as w:
        yield w


def some_address() -> str:
    """A sender address no other test uses, so each test has its own rate limit."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@pytest_asyncio.fixture
async def web(
    lead_settings: Settings, client: Client, store: KernelStore
) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_like(lead_settings, client, store) as http:
        yield http


def browser_like(
    settings: Settings, client: Client, store: KernelStore, address: str | None = None
) -> httpx.AsyncClient:
    app = create_app(settings, store=store, client=client)
    transport = httpx.ASGITransport(app=app, client=(address or some_address(), 50000))
    return httpx.AsyncClient(transport=transport, base_url=settings.console_url)


async def post_signed(
    web: httpx.AsyncClient,
    payload: object,
    *,
    secret: str = SECRET,
    at: int | None = None,
    send: bytes | None = None,
) -> httpx.Response:
    """POST ``payload`` (JSON, or bytes as they are) to the hook, signed with ``secret`` at
    ``at`` (default now); ``send`` replaces the body after signing (a tampered request)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    header = sign(secret, body, int(time.time()) if at is None else at)
    return await web.post(
        "/hooks/lead",
        content=body if send is None else send,
        headers={"Content-Type": "application/json", "X-Aios-Signature": header},
    )


async def run_exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def events_of(store: KernelStore, entity: str, kind: str) -> list[dict[str, object]]:
    with store.db.transaction() as conn:
        rows = conn.execute(
            "SELECT payload FROM events WHERE entity = %s AND kind = %s ORDER BY id",
            (entity, kind),
        ).fetchall()
    return [r["payload"] for r in rows]


def leads_from(store: KernelStore, address: str) -> int:
    with store.db.transaction() as conn:
        row = conn.execute("SELECT count(*) AS n FROM leads WHERE address = %s", (address,))
        found = row.fetchone()
    assert found is not None
    return int(found["n"])


# --- the form -------------------------------------------------------------------------------


async def test_a_form_lead_starts_onboarding_and_the_same_person_again_is_a_note(
    module_worker: Worker,
    web: httpx.AsyncClient,
    client: Client,
    store: KernelStore,
) -> None:
    page = await web.get("/lead")
    assert page.status_code == 200
    assert 'action="/lead"' in page.text and 'name="website"' in page.text
    assert "Bakery Studio" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]

    name, key, email = unique_client("bakery")
    notes = "A new website with online ordering, budget $6k."
    sent = await web.post("/lead", data={"name": name, "email": email, "notes": notes})
    assert sent.status_code == 303 and sent.headers["location"] == "/lead/thanks"
    thanks = await web.get("/lead/thanks")
    assert thanks.status_code == 200 and "Thank you" in thanks.text

    # The run exists with the client's data: it reaches the welcome gate, and the client
    # record it wrote has the lead's name, email and notes.
    workflow_id = onboarding_workflow_id(key)
    await wait_for_gate(client, workflow_id)
    record = store.clients.get(key)
    assert record is not None
    assert (record.name, record.email, record.notes) == (name, email, notes)
    [started] = events_of(store, f"client:{key}", "lead.received")
    assert started["outcome"] == "started" and started["source"] == "form"
    first_run = (await client.get_workflow_handle(workflow_id).describe()).run_id

    # The same person again, spelling the company differently and with other capitals in the
    # address: a note on the same client and an event; no second run.
    again = await web.post(
        "/lead",
        data={"name": f"{name} (web)", "email": email.upper(), "notes": "Also a logo, please."},
    )
    assert again.status_code == 303 and again.headers["location"] == "/lead/thanks"
    assert not await run_exists(client, onboarding_workflow_id(f"{key}-web"))
    described = await client.get_workflow_handle(workflow_id).describe()
    assert described.run_id == first_run
    assert described.status == WorkflowExecutionStatus.RUNNING
    [note] = store.leads.notes(key)
    assert note.source == "form"
    assert "Also a logo, please." in note.body and f"{name} (web)" in note.body
    received = events_of(store, f"client:{key}", "lead.received")
    assert [e["outcome"] for e in received] == ["started", "noted"]
    assert received[1]["note_id"] == note.id and received[1]["source"] == "form"
    assert [lead.outcome for lead in store.leads.for_client(key)] == ["started", "noted"]

    # The operator sees the note on the client's page.
    signin = await web.get("/signin")
    csrf = CSRF.search(signin.text)
    assert csrf is not None
    signed_in = await web.post(
        "/signin", data={"csrf": csrf.group(1), "name": "", "password": TOKEN, "next": ""}
    )
    assert signed_in.status_code == 303
    client_page = await web.get(f"/clients/{key}")
    assert client_page.status_code == 200
    assert "Also a logo, please." in client_page.text and "from form" in client_page.text


async def test_a_bot_that_fills_the_honeypot_gets_the_same_answer_and_starts_nothing(
    lead_settings: Settings, client: Client, store: KernelStore
) -> None:
    address = some_address()
    name, key, email = unique_client("spam")
    async with browser_like(lead_settings, client, store, address) as web:
        sent = await web.post(
            "/lead",
            data={"name": name, "email": email, "notes": "cheap pills", "website": "http://x"},
        )
    assert sent.status_code == 303 and sent.headers["location"] == "/lead/thanks"
    assert not await run_exists(client, onboarding_workflow_id(key))
    assert store.clients.get(key) is None and store.leads.notes(key) == []
    with store.db.transaction() as conn:
        row = conn.execute(
            "SELECT id, outcome, client_key FROM leads WHERE address = %s", (address,)
        ).fetchone()
    assert row is not None and row["outcome"] == "honeypot" and row["client_key"] is None
    [event] = events_of(store, f"lead:{row['id']}", "lead.honeypot")
    assert event["address"] == address and event["channel"] == "form"
    assert "cheap pills" not in json.dumps(event)


async def test_bad_fields_show_the_form_again_naming_them_with_everything_escaped(
    web: httpx.AsyncClient, client: Client, store: KernelStore
) -> None:
    _name, key, _email = unique_client("odd")
    cases = {
        "name": ("Acme\x00 Ltd", "U+0000 (NUL)"),
        "name\r": ("Acme\r\nBcc: x@evil.example", "line break"),
        "name\u202e": ("Acme \u202eLtd", "U+202E"),
        "notes": ("x" * 10_000, f"at most {MAX_NOTES} characters"),
        "email": ("<script>alert(1)</script>", "not a valid email address"),
    }
    for case, (value, expected) in cases.items():
        field = case.rstrip("\r\u202e")
        data = {"name": f"Odd {key}", "email": f"{key}@odd.example", "notes": "", field: value}
        page = await web.post("/lead", data=data)
        assert page.status_code == 422, case
        assert f'id="{field}-error"' in page.text, case
        assert expected in page.text, case
        assert "<script>alert" not in page.text
    escaped = await web.post(
        "/lead", data={"name": "<b>Bold</b> \x00", "email": "not an email", "notes": "<i>"}
    )
    assert escaped.status_code == 422
    assert "&lt;b&gt;Bold&lt;/b&gt;" in escaped.text and "<b>Bold" not in escaped.text
    assert "&lt;i&gt;</textarea>" in escaped.text
    assert not await run_exists(client, onboarding_workflow_id(f"odd-{key}"))
    assert store.leads.client_for_email(f"{key}@odd.example") is None


async def test_oversize_bodies_are_refused_with_413_and_record_nothing(
    lead_settings: Settings, client: Client, store: KernelStore
) -> None:
    address = some_address()
    huge = "y" * (lead_settings.lead_max_body_bytes + 1)
    _name, key, email = unique_client("huge")
    async with browser_like(lead_settings, client, store, address) as web:
        form = await web.post("/lead", data={"name": "Huge Ltd", "email": email, "notes": huge})
        hook = await post_signed(web, {"name": "Huge Ltd", "email": email, "notes": huge})

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(lead_settings.lead_max_body_bytes // 4096 + 2):
                yield b"notes=" + b"z" * 4090

        streamed = await web.post(
            "/lead",
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert form.status_code == 413 and "too long" in form.text
    assert hook.status_code == 413 and "body over" in hook.json()["error"]
    assert streamed.status_code == 413
    assert leads_from(store, address) == 0
    assert not await run_exists(client, onboarding_workflow_id(key))


async def test_too_many_leads_from_one_address_get_429_with_retry_after(
    lead_settings: Settings, client: Client, store: KernelStore
) -> None:
    settings = lead_settings.model_copy(update={"lead_form_rate_limit": "2/hour"})
    address = some_address()
    async with browser_like(settings, client, store, address) as web:
        for _ in range(2):  # bots count too
            bot = await web.post(
                "/lead", data={"name": "B", "email": "b@b.example", "website": "x"}
            )
            assert bot.status_code == 303
        _name, key, email = unique_client("late")
        refused = await web.post("/lead", data={"name": f"Late {key}", "email": email})
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert "try again in about" in refused.text
    assert leads_from(store, address) == 2
    assert not await run_exists(client, onboarding_workflow_id(f"late-{key}"))
    # Another address is not held back by this one.
    async with browser_like(settings, client, store) as other:
        ok = await other.post("/lead", data={"name": "B", "email": "b@b.example", "website": "x"})
    assert ok.status_code == 303


# --- the signed JSON hook -------------------------------------------------------------------


async def test_a_signed_json_lead_starts_onboarding_once_then_notes(
    web: httpx.AsyncClient, client: Client, store: KernelStore
) -> None:
    name, key, email = unique_client("hook")
    lead = {"name": name, "email": email, "notes": "Need a shop 🛒", "source": "typeform"}
    at = int(time.time())
    answer = await post_signed(web, lead, at=at)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    workflow_id = onboarding_workflow_id(key)
    assert body["outcome"] == "started" and body["client_key"] == key
    assert body["workflow_id"] == workflow_id
    assert await run_exists(client, workflow_id)
    [event] = events_of(store, f"client:{key}", "lead.received")
    assert event["source"] == "typeform" and event["channel"] == "hook"

    # The very same signed request again (within the tolerance): refused, nothing recorded.
    replay = await post_signed(web, lead, at=at)
    assert replay.status_code == 409
    assert len(store.leads.for_client(key)) == 1

    # A new request for the same client: a note on it, and the answer says so.
    more = {"name": name, "email": email, "notes": "Line one\r\nline two\x00 \u202eend 🎉"}
    noted = await post_signed(web, more)
    assert noted.status_code == 200, noted.text
    assert noted.json()["outcome"] == "noted"
    assert "no new run" in noted.json()["message"]
    [note] = store.leads.notes(key)
    assert note.source == "hook"
    assert note.body.endswith("Line one\nline two end 🎉")  # cleaned as `aios onboard` does
    assert [e["outcome"] for e in events_of(store, f"client:{key}", "lead.received")] == [
        "started",
        "noted",
    ]


async def test_two_leads_at_once_for_a_new_client_give_one_run(
    web: httpx.AsyncClient, client: Client, store: KernelStore
) -> None:
    name, key, email = unique_client("twice")
    now = int(time.time())
    answers = await asyncio.gather(
        *(post_signed(web, {"name": name, "email": email}, at=now + i) for i in range(2))
    )
    assert sorted(a.json()["outcome"] for a in answers) == ["noted", "started"]
    assert sorted(a.status_code for a in answers) == [200, 201]
    assert await run_exists(client, onboarding_workflow_id(key))
    assert [lead.outcome for lead in store.leads.for_client(key)] in (
        ["started", "noted"],
        ["noted", "started"],
    )
    assert len(store.leads.notes(key)) == 1


async def test_a_missing_wrong_or_old_signature_records_nothing(
    lead_settings: Settings, client: Client, store: KernelStore
) -> None:
    address = some_address()
    name, key, email = unique_client("forged")
    lead = {"name": name, "email": email}
    body = json.dumps(lead).encode()
    old = int(time.time()) - lead_settings.lead_signature_tolerance_seconds - 60
    async with browser_like(lead_settings, client, store, address) as web:
        missing = await web.post("/hooks/lead", content=body)
        malformed = await web.post(
            "/hooks/lead", content=body, headers={"X-Aios-Signature": "sha256=abc"}
        )
        wrong = await post_signed(web, lead, secret="another-secret-0123456789")
        stale = await post_signed(web, lead, at=old)
        changed = json.dumps({**lead, "notes": "changed"}).encode()
        tampered = await post_signed(web, lead, send=changed)
    assert missing.status_code == 401 and "missing X-Aios-Signature" in missing.json()["error"]
    assert malformed.status_code == 400 and "malformed" in malformed.json()["error"]
    assert wrong.status_code == 401 and "does not match" in wrong.json()["error"]
    assert stale.status_code == 401 and "timestamp" in stale.json()["error"]
    assert tampered.status_code == 401
    assert leads_from(store, address) == 0
    assert not await run_exists(client, onboarding_workflow_id(key))
    assert events_of(store, f"client:{key}", "lead.received") == []


async def test_a_hook_lead_with_bad_fields_gets_422_naming_each(
    lead_settings: Settings, client: Client, store: KernelStore
) -> None:
    address = some_address()
    _name, key, email = unique_client("fields")
    async with browser_like(lead_settings, client, store, address) as web:
        bad = await post_signed(
            web, {"name": "Fine \u0000", "email": "nope", "budget": 5, "notes": 3}
        )
        not_object = await post_signed(web, ["a list"])
        not_json = await post_signed(web, b"{not json")
        surrogate = await post_signed(web, b'{"name": "A\\ud800", "email": "%s"}' % email.encode())
    assert bad.status_code == 422
    fields = bad.json()["fields"]
    assert set(fields) == {"name", "email", "budget", "notes"}
    assert "U+0000" in fields["name"] and "unknown field" in fields["budget"]
    assert not_object.status_code == 422
    assert not_json.status_code == 400
    assert surrogate.status_code == 422 and "lone surrogate" in surrogate.json()["fields"]["name"]
    assert leads_from(store, address) == 0
    assert store.leads.client_for_email(email) is None
    assert not await run_exists(client, onboarding_workflow_id(key))


async def test_the_hook_is_off_without_a_secret(
    base_settings: Settings, client: Client, store: KernelStore
) -> None:
    async with browser_like(base_settings, client, store) as web:
        answer = await post_signed(web, {"name": "A", "email": "a@a.example"})
    assert answer.status_code == 503 and "AIOS_LEAD_WEBHOOK_SECRET" in answer.json()["error"]


# --- pure logic -----------------------------------------------------------------------------


def test_parse_lead_uses_the_onboard_model_and_names_every_bad_field() -> None:
    intake, source = parse_lead(
        {"name": "  Acme Ltd ", "email": "ops@acme.example", "notes": "a\r\nb"}, hook=False
    )
    assert (intake.name, intake.key, intake.notes, source) == (
        "Acme Ltd",
        "acme-ltd",
        "a\nb",
        "form",
    )
    non_latin, _ = parse_lead({"name": "株式会社ヤマト", "email": "Ken@Yamato.example"}, hook=False)
    assert (non_latin.name, non_latin.key) == ("株式会社ヤマト", "ken-at-yamato-example")
    with pytest.raises(LeadRejected) as form_key:
        parse_lead({"name": "A", "email": "a@a.example", "key": "x"}, hook=False)
    assert set(form_key.value.fields) == {"key"}
    with pytest.raises(LeadRejected) as no_key:
        parse_lead({"name": "Москва", "email": "a@a.example"}, hook=True)
    assert set(no_key.value.fields) == {"key"}
    with pytest.raises(LeadRejected) as bad_source:
        parse_lead({"name": "A", "email": "a@a.example", "source": "x\ny"}, hook=True)
    assert set(bad_source.value.fields) == {"source"}
    with pytest.raises(LeadRejected) as empty:
        parse_lead({}, hook=True)
    assert set(empty.value.fields) == {"name", "email"}


def test_check_signature_says_what_is_wrong() -> None:
    body = b'{"name": "A"}'
    now = 1_800_000_000
    good = sign(SECRET, body, now)
    assert check_signature(SECRET, good, body, tolerance_seconds=300, now=now + 10) is None
    cases = {
        None: 401,
        "": 401,
        "v1=" + "0" * 64: 400,
        "t=abc,v1=" + "0" * 64: 400,
        f"t={now}": 400,
        sign("other-secret-000000", body, now): 401,
        sign(SECRET, body, now - 301): 401,
        sign(SECRET, body, now + 301): 401,
    }
    for header, status in cases.items():
        problem = check_signature(SECRET, header, body, tolerance_seconds=300, now=now)
        assert problem is not None and problem.status == status, header
    # A rewritten header of the same request (parts reordered) is the same request.
    digest, v1 = good.split(",")
    assert signed_digest(good, body) == signed_digest(f"{v1},{digest}", body)
    assert signed_digest(good, body) != signed_digest(sign(SECRET, body, now + 1), body)


# --- in a real browser ----------------------------------------------------------------------


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
async def test_the_form_in_chromium_at_375_and_1280_px(
    lead_settings: Settings,
    client: Client,
    store: KernelStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from playwright.async_api import async_playwright

    from tests.test_browser import LAPTOP, LAUNCH_ARGS, PHONE, ConsoleServer

    settings = lead_settings.model_copy(update={"serve_port": free_port()})
    shots = tmp_path_factory.mktemp("lead-screenshots")
    print(f"\nlead form screenshots: {shots}")
    name, key, email = unique_client("browser")
    with ConsoleServer(settings):
        async with async_playwright() as p:
            chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            page = await chromium.new_page(viewport=PHONE)  # type: ignore[arg-type]
            base = settings.console_url
            await page.goto(f"{base}/lead")
            box = await page.locator("#lead-website").bounding_box()
            assert box is not None and box["x"] + box["width"] <= 0  # the honeypot is off-screen
            for viewport, label in ((PHONE, "375"), (LAPTOP, "1280")):
                await page.set_viewport_size(viewport)  # type: ignore[arg-type]
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], f"the form is {width} px wide"
                await page.screenshot(path=shots / f"lead-{label}.png", full_page=True)
            if os.environ.get("AIOS_DOCS_SCREENSHOTS") == "1":  # the one the README shows
                shutil.copy(shots / "lead-375.png", ROOT / "docs" / "lead-form-phone.png")
            await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
            await page.fill("#lead-name", name)
            await page.fill("#lead-email", "not an address")
            await page.click("form[action='/lead'] button[type=submit]")
            await page.locator("#email-error").wait_for()
            assert await page.input_value("#lead-name") == name
            await page.screenshot(path=shots / "lead-error-375.png", full_page=True)
            await page.fill("#lead-email", email)
            await page.fill("#lead-notes", "A website for our bakery, please.")
            await page.click("form[action='/lead'] button[type=submit]")
            await page.wait_for_url(f"{base}/lead/thanks")
            await page.screenshot(path=shots / "lead-thanks-375.png", full_page=True)
            await chromium.close()
    assert await run_exists(client, onboarding_workflow_id(key))


async def test_a_hook_lead_while_temporal_is_down_gets_503_and_records_nothing(
    lead_settings: Settings, store: KernelStore
) -> None:
    down = lead_settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    address = some_address()
    _name, key, email = unique_client("down")
    app = create_app(down, store=store)  # its own Temporal client, to an address nobody serves
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    async with httpx.AsyncClient(transport=transport, base_url=down.console_url) as web:
        answer = await post_signed(web, {"name": f"Down {key}", "email": email})
        form = await web.post("/lead", data={"name": f"Down {key}", "email": email})
    assert answer.status_code == 503 and "send the lead again" in answer.json()["error"]
    assert form.status_code == 503 and "please send it again" in form.text
    assert f"Down {key}" in form.text  # what they wrote is still in the form
    assert down.temporal_address not in form.text
    assert leads_from(store, address) == 0


async def test_a_lead_for_a_client_whose_onboarding_ended_is_a_note_not_a_new_run(
    lead_settings: Settings, client: Client, store: KernelStore
) -> None:
    idle = lead_settings.model_copy(update={"task_queue": f"idle-{uuid.uuid4().hex[:8]}"})
    name, key, email = unique_client("ended")
    async with browser_like(idle, client, store) as web:
        first = await post_signed(web, {"name": name, "email": email})
        assert first.status_code == 201
        handle = client.get_workflow_handle(onboarding_workflow_id(key))
        await handle.terminate("the operator ended it")
        again = await post_signed(web, {"name": name, "email": f"other-{email}"})
    assert again.status_code == 200
    assert again.json()["outcome"] == "noted"
    assert "Its onboarding ended: terminated on" in again.json()["message"]
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.TERMINATED  # no new run after it
    [note] = store.leads.notes(key)
    assert f"other-{email}" in note.body
