"""Secrets never echo back: a key an outside system repeats is scrubbed at the boundary.

The end-to-end tests run real onboardings (the real dev server, PostgreSQL, the SMTP fixture)
with ``agent_provider="openai"`` and the real ``openai`` client, against a local HTTP endpoint
(``tests/flaky_http.py``) that answers Chat Completions the way a careless proxy would: a 401
whose message repeats the key in full and masked, completions whose content repeats it, and
200s whose body is not JSON or not UTF-8. Afterwards the key must be nowhere: not in workflow
history (payloads decoded), not in any table of the database (events, cost ledger, drafts,
clients, outbox...), not in memory, not in the email sent, not in ``operations.inbox`` or
``aios inbox``, not in the worker's log lines.

The unit tests pin the scrubber's rules (``aios.secrets``) and each boundary on its own: the
provider, the activity error translation, the connector runtime and the log processor.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import openai
import psycopg.sql
import pytest
import structlog
from pydantic import BaseModel, SecretStr
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError

from aios import operations
from aios.activities.errors import translating_errors
from aios.agents.providers import OpenAIChat
from aios.config import Settings
from aios.connectors.contract import CheckResult, Operation
from aios.connectors.runtime import ConnectorRuntime
from aios.errors import (
    ConnectorAuthError,
    ModelRefused,
    TransientConnectorError,
    UnusableReply,
)
from aios.kernel.events import EventDraft
from aios.kernel.store import KernelStore
from aios.logs import configure_logging
from aios.secrets import MARKER, Scrubber, install, installed, secrets_in
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.gates import GateDecision, PendingGate
from tests.conftest import RecordingSmtp, unique_client
from tests.flaky_http import FlakyHttpServer, Reply
from tests.helpers import start, wait_for_gate
from tests.openai_replay import Recording

# A proxy's key: no key-shaped rule knows it, only the settings do.
PROXY_KEY = "aios-proxy-Q7wLk3Zr9Xt2Vb8Nc4MdHf6J"
# An OpenAI-shaped project key: the settings and the key-shaped rule both know it.
OPENAI_KEY = "sk-proj-AiosEcho0Test1Zq7Lw3Xk9Rt2Vb8Nc4Md5Pq"
NOTES = "We need a new website with a webshop before our spring launch, budget around $12k."
FILLER = "Requests through this gateway are logged for audit; check the proxy configuration. "


# --- what the endpoint answers ---------------------------------------------------------------


def masked(key: str) -> str:
    """The key as OpenAI prints it in a 401: a visible head and tail around stars."""
    return f"{key[:8]}{'*' * 24}{key[-4:]}"


def completion(content: str | dict[str, Any], *, model: str = "gpt-4o-mini-2024-07-18") -> Reply:
    """A 200 chat completion (the recorded envelope) whose assistant content is ``content``."""
    body = copy.deepcopy(Recording.load("openai_intake_ok").body)
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    body["choices"][0]["message"]["content"] = text
    body["model"] = model
    return Reply.json(body)


def recorded_content(name: str) -> dict[str, Any]:
    body = Recording.load(name).body
    content: dict[str, Any] = json.loads(body["choices"][0]["message"]["content"])
    return content


def unauthorised(key: str) -> Reply:
    """A 401 like a proxy's: the key in full, masked, and once more across the 300-character
    cut AiOs makes of provider messages (scrubbing must come before cutting)."""
    message = f"Incorrect API key provided: {key} ({masked(key)}). "
    while len(message) < 285:
        message += FILLER
    message = message[:285] + f" {key} was refused"
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": key,
            "code": "invalid_api_key",
        },
        "request": {"headers": {"authorization": f"Bearer {key}"}},
    }
    return Reply.json(body, status=401)


def intake_with(key: str) -> dict[str, Any]:
    content = recorded_content("openai_intake_ok")
    content["output"]["summary"] += f" Their integration key is {key} (or {masked(key)})."
    return content


def welcome_with(key: str) -> dict[str, Any]:
    content = recorded_content("openai_welcome_ok")
    output = content["output"]
    output["subject"] = f"Welcome aboard, your key {key}"
    output["body"] += f"\n\nP.S. We will use the key {key} / {masked(key)} for your shop."
    output["plan"] = [*output["plan"], f"Rotate {key}"]
    return content


NOT_JSON = Reply(
    200,
    headers={"Content-Type": "application/json"},
    body=b"<html><body>502 Bad Gateway</body></html>",
)
NOT_UTF8 = Reply(200, headers={"Content-Type": "application/json"}, body=b"\xff\xfe{\x00\x80}")


def html_with(key: str) -> Reply:
    page = f"<html><body>upstream refused key {key}</body></html>"
    return Reply(200, headers={"Content-Type": "text/html"}, body=page.encode())


# --- where a key could end up ----------------------------------------------------------------


def forms(key: str) -> set[str]:
    """What of ``key`` must never be seen: any 12 characters of it, its masked head and tail."""
    return {key[i : i + 12] for i in range(len(key) - 11)} | {key[:10], key[-6:]}


def leaks(key: str, text: str) -> list[str]:
    return sorted(f for f in forms(key) if f in text)


async def history_text(handle: WorkflowHandle[Any, Any]) -> str:
    """The run's history as JSON, followed by every payload in it decoded."""
    raw = (await handle.fetch_history()).to_json()
    decoded: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) >= 8:
            with contextlib.suppress(ValueError):  # not base64, or not text
                decoded.append(base64.b64decode(value, validate=True).decode("utf-8"))

    walk(json.loads(raw))
    return raw + "\n" + "\n".join(decoded)


