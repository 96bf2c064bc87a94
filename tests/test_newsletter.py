"""Subscribers and the newsletter delivery engine, against the real dev server, PostgreSQL and
an SMTP server (aiosmtpd) of this module that refuses ``bounce-*`` recipients with 550.

Each send goes to every confirmed subscriber, so every test takes its subscribers off the list
(``aios subscribers remove``'s store call) when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker
from typer.testing import CliRunner, Result

from aios.cli.app import app
from aios.config import Settings
from aios.connectors.email import OutgoingEmail, SmtpConfig, SmtpEmailConnector
from aios.errors import ConnectorError, InvalidInput
from aios.kernel.store import KernelStore
from aios.kernel.stores.subscribers import Subscriber, SubscriberDraft
from aios.operations.control import change_switch
from aios.operations.subscribers import ConfirmationSender, add_subscribers, read_csv
from aios.serve.app import create_app
from aios.serve.links import LinkProblem
from aios.serve.subscriber_links import SubscriberLinks
from aios.templates.newsletter import issue_html, render_issue
from aios.workers.main import build_worker
from aios.workers.services import Services, connector_runtime, pause_gate, smtp_connector
from aios.workflows.newsletter import batch_workflow_id
from aios.workflows.newsletter_contract import (
    NEWSLETTER_WORKFLOW,
    NewsletterReport,
    NewsletterSend,
)
from tests.conftest import ROOT, RecordingSmtp, free_port, subprocess_env
from tests.helpers import save_history

# --- a list server: records what it accepts, refuses bounce-* mailboxes ----------------------


class ListSmtp(RecordingSmtp):
    """``RecordingSmtp`` that answers RCPT for ``bounce-*`` addresses with a permanent 550."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("bounce-"):
            self.refused.append(address)
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def issues(self, address: str, post_id: str) -> list[Message]:
        """The messages of ``post_id`` this server accepted for ``address``."""
        return [
            m
            for m in self.to(address)
            if str(m.get("X-Aios-Idempotency-Key", "")).startswith(f"newsletter/{post_id}/")
        ]

    def issue_count(self, post_id: str) -> int:
        with self._lock:
            return sum(
                1
                for r in self._messages
                if str(r.message.get("X-Aios-Idempotency-Key", "")).startswith(
                    f"newsletter/{post_id}/"
                )
            )


@pytest.fixture(scope="module")
def list_smtp() -> Iterator[ListSmtp]:
    server = ListSmtp()
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture(scope="module")
def news_settings(base_settings: Settings, list_smtp: ListSmtp) -> Settings:
    return base_settings.model_copy(
        update={
            "task_queue": f"news-{uuid.uuid4().hex[:10]}",
            "smtp_port": list_smtp.port,
            "newsletter_batch_size": 10,
            # slow enough that a cancel lands while most of a 120-subscriber list is unsent
            "connector_rate_limits": {"email": "20/second"},
        }
    )


@pytest.fixture(scope="module")
def news_services(news_settings: Settings) -> Iterator[Services]:
    svc = Services.from_settings(news_settings, migrate=False, with_memory=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def store(news_services: Services) -> KernelStore:
    return news_services.store


@pytest_asyncio.fixture(scope="module")
async def news_worker(
    client: Client, news_settings: Settings, news_services: Services
) -> AsyncIterator[Worker]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        activities = news_services.activities()
        async with build_worker(
            client, news_settings.task_queue, activities, executor, memory_queue=False
        ) as w:
            yield w


@pytest.fixture
def links(news_settings: Settings) -> SubscriberLinks:
    return SubscriberLinks.from_settings(news_settings)


@pytest.fixture
def people(store: KernelStore) -> Iterator[list[str]]:
    """Addresses a test puts on the list; taken off it when the test ends."""
    added: list[str] = []
    yield added
    for email in added:
        store.subscribers.remove(email, by="test cleanup")


def confirmed(store: KernelStore, people: list[str], emails: list[str]) -> list[Subscriber]:
    rows = []
    for pair in store.subscribers.add_many(
        [SubscriberDraft(email=e, name=f"Reader {i}") for i, e in enumerate(emails)], source="test"
    ):
        people.append(pair[0].email)
        subscriber, _ = store.subscribers.confirm(pair[0].id, via="test")
        assert subscriber is not None
        rows.append(subscriber)
    return rows


def status_of(store: KernelStore, email: str) -> str | None:
    subscriber = store.subscribers.by_email(email)
    return None if subscriber is None else subscriber.status


def new_post(store: KernelStore, tag: str = "post") -> str:
    post_id = f"{tag}-{uuid.uuid4().hex[:8]}"
    store.newsletter.stage_issue(
        post_id, 1, f"Issue {post_id}", "# News\n\nHello <script>x</script> **world**."
    )
    return post_id


async def send(
    client: Client, settings: Settings, post_id: str, *, workflow_id: str | None = None
) -> WorkflowHandle[object, NewsletterReport]:
    return await client.start_workflow(
        NEWSLETTER_WORKFLOW,
        NewsletterSend(post_id=post_id, version=1),
        id=workflow_id or f"content/{post_id}/send",
        task_queue=settings.task_queue,
        result_type=NewsletterReport,
    )


def http(settings: Settings, store: KernelStore) -> httpx.AsyncClient:
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url=settings.console_url)


