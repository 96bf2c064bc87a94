"""Exactly one email per step, even when the worker dies while the SMTP server has the message.

The outbox commits an email as sent just before the terminating dot of DATA (see
``aios.connectors.email``): killed before that commit, the server never got the dot and drops
the message; killed after it, the row is done and the retry sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import signal
import socketserver
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from temporalio.client import Client

from aios import operations
from aios.config import Settings
from aios.connectors.email import OPERATIONS as EMAIL
from aios.connectors.email import PROVISIONAL, OutgoingEmail, SmtpConfig, SmtpEmailConnector
from aios.connectors.runtime import ConnectorRuntime
from aios.errors import EffectCancelled, PermanentConnectorError, TransientConnectorError
from aios.kernel.events import EventDraft
from aios.kernel.store import KernelStore, OutboxResult
from aios.kernel.stores.outbox import CommitPoint
from aios.workflows.gates import GateDecision
from tests.conftest import RecordingSmtp, free_port, subprocess_env, unique
from tests.helpers import notice_lost_worker_soon, start_at_gate

HERE = Path(__file__).parent


def connector(port: int) -> SmtpEmailConnector:
    return SmtpEmailConnector(
        SmtpConfig(host="127.0.0.1", port=port, sender="AiOs <aios@aios.test>", timeout_seconds=10)
    )


def outgoing(to: str, key: str, body: str = "Hello.\n") -> OutgoingEmail:
    return OutgoingEmail(to=to, subject="Welcome", body=body, idempotency_key=key)


def send_through_outbox(
    runtime: ConnectorRuntime,
    smtp: SmtpEmailConnector,
    message: OutgoingEmail,
    hook: Any = None,
    event: EventDraft | None = None,
) -> tuple[OutboxResult, bool]:
    """The path every email takes: runtime, outbox, connector; ``hook`` wraps the commit."""

    def send(dry_run: bool, commit: CommitPoint | None) -> OutboxResult:
        assert commit is not None
        return dict(smtp.send(message, dry_run=dry_run, commit=hook(commit) if hook else commit))

    return runtime.committing_effect(
        smtp.name, EMAIL["send"], message.idempotency_key, send, event=event
    )


class ScriptedSmtp:
    """An aiosmtpd server that answers the end of DATA with ``reply`` and keeps what it took.

    With ``hold`` set, the first message to that address is kept (the server has the whole
    message, dot included) while the server holds back its reply until ``release`` is set.
    """

    def __init__(self, hold: str | None = None) -> None:
        self.reply = "250 OK"
        self.hold = hold
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.messages: list[tuple[list[str], Message]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.reply.startswith("250"):
            return self.reply
        with self._lock:
            self.messages.append(
                (list(envelope.rcpt_tos), email.message_from_bytes(envelope.content))
            )
        if self.hold is not None and self.hold in envelope.rcpt_tos and not self.arrived.is_set():
            self.arrived.set()
            await asyncio.to_thread(self.release.wait, 180)
        return self.reply

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [m for rcpt, m in self.messages if address in rcpt]

    @property
    def port(self) -> int:
        return int(self.controller.port)


@pytest.fixture
def scripted() -> Iterator[ScriptedSmtp]:
    server = ScriptedSmtp()
    server.controller.start()
    yield server
    server.release.set()
    server.controller.stop()


class LineRecorder(socketserver.StreamRequestHandler):
    """A minimal SMTP server that records every line it reads, to see what came when."""

    lines: list[bytes]
    changed: threading.Condition

    def handle(self) -> None:
        self.wfile.write(b"220 recorder\r\n")
        in_data = False
        for raw in self.rfile:
            line = raw.rstrip(b"\r\n")
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
            if in_data:
                if line == b".":
                    in_data = False
                    self.wfile.write(b"250 taken\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                in_data = True
                self.wfile.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


# --- the outbox's commit point ---------------------------------------------------------------


def test_after_the_commit_point_a_concurrent_attempt_sees_done_and_does_not_run(
    store: KernelStore,
) -> None:
    key = unique("outbox")
    committed, finish = threading.Event(), threading.Event()
    runs: list[str] = []

    def effect(commit: CommitPoint) -> OutboxResult:
        runs.append("first")
        commit({"state": "provisional"})
        committed.set()
        finish.wait(30)
        return {"state": "final"}

    first: list[tuple[OutboxResult, bool]] = []
    thread = threading.Thread(
        target=lambda: first.append(
            store.outbox.run_once(key, connector="email", operation="send", effect=effect)
        )
    )
    thread.start()
    assert committed.wait(30)

    def second(commit: CommitPoint) -> OutboxResult:
        runs.append("second")
        return {"state": "second"}

    # While the first attempt is between its commit and its last step, a second one returns
    # the provisional result without running (before the commit it would wait on the lock).
    assert store.outbox.run_once(key, connector="email", operation="send", effect=second) == (
        {"state": "provisional"},
        False,
    )
    finish.set()
    thread.join(30)
    assert first == [({"state": "final"}, True)]
    assert runs == ["first"]
    entry = store.outbox.entry(key)
    assert entry is not None
    assert (entry["status"], entry["result"]) == ("done", {"state": "final"})


def test_an_error_after_the_commit_point_keeps_the_effect_done(store: KernelStore) -> None:
    key = unique("outbox")

    def effect(commit: CommitPoint) -> OutboxResult:
        commit({"state": "provisional"})
        raise TimeoutError("no reply after the last step")

    with pytest.raises(TimeoutError):
        store.outbox.run_once(key, connector="email", operation="send", effect=effect)
    entry = store.outbox.entry(key)
    assert entry is not None
    assert (entry["status"], entry["result"]) == ("done", {"state": "provisional"})
    assert "no reply after the last step" in entry["last_error"]
    again = store.outbox.run_once(
        key, connector="email", operation="send", effect=lambda commit: {"state": "again"}
    )
    assert again == ({"state": "provisional"}, False)


KILLED_AT_COMMIT = """
import os, signal, sys
from aios.kernel.store import KernelStore
store = KernelStore(sys.argv[1])
def effect(commit):
    if sys.argv[3] == "after":
        commit({"state": "provisional"})  # COMMIT sent, its answer not read
    os.kill(os.getpid(), signal.SIGKILL)