def database_text(store: KernelStore) -> str:
    """Every row of every table, as text."""
    parts: list[str] = []
    with store.db.transaction() as conn:
        tables = [
            r["table_name"]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        for table in tables:
            query = psycopg.sql.SQL("SELECT t::text AS row FROM {} t").format(
                psycopg.sql.Identifier(table)
            )
            parts.extend(r["row"] for r in conn.execute(query))
    return "\n".join(parts)


async def inbox_text(client: Client, settings: Settings) -> str:
    """What ``operations.inbox`` returns and what ``aios inbox`` prints."""
    from tests.test_cli import aios

    items = await operations.inbox(client)
    code, out, err = await aios(settings, "inbox")
    assert code == 0, err
    return repr(items) + "\n" + out + "\n" + err


async def assert_nowhere(
    key: str,
    handle: WorkflowHandle[Any, Any],
    services: Services,
    client_key: str,
    logs: io.StringIO,
    *extra: str,
) -> None:
    history = await history_text(handle)
    assert MARKER in history  # the search looks inside payloads, where the scrubbed text is
    assert leaks(key, history) == [], "workflow history"
    assert leaks(key, database_text(services.store)) == [], "the database"
    memories = services.memory.recall("welcome kickoff website", entity=f"client:{client_key}")
    assert leaks(key, repr(memories)) == [], "memory"
    assert logs.getvalue().strip(), "nothing was logged: the capture is not working"
    assert leaks(key, logs.getvalue()) == [], "log lines"
    for i, text in enumerate(extra):
        assert leaks(key, text) == [], f"extra text #{i}"


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def key() -> str:
    return PROXY_KEY


@pytest.fixture
def endpoint() -> Iterator[FlakyHttpServer]:
    nothing = {"error": {"message": "nothing scripted", "type": "invalid_request_error"}}
    with FlakyHttpServer(default=Reply.json(nothing, status=400)) as server:
        yield server


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log line of this process during the test, as ``configure_logging`` writes them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {n: logging.getLogger(n).level for n in ("stripe", "openai", "httpx", "httpcore")}
    flags = (activity.logger.activity_info_on_message, workflow.logger.workflow_info_on_message)
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    mine = root.handlers[0]
    yield stream
    root.removeHandler(mine)
    for handler in handlers:
        if handler not in root.handlers and not type(handler).__module__.startswith("_pytest"):
            root.addHandler(handler)
    root.setLevel(level)
    for name, was in chatty.items():
        logging.getLogger(name).setLevel(was)
    activity.logger.activity_info_on_message, workflow.logger.workflow_info_on_message = flags
    structlog.reset_defaults()


@pytest.fixture
async def openai_worker(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    endpoint: FlakyHttpServer,
    key: str,
    logs: io.StringIO,
) -> AsyncIterator[Settings]:
    """A worker whose agents call ``endpoint`` as OpenAI with ``key``."""
    s = settings.model_copy(
        update={
            "agent_provider": "openai",
            "openai_api_key": SecretStr(key),
            "openai_base_url": endpoint.url + "/v1",
            "model_tiers": {"fast": "gpt-4o-mini", "strong": "gpt-4o"},
        }
    )
    acts = dataclasses.replace(services, settings=s).activities()
    async with build_worker(client, s.task_queue, acts, executor):
        yield s


async def gate_named(client: Client, workflow_id: str, name: str) -> PendingGate:
    while True:
        gate = await wait_for_gate(client, workflow_id)
        if gate.gate == name:
            return gate


def approve() -> GateDecision:
    return GateDecision(decision="approve", approver="tester", comment="ok")


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [PROXY_KEY, OPENAI_KEY], ids=["proxy-key", "openai-key"])
async def test_a_key_echoed_in_a_401_and_in_replies_reaches_no_history_kernel_output_or_log(
    client: Client,
    services: Services,
    smtp: RecordingSmtp,
    endpoint: FlakyHttpServer,
    openai_worker: Settings,
    key: str,
    logs: io.StringIO,
) -> None:
    s = openai_worker
    endpoint.script(completion(intake_with(key)), unauthorised(key))
    name, client_key, email = unique_client()
    handle = await start(client, s, name, client_key, email, notes=NOTES)

    # The 401 holds the welcome step at gate "agent"; its text names the problem, not the key.
    gate = await gate_named(client, handle.id, "agent")
    assert "not authorised (401)" in gate.summary and MARKER in gate.summary
    assert leaks(key, gate.summary) == []
    inbox = await inbox_text(client, s)
    assert handle.id in inbox and leaks(key, inbox) == []

    # The server really was sent the key it echoed.
    sent = endpoint.received
    assert [r.path for r in sent] == ["/v1/chat/completions"] * 2
    assert sent[0].headers["authorization"] == f"Bearer {key}"

    await handle.signal("decide", approve())  # the welcome draft from the template
    await gate_named(client, handle.id, "welcome")
    await handle.signal("decide", approve())
    result = await handle.result()
    assert result.status == "completed"

    calls = services.store.costs.for_workflow(handle.id)
    assert [(c.agent, c.outcome) for c in calls] == [
        ("intake", "accepted"),
        ("welcome", "refused"),
        ("welcome", "template"),
    ]
    assert MARKER in (calls[0].content or "") and MARKER in calls[1].reason
    client_row = services.store.clients.get(client_key)
    assert client_row is not None
    held = [e for e in services.store.events.for_run(handle.id) if e.kind == "agent.held"]
    assert len(held) == 1 and MARKER in held[0].payload["reason"]
    mail = "\n".join(m.as_string() for m in smtp.to(email))
    await assert_nowhere(key, handle, services, client_key, logs, inbox, mail, repr(client_row))