def link_in(text: str, kind: str) -> str:
    found = re.search(rf"https?://\S+/subscribers/{kind}/\S+", text)
    assert found, f"no {kind} link in {text!r}"
    return found.group(0).rstrip(">")


def body_text(message: Message) -> str:
    part = message.get_body(preferencelist=("plain",)) if hasattr(message, "get_body") else None
    source = part if part is not None else message
    if source.is_multipart():
        source = source.get_payload(0)
    payload = source.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(payload)


# --- pure: validation, links, rendering (no servers) -------------------------------------------


def test_header_injection_is_refused_in_addresses_names_and_headers() -> None:
    for bad in ["a@x.example\r\nBcc: victim@y.example", "a@x.example\nBcc: v@y.example"]:
        with pytest.raises(ValidationError, match="email"):
            SubscriberDraft(email=bad)
    with pytest.raises(ValidationError, match="name"):
        SubscriberDraft(email="a@x.example", name="Ann\r\nBcc: victim@y.example")
    with pytest.raises(ValidationError, match="email"):
        SubscriberDraft(email="Ann <a@x.example>, b@y.example")
    with pytest.raises(ValidationError, match="email"):
        SubscriberDraft(email="not-an-address")
    assert SubscriberDraft(email=" Ann@X.example ").email == "ann@x.example"
    connector = SmtpEmailConnector(SmtpConfig(host="127.0.0.1", port=25, sender="me@x.example"))
    with pytest.raises(InvalidInput, match="List-Unsubscribe"):
        connector.compose(
            OutgoingEmail(
                to="a@x.example",
                subject="s",
                body="b",
                idempotency_key="k",
                headers=(("List-Unsubscribe", "<https://x>\r\nBcc: v@y.example"),),
            )
        )


def test_csv_import_names_every_bad_line_and_adds_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        'email,name\nok@x.example,Ok\n"evil@x.example\r\nBcc: v@y.example",Eve\n'
        'fine@x.example,"Mal\r\nBcc: v@y.example"\nnot-an-address,Nope\n',
        newline="",
    )
    with pytest.raises(InvalidInput) as refused:
        read_csv(bad)
    message = str(refused.value)
    assert "nothing added" in message
    assert "line 4: email" in message  # the quoted CRLF spans lines 3-4
    assert "line 6: name" in message
    assert "line 7: email" in message
    good = tmp_path / "good.csv"
    good.write_text("Email,Name\nA@x.example,Ann\na@x.example,Ann again\nb@x.example,\n")
    drafts = read_csv(good)
    assert [(d.email, d.name) for d in drafts] == [("a@x.example", "Ann"), ("b@x.example", "")]
    (tmp_path / "nohead.csv").write_text("a@x.example\n")
    with pytest.raises(InvalidInput, match="header with an 'email' column"):
        read_csv(tmp_path / "nohead.csv")


