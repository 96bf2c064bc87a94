"""ContentWorkflow on the real stack: planning with the novelty check, the fact-check at gate
``content``, edits as versions, the durable publication timer, and publication (page, feed,
newsletter child, memory).

The newsletter goes out through the real delivery engine (``NewsletterSendWorkflow``) to the
session's SMTP server; subscribers a test confirms are taken off the list when it ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.stores.subscribers import SubscriberDraft
from aios.operations import console
from aios.operations.common import run_progress
from aios.operations.console_models import PostGateDocument, TopicGateDocument
from aios.operations.content import NewPost, move_post, start_post
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.content import ContentResult
from aios.workflows.progress import ContentProgress
from tests.conftest import RecordingSmtp
from tests.flaky_http import FlakyHttpServer
from tests.helpers import RUNS, save_history
from tests.test_connector_fabric import webhook


@pytest.fixture
def readers(services: Services) -> Iterator[list[str]]:
    """Confirmed subscribers a test adds (``confirm(readers, ...)``); removed at its end."""
    added: list[str] = []
    yield added
    for email in added:
        services.store.subscribers.remove(email, by="test cleanup")


def confirm(services: Services, readers: list[str], *emails: str) -> None:
    store = services.store
    for added, _ in store.subscribers.add_many(
        [SubscriberDraft(email=e) for e in emails], source="test"
    ):
        readers.append(added.email)
        confirmed, _ = store.subscribers.confirm(added.id, via="test")
        assert confirmed is not None and confirmed.status == "confirmed"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def _progress_until(
    client: Client, workflow_id: str, ok: Any, timeout: float = 30
) -> ContentProgress:
    async with asyncio.timeout(timeout):
        while True:
            progress = await run_progress(client, workflow_id)
            assert isinstance(progress, ContentProgress)
            if ok(progress):
                return progress
            await asyncio.sleep(0.1)


def _gate(name: str, title_start: str = "") -> Any:
    return lambda p: any(
        g.gate == name and g.title.startswith(title_start) for g in p.pending_gates
    )


async def _decide(client: Client, workflow_id: str, **decision: Any) -> None:
    await client.get_workflow_handle(workflow_id).signal("decide", {"approver": "pat", **decision})


def _remember(services: Services, text: str, entity: str, kind: str) -> str:
    return services.memory.remember(
        text,
        entity=entity,
        kind=kind,
        source_workflow_id="test/seed",
        source_run_id="seed",
        idempotency_key=f"seed/{uuid.uuid4().hex}",
    ).id


def _rendered(settings: Settings, view: Any) -> str:
    """The gate's document as the console's gate page renders it."""
    from aios.serve.context import ConsoleState

    env = ConsoleState(settings).templates.env
    page = env.from_string('{% from "_document.html" import document %}{{ document(view) }}')
    return page.render(view=view)


def _site(settings: Settings) -> Path:
    return settings.state_path / "site"


@pytest.mark.usefixtures("worker")
async def test_a_repeated_topic_is_flagged_and_an_edit_makes_version_2_checked_at_the_gate(
    client: Client, settings: Settings, services: Services
) -> None:
    tag = _tag()
    subject = f"an online ordering website for the {tag} bakery chain"
    outcome = _remember(
        services,
        f"Proposal bakery-{tag} v1. Outcome: accepted. Price: USD 5,600.00 (list USD 5,600.00, "
        f"discount 0%). Reason: fits the budget. Counters: none. Scope: {subject}.",
        f"client:bakery-{tag}",
        "proposal_outcome",
    )
    old_post = f"old-{tag}"
    _remember(
        services,
        f"Post {old_post} v1: What we learned: {subject}. Notes on {subject}, from recent work.",
        f"post:{old_post}",
        "published_post",
    )
    # A topic given by the operator goes through the same novelty check as a planned one.
    started = await start_post(
        client, settings, NewPost(topic=f"What we learned: {subject}", post_id=f"bakery-{tag}")
    )
    RUNS.append(started.workflow_id)
    wid = started.workflow_id
    progress = await _progress_until(client, wid, _gate("topic"))
    [gate] = progress.pending_gates
    assert f"[repeats post {old_post}, similarity" in gate.summary
    [planned] = [e for e in services.store.events.for_run(wid) if e.kind == "content.planned"]
    [candidate] = planned.payload["topics"]
    assert candidate["repeats"] == old_post
    assert candidate["similarity"] >= settings.content_novelty_threshold
    # The console's document of gate `topic`: the candidate, numbered, flagged.
    view = await console.gate_view(client, services.store, settings, wid)
    assert isinstance(view.document, TopicGateDocument)
    [row] = view.document.candidates
    assert (row.number, row.repeats) == (1, old_post)
    assert f"repeats post {old_post}" in _rendered(settings, view)

    # The operator sets a new angle; the draft cites the outcome it quotes.
    await _decide(
        client, wid, decision="edit", edits={"topic": f"Fixed prices for the {tag} bakery"}
    )
    progress = await _progress_until(client, wid, _gate("content", "Post v1"))
    assert "0 without a source, 0 in conflict with memory" in progress.pending_gates[0].summary
    store = services.store
    post_id = f"bakery-{tag}"
    v1 = store.posts.version(post_id, 1)
    assert v1 is not None and v1.source == "agent" and outcome in v1.memory_ids
    assert v1.findings is not None and v1.findings["unsourced"] == []

    # An edit of the body is version 2, fact-checked and shown at the gate again.
    body = (
        v1.markdown
        + "\nWe cut delivery time by 40% for every bakery we worked with.\n"
        + f"\nThe bakery site was priced at USD 4,000 [mem:{outcome}].\n"
    )
    await _decide(client, wid, decision="edit", edits={"body": body}, comment="add results")
    progress = await _progress_until(client, wid, _gate("content", "Post v2"))
    summary = progress.pending_gates[0].summary
    assert "1 without a source, 1 in conflict with memory" in summary
    assert "unsourced: We cut delivery time by 40%" in summary
    versions = store.posts.versions(post_id)
    assert [(v.version, v.source, v.author) for v in versions] == [
        (1, "agent", "agent:content"),
        (2, "operator", "pat"),
    ]
    assert versions[0].markdown == v1.markdown  # version 1 is kept as it was
    findings = versions[1].findings or {}
    assert [c["text"] for c in findings["unsourced"]] == [
        "We cut delivery time by 40% for every bakery we worked with."
    ]
    [conflict] = findings["conflicts"]
    assert conflict["problem"].startswith("says 4000; the cited memory says")
    # The console's document of gate `content`: version 2 rendered, its findings, the audience.
    view = await console.gate_view(client, store, settings, wid)
    doc = view.document
    assert isinstance(doc, PostGateDocument)
    assert (doc.version, doc.versions, doc.author, doc.audience) == (
        2,
        2,
        "pat",
        store.subscribers.confirmed_count(),
    )
    assert [(f.what, f.text[:24]) for f in doc.findings] == [
        ("unsourced", "We cut delivery time by "),
        ("conflict", "The bakery site was pric"),
    ]
    assert {f.name: f.value for f in view.fields} == {"title": doc.title, "body": body.strip()}
    page = _rendered(settings, view)
    assert "1 without a source, 1 in conflict with memory" in page
    assert f"<h1>{doc.title}</h1>" in page and "<li>We cut delivery time" not in page

    # A bad edit is refused and the gate keeps waiting for a decision.
    await _decide(client, wid, decision="edit", edits={"title": " "})
    progress = await _progress_until(client, wid, lambda p: p.rejected_signals == 1)
    [waiting] = progress.pending_gates
    assert (waiting.gate, waiting.last_rejection) == ("content", "edits.title: must not be empty")

    await _decide(client, wid, decision="reject", comment="not this week")
    handle = client.get_workflow_handle(wid, result_type=ContentResult)
    result = await handle.result()
    await save_history(handle, "content_rejected")
    assert (result.status, result.version, result.reason) == ("rejected", 2, "not this week")
    post = store.posts.get(post_id)
    assert post is not None and post.status == "rejected"
    assert not (_site(settings) / "posts" / f"{post_id}.html").exists()
    assert store.newsletter.issue(post_id, 2) is None


@pytest.mark.usefixtures("worker")
async def test_a_scheduled_post_moved_then_cancelled_writes_and_sends_nothing(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    readers: list[str],
) -> None:
    tag = _tag()
    confirm(services, readers, f"reader-{tag}@example.com")
    post_id = f"invoicing-{tag}"
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    started = await start_post(
        client,
        settings,
        NewPost(
            topic=f"Invoicing habits {tag} of small studios", post_id=post_id, publish_at=first
        ),
    )
    RUNS.append(started.workflow_id)
    wid = started.workflow_id
    await _progress_until(client, wid, _gate("content", "Post v1"))

    def not_to_operator() -> int:
        return smtp.count - len(smtp.to(settings.operator_email))

    mails_before = not_to_operator()
    await _decide(client, wid, decision="approve", gate="content")
    progress = await _progress_until(client, wid, lambda p: p.waiting_for == "reschedule")
    assert progress.publish_at == first and "scheduled/0" in progress.steps_done
    store = services.store
    post = store.posts.get(post_id)
    assert post is not None and (post.status, post.scheduled_at) == ("scheduled", first)

    later = first + timedelta(days=1)
    await move_post(client, post_id, later, "pat")
    progress = await _progress_until(client, wid, lambda p: "scheduled/1" in p.steps_done)
    assert progress.publish_at == later
    # A move without a time zone is refused; the timer keeps the last good time.
    await client.get_workflow_handle(wid).signal("reschedule", {"publish_at": "2026-12-01T09:00"})
    progress = await _progress_until(client, wid, lambda p: p.rejected_signals == 1)
    assert progress.publish_at == later and "publish_at" in (progress.last_rejection or "")
    post = store.posts.get(post_id)
    assert post is not None and (post.status, post.scheduled_at) == ("scheduled", later)
    # The refusal is written out and the run is back on its timer.
    await _progress_until(client, wid, lambda p: p.waiting_for == "reschedule")
    assert [e.kind for e in store.events.for_run(wid)].count("signal.rejected") == 1

    handle = client.get_workflow_handle(wid, result_type=ContentResult)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    await save_history(handle, "content_cancelled")
    post = store.posts.get(post_id)
    assert post is not None and post.status == "cancelled"
    kinds = [e.kind for e in store.events.for_run(wid)]
    assert kinds.count("post.scheduled") == 2 and "post.cancelled" in kinds
    assert kinds[-1] == "content.cancelled" and "post.published" not in kinds
    # Nothing went out: no newsletter run, no staged issue, no page, no email.
    with pytest.raises(RPCError) as missing:
        await client.get_workflow_handle(f"{wid}/send").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    assert store.newsletter.issue(post_id, 1) is None
    assert not (_site(settings) / "posts" / f"{post_id}.html").exists()
    assert not_to_operator() == mails_before  # only the operator's gate emails went out
    assert smtp.to(f"reader-{tag}@example.com") == []


async def test_a_published_post_writes_page_and_feed_remembers_it_and_records_the_counts(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    readers: list[str],
    executor: ThreadPoolExecutor,
) -> None:
    with FlakyHttpServer() as hooks:
        s = settings.model_copy(
            update={"webhook_url": hooks.url, "webhook_secret": SecretStr("k" * 32)}
        )
        with_hook = dataclasses.replace(services, settings=s, webhook=webhook(hooks))
        async with build_worker(client, s.task_queue, with_hook.activities(), executor):
            await _publish_and_check(client, s, services, smtp, readers, hooks)


async def _publish_and_check(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    readers: list[str],
    hooks: FlakyHttpServer,
) -> None:
    tag = _tag()
    two = [f"first-{tag}@example.com", f"second-{tag}@example.com"]
    confirm(services, readers, *two)
    source = _remember(
        services,
        f"Onboarded Studio {tag} (design). Request: a brand refresh in 6 weeks. "
        "Welcome approved by pat.",
        f"client:studio-{tag}",
        "onboarding_summary",
    )
    post_id = f"refresh-{tag}"
    started = await start_post(
        client,
        settings,
        NewPost(topic=f"Brand refresh {tag} for studios in six weeks", post_id=post_id),
    )
    RUNS.append(started.workflow_id)
    wid = started.workflow_id
    await _progress_until(client, wid, _gate("content", "Post v1"))
    await _decide(client, wid, decision="approve")
    handle = client.get_workflow_handle(wid, result_type=ContentResult)
    result = await handle.result()
    await save_history(handle, "content_published")
    assert (result.status, result.version) == ("published", 1)
    assert result.sent >= 2 and (result.bounced, result.unsubscribed) == (0, 0)

    store = services.store
    version = store.posts.version(post_id, 1)
    assert version is not None and source in version.memory_ids
    post = store.posts.get(post_id)
    assert post is not None and (post.status, post.published_version) == ("published", 1)

    # The page and the feed, whole, with no citation and no temporary file left behind.
    site = _site(settings)
    page = site / "posts" / f"{post_id}.html"
    assert result.page == str(page)
    html = page.read_text()
    assert f"<h1>{version.title}</h1>" in html and "[mem:" not in html
    entries = ET.fromstring((site / "feed.xml").read_text()).findall(
        "{http://www.w3.org/2005/Atom}entry"
    )
    ids = [e.findtext("{http://www.w3.org/2005/Atom}id") for e in entries]
    assert f"urn:aios:post:{post_id}" in ids
    assert not [p for p in site.rglob("*") if p.name.endswith(".tmp")]

    # The newsletter child sent the staged version once to each reader; its counts are recorded.
    child = await client.get_workflow_handle(f"{wid}/send").describe()
    assert child.parent_id == wid
    issue = store.newsletter.issue(post_id, 1)
    assert issue is not None and issue.subject == version.title and "[mem:" not in issue.markdown
    for address in two:
        [mail] = smtp.to(address)
        assert mail["Subject"] == version.title
    events = store.events.for_run(wid)
    [counts] = [e for e in events if e.kind == "post.newsletter_counts"]
    assert counts.payload == {
        "version": 1,
        "sent": result.sent,
        "bounced": 0,
        "unsubscribed": 0,
        "failed": 0,
        "cancelled": False,
    }
    assert [e.kind for e in events][-1] == "content.published"
    # One webhook content.published with the post and the counts.
    [delivery] = [json.loads(r.body) for r in hooks.received]
    assert delivery["type"] == "content.published"
    assert {k: delivery["data"][k] for k in ("post_id", "version", "sent", "page")} == {
        "post_id": post_id,
        "version": 1,
        "sent": result.sent,
        "page": result.page,
    }

    # One memory point for the post, with its provenance.
    assert result.memory_id is not None
    memory = services.memory.get(result.memory_id)
    assert memory is not None and memory.text.startswith(f"Post {post_id} v1: {version.title}")
    p = memory.provenance
    assert (p.kind, p.entity, p.version, p.source_workflow_id) == (
        "published_post",
        f"post:{post_id}",
        1,
        wid,
    )


@pytest.mark.usefixtures("worker")
async def test_the_content_commands_refuse_bad_input_in_one_line_and_show_a_post(
    client: Client, settings: Settings
) -> None:
    from tests.test_cli import invoke

    tag = _tag()
    for args, expected in [
        (["--topic", "Pricing", "--at", "2026-12-01T09:00"], "error: at: '2026-12-01T09:00' has"),
        (["--topic", "Pricing", "--id", "Bad Id"], "error: post_id: must be 1-80 lowercase"),
        (["--topic", "  "], "error: topic: must not be empty"),
    ]:
        result = await invoke(settings, "content", "start", *args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(expected) and len(result.output.splitlines()) == 1
    result = await invoke(settings, "content", "show", f"nothing-{tag}")
    assert (result.exit_code, result.output.strip()) == (
        1,
        f"error: post: no post with id 'nothing-{tag}'",
    )
    result = await invoke(
        settings, "content", "move", f"nothing-{tag}", "--at", "2026-12-01T09:00:00Z"
    )
    assert result.exit_code == 1 and "does not exist" in result.output

    result = await invoke(
        settings, "content", "start", "--topic", f"Scoping {tag} well", "--id", f"cli-{tag}"
    )
    assert result.exit_code == 0, result.output
    wid = f"content/cli-{tag}"
    RUNS.append(wid)
    await _progress_until(client, wid, _gate("content", "Post v1"))
    result = await invoke(settings, "content", "show", f"cli-{tag}", "--version", "1")
    assert result.exit_code == 0, result.output
    assert f"Post cli-{tag}: drafting; topic: Scoping {tag} well" in result.output
    assert "agent:content" in result.output and f"# Scoping {tag} well" in result.output
    # Cancelled at the gate: the post is withdrawn, nothing is published.
    result = await invoke(settings, "cancel", wid, "--yes")
    assert result.exit_code == 0, result.output
    with pytest.raises(WorkflowFailureError):
        await client.get_workflow_handle(wid).result()
    result = await invoke(settings, "content", "show", f"cli-{tag}", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["post"]["status"] == "cancelled"


@pytest.mark.usefixtures("worker")
async def test_the_planning_schedule_starts_a_run_that_waits_at_gate_topic(
    client: Client, settings: Settings
) -> None:
    from aios.operations.content import PLANNING_SCHEDULE_ID, ensure_content_schedule

    assert await ensure_content_schedule(client, settings) == "created"
    schedule = client.get_schedule_handle(PLANNING_SCHEDULE_ID)
    try:
        assert await ensure_content_schedule(client, settings) == "updated"
        await schedule.trigger()
        async with asyncio.timeout(30):
            while not (actions := (await schedule.describe()).info.recent_actions):
                await asyncio.sleep(0.1)
        started = actions[0].action
        wid = getattr(started, "workflow_id", "")
        assert wid.startswith("content/planned-")
        RUNS.append(wid)
        progress = await _progress_until(client, wid, _gate("topic"))
        assert progress.post_id.startswith("planned-") and progress.stage == "planning"
        await client.get_workflow_handle(wid).cancel()
    finally:
        await schedule.delete()
    bad = settings.model_copy(update={"content_planning_cron": "every monday"})
    with pytest.raises(InvalidInput, match="content_planning_cron: 'every monday' is not"):
        await ensure_content_schedule(client, bad)


@pytest.mark.usefixtures("worker")
async def test_a_cancel_during_the_send_stops_the_newsletter_and_records_what_went_out(
    client: Client,
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    readers: list[str],
) -> None:
    tag = _tag()
    # Enough readers that the send (20 emails a second by default) is still going on.
    confirm(services, readers, *[f"many-{n}-{tag}@example.com" for n in range(60)])
    post_id = f"busy-{tag}"
    started = await start_post(
        client, settings, NewPost(topic=f"Busy lists {tag} and their senders", post_id=post_id)
    )
    RUNS.append(started.workflow_id)
    wid = started.workflow_id
    await _progress_until(client, wid, _gate("content", "Post v1"))
    await _decide(client, wid, decision="approve")
    store = services.store
    async with asyncio.timeout(30):  # the first emails are out
        while store.newsletter.delivery_counts(post_id).get("sent", 0) < 3:
            await asyncio.sleep(0.05)
    handle = client.get_workflow_handle(wid, result_type=ContentResult)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    await save_history(handle, "content_cancelled_during_send")

    events = store.events.for_run(wid)
    [counts] = [e for e in events if e.kind == "post.newsletter_counts"]
    mine = sum(len(smtp.to(r)) for r in readers)
    # What went out is what the engine reported (it stops between two messages of a batch).
    assert counts.payload["cancelled"] is True
    assert 3 <= counts.payload["sent"] <= 60 and mine == counts.payload["sent"]
    assert [e.kind for e in events][-1] == "content.cancelled"
    post = store.posts.get(post_id)
    assert post is not None and post.status == "published"  # the page was already up
    assert (_site(settings) / "posts" / f"{post_id}.html").exists()