async def test_a_key_a_model_repeats_is_redacted_in_ledger_draft_email_and_never_sent_back(
    client: Client,
    services: Services,
    smtp: RecordingSmtp,
    endpoint: FlakyHttpServer,
    openai_worker: Settings,
    key: str,
    logs: io.StringIO,
) -> None:
    s = openai_worker
    broken = welcome_with(key)
    del broken["output"]["subject"]  # invalid: one repair on the same tier
    endpoint.script(
        completion(recorded_content("openai_intake_ok")),
        completion(broken),
        completion(welcome_with(key)),
    )
    name, client_key, email = unique_client()
    handle = await start(client, s, name, client_key, email, notes=NOTES)
    gate = await gate_named(client, handle.id, "welcome")
    assert gate.summary.startswith("Welcome aboard, your key [redacted]")

    # The repair shows the model its own reply: the scrubbed one, so the key is not sent back.
    repair = endpoint.received[2].json()["messages"]
    assert repair[2]["role"] == "assistant" and MARKER in repair[2]["content"]
    assert leaks(key, json.dumps(repair)) == []

    calls = services.store.costs.for_workflow(handle.id)
    assert [(c.agent, c.outcome) for c in calls] == [
        ("intake", "accepted"),
        ("welcome", "invalid"),
        ("welcome", "accepted"),
    ]
    draft_id = next(
        e.payload["draft_id"]
        for e in services.store.events.for_run(handle.id)
        if e.payload.get("draft_id")
    )
    draft = services.store.drafts.get(draft_id)
    assert draft is not None and MARKER in draft.body and MARKER in draft.subject
    inbox = await inbox_text(client, s)

    await handle.signal("decide", approve())
    assert (await handle.result()).status == "completed"
    [message] = smtp.to(email)
    assert MARKER in message["Subject"]
    await assert_nowhere(
        key, handle, services, client_key, logs, inbox, message.as_string(), repr(draft)
    )


