"""Kill switches without Temporal: the rows and their events, names, the cached reader, the
wait (``PauseGate``) and the ``aios pause`` / ``aios resume`` commands. Real PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import re
import sys
import uuid
from collections.abc import Sequence
from decimal import Decimal

import httpx
import openai
import pytest
from typer.testing import CliRunner

from aios.agents.intake import IntakeAgent, IntakeRequest
from aios.agents.providers import OpenAIChat
from aios.agents.runner import AgentRunner, CallContext, Tier
from aios.cli.app import app
from aios.config import AGENT_NAMES, DEFAULT_MODEL_PRICES, Settings
from aios.errors import InvalidInput
from aios.kernel.pause import PauseGate, Waiter
from aios.kernel.policy import AgentPolicy
from aios.kernel.store import KernelStore
from aios.kernel.stores.switches import SwitchChange, SwitchReader
from aios.operations.control import KNOWN, change_switch, parse_switch
from aios.serve.app import create_app
from aios.serve.auth import set_password
from aios.workers.services import Services
from tests.conftest import subprocess_env
from tests.openai_replay import ModelReplayServer


@pytest.fixture
def store(services: Services) -> KernelStore:
    return services.store


def switch_events(store: KernelStore, label: str) -> list[str]:
    return [e.kind for e in store.events.for_entities([f"switch:{label}"])]


def test_pausing_twice_keeps_one_row_and_records_each_real_change_once(
    store: KernelStore,
) -> None:
    # A process name no other test pauses: switches are global to the database.
    change = SwitchChange(scope="process", name=f"test-{uuid.uuid4().hex[:8]}", by="pat")
    label = f"process:{change.name}"

    _, changed = store.switches.pause(change.model_copy(update={"reason": "audit"}))
    again, changed_again = store.switches.pause(change.model_copy(update={"reason": "other"}))
    assert (changed, changed_again) == (True, False)
    assert again.reason == "audit" and again.changed_by == "pat" and again.paused
    assert switch_events(store, label) == ["switch.paused"]

    resumed, did = store.switches.resume(change.model_copy(update={"by": "sam"}))
    _, did_again = store.switches.resume(change)
    assert resumed is not None and not resumed.paused and resumed.changed_by == "sam"
    assert (did, did_again) == (True, False)
    store.switches.pause(change)
    assert switch_events(store, label) == ["switch.paused", "switch.resumed", "switch.paused"]
    assert [s.label for s in store.switches.all()].count(label) == 1
    store.switches.resume(change)

    never, changed = store.switches.resume(
        SwitchChange(scope="process", name=f"test-{uuid.uuid4().hex[:8]}", by="pat")
    )
    assert (never, changed) == (None, False)


def test_unknown_switch_names_are_refused_with_the_valid_ones(store: KernelStore) -> None:
    before = len(store.switches.all())
    with pytest.raises(InvalidInput, match="valid names: caldav, email, hubspot"):
        change_switch(store, pause=True, scope="connector", name="emial", by="pat")
    with pytest.raises(InvalidInput, match="agent: a name is required, one of content, intake"):
        parse_switch("agent", "")
    with pytest.raises(InvalidInput, match="not one of all, agent, connector, process"):
        parse_switch("robot", "x")
    with pytest.raises(InvalidInput, match="switch all: takes no name"):
        parse_switch("all", "email")
    with pytest.raises(InvalidInput, match="reason"):
        change_switch(store, pause=True, scope="agent", name="intake", by="p", reason="x" * 501)
    assert len(store.switches.all()) == before  # nothing written
    assert parse_switch(" Connector ", " email ") == ("connector", "email")


def test_known_names_are_the_names_the_code_uses() -> None:
    """The switch names are derived here from the code's registries, so a process, agent or
    connector added later without its switch name fails this test."""
    import aios.agents
    import aios.connectors
    from aios.agents.base import Agent
    from aios.workers.services import payment_providers
    from aios.workflows import WORKFLOWS

    # Processes: every workflow a worker registers; the first part of its runs' ids is its
    # class's NAME (the Process base) or its module's PROCESS_NAME.
    processes = {
        getattr(cls, "NAME", "") or getattr(sys.modules[cls.__module__], "PROCESS_NAME", "")
        for cls in WORKFLOWS
    }
    assert "" not in processes, "a registered workflow names no process"
    assert set(KNOWN["process"]) == processes

    # Agents: every Agent class's name; AGENT_NAMES (the budget and tier keys) too.
    for module in pkgutil.iter_modules(aios.agents.__path__, "aios.agents."):
        importlib.import_module(module.name)
    found: set[str] = set()
    classes: list[type] = [Agent]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if "name" in vars(cls):
            found.add(vars(cls)["name"])
    assert set(KNOWN["agent"]) == found == set(AGENT_NAMES)
    # ... so each can be given its own monthly cap and tiers (AIOS_AGENT_BUDGETS_USD, _TIERS).
    capped = Settings(
        agent_budgets_usd=dict.fromkeys(found, Decimal(1)),
        agent_tiers={agent: ["fast"] for agent in found},
        _env_file=None,
    )
    assert set(capped.agent_policy.agent_budgets_usd) == found

    # Connectors: every connector module's NAME; payment providers go through the runtime as
    # "payments:<provider>" (activities.billing), every provider that can be configured.
    connectors = set()
    for module in pkgutil.walk_packages(aios.connectors.__path__, "aios.connectors."):
        if not module.name.startswith("aios.connectors.payments"):
            name = getattr(importlib.import_module(module.name), "NAME", None)
            if isinstance(name, str):
                connectors.add(name)
    every = Settings(stripe_api_key="sk_test_switches", _env_file=None)
    connectors |= {f"payments:{provider}" for provider in payment_providers(every)}
    assert set(KNOWN["connector"]) == connectors


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_reader_queries_once_per_ttl(store: KernelStore) -> None:
    change = SwitchChange(scope="process", name=f"test-{uuid.uuid4().hex[:8]}", by="pat")
    clock = Clock()
    reader = SwitchReader(store.switches, ttl=1.0, clock=clock)
    label = f"process:{change.name}"
    assert reader.blocking([label]) is None
    store.switches.pause(change)
    try:
        clock.now = 0.9
        assert reader.blocking([label]) is None  # cached: no query within the ttl
        clock.now = 1.0
        found = reader.blocking(["agent:intake", label])
        assert found is not None and found.label == label
    finally:
        store.switches.resume(change)


def test_a_paused_step_waits_heartbeating_with_a_notice_and_goes_on_when_resumed(
    store: KernelStore,
) -> None:
    """The wait, with the clock of the loop replaced: each "sleep" is one poll; the switch is
    resumed by the third poll. No threads, no real waiting."""
    process = f"test-{uuid.uuid4().hex[:8]}"
    change = SwitchChange(scope="process", name=process, by="pat", reason="audit")
    workflow_id = f"{process}/run-1"
    beats: list[tuple[object, ...]] = []
    polls: list[float] = []
    key = [f"paused/{workflow_id}/process:{process}"]

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        notice = store.notices.get(key[0])
        assert notice is not None and notice.status == "open"  # open while it waits
        if len(polls) == 3:
            store.switches.resume(change)

    waiter = Waiter(workflow_id=workflow_id, run_id="r1", beat=lambda *d: beats.append(d))
    gate = PauseGate(
        SwitchReader(store.switches, ttl=0.0),
        store.notices,
        current=lambda: waiter,
        poll_seconds=0.5,
        sleep=sleep,
    )
    assert gate.hold(["connector:email"], "email send_welcome") == 0.0  # nothing paused
    store.switches.pause(change)
    gate.hold(["connector:email"], "email send_welcome")

    assert polls == [0.5, 0.5, 0.5]
    assert beats.count((f"paused: process:{process}",)) == 6  # around every poll
    assert beats.count(()) == 1  # the check that found nothing paused
    notice = store.notices.get(key[0])
    assert notice is not None
    assert (notice.kind, notice.title, notice.status) == (
        "paused",
        f"paused: process:{process}",
        "resolved",
    )
    assert notice.workflow_id == workflow_id and "audit" in notice.summary
    assert notice.resolution == "resumed: the step went on"

    # Paused again later: a fresh inbox item, not the resolved one.
    store.switches.pause(change)
    polls.clear()
    key[0] += "/2"
    gate.hold([], "email send_welcome")
    second = store.notices.get(key[0])
    assert second is not None and second.status == "resolved" and len(polls) == 3


runner = CliRunner()


async def aios(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = subprocess_env(settings, COLUMNS="200")
    result = await asyncio.to_thread(lambda: runner.invoke(app, list(args), env=env))
    return result.exit_code, result.stdout, result.stderr


async def test_pause_and_resume_from_the_command_line(
    settings: Settings, store: KernelStore
) -> None:
    code, out, err = await aios(settings, "pause", "connector", "emial")
    assert code == 1 and out == ""
    assert "connector 'emial' is not known; valid names: caldav, email" in err

    code, out, _ = await aios(
        settings, "pause", "agent", "intake", "--reason", "new prompt", "--by", "pat", "--json"
    )
    try:
        assert code == 0
        doc = json.loads(out)
        assert (doc["switch"], doc["paused"], doc["changed"], doc["changed_by"]) == (
            "agent:intake",
            True,
            True,
            "pat",
        )
        code, out, _ = await aios(settings, "pause", "agent", "intake")
        assert code == 0 and "agent:intake was already paused; nothing changed." in out

        code, out, _ = await aios(settings, "pause", "--json")
        listed = {s["switch"]: s for s in json.loads(out)["switches"]}
        assert listed["agent:intake"]["paused"] is True
        assert listed["agent:intake"]["reason"] == "new prompt"
        code, out, _ = await aios(settings, "pause")
        assert code == 0 and "agent:intake" in out and "paused" in out
    finally:
        code, out, _ = await aios(settings, "resume", "agent", "intake", "--by", "pat")
    assert code == 0 and "agent:intake resumed by pat." in out
    assert switch_events(store, "agent:intake")[-2:] == ["switch.paused", "switch.resumed"]


CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


async def test_the_console_pauses_and_resumes_signed_in_with_its_csrf_token(
    base_settings: Settings, store: KernelStore
) -> None:
    settings = base_settings.model_copy(
        update={"operator_token": None, "operator_name": f"Sam {uuid.uuid4().hex[:6]}"}
    )
    set_password(store.operators, settings.operator_name, PASSWORD)
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=settings.console_url) as http:
        anonymous = await http.post("/control/pause", data={"switch": "all", "csrf": "x"})
        assert anonymous.status_code in (401, 403) and "Nothing was changed" in anonymous.text

        page = await http.get("/signin")
        token = CSRF.search(page.text)
        assert token is not None
        signed = await http.post(
            "/signin",
            data={"csrf": token.group(1), "name": settings.operator_name, "password": PASSWORD},
        )
        assert signed.status_code == 303
        page = await http.get("/control")
        assert page.status_code == 200 and 'value="connector:email"' in page.text
        found = CSRF.search(page.text)
        assert found is not None
        csrf = found.group(1)
        before = len(store.switches.all())

        forged = await http.post("/control/pause", data={"switch": "all", "csrf": "forged"})
        assert forged.status_code == 403
        wrong = await http.post("/control/pause", data={"switch": "connector:emial", "csrf": csrf})
        assert wrong.status_code == 400 and "valid names: caldav, email" in wrong.text
        assert len(store.switches.all()) == before  # nothing written

        paused = await http.post(
            "/control/pause", data={"switch": "agent:welcome", "csrf": csrf, "reason": "tone"}
        )
        try:
            assert paused.status_code == 303
            page = await http.get(paused.headers["location"])
            assert "agent:welcome: paused" in page.text and 'action="/control/resume"' in page.text
            [switch] = [s for s in store.switches.paused() if s.label == "agent:welcome"]
            assert (switch.changed_by, switch.reason) == (settings.operator_name, "tone")
        finally:
            resumed = await http.post(
                "/control/resume", data={"switch": "agent:welcome", "csrf": csrf}
            )
        assert resumed.status_code == 303
        assert "agent:welcome" not in {s.label for s in store.switches.paused()}
        assert switch_events(store, "agent:welcome")[-2:] == ["switch.paused", "switch.resumed"]


def test_the_runner_checks_before_every_paid_model_call(services: Services) -> None:
    """The hosted provider (the real ``openai`` client against recorded replies): the first
    reply is not JSON, so the runner would pay for a repair. ``agent:intake`` is paused right
    after the first call; the repair is not requested until the switch is resumed."""
    store = services.store
    change = SwitchChange(scope="agent", name="intake", by="pat", reason="prompt review")
    tag = uuid.uuid4().hex
    ctx = CallContext(
        key=f"unit/{tag}/intake", workflow_id=f"unit/{tag}", run_id="r1", process="unit"
    )
    with ModelReplayServer() as server:
        server.queue("openai_malformed_json")
        server.queue("openai_intake_invalid_segment")
        server.queue("openai_intake_strong_ok")
        waited_with: list[int] = []

        def sleep(seconds: float) -> None:  # one poll while paused, then the operator resumes
            waited_with.append(len(server.received))
            store.switches.resume(change)

        class PauseAfterFirstCall(PauseGate):
            def hold(self, labels: Sequence[str], what: str) -> float:
                if len(server.received) == 1 and not waited_with:
                    store.switches.pause(change)
                return super().hold(labels, what)

        waiter = Waiter(workflow_id=ctx.workflow_id, run_id="r1")
        gate = PauseAfterFirstCall(
            SwitchReader(store.switches, ttl=0.0),
            store.notices,
            current=lambda: waiter,
            sleep=sleep,
        )
        chat = OpenAIChat(
            openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0),
            name="openai",
        )
        tiers = {
            "fast": Tier("fast", "gpt-4o-mini", DEFAULT_MODEL_PRICES["gpt-4o-mini"]),
            "strong": Tier("strong", "gpt-4o", DEFAULT_MODEL_PRICES["gpt-4o"]),
        }
        runner = AgentRunner(
            store.costs,
            chat=chat,
            tiers=tiers,
            policy=AgentPolicy(monthly_budget_usd=Decimal(10**6)),
            pause=gate,
        )
        request = IntakeRequest(name="Acme Ltd", notes="A new website with a webshop, ~$12k.")
        try:
            outcome = runner.run(IntakeAgent(), request, ctx)
        finally:
            store.switches.resume(change)
        assert not server.mismatches, server.mismatches
    assert waited_with == [1]  # it waited after one paid call, before the repair
    assert outcome.result is not None and len(server.received) == 3
    notice = store.notices.get(f"paused/{ctx.workflow_id}/agent:intake")
    assert notice is not None and notice.status == "resolved"
