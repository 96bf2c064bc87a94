"""The inbox at scale: the gate projection, reconciled with Temporal, and the operator's email.

Against a real worker, dev server, PostgreSQL and SMTP sink: a gate that opens is a row the
inbox reads in one query (client, amount, expiry), deciding closes it and a second decision is
refused with who decided and when, a terminated run leaves the inbox, a run whose worker is
gone is still listed in full, and the operator gets one email per gate with signed links.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from aios import operations
from aios.activities.models import SendGateReminderInput
from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.events import EventDraft
from aios.kernel.store import KernelStore
from aios.kernel.stores.gates import GateRecord
from aios.operations.messages import Decision
from aios.serve.links import read
from aios.workers.main import build_worker
from aios.workers.services import Services
from tests.conftest import RecordingSmtp, subprocess_env
from tests.helpers import start_at_gate
from tests.money_helpers import fast, known_client, propose

WEBSITE = "A new website for our bakery chain, with online ordering."  # USD 5,600 list


@pytest.fixture(scope="module")
def qsettings(base_settings: Settings) -> Settings:
    """Settings with this module's own task queue, served by one shared worker."""
    return fast(base_settings.model_copy(update={"task_queue": f"inbox-{uuid.uuid4().hex[:10]}"}))


@pytest.fixture(scope="module")
async def shared_worker(
    client: Client, qsettings: Settings, services: Services, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    async with build_worker(client, qsettings.task_queue, services.activities(), executor) as w:
        yield w


async def row_for(
    store: KernelStore, workflow_id: str, status: str = "waiting", timeout: float = 30
) -> GateRecord:
    """The run's latest gate row once it has ``status`` (the gate events write it)."""
    async with asyncio.timeout(timeout):
        while True:
            row = store.gates.get(workflow_id)
            if row is not None and row.status == status:
                return row
            await asyncio.sleep(0.1)


async def gate_mails(
    smtp: RecordingSmtp, address: str, workflow_id: str, count: int = 1, timeout: float = 30
) -> list[Message]:
    def mine() -> list[Message]:
        return [
            m
            for m in smtp.to(address)
            if workflow_id in body(m) and str(m["Subject"]).startswith("Approval waiting")
        ]

    async with asyncio.timeout(timeout):
        while len(mine()) < count:
            await asyncio.sleep(0.1)
    return mine()


def body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    return bytes(payload).decode() if isinstance(payload, bytes) else str(message.get_payload())


async def aios_json(settings: Settings, *args: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        *args,
        "--json",
        env=subprocess_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_a_proposal_gate_is_listed_with_client_amount_and_expiry_then_closed_by_the_decision(
    client: Client, qsettings: Settings, services: Services, shared_worker: Worker
) -> None:
    store = services.store
    _, key, _ = known_client(store)
    # Budget 4,400 against a 5,600 list price: a discount above policy waits at the gate.
    handle = await propose(client, qsettings, store, key, WEBSITE, budget="4400")
    row = await row_for(store, handle.id)
    assert (row.gate, row.gate_key, row.process) == ("proposal", "gate/proposal", "proposal")
    assert (row.client_key, row.entity, row.run_id) == (
        key,
        handle.id.replace("/", ":"),
        handle.run_id,
    )
    assert (row.amount, row.amount_minor, row.currency) == ("USD 4,396.00", 439_600, "USD")
    assert set(row.editable_fields) == {"total", "discount_pct", "terms"}
    assert row.expires_at - row.requested_at == qsettings.gate_policy.expire_after

    [item] = [i for i in await operations.inbox(client, store) if i.workflow_id == handle.id]
    assert (item.source, item.client, item.amount_minor) == ("projection", key, 439_600)
    assert item.gate is not None and item.gate.amount == "USD 4,396.00"
    assert item.expires_at == row.expires_at

    shown = await aios_json(qsettings, "inbox")
    [doc] = [d for d in shown["items"] if d["workflow_id"] == handle.id]
    assert (doc["client"], doc["amount_minor"], doc["currency"]) == (key, 439_600, "USD")
    assert doc["gate"]["amount"] == "USD 4,396.00" and doc["expires_at"].endswith("Z")
    assert doc["gate_key"] == "gate/proposal" and doc["run_id"] == handle.run_id

    reject = Decision(decision="reject", approver="pat", comment="too deep a discount")
    assert await operations.decide(client, handle.id, reject, store) == "proposal"
    done = await row_for(store, handle.id, "decided")
    assert (done.decision, done.approver, done.comment) == ("reject", "pat", "too deep a discount")
    assert done.decided_at is not None
    await handle.result()
    assert handle.id not in [i.workflow_id for i in await operations.inbox(client, store)]

    again = Decision(decision="approve", approver="sam")
    when = f"{done.decided_at:%Y-%m-%d %H:%M} UTC"
    with pytest.raises(InvalidInput, match=f"already decided by pat at {when}"):
        await operations.decide(client, handle.id, again, store)


async def test_a_second_decision_on_a_running_run_is_refused_and_a_terminated_run_leaves(
    client: Client, qsettings: Settings, services: Services, shared_worker: Worker
) -> None:
    store = services.store
    # A run terminated while its gate waits: the inbox closes the row and leaves it out.
    gone, _, _, _ = await start_at_gate(client, qsettings)
    await row_for(store, gone.id)
    await gone.terminate(reason="test: operator ended it")
    listed = [i.workflow_id for i in await operations.inbox(client, store)]
    assert gone.id not in listed
    closed = await row_for(store, gone.id, "closed")
    assert closed.closed_reason == "terminated"
    assert "closed" in closed.answered()

    # Approving an onboarding gate; the run goes on to send the welcome email.
    handle, gate, key, _ = await start_at_gate(client, qsettings)
    row = await row_for(store, handle.id)
    assert (row.client_key, row.gate_key, row.amount) == (key, "gate/welcome", None)
    assert row.title == gate.title and row.editable_fields == gate.editable_fields
    await operations.decide(client, handle.id, Decision(decision="approve", approver="jo"), store)
    done = await row_for(store, handle.id, "decided")
    await handle.result()
    with pytest.raises(InvalidInput, match=r"gate 'welcome' already decided by jo at "):
        await operations.decide(
            client, handle.id, Decision(decision="reject", approver="al"), store
        )
    assert done.answered().startswith("already decided by jo at ")


async def test_a_run_whose_worker_is_gone_is_still_listed_in_full(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: RecordingSmtp,
) -> None:
    store = services.store
    async with build_worker(client, settings.task_queue, services.activities(), executor):
        handle, gate, key, _ = await start_at_gate(client, settings)
        await row_for(store, handle.id)
        [mail] = await gate_mails(smtp, settings.operator_email, handle.id)
    # No worker serves this task queue now: queries would time out, the inbox does not ask.
    try:
        [item] = [i for i in await operations.inbox(client, store) if i.workflow_id == handle.id]
        assert item.source == "projection" and item.note == ""
        assert item.gate is not None and item.gate.title == gate.title
        assert item.gate.summary == gate.summary and item.client == key
        assert item.gate.expires_at == gate.expires_at
        assert item.gate.drafted_by == gate.drafted_by
        assert not [i for i in await operations.inbox(client, store) if i.source == "unanswered"]
    finally:
        await handle.terminate(reason="test: done")
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.TERMINATED
    assert "Approval waiting" in str(mail["Subject"])


async def test_the_gate_email_arrives_once_per_gate_with_signed_links(
    client: Client,
    qsettings: Settings,
    services: Services,
    shared_worker: Worker,
    smtp: RecordingSmtp,
) -> None:
    handle, gate, _, _ = await start_at_gate(client, qsettings)
    [mail] = await gate_mails(smtp, qsettings.operator_email, handle.id)
    text = body(mail)
    assert str(mail["Subject"]) == f"Approval waiting - {gate.title}"
    assert f"aios approve {handle.id}" in text  # the CLI still works from the email
    base = re.escape(qsettings.console_url)
    urls = re.findall(rf"{base}/l/\S+", text)
    assert len(urls) == 3
    claims = [read(url.rsplit("/", 1)[1], qsettings, datetime.now(UTC)) for url in urls]
    assert {c.action for c in claims} == {"open", "approve", "reject"}
    for c in claims:
        assert (c.workflow_id, c.run_id, c.gate_key) == (handle.id, handle.run_id, "gate/welcome")
        assert abs(c.expires_at - gate.expires_at) < timedelta(seconds=1)

    await operations.decide(client, handle.id, Decision(decision="approve", approver="jo"))
    await handle.result()
    # One email for the gate, and the links never reached the run's history.
    assert len(await gate_mails(smtp, qsettings.operator_email, handle.id)) == 1
    history = (await handle.fetch_history()).to_json()
    for url in urls:
        assert url.rsplit("/", 1)[1] not in history


async def test_a_retried_reminder_sends_one_email_and_counts_once(
    settings: Settings, services: Services, smtp: RecordingSmtp
) -> None:
    operator = f"jo-{uuid.uuid4().hex[:8]}@northwind.example"
    s = services.settings.model_copy(update={"operator_email": operator})
    send = next(
        a
        for a in dataclasses.replace(services, settings=s).activities()
        if a.__name__ == "send_gate_reminder"
    )
    env = ActivityEnvironment()
    run = uuid.uuid4().hex
    env.info = dataclasses.replace(env.info, workflow_id=f"test/{run}", workflow_run_id=run)
    now = datetime.now(UTC).replace(microsecond=0)
    services.store.gates.apply(
        EventDraft(
            event_key=f"test/{run}/gate/welcome/gate.requested",
            workflow_id=f"test/{run}",
            run_id=run,
            process="test",
            kind="gate.requested",
            payload={
                "gate": "welcome",
                "gate_key": "gate/welcome",
                "title": "Welcome email for Acme Ltd",
                "requested_at": now.isoformat(),
                "expires_at": (now + timedelta(days=7)).isoformat(),
                "next_reminder_at": (now + timedelta(days=1)).isoformat(),
            },
        )
    )
    reminder = SendGateReminderInput(
        idempotency_key=f"test/{run}/gate/welcome/reminder/1",
        gate="welcome",
        title="Welcome email for Acme Ltd",
        summary="Welcome aboard",
        requested_at=now,
        expires_at=now + timedelta(days=7),
        reminder=1,
        gate_key="gate/welcome",
        next_reminder_at=now + timedelta(days=2),
    )
    first = env.run(send, reminder)
    second = env.run(send, reminder)  # a retry after the worker lost the first result
    assert first.sent_now and not second.sent_now
    [mail] = smtp.to(operator)
    assert str(mail["Subject"]).startswith("Reminder 1: approval waiting")
    assert f"{s.console_url}/l/" in body(mail)
    row = services.store.gates.get(f"test/{run}")
    assert row is not None and row.reminders_sent == 1
    assert row.next_reminder_at == now + timedelta(days=2)


def test_the_projection_lists_the_most_urgent_first(services: Services) -> None:
    store = services.store
    tag = uuid.uuid4().hex[:8]
    base = datetime(2001, 1, 1, tzinfo=UTC)  # earlier than any real gate: these sort first

    def opened(name: str, expires_in: int, amount: str | None) -> None:
        store.gates.apply(
            EventDraft(
                event_key=f"test/{tag}/{name}",
                workflow_id=f"test/{tag}-{name}",
                run_id="r1",
                process="test",
                kind="gate.requested",
                payload={
                    "gate": "invoice",
                    "gate_key": "gate/invoice",
                    "title": name,
                    "amount": amount,
                    "requested_at": base.isoformat(),
                    "expires_at": (base + timedelta(hours=expires_in)).isoformat(),
                },
            )
        )

    opened("later", 2, "USD 9,000.00")
    opened("small", 1, "USD 10.00")
    opened("large", 1, "EUR 5,000.00")
    opened("large", 1, "EUR 1.00")  # a repeat of the same event changes nothing
    opened("none", 1, None)
    mine = [r.title for r in store.gates.waiting() if r.workflow_id.startswith(f"test/{tag}")]
    assert mine == ["large", "small", "none", "later"]
    closed = store.gates.close_runs(
        [(f"test/{tag}-{n}", "r1", "test") for n in ("later", "small", "large", "none")]
    )
    assert closed == 4


async def test_a_run_awaiting_approval_without_a_row_is_asked(
    client: Client, qsettings: Settings, services: Services, shared_worker: Worker
) -> None:
    store = services.store
    handle, gate, key, _ = await start_at_gate(client, qsettings)
    row = await row_for(store, handle.id)
    assert row.run_started_at is not None
    # As for a run that opened its gate before the projection existed.
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM gates WHERE workflow_id = %s", (handle.id,))
    try:
        [item] = [i for i in await operations.inbox(client, store) if i.workflow_id == handle.id]
        assert (item.source, item.run_id, item.client) == ("query", handle.run_id, key)
        assert item.gate is not None and item.gate.title == gate.title
        assert item.started_at is not None
    finally:
        await handle.terminate(reason="test: done")


def test_a_gate_opened_twice_keeps_one_row_each_and_a_missed_gate_is_adopted(
    services: Services,
) -> None:
    store = services.store
    run = uuid.uuid4().hex
    workflow_id = f"test/{run}"
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def event(kind: str, key: str, **payload: object) -> EventDraft:
        return EventDraft(
            event_key=f"{workflow_id}/{run}/{key}/{kind}",
            workflow_id=workflow_id,
            run_id=run,
            process="test",
            kind=kind,
            entity="client:acme-ltd",
            payload={"gate": "budget", "gate_key": key, **payload},
        )

    def times(hours: int) -> dict[str, str]:
        opened = at + timedelta(hours=hours)
        return {
            "requested_at": opened.isoformat(),
            "expires_at": (opened + timedelta(days=1)).isoformat(),
        }

    store.gates.apply(event("gate.requested", "gate/budget", title="first", **times(0)))
    store.gates.apply(
        event(
            "gate.decided",
            "gate/budget",
            decision="approve",
            approver="jo",
            decided_at=at.isoformat(),
        )
    )
    store.gates.apply(event("gate.requested", "gate/budget#2", title="second", **times(1)))
    assert [(g.gate_key, g.status) for g in store.gates.for_run(workflow_id)] == [
        ("gate/budget", "decided"),
        ("gate/budget#2", "waiting"),
    ]
    store.gates.apply(event("gate.expired", "gate/budget#2", expired_at=at.isoformat()))
    assert [g.status for g in store.gates.for_run(workflow_id)] == ["decided", "expired"]

    # A gate whose gate.requested carried no times (older code) has no row until adopted.
    store.gates.apply(event("gate.requested", "gate/budget#3", title="third"))
    assert len(store.gates.for_run(workflow_id)) == 2
    adopted = store.gates.adopt(
        GateRecord(
            workflow_id=workflow_id,
            run_id=run,
            gate_key="",
            gate="budget",
            process="test",
            title="third",
            requested_at=at + timedelta(hours=2),
            expires_at=at + timedelta(days=1),
        )
    )
    assert (adopted.gate_key, adopted.entity, adopted.client_key) == (
        "gate/budget#3",
        "client:acme-ltd",
        "acme-ltd",
    )
    row = store.gates.get(workflow_id, run)
    assert row is not None and (row.gate_key, row.status) == ("gate/budget#3", "waiting")
    store.gates.close_runs([(workflow_id, run, "test")])


async def test_with_the_database_down_the_inbox_asks_the_runs_and_approve_still_decides(
    client: Client, qsettings: Settings, services: Services, shared_worker: Worker
) -> None:
    """PostgreSQL unreachable: `aios inbox` lists the gate from the run itself and `aios
    approve` decides (the run checks the decision), each with one line on stderr saying so."""
    handle, _, _, _ = await start_at_gate(client, qsettings)
    down = qsettings.model_copy(
        update={"database_url": SecretStr("postgresql://aios@127.0.0.1:9/none")}
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "inbox",
        "--json",
        env=subprocess_env(down),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    [doc] = [d for d in json.loads(out)["items"] if d["workflow_id"] == handle.id]
    assert (doc["source"], doc["gate"]["gate"]) == ("query", "welcome")
    assert err.decode().strip().splitlines() == [
        "cannot reach the database (AIOS_DATABASE_URL); start it with `aios dev up` or check "
        "AIOS_DATABASE_URL; asking each run awaiting approval instead"
    ]

    gate = await operations.decide(
        client, handle.id, Decision(decision="approve", approver="pat"), settings=down
    )
    assert gate == "welcome"
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "completed"