async def test_a_reply_that_is_not_json_or_not_utf8_is_classified_and_waits_at_the_agent_gate(
    client: Client,
    services: Services,
    endpoint: FlakyHttpServer,
    openai_worker: Settings,
    key: str,
    logs: io.StringIO,
) -> None:
    s = openai_worker
    endpoint.script(NOT_JSON, NOT_UTF8, html_with(key), NOT_UTF8)
    name, client_key, email = unique_client()
    handle = await start(client, s, name, client_key, email, notes=NOTES)

    # One try and one repair per tier, then the operator: seconds, not minutes of retries.
    gate = await wait_for_gate(client, handle.id, timeout=30)
    assert gate.gate == "agent"
    assert gate.summary.startswith("no tier gave usable output: openai: unusable reply")
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    calls = services.store.costs.for_workflow(handle.id)
    assert [(c.tier, c.outcome) for c in calls] == [
        ("fast", "invalid"),
        ("fast", "invalid"),
        ("strong", "invalid"),
        ("strong", "invalid"),
    ]
    reasons = [c.reason for c in calls]
    assert "the body is not JSON (Expecting value at character 0; application/json" in reasons[0]
    assert "the body is not UTF-8 (byte 0xff at position 0" in reasons[1]
    assert "not JSON" in reasons[2] and "text/html" in reasons[2]
    assert "not UTF-8" in reasons[3]
    assert [r.json()["model"] for r in endpoint.received] == [
        "gpt-4o-mini",
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4o",
    ]
    held = [e for e in services.store.events.for_run(handle.id) if e.kind == "agent.held"]
    assert len(held) == 1
    assert [a["outcome"] for a in held[0].payload["attempts"]] == ["invalid"] * 4

    # Temporal never retried the activity: nothing failed, every attempt was the first.
    events = (await handle.fetch_history()).events
    assert not any(e.HasField("activity_task_failed_event_attributes") for e in events)
    assert all(
        e.activity_task_started_event_attributes.attempt == 1
        for e in events
        if e.HasField("activity_task_started_event_attributes")
    )

    # Approving goes on with the template intake; the welcome draft comes from the model.
    endpoint.script(completion(recorded_content("openai_welcome_ok")))
    await handle.signal("decide", approve())
    welcome = await gate_named(client, handle.id, "welcome")
    assert welcome.drafted_by is not None and welcome.drafted_by.startswith("gpt-4o-mini")
    inbox = await inbox_text(client, s)
    await handle.cancel()
    await assert_nowhere(key, handle, services, client_key, logs, inbox)