def test_signed_links_refuse_tampering_expiry_and_the_wrong_purpose() -> None:
    links = SubscriberLinks("http://127.0.0.1:8780", b"k" * 32)
    now = datetime.now(UTC)
    url = links.url("confirm", 7, "a@x.example", now)
    claim = links.read("confirm", url, now)
    assert (claim.subscriber_id, claim.email) == (7, "a@x.example")
    token = url.rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(LinkProblem, match="not valid"):
        links.read("confirm", tampered, now)
    with pytest.raises(LinkProblem, match="not valid"):
        links.read("unsubscribe", token, now)  # a confirm link never unsubscribes
    with pytest.raises(LinkProblem, match="expired"):
        links.read("confirm", token, now + timedelta(days=31))
    other = SubscriberLinks("http://127.0.0.1:8780", b"o" * 32)
    with pytest.raises(LinkProblem):
        other.read("confirm", token, now)


def test_issue_rendering_escapes_names_and_raw_html() -> None:
    body = issue_html("# Title\n\n<script>alert(1)</script> and **bold**")
    assert "<script>" not in body and "&lt;script&gt;" in body and "<strong>bold</strong>" in body
    message = render_issue(
        subject="S",
        markdown="text",
        body_html=body,
        name='<img src=x onerror="y">',
        sender="Acme",
        unsubscribe_url="https://example.test/subscribers/unsubscribe/t?a=1&b=2",
    )
    assert "<img" not in message.html and "&lt;img" in message.html
    assert 'href="https://example.test/subscribers/unsubscribe/t?a=1&amp;b=2"' in message.html
    assert "https://example.test/subscribers/unsubscribe/t?a=1&b=2" in message.text


# --- the send, end to end ---------------------------------------------------------------------