store.outbox.run_once(sys.argv[2], connector="email", operation="send", effect=effect)
"""


@pytest.mark.parametrize(("when", "status"), [("before", "pending"), ("after", "done")])
def test_a_worker_killed_right_after_sending_commit_still_leaves_the_row_done(
    store: KernelStore, database_url: str, when: str, status: str
) -> None:
    key = unique("outbox")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_AT_COMMIT, database_url, key, when],
        cwd=HERE.parent,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    entry = store.outbox.entry(key)
    assert entry is not None
    assert entry["status"] == status  # PostgreSQL committed what it had received


# --- the email connector at the commit point -------------------------------------------------


def test_the_commit_comes_after_the_whole_body_and_before_the_final_dot(
    store: KernelStore,
) -> None:
    lines: list[bytes] = []
    changed = threading.Condition()
    handler = type("Recorder", (LineRecorder,), {"lines": lines, "changed": changed})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        smtp = connector(server.server_address[1])
        key = unique("welcome")
        message = outgoing("ada@client.example", key, body="First line.\n.hidden by a dot\nEnd.\n")
        seen: dict[str, Any] = {}

        def spy(commit: CommitPoint) -> Any:
            class Spy:
                def __call__(self, provisional: dict[str, Any]) -> None:
                    with changed:  # the server has read the body's last line
                        assert changed.wait_for(lambda: b"End." in lines, timeout=10)
                        seen["lines"] = list(lines)
                    seen["before"] = store.outbox.entry(key)
                    commit(provisional)

                def confirm(self) -> None:
                    commit.confirm()
                    seen["after"] = store.outbox.entry(key)  # read on another connection

                def revert(self, reason: str) -> None:
                    commit.revert(reason)

            return Spy()

        result, ran = send_through_outbox(ConnectorRuntime(store), smtp, message, spy)
    finally:
        server.shutdown()
        server.server_close()

    assert ran and "provisional" not in result
    at_commit = seen["lines"]
    assert at_commit[-1] == b"End."
    assert b"..hidden by a dot" in at_commit  # dot-stuffed like smtplib does
    assert b"." not in at_commit  # the terminating dot not yet sent
    assert seen["before"]["status"] == "pending"
    assert seen["after"]["status"] == "done"
    assert seen["after"]["result"]["provisional"] == PROVISIONAL
    assert lines.count(b".") == 1
    entry = store.outbox.entry(key)
    assert entry is not None
    assert entry["status"] == "done" and entry["result"] == result


def test_a_death_before_the_commit_leaves_no_message_and_the_retry_sends_one(
    store: KernelStore, smtp: RecordingSmtp
) -> None:
    address = f"{unique('bob')}@client.example"
    key = unique("welcome")
    runtime = ConnectorRuntime(store)
    email_connector = connector(smtp.port)

    class Died(BaseException):
        """The worker dies before the commit (its socket closes without the dot)."""

    def dies(commit: CommitPoint) -> Any:
        class Dies:
            def __call__(self, provisional: dict[str, Any]) -> None:
                raise Died

            def confirm(self) -> None:
                raise AssertionError("nothing to confirm")

            def revert(self, reason: str) -> None:
                raise AssertionError("nothing to revert")

        return Dies()

    with pytest.raises(Died):
        send_through_outbox(runtime, email_connector, outgoing(address, key), dies)
    entry = store.outbox.entry(key)
    assert entry is not None and entry["status"] == "pending"

    result, ran = send_through_outbox(runtime, email_connector, outgoing(address, key))
    assert ran
    received = smtp.to(address)
    assert len(received) == 1
    assert received[0]["Message-ID"] == result["message_id"]
    entry = store.outbox.entry(key)
    assert entry is not None and (entry["status"], entry["attempts"]) == ("done", 2)


def test_a_rejection_at_the_end_of_data_reverts_the_commit_and_keeps_its_class(
    store: KernelStore, scripted: ScriptedSmtp
) -> None:
    address = f"{unique('cy')}@client.example"
    key = unique("welcome")
    workflow_id = unique("wf")
    event = EventDraft(
        event_key=f"{key}/email.sent",
        workflow_id=workflow_id,
        run_id="run-1",
        process="test",
        kind="email.sent",
    )
    runtime = ConnectorRuntime(store)
    smtp = connector(scripted.port)

    scripted.reply = "550 5.7.1 message refused as spam"
    with pytest.raises(PermanentConnectorError, match="550"):
        send_through_outbox(runtime, smtp, outgoing(address, key), event=event)
    entry = store.outbox.entry(key)
    assert entry is not None
    assert (entry["status"], entry["result"]) == ("pending", None)
    assert "550" in entry["last_error"]

    scripted.reply = "451 4.3.0 try again later"
    with pytest.raises(TransientConnectorError, match="451"):
        send_through_outbox(runtime, smtp, outgoing(address, key), event=event)
    entry = store.outbox.entry(key)
    assert entry is not None and entry["status"] == "pending"

    scripted.reply = "250 OK"
    result, ran = send_through_outbox(runtime, smtp, outgoing(address, key), event=event)
    assert ran and "provisional" not in result
    assert len(scripted.to(address)) == 1
    # Each attempt passed the commit point (sent) and the first two were reverted.
    events = store.events.for_run(workflow_id)
    assert [e.kind for e in events] == ["email.sent", "outbox.reverted"] * 2 + ["email.sent"]
    assert [e.payload["undoes"] for e in events if e.kind == "outbox.reverted"] == [
        f"{key}/email.sent",
        f"{key}/email.sent/attempt-2",
    ]


# --- a real worker SIGKILLed while the server holds its 250 ----------------------------------


@contextlib.asynccontextmanager
async def worker_processes(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[asyncio.subprocess.Process]]]:
    """Start `aios worker` processes for ``settings`` (``await spawn()`` each); on the way out
    each one still running gets SIGTERM and is waited for."""
    env = subprocess_env(settings, AIOS_QDRANT_PATH=str(tmp_path / "qdrant"))
    started: list[asyncio.subprocess.Process] = []

    async def spawn() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aios.cli",
            "worker",
            env=env,
            cwd=HERE.parent,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        started.append(proc)
        return proc

    try:
        yield spawn
    finally:
        for proc in started:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=30)


async def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL a worker process and wait until it is gone."""
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), timeout=30) == -signal.SIGKILL