# --- the provider boundary on its own --------------------------------------------------------


def chat(endpoint: FlakyHttpServer, key: str = PROXY_KEY) -> OpenAIChat:
    client = openai.OpenAI(base_url=endpoint.url + "/v1", api_key=key, max_retries=0)
    return OpenAIChat(client, name="openai", scrubber=Scrubber([key]))


def ask(model: OpenAIChat) -> Any:
    return model.complete(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        schema_name="x",
        schema={"type": "object"},
        max_output_tokens=64,
    )


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (NOT_JSON, "the body is not JSON (Expecting value at character 0; application/json, "),
        (NOT_UTF8, "the body is not UTF-8 (byte 0xff at position 0; application/json, 6 bytes)"),
        (html_with(PROXY_KEY), "the body is not JSON (Expecting value at character 0; text/html"),
        (Reply.json([1, 2]), "the body is not a chat completion (body: Input should be"),
        (Reply.json({"object": "x"}), "the body is not a chat completion (choices: Field required"),
        (Reply(200, body=b""), "the body is not JSON (Expecting value at character 0; no content"),
    ],
    ids=["not-json", "not-utf8", "html", "array", "no-choices", "empty"],
)
def test_provider_classifies_an_unreadable_200_as_an_unusable_reply(
    endpoint: FlakyHttpServer, reply: Reply, problem: str
) -> None:
    endpoint.script(reply)
    with pytest.raises(UnusableReply) as info:
        ask(chat(endpoint))
    assert not info.value.retryable and info.value.reason == "unusable_reply"
    assert problem in str(info.value)
    assert leaks(PROXY_KEY, str(info.value)) == []


def test_provider_scrubs_the_401_message_before_cutting_it_and_the_reply_it_returns(
    endpoint: FlakyHttpServer,
) -> None:
    endpoint.script(unauthorised(PROXY_KEY))
    with pytest.raises(ModelRefused) as info:
        ask(chat(endpoint))
    text = str(info.value)
    assert info.value.reason == "auth" and "not authorised (401)" in text
    assert text.count(MARKER) >= 2 and leaks(PROXY_KEY, text) == []

    endpoint.script(completion(welcome_with(PROXY_KEY), model=f"gpt-4o-mini {PROXY_KEY}"))
    reply = ask(chat(endpoint))
    assert MARKER in (reply.content or "") and MARKER in reply.model
    assert leaks(PROXY_KEY, repr(reply)) == []
    json.loads(reply.content or "")  # still the JSON the model sent, with the key replaced


# --- the activity boundary ---------------------------------------------------------------------


class _Broken(Exception):
    pass


def test_activity_errors_are_scrubbed_with_their_cause_chain_and_keep_their_retry_class() -> None:
    install(Scrubber([PROXY_KEY]))

    @translating_errors
    def unclassified() -> None:
        try:
            raise OSError(f"connect failed for {PROXY_KEY}")
        except OSError as exc:
            raise _Broken(f"driver said {PROXY_KEY}") from exc

    @translating_errors
    def classified() -> None:
        raise ConnectorAuthError("crm", f"token {PROXY_KEY} refused")

    with pytest.raises(ApplicationError) as info:
        unclassified()
    error = info.value
    assert error.type == "_Broken" and not error.non_retryable  # retried as before
    assert error.message == f"driver said {MARKER}"
    cause = error.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "OSError"
    assert cause.message == f"connect failed for {MARKER}"
    assert error.__suppress_context__  # the original exceptions are not chained on

    with pytest.raises(ApplicationError) as info:
        classified()
    assert info.value.type == "ConnectorAuthError" and info.value.non_retryable
    assert info.value.message == f"crm: token {MARKER} refused"
    assert info.value.__cause__ is None


