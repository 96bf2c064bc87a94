"""Agents on hosted models: the real ``openai`` client over HTTP against replayed responses.

Every model call here goes through ``openai.OpenAI`` or ``openai.AzureOpenAI`` to a local server
(``tests/openai_replay.py``) that answers with recorded OpenAI / Azure OpenAI responses. The
ledger is the real PostgreSQL one; workflow tests run on the real dev server. What is checked is
what the operator relies on: the call is made (or not) when it should be, paid once, priced
from the price table, shown in ``AiosCostUsd`` and ``aios costs``, and a model that cannot
answer stops at a gate instead of failing the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import SecretStr, ValidationError
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from aios import operations
from aios.agents.intake import IntakeAgent, IntakeRequest
from aios.agents.providers import OpenAIChat
from aios.agents.runner import AgentRunner, CallContext, ModelPrice, Tier
from aios.config import DEFAULT_MODEL_PRICES, Settings
from aios.errors import ModelUnavailable
from aios.kernel.policy import AgentPolicy
from aios.kernel.store import KernelStore
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.attributes import AWAITING_APPROVAL, COST_USD
from aios.workflows.gates import GateDecision, PendingGate
from aios.workflows.onboarding import OnboardingResult
from tests.conftest import RecordingSmtp, unique_client
from tests.helpers import save_history, start, wait_for_gate
from tests.money_helpers import known_client, propose
from tests.openai_replay import RECORDINGS, ModelReplayServer

KEY = "sk-test-5b0c1f0e9d7a4c2b8e6f"  # must never appear in history, ledger or logs
MINI, FULL = DEFAULT_MODEL_PRICES["gpt-4o-mini"], DEFAULT_MODEL_PRICES["gpt-4o"]
TIERS = {"fast": Tier("fast", "gpt-4o-mini", MINI), "strong": Tier("strong", "gpt-4o", FULL)}
NOTES = "We need a new website with a webshop before our spring launch, budget around $12k."


def content_of(name: str) -> dict[str, Any]:
    body = json.loads((RECORDINGS / f"{name}.json").read_text())["response"]["body"]
    return json.loads(body["choices"][0]["message"]["content"])


def usage_of(name: str) -> tuple[int, int]:
    usage = json.loads((RECORDINGS / f"{name}.json").read_text())["response"]["body"]["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"]


def cost_of(name: str, price: ModelPrice) -> Decimal:
    return price.cost(*usage_of(name))


@pytest.fixture
def server() -> Iterator[ModelReplayServer]:
    with ModelReplayServer() as s:
        yield s
        assert not s.mismatches, s.mismatches


def hosted(settings: Settings, server: ModelReplayServer, provider: str = "openai", **more: Any):
    values: dict[str, Any] = {
        "agent_provider": provider,
        "model_tiers": {"fast": "gpt-4o-mini", "strong": "gpt-4o"},
    }
    if provider == "openai":
        values |= {"openai_api_key": SecretStr(KEY), "openai_base_url": server.openai_base_url}
    else:
        values |= {
            "azure_openai_endpoint": server.azure_endpoint,
            "azure_openai_api_key": SecretStr(KEY),
        }
    values.update(more)
    return settings.model_copy(update=values)


@pytest.fixture
async def hosted_worker(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    server: ModelReplayServer,
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Settings, Worker]]:
    """A worker whose agents call the replay server; the test marks extra settings."""
    marker = request.node.get_closest_marker("hosted")
    extra: dict[str, Any] = dict(marker.kwargs) if marker else {}
    s = hosted(settings, server, **extra)
    acts = dataclasses.replace(services, settings=s).activities()
    async with build_worker(client, s.task_queue, acts, executor) as w:
        yield s, w


async def onboard(
    client: Client, s: Settings, server: ModelReplayServer, *recordings: str
) -> tuple[WorkflowHandle[Any, OnboardingResult], str]:
    """Queue the model's replies, then onboard a fresh client; the handle and its email."""
    for name in recordings:
        server.queue(name)
    name, key, email = unique_client()
    return await start(client, s, name, key, email, notes=NOTES), email