async def test_double_opt_in_unconfirmed_get_nothing_signed_link_confirms_tampered_refused(
    client: Client,
    news_settings: Settings,
    news_services: Services,
    store: KernelStore,
    list_smtp: ListSmtp,
    news_worker: Worker,
    people: list[str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    email = f"pending-{tag}@list.example"
    sender = ConfirmationSender(
        store,
        news_services.email,
        news_services.runtime,
        SubscriberLinks.from_settings(news_settings),
        sender_name="Acme",
    )
    [added] = add_subscribers(store, [SubscriberDraft(email=email)], source="test", sender=sender)
    people.append(email)
    assert added.created and added.confirmation_sent and added.subscriber.status == "pending"
    [confirmation] = list_smtp.to(email)
    url = link_in(body_text(confirmation), "confirm")

    first = new_post(store)
    report = await (await send(client, news_settings, first)).result()
    assert list_smtp.issues(email, first) == []  # pending: nothing
    assert report.sent == 0

    path = "/" + url.split("/", 3)[3]
    async with http(news_settings, store) as web:
        page = await web.get(path)
        assert page.status_code == 200 and "Confirm" in page.text
        assert status_of(store, email) == "pending"  # GET changes nothing
        tampered = path[:-3] + ("xyz" if not path.endswith("xyz") else "abc")
        refused = await web.post(tampered)
        assert refused.status_code == 400 and "not valid" in refused.text
        assert status_of(store, email) == "pending"
        done = await web.post(path)
        assert done.status_code == 200 and "confirmed" in done.text
    assert status_of(store, email) == "confirmed"
    kinds = [e.kind for e in store.events.for_entities([f"subscriber:{added.subscriber.id}"])]
    assert kinds == [
        "subscriber.added",
        "subscriber.confirmation_emailed",
        "subscriber.confirmed",
    ]

    second = new_post(store)
    handle = await send(client, news_settings, second)
    report = await handle.result()
    assert len(list_smtp.issues(email, second)) == 1
    assert (report.sent, report.cancelled) == (1, False)
    await save_history(handle, "newsletter_completed")
    batch = client.get_workflow_handle(batch_workflow_id(second, added.subscriber.id))
    await save_history(batch, "newsletter_batch_completed")


async def test_a_send_of_an_issue_never_staged_fails_at_once_and_sends_nothing(
    client: Client,
    news_settings: Settings,
    store: KernelStore,
    list_smtp: ListSmtp,
    news_worker: Worker,
    people: list[str],
) -> None:
    email = f"waiting-{uuid.uuid4().hex[:8]}@list.example"
    confirmed(store, people, [email])
    post = f"never-staged-{uuid.uuid4().hex[:8]}"
    handle = await send(client, news_settings, post)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    chain: list[str] = []
    error: BaseException | None = failed.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__
    assert any("is not staged" in message for message in chain), chain
    assert list_smtp.to(email) == []
    kinds = [e.kind for e in store.events.for_run(handle.id)]
    assert kinds[-1] == "newsletter.failed"


async def test_a_bounced_address_is_marked_and_skipped_next_time(
    client: Client,
    news_settings: Settings,
    store: KernelStore,
    list_smtp: ListSmtp,
    news_worker: Worker,
    people: list[str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    good, bad = f"reader-{tag}@list.example", f"bounce-{tag}@list.example"
    confirmed(store, people, [bad, good])  # the refusal first: the connection goes on
    first = new_post(store)
    report = await (await send(client, news_settings, first)).result()
    assert (report.sent, report.bounced) == (1, 1)
    assert list_smtp.refused.count(bad) == 1  # refused once, not retried
    bounced = store.subscribers.by_email(bad)
    assert bounced is not None and bounced.status == "bounced"
    assert "550" in (bounced.bounce_reason or "")
    delivery = store.newsletter.delivery(first, bounced.id)
    assert delivery is not None and delivery["status"] == "bounced"

    second = new_post(store)
    report = await (await send(client, news_settings, second)).result()
    assert (report.sent, report.bounced) == (1, 0)
    assert list_smtp.refused.count(bad) == 1  # not even tried again
    assert len(list_smtp.issues(good, first)) == len(list_smtp.issues(good, second)) == 1


async def test_one_click_unsubscribe_rfc_8058_and_an_unsubscribed_address_gets_nothing(
    client: Client,
    news_settings: Settings,
    store: KernelStore,
    list_smtp: ListSmtp,
    news_worker: Worker,
    people: list[str],
) -> None:
    email = f"leaver-{uuid.uuid4().hex[:8]}@list.example"
    confirmed(store, people, [email])
    first = new_post(store)
    await (await send(client, news_settings, first)).result()
    [issue] = list_smtp.issues(email, first)
    assert issue["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = issue["List-Unsubscribe"].strip("<>")
    assert url == link_in(body_text(issue), "unsubscribe")
    path = "/" + url.split("/", 3)[3]
    async with http(news_settings, store) as web:
        page = await web.get(path)
        assert page.status_code == 200 and "Unsubscribe" in page.text
        assert status_of(store, email) == "confirmed"
        wrong = await web.post(path, content=b"other=1", headers=_FORM)
        assert wrong.status_code == 400
        assert status_of(store, email) == "confirmed"
        # What a mail program sends for RFC 8058 one-click, with no cookie and no session.
        done = await web.post(path, content=b"List-Unsubscribe=One-Click", headers=_FORM)
        assert done.status_code == 200 and "no more issues" in done.text
        again = await web.post(path, content=b"List-Unsubscribe=One-Click", headers=_FORM)
        assert again.status_code == 200 and "already" in again.text
    assert status_of(store, email) == "unsubscribed"

    second = new_post(store)
    report = await (await send(client, news_settings, second)).result()
    assert list_smtp.issues(email, second) == []
    assert report.sent == 0


_FORM = {"content-type": "application/x-www-form-urlencoded"}


async def test_cancel_stops_the_remaining_batches_and_resume_sends_nothing_twice(
    client: Client,
    news_settings: Settings,
    store: KernelStore,
    list_smtp: ListSmtp,
    news_worker: Worker,
    people: list[str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    emails = [f"r{i:03d}-{tag}@list.example" for i in range(120)]
    confirmed(store, people, emails)
    post = new_post(store)
    workflow_id = f"content/{post}/send"
    handle = await send(client, news_settings, post, workflow_id=workflow_id)
    while list_smtp.issue_count(post) < 20:
        await asyncio.sleep(0.05)
    await handle.cancel()
    report = await handle.result()
    assert report.cancelled
    sent = list_smtp.issue_count(post)
    assert 20 <= sent < len(emails), f"the cancel stopped nothing: {sent} sent"
    assert report.sent == sent == store.newsletter.delivery_counts(post)["sent"]
    await save_history(handle, "newsletter_cancelled")

    resumed = await send(client, news_settings, post, workflow_id=workflow_id)
    report = await resumed.result()
    assert (report.sent, report.cancelled) == (len(emails), False)
    assert [len(list_smtp.issues(e, post)) for e in emails] == [1] * len(emails)


async def test_pausing_the_newsletter_process_holds_a_send_and_resume_sends_one_each(
    client: Client,
    news_settings: Settings,
    news_services: Services,
    store: KernelStore,
    list_smtp: ListSmtp,
    people: list[str],
) -> None:
    """`aios pause process newsletter` during a send: its batches wait before their first email
    (a notice per batch in the inbox), the send neither fails nor retries, and after the
    resume every reader gets the issue once."""
    tag = uuid.uuid4().hex[:8]
    emails = [f"p{i}-{tag}@list.example" for i in range(3)]
    confirmed(store, people, emails)
    post = new_post(store)
    settings = news_settings.model_copy(update={"task_queue": f"news-pause-{tag}"})
    # This worker reads the switches at every check: the pause just written is certainly seen.
    gate = pause_gate(news_settings.model_copy(update={"switch_cache_seconds": 0.01}), store)
    runtime = connector_runtime(news_settings, store, pause=gate)
    svc = dataclasses.replace(news_services, runtime=runtime, pause=gate)
    change_switch(store, pause=True, scope="process", name="newsletter", by="pat", reason="typo")
    try:
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(
                client, settings.task_queue, svc.activities(), executor, memory_queue=False
            ):
                handle = await send(client, settings, post)
                batch = f"newsletter/{post}/batch/"
                async with asyncio.timeout(30):
                    while not (
                        waiting := [
                            n
                            for n in store.notices.open_notices()
                            if n.kind == "paused" and (n.workflow_id or "").startswith(batch)
                        ]
                    ):
                        await asyncio.sleep(0.1)
                assert waiting[0].title == "paused: process:newsletter"
                assert list_smtp.issue_count(post) == 0  # held before the first email
                change_switch(store, pause=False, scope="process", name="newsletter", by="pat")
                report = await handle.result()
    finally:
        change_switch(store, pause=False, scope="process", name="newsletter", by="pat")
    assert (report.sent, report.cancelled) == (len(emails), False)
    assert [len(list_smtp.issues(e, post)) for e in emails] == [1] * len(emails)
    resolved = store.notices.get(waiting[0].key)
    assert resolved is not None and resolved.status == "resolved"


async def test_a_300_subscriber_send_with_the_worker_killed_midway_delivers_one_each(
    client: Client,
    news_settings: Settings,
    store: KernelStore,
    list_smtp: ListSmtp,
    people: list[str],
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    emails = [f"k{i:03d}-{tag}@list.example" for i in range(300)]
    confirmed(store, people, emails)
    post = new_post(store)
    settings = news_settings.model_copy(update={"task_queue": f"kill-{tag}"})
    env = subprocess_env(
        settings,
        AIOS_NEWSLETTER_BATCH_SIZE="10",  # 30 batches: the run continues as new once
        AIOS_CONNECTOR_RATE_LIMITS=json.dumps({"email": "100/second"}),
    )

    def spawn(n: int) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{n}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "aios.cli", "worker", "--role", "general"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

    first = spawn(1)
    second: subprocess.Popen[bytes] | None = None
    try:
        handle = await send(client, settings, post)
        while list_smtp.issue_count(post) < 100:
            assert first.poll() is None, (tmp_path / "worker-1.log").read_text()[-2000:]
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert list_smtp.issue_count(post) < len(emails)  # killed in the middle
        second = spawn(2)
        report = await asyncio.wait_for(handle.result(), timeout=180)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                if proc.poll() is None:
                    proc.kill()
    # Exactly one message each, wherever the kill fell (even after the SMTP server took a
    # message and before it answered: the outbox commits just before the terminating dot).
    for e in emails:
        assert len(list_smtp.issues(e, post)) == 1, (e, len(list_smtp.issues(e, post)))
    assert store.newsletter.delivery_counts(post) == {"sent": len(emails)}
    assert (report.sent, report.bounced, report.failed) == (len(emails), 0, 0)
    latest = await client.get_workflow_handle(handle.id).describe()
    assert latest.run_id != handle.first_execution_run_id  # continued as new
    await save_history(handle, "newsletter_continued")


# --- the CLI ---------------------------------------------------------------------------------

runner = CliRunner()


async def aios(settings: Settings, *args: str) -> Result:
    env = subprocess_env(settings, COLUMNS="200")
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args), env=env))


async def test_cli_import_sends_confirmations_reimport_adds_nothing_bad_input_refused(
    news_settings: Settings,
    store: KernelStore,
    list_smtp: ListSmtp,
    people: list[str],
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    emails = [f"cli{i}-{tag}@list.example" for i in range(3)]
    people.extend(emails)
    good = tmp_path / "list.csv"
    good.write_text("email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails)))

    first = await aios(news_settings, "subscribers", "import", str(good), "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert [s["email"] for s in report["added"]] == emails
    assert report["confirmations_sent"] == 3
    again = await aios(news_settings, "subscribers", "import", str(good), "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["added"], report["confirmations_sent"]) == ([], 0)
    assert [s["email"] for s in report["already_listed"]] == emails
    assert [len(list_smtp.to(e)) for e in emails] == [1, 1, 1]  # one confirmation each

    injected = tmp_path / "injected.csv"
    victim = f"victim-{tag}@list.example"
    injected.write_text(f'email,name\nnew-{tag}@list.example,"Eve\r\nBcc: {victim}"\n', newline="")
    refused = await aios(news_settings, "subscribers", "import", str(injected))
    assert refused.exit_code == 1 and "line 3: name" in refused.output
    assert store.subscribers.by_email(f"new-{tag}@list.example") is None
    added = await aios(
        news_settings, "subscribers", "add", f"x-{tag}@list.example\r\nBcc: {victim}"
    )
    assert added.exit_code == 1 and "email" in added.output
    assert list_smtp.to(victim) == []

    url = link_in(body_text(list_smtp.to(emails[0])[0]), "confirm")
    bad = await aios(news_settings, "subscribers", "confirm", url[:-4] + "AAAA")
    assert bad.exit_code == 1 and "not valid" in bad.output
    assert status_of(store, emails[0]) == "pending"
    ok = await aios(news_settings, "subscribers", "confirm", url)
    assert ok.exit_code == 0 and f"confirmed {emails[0]}" in ok.output
    listed = await aios(news_settings, "subscribers", "list", "--status", "confirmed", "--json")
    assert emails[0] in [s["email"] for s in json.loads(listed.stdout)["subscribers"]]

    gone = await aios(news_settings, "subscribers", "remove", emails[1])
    assert gone.exit_code == 0 and status_of(store, emails[1]) == "removed"
    unknown = await aios(news_settings, "subscribers", "remove", f"nobody-{tag}@list.example")
    assert unknown.exit_code == 1 and "not on the list" in unknown.output


async def test_a_confirmation_the_smtp_server_refused_goes_out_when_the_address_is_added_again(
    news_settings: Settings,
    news_services: Services,
    store: KernelStore,
    list_smtp: ListSmtp,
    people: list[str],
) -> None:
    """Adding an address while the SMTP server is down keeps it pending with no confirmation
    sent (the command says so); adding it again sends the confirmation, once."""
    email = f"late-{uuid.uuid4().hex[:8]}@list.example"
    people.append(email)
    down = news_settings.model_copy(update={"smtp_port": free_port(), "smtp_timeout_seconds": 2})
    links = SubscriberLinks.from_settings(news_settings)
    unreachable = ConfirmationSender(
        store, smtp_connector(down), news_services.runtime, links, sender_name="Acme"
    )
    with pytest.raises(ConnectorError, match=f"the confirmation to {email} was not sent"):
        add_subscribers(store, [SubscriberDraft(email=email)], source="test", sender=unreachable)
    assert status_of(store, email) == "pending"
    assert list_smtp.to(email) == []

    sender = ConfirmationSender(
        store, news_services.email, news_services.runtime, links, sender_name="Acme"
    )
    [again] = add_subscribers(store, [SubscriberDraft(email=email)], source="test", sender=sender)
    assert not again.created and again.confirmation_sent
    [again_once] = add_subscribers(
        store, [SubscriberDraft(email=email)], source="test", sender=sender
    )
    assert not again_once.confirmation_sent  # noted as sent: not again
    assert len(list_smtp.to(email)) == 1