# --- the connector boundary --------------------------------------------------------------------

SEND = Operation("send", effect=True, compensation="send")
READ = Operation("read", effect=False)


def test_connector_runtime_scrubs_errors_the_outbox_keeps_and_replies_it_returns(
    services: Services,
) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker", scrubber=Scrubber([PROXY_KEY]))

    def refused(dry_run: bool) -> dict[str, str]:
        raise ConnectorAuthError("crm", f"401: invalid token {PROXY_KEY}")

    key = f"test/{uuid.uuid4().hex}/send"
    with pytest.raises(ConnectorAuthError) as info:
        runtime.effect("crm", SEND, key, refused)
    assert str(info.value) == f"crm: 401: invalid token {MARKER}"
    entry = services.store.outbox.entry(key)
    assert entry is not None and entry["last_error"].endswith(f"invalid token {MARKER}")

    def odd(dry_run: bool) -> dict[str, str]:
        raise OSError(5, f"I/O error talking to {PROXY_KEY}")  # renders from errno/strerror

    key = f"test/{uuid.uuid4().hex}/send"
    with pytest.raises(TransientConnectorError) as transient:
        runtime.effect("crm", SEND, key, odd)
    assert "OSError" in str(transient.value) and leaks(PROXY_KEY, str(transient.value)) == []
    entry = services.store.outbox.entry(key)
    assert entry is not None and leaks(PROXY_KEY, entry["last_error"]) == []

    key = f"test/{uuid.uuid4().hex}/send"
    event = EventDraft(
        event_key=key,
        workflow_id="test/secrets",
        run_id="r1",
        process="test",
        kind="crm.sent",
        payload={"url": f"https://crm.example/hook?token={PROXY_KEY}"},
    )
    result, ran = runtime.effect(
        "crm", SEND, key, lambda dry: {"echo": f"key={PROXY_KEY}"}, event=event
    )
    assert ran and result == {"echo": f"key={MARKER}"}
    entry = services.store.outbox.entry(key)
    assert entry is not None and entry["result"] == {"echo": f"key={MARKER}"}
    recorded = services.store.events.by_key(key)
    assert recorded is not None
    assert recorded.payload == {"url": f"https://crm.example/hook?token={MARKER}"}

    class Reply(BaseModel):
        note: str
        items: list[str]

    read = runtime.call("crm", READ, lambda: Reply(note=PROXY_KEY, items=["ok", PROXY_KEY]))
    assert read == Reply(note=MARKER, items=["ok", MARKER])

    def probe() -> CheckResult:
        raise ValueError(f"bad config {PROXY_KEY}")

    found = runtime.check("crm", probe)
    assert not found.ok and found.detail == f"ValueError: bad config {MARKER}"


# --- logs ----------------------------------------------------------------------------------------


def test_every_log_line_is_scrubbed(logs: io.StringIO) -> None:
    install(Scrubber([PROXY_KEY]))
    structlog.get_logger("aios.test").info(
        f"calling with {PROXY_KEY}",
        target={"url": f"https://u:{PROXY_KEY}@x"},
        raw=Exception(PROXY_KEY),
    )
    try:
        raise RuntimeError(f"provider said {PROXY_KEY}")
    except RuntimeError:
        logging.getLogger("aios.test").exception("failed for %s", PROXY_KEY)
    lines = logs.getvalue().splitlines()
    assert len(lines) == 2
    assert all(leaks(PROXY_KEY, line) == [] for line in lines)
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == f"calling with {MARKER}" and MARKER in first["raw"]
    assert second["event"] == f"failed for {MARKER}"
    assert f"RuntimeError: provider said {MARKER}" in second["exception"]


# --- the scrubber's rules ------------------------------------------------------------------------