async def test_worker_killed_after_the_server_has_the_message_sends_it_exactly_once(
    client: Client, settings: Settings, store: KernelStore, tmp_path: Path
) -> None:
    holding = ScriptedSmtp()
    holding.controller.start()
    settings = settings.model_copy(update={"smtp_port": holding.port})
    try:
        async with worker_processes(settings, tmp_path) as spawn:
            first = await spawn()
            handle, _, _, address = await start_at_gate(client, settings, timeout=60)
            holding.hold = address
            decision = GateDecision(decision="approve", approver="pat")
            await operations.decide(client, handle.id, decision)
            # The server has the welcome email, dot and all, and holds its 250: the worker waits.
            assert await asyncio.to_thread(holding.arrived.wait, 90)
            await kill(first)
            holding.release.set()
            await notice_lost_worker_soon(client, handle.id, "send_welcome")
            await spawn()
            result = await asyncio.wait_for(handle.result(), timeout=150)
    finally:
        holding.release.set()
        holding.controller.stop()

    assert result.status == "completed"
    received = holding.to(address)
    assert len(received) == 1
    key = str(make_header(decode_header(str(received[0]["X-Aios-Idempotency-Key"]))))
    entry = store.outbox.entry(key)
    assert entry is not None, key
    # Done from the commit point on; the killed worker never read the reply, and the retry
    # found the row done and sent nothing.
    assert entry["status"] == "done"
    assert entry["result"]["message_id"] == received[0]["Message-ID"]
    assert entry["result"]["provisional"] == PROVISIONAL