def approve(comment: str = "ok") -> GateDecision:
    return GateDecision(decision="approve", approver="tester", comment=comment)


async def gate_named(client: Client, workflow_id: str, name: str) -> PendingGate:
    async with asyncio.timeout(30):
        while True:
            gate = await wait_for_gate(client, workflow_id)
            if gate.gate == name:
                return gate
            await asyncio.sleep(0.1)


async def cost_attribute(handle: WorkflowHandle[Any, Any]) -> float | None:
    desc = await handle.describe()
    return desc.typed_search_attributes.get(COST_USD)


async def history_text(handle: WorkflowHandle[Any, Any]) -> str:
    return (await handle.fetch_history()).to_json()


def ledger_total(store: KernelStore, workflow_id: str) -> Decimal:
    return sum((c.cost_usd for c in store.costs.for_workflow(workflow_id)), Decimal(0))


# --- workflows on hosted models --------------------------------------------------------------


async def test_onboarding_on_openai_records_cost_labels_drafts_and_keeps_the_key_out(
    client: Client,
    services: Services,
    smtp: RecordingSmtp,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    handle, email = await onboard(client, s, server, "openai_intake_ok", "openai_welcome_ok")

    gate = await gate_named(client, handle.id, "welcome")
    assert gate.drafted_by == "gpt-4o-mini-2024-07-18 (openai, fast tier, confidence 0.84)"
    assert gate.summary.startswith(content_of("openai_welcome_ok")["output"]["subject"])

    calls = services.store.costs.for_workflow(handle.id)
    assert [(c.agent, c.tier, c.outcome) for c in calls] == [
        ("intake", "fast", "accepted"),
        ("welcome", "fast", "accepted"),
    ]
    expected = cost_of("openai_intake_ok", MINI) + cost_of("openai_welcome_ok", MINI)
    assert sum(c.cost_usd for c in calls) == expected
    assert [(c.input_tokens, c.output_tokens) for c in calls] == [
        usage_of("openai_intake_ok"),
        usage_of("openai_welcome_ok"),
    ]
    assert await cost_attribute(handle) == pytest.approx(float(expected), abs=1e-9)
    listed = [
        w.id async for w in client.list_workflows(f'WorkflowId = "{handle.id}" AND AiosCostUsd > 0')
    ]
    assert listed == [handle.id]

    # What went over the wire: the tier's model, structured output, the client's notes fenced.
    first = server.received[0]
    assert first.body["model"] == "gpt-4o-mini"
    assert first.body["response_format"]["type"] == "json_schema"
    schema = first.body["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {"confidence", "output"}
    assert first.body["messages"][0]["role"] == "system"
    user = first.body["messages"][1]["content"]
    assert '<client_text id="' in user and "spring launch" in user
    assert first.headers["authorization"] == "<redacted>"

    await handle.signal("decide", approve())
    result = await handle.result()
    assert result.status == "completed"
    assert result.cost_usd == pytest.approx(float(expected), abs=1e-9)
    sent = smtp.to(email)
    assert len(sent) == 1
    assert sent[0]["Subject"] == content_of("openai_welcome_ok")["output"]["subject"]

    assert KEY not in await history_text(handle)
    assert all(KEY not in (c.content or "") + c.reason for c in calls)
    assert len(server.received) == 2  # nothing was called twice
    await save_history(handle, "onboarding_hosted_completed")


async def test_rate_limited_call_is_retried_after_retry_after_and_paid_once(
    client: Client,
    services: Services,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    handle, _ = await onboard(
        client, s, server, "openai_429", "openai_intake_ok", "openai_welcome_ok"
    )
    await gate_named(client, handle.id, "welcome")

    assert len(server.received) == 3
    assert server.received[1].at - server.received[0].at >= 1.0  # Retry-After: 1
    # The retried attempt started with the 429 as its last failure, and the delay it asked for.
    events = (await handle.fetch_history()).events
    started = [
        e.activity_task_started_event_attributes
        for e in events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.attempt > 1
    ]
    assert len(started) == 1 and started[0].attempt == 2
    failure = started[0].last_failure
    assert failure.application_failure_info.type == "ModelUnavailable"
    assert not failure.application_failure_info.non_retryable
    assert failure.application_failure_info.next_retry_delay.seconds == 1
    assert "rate limited (429)" in failure.message

    calls = services.store.costs.for_workflow(handle.id)
    assert [c.agent for c in calls] == ["intake", "welcome"]  # the 429 was not billed
    await handle.cancel()


@pytest.mark.hosted(provider="azure")
async def test_content_filter_waits_at_the_agent_gate_and_approve_uses_the_template(
    client: Client,
    services: Services,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    server.queue("azure_content_filter_prompt")
    server.queue("azure_intake_ok", content=content_of("openai_welcome_ok"))
    handle, _ = await onboard(client, s, server)

    gate = await gate_named(client, handle.id, "agent")
    assert "content filter" in gate.summary and "template" in gate.summary
    assert (await handle.describe()).typed_search_attributes.get(AWAITING_APPROVAL) is True
    assert server.received[0].path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert server.received[0].api_version == s.azure_openai_api_version
    assert server.received[0].headers["api-key"] == "<redacted>"

    await handle.signal("decide", approve("use the template"))
    welcome = await gate_named(client, handle.id, "welcome")
    assert welcome.drafted_by is not None and welcome.drafted_by.startswith("gpt-4o-mini")

    calls = services.store.costs.for_workflow(handle.id)
    assert [(c.agent, c.provider, c.outcome) for c in calls] == [
        ("intake", "azure", "refused"),
        ("intake", "template", "template"),
        ("welcome", "azure", "accepted"),
    ]
    assert "content filter" in calls[0].reason
    assert calls[1].reason.startswith("approved by tester after:")
    held = [e for e in services.store.events.for_run(handle.id) if e.kind == "agent.held"]
    assert len(held) == 1 and held[0].payload["kind"] == "review"
    await handle.cancel()


async def test_rejecting_the_agent_gate_ends_the_run_and_sends_nothing(
    client: Client,
    smtp: RecordingSmtp,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    handle, email = await onboard(client, s, server, "openai_refusal")
    gate = await gate_named(client, handle.id, "agent")
    assert "refused" in gate.summary

    await handle.signal(
        "decide", GateDecision(decision="reject", approver="tester", comment="spam")
    )
    result = await handle.result()
    assert result.status == "rejected"
    assert "refused" in result.reason and "spam" in result.reason
    assert smtp.to(email) == []
    assert len(server.received) == 1
    await save_history(handle, "onboarding_agent_rejected")


@pytest.mark.hosted(agent_budgets_usd={"intake": Decimal(0)})
async def test_over_budget_waits_then_approve_makes_exactly_that_call(
    client: Client,
    services: Services,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    handle, _ = await onboard(client, s, server, "openai_intake_ok", "openai_welcome_ok")

    gate = await gate_named(client, handle.id, "budget")
    assert gate.summary.startswith("budget exceeded: agent 'intake' has spent")
    assert "approve spending of ~$" in gate.summary
    assert gate.amount is not None and gate.amount.startswith("~$")
    estimate = Decimal(gate.amount.removeprefix("~$"))
    assert Decimal(0) < estimate < Decimal("0.01")
    assert server.received == []  # the call was not made
    assert services.store.costs.for_workflow(handle.id) == []

    await handle.signal("decide", approve("worth it"))
    await gate_named(client, handle.id, "welcome")
    calls = services.store.costs.for_workflow(handle.id)
    assert [(c.agent, c.over_budget, c.outcome) for c in calls] == [
        ("intake", True, "accepted"),
        ("welcome", False, "accepted"),
    ]
    assert calls[0].cost_usd == cost_of("openai_intake_ok", MINI) <= estimate
    assert await cost_attribute(handle) == pytest.approx(
        float(ledger_total(services.store, handle.id))
    )
    await handle.signal("decide", approve())
    assert (await handle.result()).status == "completed"
    await save_history(handle, "onboarding_budget_approved")


@pytest.mark.hosted(agent_budgets_usd={"intake": Decimal(0)})
async def test_rejected_budget_goes_on_without_the_model(
    client: Client,
    services: Services,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    handle, _ = await onboard(client, s, server, "openai_welcome_ok")
    await gate_named(client, handle.id, "budget")
    await handle.signal("decide", GateDecision(decision="reject", approver="tester"))
    await gate_named(client, handle.id, "welcome")

    calls = services.store.costs.for_workflow(handle.id)
    assert [(c.agent, c.provider, c.cost_usd) for c in calls] == [
        ("intake", "template", Decimal(0)),
        ("welcome", "openai", cost_of("openai_welcome_ok", MINI)),
    ]
    assert len(server.received) == 1  # only the welcome draft called the model
    assert "welcome email" in server.received[0].body["messages"][0]["content"]
    await handle.cancel()


async def test_proposal_drafted_by_a_model_is_priced_from_the_rate_card(
    client: Client,
    services: Services,
    server: ModelReplayServer,
    hosted_worker: tuple[Settings, Worker],
) -> None:
    s, _ = hosted_worker
    server.queue("openai_proposal_ok")
    _, key, _ = known_client(services.store)
    handle = await propose(client, s, services.store, key, "New website with a webshop")
    gate = await gate_named(client, handle.id, "proposal")
    card = s.rate_card
    lines = [card["web"][0], card["web"][1], card["base"][0]]
    subtotal = sum(i.quantity * i.unit_price_minor for i in lines)
    proposal_id = handle.id.removeprefix("proposal/")
    [version] = services.store.proposals.versions(proposal_id)
    assert version.line_items == lines
    assert (version.subtotal_minor, version.discount_pct) == (subtotal, Decimal(10))
    assert version.total_minor == subtotal - subtotal * 10 // 100
    assert gate.drafted_by is not None and gate.drafted_by.startswith("gpt-4o-mini")
    prompt = server.received[0].body["messages"][1]["content"]
    assert "web-1: Website design" in prompt  # the model chooses by id, code prices
    await handle.signal("decide", GateDecision(decision="reject", approver="tester"))
    result = await handle.result()
    assert (result.status, result.version) == ("rejected", 1)


# --- the runner on its own: tiers, repair, reuse ---------------------------------------------


def runner_for(store: KernelStore, server: ModelReplayServer, **policy: Any) -> AgentRunner:
    chat = OpenAIChat(
        openai.OpenAI(base_url=server.openai_base_url, api_key=KEY, max_retries=0),
        name="openai",
    )
    return AgentRunner(
        store.costs,
        chat=chat,
        tiers=TIERS,
        policy=AgentPolicy(monthly_budget_usd=Decimal(10**6), **policy),
    )


def ctx() -> CallContext:
    tag = uuid.uuid4().hex
    return CallContext(
        key=f"unit/{tag}/intake", workflow_id=f"unit/{tag}", run_id="r1", process="unit"
    )


REQUEST = IntakeRequest(name="Acme Ltd", notes=NOTES)


def test_malformed_json_is_repaired_once_then_escalated_and_never_bought_twice(
    services: Services, server: ModelReplayServer
) -> None:
    server.queue("openai_malformed_json")
    server.queue("openai_intake_invalid_segment")
    server.queue("openai_intake_strong_ok")
    runner, c = runner_for(services.store, server), ctx()

    outcome = runner.run(IntakeAgent(), REQUEST, c)
    assert outcome.result is not None and outcome.hold is None
    assert outcome.result.model == "gpt-4o-2024-08-06" and outcome.result.tier == "strong"
    assert [(a.tier, a.outcome) for a in outcome.attempts] == [
        ("fast", "invalid"),
        ("fast", "invalid"),
        ("strong", "accepted"),
    ]
    assert "not valid JSON" in outcome.attempts[0].reason
    assert "output.segment" in outcome.attempts[1].reason

    repair = server.received[1].body["messages"]
    assert repair[2]["role"] == "assistant"
    assert repair[3]["role"] == "user" and "not valid JSON" in repair[3]["content"]
    assert [r.body["model"] for r in server.received] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]
    expected = (
        cost_of("openai_malformed_json", MINI)
        + cost_of("openai_intake_invalid_segment", MINI)
        + cost_of("openai_intake_strong_ok", FULL)
    )
    assert Decimal(str(outcome.result.cost_usd)) == expected
    assert ledger_total(services.store, c.workflow_id) == expected

    # The activity runs again (a retry, a crash): every reply comes from the ledger.
    again = runner.run(IntakeAgent(), REQUEST, c)
    assert len(server.received) == 3
    assert again.result is not None and again.result.output == outcome.result.output
    assert all(a.reused for a in again.attempts)
    assert ledger_total(services.store, c.workflow_id) == expected


def test_low_confidence_escalates_without_repair_and_the_best_answer_needs_a_person(
    services: Services, server: ModelReplayServer
) -> None:
    low_strong = content_of("openai_intake_strong_ok") | {"confidence": 0.45}
    server.queue("openai_intake_low_confidence")
    server.queue("openai_intake_strong_ok", content=low_strong)
    runner, c = runner_for(services.store, server, min_confidence=0.6), ctx()

    outcome = runner.run(IntakeAgent(), REQUEST, c)
    assert outcome.result is None and outcome.hold is not None
    assert outcome.hold.kind == "review" and outcome.hold.fallback == "best"
    assert "confidence 0.45" in outcome.hold.reason
    assert [(a.tier, a.outcome) for a in outcome.attempts] == [
        ("fast", "low_confidence"),
        ("strong", "low_confidence"),
    ]
    assert len(server.received) == 2  # a confident-enough question needs no repair

    chosen = runner.run(IntakeAgent(), REQUEST, dataclasses.replace(c, use="best"))
    assert chosen.result is not None and chosen.result.confidence == 0.45
    assert chosen.result.output.segment == "web"  # the strong tier's answer, not the vague one
    assert len(server.received) == 2


@pytest.mark.parametrize(
    ("recording", "reason"),
    [
        ("openai_refusal", "refused"),
        ("openai_401", "not authorised (401)"),
        ("openai_400_context_length", "invalid request (400)"),
    ],
)
def test_refusals_and_bad_requests_hold_for_review(
    services: Services, server: ModelReplayServer, recording: str, reason: str
) -> None:
    server.queue(recording)
    outcome = runner_for(services.store, server).run(IntakeAgent(), REQUEST, ctx())
    assert outcome.result is None and outcome.hold is not None
    assert outcome.hold.kind == "review" and outcome.hold.fallback == "template"
    assert reason in outcome.hold.reason
    assert KEY not in outcome.hold.reason
    assert len(server.received) == 1  # no repair, no escalation: a person decides


@pytest.mark.parametrize(("recording", "retry_after"), [("openai_429", 1.0), ("openai_500", None)])
def test_rate_limits_and_server_errors_are_retryable(
    services: Services, server: ModelReplayServer, recording: str, retry_after: float | None
) -> None:
    server.queue(recording)
    with pytest.raises(ModelUnavailable) as info:
        runner_for(services.store, server).run(IntakeAgent(), REQUEST, ctx())
    assert info.value.retryable and info.value.retry_after == retry_after


def test_azure_429_carries_retry_after_and_entra_token_is_sent_as_bearer(
    services: Services, server: ModelReplayServer
) -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test"
    chat = OpenAIChat(
        openai.AzureOpenAI(
            azure_endpoint=server.azure_endpoint,
            api_version="2024-10-21",
            azure_ad_token=token,
            max_retries=0,
        ),
        name="azure",
    )
    runner = AgentRunner(services.store.costs, chat=chat, tiers=TIERS)
    server.queue("azure_429")
    with pytest.raises(ModelUnavailable) as info:
        runner.run(IntakeAgent(), REQUEST, ctx())
    assert info.value.retry_after == 1.0 and "rate limited (429)" in str(info.value)
    assert server.received[0].headers["authorization"] == "<redacted>"
    assert "api-key" not in server.received[0].headers

    server.queue("azure_intake_ok")
    ok = runner.run(IntakeAgent(), REQUEST, ctx())
    assert ok.result is not None and ok.result.provider == "azure"
    assert ok.result.confidence == content_of("azure_intake_ok")["confidence"]


def test_budget_caps_are_checked_before_the_call(
    services: Services, server: ModelReplayServer
) -> None:
    c = ctx()
    runner = runner_for(services.store, server, agent_budgets_usd={"intake": Decimal(0)})
    held = runner.run(IntakeAgent(), REQUEST, c)
    assert held.hold is not None and held.hold.kind == "budget"
    assert held.hold.call_key == f"{c.key}/fast/0"
    assert server.received == []

    server.queue("openai_intake_ok")
    approved = dataclasses.replace(c, approved_calls=frozenset({held.hold.call_key}))
    done = runner.run(IntakeAgent(), REQUEST, approved)
    assert done.result is not None and len(server.received) == 1
    row = services.store.costs.get(held.hold.call_key)
    assert row is not None and row.over_budget


def test_agent_policy_caps_total_and_per_agent_spend() -> None:
    policy = AgentPolicy(monthly_budget_usd=Decimal(10), agent_budgets_usd={"proposal": Decimal(2)})
    fits = {"estimate_usd": Decimal("0.5"), "spent_usd": Decimal(9), "agent_spent_usd": Decimal(1)}
    assert policy.budget_problem(agent="proposal", **fits) is None
    over_agent = fits | {"agent_spent_usd": Decimal("1.6")}
    assert "agent 'proposal'" in (policy.budget_problem(agent="proposal", **over_agent) or "")
    over_total = fits | {"spent_usd": Decimal("9.6")}
    assert "monthly budget" in (policy.budget_problem(agent="intake", **over_total) or "")


SECRET = "sk-do-not-print-7f3a"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"agent_provider": "openai"}, "needs openai_api_key"),
        (
            {"agent_provider": "azure", "azure_openai_api_key": SECRET},
            "needs azure_openai_endpoint",
        ),
        (
            {
                "agent_provider": "azure",
                "azure_openai_endpoint": "https://x.openai.azure.com",
                "azure_openai_api_key": SECRET,
                "azure_openai_ad_token": SECRET,
            },
            "exactly one of",
        ),
        (
            {"openai_api_key": SECRET, "model_tiers": {"fast": "my-deployment"}},
            "no price for 'my-deployment'",
        ),
        ({"agent_budgets_usd": {"intak": 5}}, "unknown agent 'intak'"),
        ({"agent_tiers": {"intake": ["cheap"]}}, "unknown tier 'cheap'"),
    ],
)
def test_agent_settings_are_checked_at_startup(env: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, **env)
    assert problem in str(info.value)
    assert SECRET not in str(info.value)  # the error never echoes the settings it was given


# --- the operator's view ---------------------------------------------------------------------


async def test_aios_costs_reports_spend_by_process_agent_and_day(
    settings: Settings, services: Services
) -> None:
    from tests.test_cli import aios

    code, out, err = await aios(settings, "costs")
    assert code == 0, err
    assert "Model spend in" in out and "By process" in out and "By agent" in out
    assert "all agents" in out and "remaining" in out

    code, _, err = await aios(settings, "costs", "--month", "2026-13")
    assert code == 1 and "month:" in err and len(err.strip().splitlines()) == 1


def test_cost_report_adds_up_the_ledger(settings: Settings, services: Services) -> None:
    report = operations.cost_report(services.store, settings)
    assert sum(line.usd for line in report.by_process) == report.total_usd
    assert sum(line.usd for line in report.by_day) == report.total_usd
    assert report.budgets[0].remaining_usd == max(
        settings.agent_monthly_budget_usd - report.total_usd, Decimal(0)
    )


def test_template_path_needs_no_keys_and_costs_nothing(services: Services, tmp_path: Path) -> None:
    runner = AgentRunner(services.store.costs)  # no provider configured: the offline default
    c = ctx()
    outcome = runner.run(IntakeAgent(), REQUEST, c)
    assert outcome.result is not None and outcome.result.provider == "template"
    assert outcome.result.model.startswith("template:intake@")
    rows = services.store.costs.for_workflow(c.workflow_id)
    assert [(r.provider, r.cost_usd, r.outcome) for r in rows] == [
        ("template", Decimal(0), "template")
    ]
