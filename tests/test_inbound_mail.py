"""Inbound email: a real Dovecot mailbox, the poller, the per-message runs, the gates.

The emails are put into the mailbox with IMAP APPEND, as a mail server would deliver them;
the proposal and gate emails they answer are the real ones the SMTP server received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage, Message
from email.utils import formatdate
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.worker import Worker

from aios import operations
from aios.agents.reply import ReplyAgent, ReplyReading, ReplyRequest, strip_quoted
from aios.config import Settings
from aios.connectors.imap import message_key, parse_email, plus_tokens
from aios.kernel.inbound import (
    gate_reply_secret,
    operator_command,
    reply_token,
    secret_matches,
    split_token,
)
from aios.operations.control import change_switch
from aios.operations.mail import MAIL_SCHEDULE_ID, ensure_mail_schedule, poll_mail
from aios.workers.main import build_worker
from aios.workers.services import Services, pause_gate
from aios.workflows.billing import BillingResult
from aios.workflows.inbound_mail import InboundMailResult, _edited_reading, inbound_workflow_id
from tests import dovecot_server
from tests.conftest import RecordingSmtp, subprocess_env
from tests.helpers import RUNS, notice_lost_worker_soon, wait_for_gate
from tests.money_helpers import (
    body_text,
    ends_cancelled,
    fast,
    known_client,
    mails_until,
    progress_until,
    propose,
    waiting_for,
)

HERE = Path(__file__).parent
WORKSHOP = "A strategy workshop for the leadership team."  # USD 2,200 list: auto-approved
WEBSITE = "A new website for our bakery chain, with online ordering."  # USD 5,600: a gate
INBOX = "aios@inbox.test"

# --- pure parts: parsing, tokens, commands, the template reading ---------------------------------


def test_an_email_is_parsed_with_its_answers_tokens_and_attachments_within_the_limit() -> None:
    msg = EmailMessage()
    msg["From"] = "Pat Client <Pat@Client.example>"
    msg["To"] = "aios+abc123@inbox.test"
    msg["Subject"] = "Re:   Proposal   p-1"
    msg["Message-ID"] = "<reply-1@client.example>"
    msg["In-Reply-To"] = "<abc123@aios>"
    msg["References"] = "<older@aios> <abc123@aios>"
    msg.set_content("We accept.\n\nOn Mon, Sam wrote:\n> Please find our proposal attached.")
    msg.add_attachment(b"x" * 10, maintype="application", subtype="pdf", filename="small.pdf")
    msg.add_attachment(b"y" * 100, maintype="application", subtype="pdf", filename="big.pdf")
    email = parse_email(msg.as_bytes(), max_attachment_bytes=50)
    assert (email.sender, email.sender_name) == ("pat@client.example", "Pat Client")
    assert email.subject == "Re: Proposal p-1"
    assert email.answers == ["<abc123@aios>", "<older@aios>"]
    assert email.key == message_key("<reply-1@client.example>")
    assert [(a.filename, a.size, a.content is not None) for a in email.attachments] == [
        ("small.pdf", 10, True),
        ("big.pdf", 100, False),  # listed, not kept
    ]
    assert strip_quoted(email.text) == "We accept."
    assert plus_tokens(email.recipients, INBOX) == ["abc123"]
    assert plus_tokens(["aios+abc@other.test", "bob+abc@inbox.test"], INBOX) == []


def test_an_email_without_a_sender_is_refused_one_without_message_id_gets_a_stable_id() -> None:
    with pytest.raises(Exception, match="From has no address"):
        parse_email(b"Subject: hi\r\n\r\nbody\r\n", max_attachment_bytes=10)
    raw = b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n"
    first = parse_email(raw, max_attachment_bytes=10)
    assert first.message_id == parse_email(raw, max_attachment_bytes=10).message_id


def test_a_gate_reply_needs_the_gates_own_secret() -> None:
    key = b"k" * 32
    secret = gate_reply_secret(key, "proposal/p-1", "run-1", "gate/proposal")
    assert secret != gate_reply_secret(key, "proposal/p-1", "run-1", "gate/budget")
    assert secret != gate_reply_secret(b"other-key", "proposal/p-1", "run-1", "gate/proposal")
    token = reply_token("<abc@aios>", secret)
    assert split_token(token) == ("<abc@aios>", secret)
    assert secret_matches(secret, [token], "approve")
    assert secret_matches(secret, [], f"approve\n> reply token {secret}")
    assert not secret_matches(secret, ["abc"], "approve")
    assert not secret_matches(secret, [reply_token("<abc@aios>", "0" * len(secret))], "approve")
    assert operator_command("Approve\n\n> quoted") is not None
    rejected = operator_command("reject: too expensive for now")
    assert rejected is not None
    assert (rejected.decision, rejected.comment) == ("reject", "too expensive for now")
    assert operator_command("Sounds fine, approve it") is None


@pytest.mark.parametrize(
    ("text", "intent", "total", "confident"),
    [
        ("We accept.\n\nOn Mon, Sam wrote:\n> do you accept?", "accept", None, True),
        ("Go ahead, sounds good.", "accept", None, True),
        ("Sorry, we cannot accept this.", "decline", None, True),
        ("Could you do 1,800 instead?", "counter", "1800", True),
        ("When could you start?", "question", None, True),
        ("We accept, but could you do 2,000?", "counter", "2000", False),
        ("Hello there", "question", None, False),
    ],
)
def test_the_template_reads_a_reply(
    text: str, intent: str, total: str | None, confident: bool
) -> None:
    result = ReplyAgent().run(
        ReplyRequest(proposal_id="p-1", version=1, total="USD 2,200.00", text=text)
    )
    assert result.output.intent == intent
    assert (str(result.output.proposed_total) if result.output.proposed_total else None) == total
    assert (result.confidence >= 0.8) is confident


def test_the_operators_edit_of_a_reading_is_checked_field_by_field() -> None:
    reading = ReplyReading(intent="accept", note="ok")
    assert _edited_reading(reading, {"response": "maybe"})[1] == (
        "edits.response: must be accept, decline or counter"
    )
    assert _edited_reading(reading, {"response": "counter", "total": "lots"})[1] == (
        "edits.total: 'lots' is not an amount"
    )
    problem = _edited_reading(reading, {"response": "counter", "total": "1900.123"})[1]
    assert problem is not None
    assert problem.startswith("edits.total: ")
    assert _edited_reading(reading, {"total": "5"})[1] == "edits.total: only with response counter"
    edited, problem = _edited_reading(reading, {"response": "counter", "total": "1,900"})
    assert problem is None
    assert (edited.intent, str(edited.proposed_total), edited.note) == ("counter", "1900", "ok")


def test_an_incomplete_mailbox_setting_is_refused_and_mail_poll_without_one_exits_non_zero(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValidationError, match="imap_host, imap_username and imap_password"):
        Settings(imap_host="imap.example.com", _env_file=None)
    with pytest.raises(ValidationError, match="imap_poll_every must be at least one second"):
        Settings(imap_poll_every=0, _env_file=None)
    with pytest.raises(ValidationError, match="imap_address"):
        Settings(imap_address="not-an-address", _env_file=None)
    # A gate's Reply-To adds 50 octets to the mailbox name; a local part holds at most 64.
    with pytest.raises(ValidationError, match="use a name of at most 14"):
        Settings(imap_address="inbound-replies@mail.example.com", _env_file=None)
    assert Settings(imap_address="replies-aios@mail.example.com", _env_file=None).imap_address
    from typer.testing import CliRunner

    from aios.cli.app import app

    env = {"AIOS_STATE_DIR": str(tmp_path), "AIOS_IMAP_HOST": ""}
    result = CliRunner().invoke(app, ["mail", "poll"], env=env)
    assert result.exit_code == 1
    assert "AIOS_IMAP_HOST" in result.output


# --- a real mailbox ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot() -> Iterator[dovecot_server.Dovecot]:
    reason = dovecot_server.available()
    if reason:
        pytest.skip(reason)
    server = dovecot_server.Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def mail_settings(settings: Settings, dovecot: dovecot_server.Dovecot) -> Settings:
    return fast(
        settings,
        imap_host="127.0.0.1",
        imap_port=dovecot.port,
        imap_security="none",
        imap_username=dovecot.user,
        imap_password=dovecot.password,
        imap_address=INBOX,
    )


@pytest.fixture
async def mail_worker(
    client: Client, mail_settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    mail_services = dataclasses.replace(services, settings=mail_settings)
    activities = mail_services.activities()
    async with build_worker(client, mail_settings.task_queue, activities, executor) as w:
        yield w


def reply_to(
    original: Message, sender: str, body: str, *, to: str | None = None, headers: bool = True
) -> bytes:
    def header(name: str) -> str:  # unfolded
        return " ".join(str(original[name] or "").split())

    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to or header("Reply-To") or header("From")
    msg["Subject"] = f"Re: {header('Subject')}"
    msg["Date"] = formatdate()
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@client.example>"
    if headers:
        msg["In-Reply-To"] = str(original["Message-ID"])
        msg["References"] = str(original["Message-ID"])
    msg.set_content(body)
    return msg.as_bytes()


def attach(raw: bytes, filename: str, content: bytes) -> bytes:
    from email import message_from_bytes, policy

    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    msg.add_attachment(content, maintype="application", subtype="pdf", filename=filename)
    return msg.as_bytes()


def key_of(raw: bytes) -> str:
    return message_key(parse_email(raw, max_attachment_bytes=0).message_id)


def signals(history: WorkflowHistory, name: str) -> int:
    return len(
        [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and e.workflow_execution_signaled_event_attributes.signal_name == name
        ]
    )


async def handled(client: Client, raw: bytes, timeout: float = 60) -> InboundMailResult:
    wid = inbound_workflow_id(key_of(raw))
    RUNS.append(wid)
    async with asyncio.timeout(timeout):
        while True:
            try:
                handle: WorkflowHandle[object, InboundMailResult] = client.get_workflow_handle(
                    wid, result_type=InboundMailResult
                )
                return await handle.result()
            except Exception:  # not started yet
                await asyncio.sleep(0.2)


async def test_a_client_email_we_accept_ends_the_proposal_accepted_and_starts_billing(
    client: Client,
    mail_settings: Settings,
    services: Services,
    mail_worker: Worker,
    smtp: RecordingSmtp,
    dovecot: dovecot_server.Dovecot,
) -> None:
    store = services.store
    _, key, address = known_client(store, segment="consulting")
    handle = await propose(client, mail_settings, store, key, WORKSHOP)
    await progress_until(client, handle.id, waiting_for("client_response"))
    (proposal_email,) = await mails_until(smtp, address, 1)
    assert str(proposal_email["Reply-To"]).startswith("aios+")

    # The client answers, and their mail system delivers the answer twice.
    answer = reply_to(proposal_email, address, "We accept. Looking forward to it!")
    dovecot.deliver(answer)
    dovecot.deliver(answer)
    # Nobody types a command: the schedule's poll picks the emails up.
    assert await ensure_mail_schedule(client, mail_settings) in ("created", "updated")
    schedule = client.get_schedule_handle(MAIL_SCHEDULE_ID)
    try:
        await schedule.trigger()
        result = await asyncio.wait_for(handle.result(), 60)
    finally:
        await schedule.delete()
    assert result.status == "accepted"
    assert result.reason == "We accept."
    assert (await handled(client, answer)).outcome == "signalled"
    assert signals(await handle.fetch_history(), "client_response") == 1
    assert dovecot.unseen() == 0

    # The same email once more, after its run ended: kept as handled, nothing signalled.
    dovecot.deliver(answer)
    polled = await poll_mail(client, mail_settings)
    assert (polled.fetched, polled.started, polled.marked_seen) == (1, [], 1)
    assert signals(await handle.fetch_history(), "client_response") == 1

    assert result.billing_workflow_id is not None
    billing = client.get_workflow_handle(result.billing_workflow_id, result_type=BillingResult)
    RUNS.append(billing.id)
    assert (await billing.describe()).status is not None
    events = [e.kind for e in store.events.for_run(handle.id)]
    assert events.count("proposal.client_responded") == 1
    await billing.cancel()
    await ends_cancelled(billing)


async def test_an_unsure_reading_waits_at_a_gate_and_an_edit_sends_the_edited_reading(
    client: Client,
    mail_settings: Settings,
    services: Services,
    mail_worker: Worker,
    smtp: RecordingSmtp,
    dovecot: dovecot_server.Dovecot,
) -> None:
    store = services.store
    _, key, address = known_client(store, segment="consulting")
    handle = await propose(client, mail_settings, store, key, WORKSHOP)
    await progress_until(client, handle.id, waiting_for("client_response"))
    (proposal_email,) = await mails_until(smtp, address, 1)
    answer = reply_to(
        proposal_email, address, "We accept in principle, but could you do 2,000 instead?"
    )
    dovecot.deliver(answer)
    await poll_mail(client, mail_settings)
    wid = inbound_workflow_id(key_of(answer))
    gate = await wait_for_gate(client, wid)
    assert gate.gate == "reply"
    assert "counter at 2000" in gate.title
    assert "client text, quoted" in gate.summary
    # The run says what it did, and the gate is in the operator's inbox like any other.
    progress = await operations.run_progress(client, wid)
    assert progress.steps_done[:2] == ["match:proposal_reply", "read:counter"]
    assert [i.workflow_id for i in await operations.inbox(client) if i.workflow_id == wid] == [wid]
    # Nothing reached the proposal yet.
    assert signals(await handle.fetch_history(), "client_response") == 0
    from aios.workflows.gates import GateDecision

    await operations.decide(
        client,
        wid,
        GateDecision(decision="edit", approver="pat", edits={"total": "1900"}),
    )
    assert (await handled(client, answer)).outcome == "signalled"
    progress = await progress_until(client, handle.id, lambda p: p.version == 2)
    assert progress.total == "USD 1,900.00"
    await handle.cancel()
    await ends_cancelled(handle)


async def test_a_forged_operator_reply_decides_nothing_and_the_real_one_decides(
    client: Client,
    mail_settings: Settings,
    services: Services,
    mail_worker: Worker,
    smtp: RecordingSmtp,
    dovecot: dovecot_server.Dovecot,
) -> None:
    store = services.store
    _, key, _ = known_client(store, segment="web")
    handle = await propose(client, mail_settings, store, key, WEBSITE)
    await wait_for_gate(client, handle.id)
    operator = mail_settings.operator_email
    async with asyncio.timeout(30):
        while not (mine := [m for m in smtp.to(operator) if handle.id in body_text(m)]):
            await asyncio.sleep(0.1)
    gate_email = mine[0]
    [token] = [
        line.split()[-1] for line in body_text(gate_email).splitlines() if "reply token" in line
    ]
    plus = " ".join(str(gate_email["Reply-To"]).split())
    assert plus.startswith("aios+")
    # Someone else answers "approve" to the gate email, with its whole text (token and all).
    forged = reply_to(gate_email, "mallory@evil.example", "approve\n\n" + body_text(gate_email))
    # The operator's address, but neither the plus-address nor the token line.
    tokenless = reply_to(gate_email, operator, "approve", to=INBOX)
    # An email that answers nothing AiOs sent, with a brief attached.
    stray = reply_to(gate_email, "someone@else.example", "Hello!", to=INBOX, headers=False)
    stray = attach(stray, "brief.pdf", b"%PDF-1.4 brief")
    for raw in (forged, tokenless, stray):
        dovecot.deliver(raw)
    await poll_mail(client, mail_settings)
    outcomes = [(await handled(client, raw)).outcome for raw in (forged, tokenless, stray)]
    assert outcomes == ["suspicious", "suspicious", "unmatched"]
    for raw, kind in ((forged, "suspicious_email"), (tokenless, "suspicious_email")):
        notice = store.notices.get(
            f"email/{message_key(parse_email(raw, max_attachment_bytes=0).message_id)}"
        )
        assert notice is not None
        assert (notice.kind, notice.suspicious) == (kind, True)
        assert token not in notice.summary  # the gate's secret is not repeated anywhere
    kept = store.mail.get(key_of(stray))
    assert kept is not None
    assert kept.attachments == [
        {"filename": "brief.pdf", "content_type": "application/pdf", "size": 14, "kept": True}
    ]
    assert store.mail.attachment(key_of(stray), 0) == b"%PDF-1.4 brief"
    # The gate still waits: nothing was decided.
    assert (await wait_for_gate(client, handle.id)).gate == "proposal"
    assert signals(await handle.fetch_history(), "decide") == 0

    # The operator's own reply, to the plus-address that carries the gate's token.
    real = reply_to(gate_email, operator, "reject: too big for this client", to=plus)
    dovecot.deliver(real)
    await poll_mail(client, mail_settings)
    assert (await handled(client, real)).outcome == "decided"
    result = await asyncio.wait_for(handle.result(), 60)
    assert (result.status, result.reason) == ("rejected", "too big for this client")


async def test_a_worker_killed_while_handling_an_email_gives_exactly_one_signal(
    client: Client,
    mail_settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: RecordingSmtp,
    dovecot: dovecot_server.Dovecot,
    tmp_path: Path,
) -> None:
    s = mail_settings
    env = subprocess_env(
        s,
        AIOS_QDRANT_PATH=str(tmp_path / "qdrant"),
        AIOS_IMAP_HOST="127.0.0.1",
        AIOS_IMAP_PORT=str(dovecot.port),
        AIOS_IMAP_SECURITY="none",
        AIOS_IMAP_USERNAME=dovecot.user,
        AIOS_IMAP_PASSWORD=dovecot.password,
        AIOS_IMAP_ADDRESS=INBOX,
        # Dies right after the run recorded the email as handled: the signal is out.
        AIOS_CRASH_ACTIVITY="inbound_handled",
    )
    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "crash_worker.py"),
        env=env,
        cwd=HERE.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    store = services.store
    _, key, address = known_client(store, segment="consulting")
    handle = await propose(client, s, store, key, WORKSHOP)
    await progress_until(client, handle.id, waiting_for("client_response"), timeout=60)
    (proposal_email,) = await mails_until(smtp, address, 1)
    answer = reply_to(proposal_email, address, "We accept.")
    dovecot.deliver(answer)
    # The poll runs on the doomed worker too; it may finish before or after the kill.
    poll = asyncio.create_task(poll_mail(client, s))
    assert await asyncio.wait_for(crashing.wait(), timeout=60) == -signal.SIGKILL
    await notice_lost_worker_soon(client, inbound_workflow_id(key_of(answer)), "inbound_handled")

    # A fresh worker takes the run over once the killed attempt times out.
    mail_services = dataclasses.replace(services, settings=s)
    async with build_worker(client, s.task_queue, mail_services.activities(), executor):
        await asyncio.wait_for(poll, 60)
        assert (await handled(client, answer, timeout=90)).outcome == "signalled"
        result = await asyncio.wait_for(handle.result(), 60)
        assert result.billing_workflow_id is not None
        billing = client.get_workflow_handle(result.billing_workflow_id, result_type=BillingResult)
        RUNS.append(billing.id)
        await billing.cancel()
        await ends_cancelled(billing)
    assert result.status == "accepted"
    assert signals(await handle.fetch_history(), "client_response") == 1
    inbound = await client.get_workflow_handle(inbound_workflow_id(key_of(answer))).fetch_history()
    initiated = EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    assert len([e for e in inbound.events if e.event_type == initiated]) == 1


async def test_a_question_waits_with_a_drafted_answer_that_goes_out_when_approved(
    client: Client,
    mail_settings: Settings,
    services: Services,
    mail_worker: Worker,
    smtp: RecordingSmtp,
    dovecot: dovecot_server.Dovecot,
) -> None:
    store = services.store
    _, key, address = known_client(store, segment="consulting")
    handle = await propose(client, mail_settings, store, key, WORKSHOP)
    await progress_until(client, handle.id, waiting_for("client_response"))
    (proposal_email,) = await mails_until(smtp, address, 1)
    question = reply_to(proposal_email, address, "When could you start the workshop?")
    dovecot.deliver(question)
    await poll_mail(client, mail_settings)
    wid = inbound_workflow_id(key_of(question))
    gate = await wait_for_gate(client, wid)
    assert gate.editable_fields == ["answer"]
    assert "Drafted answer:" in gate.summary
    from aios.workflows.gates import GateDecision

    await operations.decide(
        client,
        wid,
        GateDecision(decision="edit", approver="pat", edits={"answer": "We can start Monday."}),
    )
    assert (await handled(client, question)).outcome == "answered"
    [_, answer] = await mails_until(smtp, address, 2)
    assert " ".join(str(answer["In-Reply-To"]).split()) == str(
        parse_email(question, max_attachment_bytes=0).message_id
    )
    assert body_text(answer).strip() == "We can start Monday."
    # A question is not an answer: the proposal still waits for one.
    assert signals(await handle.fetch_history(), "client_response") == 0
    await handle.cancel()
    await ends_cancelled(handle)


async def test_a_paused_mailbox_is_not_read_and_the_first_poll_after_the_resume_reads_it(
    client: Client,
    mail_settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    dovecot: dovecot_server.Dovecot,
) -> None:
    """`aios pause connector imap` (or `process mail-poll`, or `all`): a poll reads nothing and
    leaves the mailbox as it is; the emails wait there, unseen, for the first poll after."""
    store = services.store
    # This worker reads the switches at every check: the pause just written is certainly seen.
    gate = pause_gate(mail_settings.model_copy(update={"switch_cache_seconds": 0.01}), store)
    own = dataclasses.replace(services, settings=mail_settings, pause=gate)
    msg = EmailMessage()
    msg["From"] = "someone@else.example"
    msg["To"] = INBOX
    msg["Subject"] = "Hello while paused"
    msg["Date"] = formatdate()
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@else.example>"
    msg.set_content("Just saying hello.")
    raw = msg.as_bytes()
    dovecot.deliver(raw)
    async with build_worker(client, mail_settings.task_queue, own.activities(), executor):
        for scope, name in (("connector", "imap"), ("process", "mail-poll")):
            change_switch(store, pause=True, scope=scope, name=name, by="pat", reason="sorting")
            try:
                unseen = dovecot.unseen()
                result = await poll_mail(client, mail_settings)
                assert result.skipped == f"paused: {scope}:{name}"
                assert (result.fetched, result.started, result.marked_seen) == (0, [], 0)
                assert dovecot.unseen() == unseen >= 1  # nothing read, nothing marked
            finally:
                change_switch(store, pause=False, scope=scope, name=name, by="pat")
        result = await poll_mail(client, mail_settings)
        assert result.skipped is None
        assert inbound_workflow_id(key_of(raw)) in result.started
        assert (await handled(client, raw)).outcome == "unmatched"