def test_a_known_secret_is_redacted_as_is_json_escaped_percent_encoded_and_cut() -> None:
    secret = 'p@ss "w/rd" 9f3Kq2'
    scrub = Scrubber([secret, PROXY_KEY])
    assert scrub.scrub(f"pw={secret}!") == f"pw={MARKER}!"
    assert scrub.scrub(json.dumps({"v": secret})) == json.dumps({"v": MARKER})
    assert scrub.scrub("q=p%40ss%20%22w%2Frd%22%209f3Kq2&x=1") == f"q={MARKER}&x=1"
    # cut by someone's clip, or with its head changed: any 12 characters of it go
    assert scrub.scrub(f"refused: {PROXY_KEY[:20]}...") == f"refused: {MARKER}"
    assert scrub.scrub(f"XXXX{PROXY_KEY[4:]} end") == f"XXXX{MARKER} end"


def test_a_masked_echo_of_a_known_key_is_redacted_whole() -> None:
    scrub = Scrubber([PROXY_KEY])
    for echo in (
        masked(PROXY_KEY),
        f"{PROXY_KEY[:6]}...{PROXY_KEY[-5:]}",
        f"{PROXY_KEY[:5]}\u2026{PROXY_KEY[-4:]}",
        f"****{PROXY_KEY[-4:]}",
        f"{PROXY_KEY[:12]}\u2022\u2022\u2022\u2022",
    ):
        assert scrub.scrub(f"Incorrect API key provided: {echo}. Try again.") == (
            f"Incorrect API key provided: {MARKER}. Try again."
        ), echo
    # a mask next to text that is not the key's head or tail stays
    text = "rated ***** by clients... and so on"
    assert scrub.scrub(text) == text


def test_a_short_secret_does_not_redact_ordinary_words() -> None:
    scrub = Scrubber(["admin", "pa55", "x1", "1234"])
    text = "the admin set pa55 and pa55word; x1 and 1234 and admin@acme.example"
    # "admin" (letters only), "x1" (too short), "1234" (digits only) are not searched by value;
    # "pa55" is, but only as a whole token.
    assert scrub.scrub(text) == (
        f"the admin set {MARKER} and pa55word; x1 and 1234 and admin@acme.example"
    )
    # in a context that gives it away, any secret goes, however short
    assert scrub.scrub("postgresql://aios:x1@db/aios?password=1234") == (
        f"postgresql://aios:{MARKER}@db/aios?password={MARKER}"
    )


def test_the_password_of_a_url_setting_is_the_secret_not_the_url() -> None:
    settings = Settings(
        _env_file=None,
        database_url="postgresql://aios:Tr0ub4dor-and-3@db.internal:5432/aios?sslmode=require",
        caldav_url="https://me:cal-pass-77a9e1@cal.example/dav",
        webhook_url="https://hooks.example/in?token=hook-tok-5e8c1a2b9d",
        webhook_secret=SecretStr("whk-secret-0a9b8c7d6e"),
    )
    scrub = Scrubber.from_settings(settings)
    error = (
        'connection to server at "db.internal" (10.0.0.5), port 5432 failed: password '
        "authentication failed for user aios (dsn postgresql://aios:Tr0ub4dor-and-3@db.internal"
        ":5432/aios); also Tr0ub4dor-and-3, cal-pass-77a9e1, hook-tok-5e8c1a2b9d, "
        "whk-secret-0a9b8c7d6e"
    )
    assert scrub.scrub(error) == (
        'connection to server at "db.internal" (10.0.0.5), port 5432 failed: password '
        f"authentication failed for user aios (dsn postgresql://aios:{MARKER}@db.internal"
        f":5432/aios); also {MARKER}, {MARKER}, {MARKER}, {MARKER}"
    )