class HoldAtRecipient(ScriptedSmtp):
    """Holds its answer to RCPT TO for the ``hold`` address: the sender is mid-send, before
    DATA, so a sender killed then leaves the server without a message."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == self.hold and not self.arrived.is_set():
            self.arrived.set()
            await asyncio.to_thread(self.release.wait, 180)
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_gate_email_whose_worker_died_mid_send_is_cancelled_when_the_gate_is_decided(
    client: Client, settings: Settings, store: KernelStore, tmp_path: Path
) -> None:
    # Temporal does not retry a step whose cancel was requested: without the run cancelling
    # the email's outbox row, the dead attempt's row would stay an effect in doubt for good.
    holding = HoldAtRecipient(hold=settings.operator_email)
    holding.controller.start()
    settings = settings.model_copy(update={"smtp_port": holding.port})
    try:
        async with worker_processes(settings, tmp_path) as spawn:
            first = await spawn()
            handle, _, _, address = await start_at_gate(client, settings, timeout=60)
            # The gate's email to the operator is mid-send (its outbox row started) when the
            # worker dies; the gate is decided while no worker runs.
            assert await asyncio.to_thread(holding.arrived.wait, 90)
            await kill(first)
            holding.release.set()
            decision = GateDecision(decision="approve", approver="pat")
            await operations.decide(client, handle.id, decision)
            await spawn()
            result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        holding.release.set()
        holding.controller.stop()

    assert result.status == "completed"
    assert len(holding.to(address)) == 1  # the welcome, once
    assert holding.to(settings.operator_email) == []  # the dead attempt never sent its dot
    description = await handle.describe()
    key = f"{handle.id}/{description.run_id}/gate/welcome/reminder/0"
    entry = store.outbox.entry(key)
    assert entry is not None, key
    assert entry["status"] == "cancelled"
    assert entry["attempts"] == 1
    assert "no longer waits" in entry["result"]["cancelled"]
    mine = [e for e in store.outbox.in_doubt(older_than_seconds=0) if e["idempotency_key"] == key]
    assert mine == []
    event = store.events.by_key(f"{key}/outbox.cancelled")
    assert event is not None and event.kind == "outbox.cancelled"
    # A late attempt of the same step would run nothing.
    with pytest.raises(EffectCancelled, match="cancelled by its run"):
        store.outbox.run_once(
            key, connector="email", operation="send_gate_reminder", effect=lambda _: {}
        )