def test_bearer_tokens_authorization_headers_and_key_shaped_strings_of_anyone() -> None:
    scrub = Scrubber()  # no known secrets: the key-shaped rules alone
    cases = {
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc": f"Authorization: {MARKER}",
        "{'authorization': 'Basic dXNlcjpwYXNz'}": f"{{'authorization': '{MARKER}'}}",
        "sent Bearer abc123def456ghi to the proxy": f"sent Bearer {MARKER} to the proxy",
        "api-key: 0123456789abcdef": f"api-key: {MARKER}",
        "Incorrect API key provided: sk-proj-****abcd.": f"Incorrect API key provided: {MARKER}.",
        "key sk-abcdefghij0123456789XYZ": f"key {MARKER}",
        "stripe sk_live_51HxYz0123456789 rk_test_abcdef12 whsec_abc123DEF456": (
            f"stripe {MARKER} {MARKER} {MARKER}"
        ),
        "hubspot pat-na1-0f3c9a51-6d2e-4b7a-9c11-abcdef012345": f"hubspot {MARKER}",
        "GET /v1/x?api_key=abc123&page=2": f"GET /v1/x?api_key={MARKER}&page=2",
        '{"client_secret": "s3cr3t-value", "name": "Acme"}': (
            f'{{"client_secret": "{MARKER}", "name": "Acme"}}'
        ),
        "redis://:hunter22@cache:6379/0": f"redis://:{MARKER}@cache:6379/0",
    }
    for text, expected in cases.items():
        assert scrub.scrub(text) == expected, text


def test_a_json_text_stays_json() -> None:
    scrub = Scrubber([PROXY_KEY])
    reply = {
        "password": 'ab"cd\\',
        "note": 'token=abc"def and api_key=x\\"y',
        "headers": {"authorization": 'Bearer a"b123456'},
        "dsn": 'postgresql://u:p"w@h/db',
        "key": f'"{PROXY_KEY}"',
    }
    scrubbed = json.loads(scrub.scrub(json.dumps(reply)))
    assert scrubbed["password"] == MARKER
    assert scrubbed["headers"] == {"authorization": MARKER}
    assert scrubbed["key"] == f'"{MARKER}"'


def test_ordinary_text_is_left_alone() -> None:
    scrub = Scrubber([PROXY_KEY, "Tr0ub4dor-and-3"])
    prose = (
        "Hello Acme Ltd team, the bearer of this note has basic information. The password "
        "field must be set; your token expired... task-12345678901 and scikit's sk-learn API. "
        "Rated ***** by clients. Budget $12k, deadline 2026-05-03, see https://acme.example/a?b=c"
    )
    assert scrub.scrub(prose) == prose


def test_secrets_are_found_in_nested_models_dicts_and_lists() -> None:
    class Inner(BaseModel):
        token: SecretStr
        plain: str = "not-a-secret-value"

    class Outer(BaseModel):
        api_key: SecretStr | None = None
        by_name: dict[str, SecretStr] = {}
        many: list[Inner] = []
        url: str = "https://user:url-pass-42x@example.com/"

    outer = Outer(
        api_key=SecretStr("top-level-key-123"),
        by_name={"a": SecretStr("dict-secret-456")},
        many=[Inner(token=SecretStr("list-token-789"))],
    )
    assert set(secrets_in(outer)) == {
        "top-level-key-123",
        "dict-secret-456",
        "list-token-789",
        "url-pass-42x",
    }
    settings = Settings(
        _env_file=None,
        agent_provider="openai",
        openai_api_key=SecretStr(OPENAI_KEY),
        hubspot_token=SecretStr("pat-eu1-aaaa"),
        smtp_username="me",
        smtp_password=SecretStr("smtp-pass-31"),
        agent_budgets_usd={"intake": Decimal(1)},
    )
    assert {OPENAI_KEY, "pat-eu1-aaaa", "smtp-pass-31"} <= set(secrets_in(settings))


def test_the_process_wide_scrubber_only_ever_learns() -> None:
    first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    install(Scrubber([first]))
    install(Scrubber([second]))
    assert installed().scrub(f"{first} {second}") == f"{MARKER} {MARKER}"
    assert installed().scrub("sk-proj-abcdefghijklmnop0123") == MARKER  # key-shaped, always
