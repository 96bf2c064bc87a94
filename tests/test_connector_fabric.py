"""The connector fabric: rate limits, circuit breakers, dry-run, the outbox, synthetic checks.

Guards are exercised with real failures (a connector error raised by the call), the outbox and
health tables with the real PostgreSQL, and the synthetic check as a workflow on the real dev
server whose probe talks to the real SMTP server of the test session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.worker import Worker

from aios import operations
from aios.config import Settings
from aios.connectors.caldav import CalDavConfig, CalDavConnector
from aios.connectors.contract import CheckResult, Operation
from aios.connectors.runtime import ConnectorGuard, ConnectorRuntime, GuardSettings
from aios.connectors.webhooks import WebhookConfig, WebhookConnector, WebhookEvent
from aios.errors import (
    ConnectorAuthError,
    InvalidInput,
    PolicyRefusal,
    RateLimited,
    TransientConnectorError,
)
from aios.kernel.events import EventDraft
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.checks import (
    CHECK_SCHEDULE_ID,
    SyntheticCheckInput,
    SyntheticCheckWorkflow,
)
from aios.workflows.gates import GateDecision
from tests.conftest import RecordingSmtp
from tests.flaky_http import FlakyHttpServer
from tests.helpers import wait_for_gate
from tests.radicale_server import RadicaleServer

SEND = Operation("send", effect=True, compensation="send")
UPSERT = Operation("upsert", effect=True)  # no compensation: irreversible
UNDO = Operation("undo", effect=True, undoes="send")
READ = Operation("read", effect=False)


class Flaky:
    """A call that fails ``failures`` times with ``error``, then succeeds; counts calls."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_breaker_opens_after_transient_failures_fails_fast_then_closes_after_a_trial() -> None:
    guard = ConnectorGuard(
        "crm", GuardSettings(rate_limit="1000/second", fail_max=3, reset_timeout=0.5)
    )
    down = Flaky(failures=10, error=TransientConnectorError("crm", "unavailable: HTTP 503"))
    for _ in range(3):
        with pytest.raises(TransientConnectorError, match="HTTP 503"):
            guard.call(down)
    assert guard.snapshot()["breaker_state"] == "open" and down.calls == 3

    with pytest.raises(TransientConnectorError, match="circuit open") as info:
        guard.call(down)
    assert down.calls == 3  # failed fast: the system was not called
    assert info.value.retryable and 0 < (info.value.retry_after or 0) <= 0.5

    time.sleep(0.6)  # the breaker's own reset timeout is what is under test here
    up = Flaky(failures=0, error=RuntimeError())
    assert guard.call(up) == "ok" and up.calls == 1
    assert guard.snapshot()["breaker_state"] == "closed"


def test_refusals_do_not_open_the_breaker() -> None:
    guard = ConnectorGuard("crm", GuardSettings(rate_limit="1000/second", fail_max=2))
    refused = Flaky(failures=5, error=ConnectorAuthError("crm", "not authorised: HTTP 401"))
    for _ in range(4):
        with pytest.raises(ConnectorAuthError):
            guard.call(refused)
    assert guard.snapshot()["breaker_state"] == "closed" and refused.calls == 4


def test_rate_limit_refuses_without_calling_and_says_when_to_retry() -> None:
    guard = ConnectorGuard("crm", GuardSettings(rate_limit="2/second"))
    call = Flaky(failures=0, error=RuntimeError())
    assert guard.call(call) == guard.call(call) == "ok"
    with pytest.raises(RateLimited) as info:
        guard.call(call)
    assert call.calls == 2
    assert info.value.retryable and 0 < (info.value.retry_after or 0) <= 1.0
    snap = guard.snapshot()
    assert (snap["rate_used"], snap["rate_remaining"], snap["rate_limit"]) == (2, 0, "2/second")


def test_an_effect_runs_once_per_key_through_the_outbox(services: Services) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker")
    sent: list[bool] = []

    def send(dry_run: bool) -> dict[str, str]:
        sent.append(dry_run)
        return {"id": "m-1"}

    key = f"test/{uuid.uuid4().hex}/send"
    first = runtime.effect("crm", SEND, key, send)
    again = runtime.effect("crm", SEND, key, send)
    assert first == ({"id": "m-1"}, True) and again == ({"id": "m-1"}, False)
    assert sent == [False]
    entry = services.store.outbox.entry(key)
    assert entry is not None and entry["status"] == "done"
    assert entry["started_at"] is not None and entry["finished_at"] >= entry["started_at"]


def test_dry_run_rehearses_without_effect_or_outbox_record(services: Services) -> None:
    runtime = ConnectorRuntime(services.store, dry_run=True, worker="test-worker")
    seen: list[bool] = []
    key = f"test/{uuid.uuid4().hex}/send"

    def send(dry_run: bool) -> dict[str, str]:
        seen.append(dry_run)
        return {"dry": "1"}

    result, ran = runtime.effect("crm", SEND, key, send)
    assert (result, ran, seen) == ({"dry": "1"}, False, [True])
    assert services.store.outbox.entry(key) is None  # the real run later is not blocked


def test_an_effect_that_dies_midway_is_on_record_as_in_doubt(services: Services) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker")
    key = f"test/{uuid.uuid4().hex}/send"

    def dies(dry_run: bool) -> dict[str, str]:
        raise SystemExit("worker killed")

    with pytest.raises(SystemExit):
        runtime.effect("crm", SEND, key, dies)
    doubtful = {d["idempotency_key"]: d for d in services.store.outbox.in_doubt(0)}
    assert key in doubtful and doubtful[key]["attempts"] == 1
    assert "worker killed" in doubtful[key]["last_error"]


def test_effects_and_reads_are_not_mixed_up(services: Services) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker")
    with pytest.raises(InvalidInput, match="has an effect"):
        runtime.call("crm", SEND, lambda: None)
    with pytest.raises(InvalidInput, match="no effect"):
        runtime.effect("crm", READ, "k", lambda dry: {})
    with pytest.raises(InvalidInput, match="idempotency key is required"):
        runtime.effect("crm", SEND, "  ", lambda dry: {})


# --- irreversible effects need a recorded human approval of the same run --------------------


def test_only_an_effect_with_no_undo_that_undoes_nothing_is_irreversible() -> None:
    assert UPSERT.irreversible
    assert not SEND.irreversible and not UNDO.irreversible and not READ.irreversible


def _decision(services: Services, run: str, decision: str, kind: str = "gate.decided") -> str:
    key = f"{run}/gate/welcome/{kind}"
    workflow_id, run_id = run.rsplit("/", 1)
    services.store.events.append(
        EventDraft(
            event_key=key,
            workflow_id=workflow_id,
            run_id=run_id,
            process="test",
            kind=kind,
            payload={"gate": "welcome", "decision": decision, "approver": "pat"},
        )
    )
    return key


def _upsert_run() -> tuple[str, list[bool], Callable[[bool], dict[str, str]]]:
    calls: list[bool] = []

    def upsert(dry_run: bool) -> dict[str, str]:
        calls.append(dry_run)
        return {"id": "c-1"}

    return f"test/{uuid.uuid4().hex}/r-{uuid.uuid4().hex[:6]}", calls, upsert


@pytest.mark.parametrize(
    ("approval_of", "problem"),
    [
        (None, "none was given"),
        ("missing", "no such event in the log"),
        ("rejected", "the decision was 'reject'"),
        ("other run", "not to this run"),
        ("not an approval", "a gate.expired event is not an approval"),
    ],
)
def test_an_irreversible_effect_without_a_valid_approval_is_refused_and_never_attempted(
    services: Services, approval_of: str | None, problem: str
) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker")
    run, calls, upsert = _upsert_run()
    approval: str | None = None
    if approval_of == "missing":
        approval = f"{run}/gate/welcome/gate.decided"
    elif approval_of == "rejected":
        approval = _decision(services, run, "reject")
    elif approval_of == "other run":
        approval = _decision(services, f"{run}-other", "approve")
    elif approval_of == "not an approval":
        approval = _decision(services, run, "approve", kind="gate.expired")
    key = f"{run}/crm-contact"
    with pytest.raises(PolicyRefusal, match=problem) as info:
        runtime.effect("crm", UPSERT, key, upsert, approval=approval)
    assert "crm.upsert cannot be undone" in str(info.value)
    assert calls == []  # nothing was attempted
    assert services.store.outbox.entry(key) is None  # and nothing is on record


def test_an_irreversible_effect_runs_once_after_an_approval_or_edit_of_its_run(
    services: Services,
) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker")
    for decision in ("approve", "edit"):
        run, calls, upsert = _upsert_run()
        approval = _decision(services, run, decision)
        key = f"{run}/crm-contact"
        assert runtime.effect("crm", UPSERT, key, upsert, approval=approval) == (
            {"id": "c-1"},
            True,
        )
        assert runtime.effect("crm", UPSERT, key, upsert, approval=approval)[1] is False
        assert calls == [False]


def test_a_payment_the_operator_recorded_approves_marking_it_paid(services: Services) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker")
    run, calls, upsert = _upsert_run()
    approval = _decision(services, run, "", kind="payment.recorded")
    runtime.effect("payments", UPSERT, f"{run}/provider-paid", upsert, approval=approval)
    assert calls == [False]


def test_a_dry_run_of_an_irreversible_effect_needs_no_approval(services: Services) -> None:
    runtime = ConnectorRuntime(services.store, dry_run=True, worker="test-worker")
    run, calls, upsert = _upsert_run()
    runtime.effect("crm", UPSERT, f"{run}/crm-contact", upsert)
    assert calls == [True]


def test_guard_state_is_published_for_aios_health(services: Services) -> None:
    worker = f"test-worker-{uuid.uuid4().hex[:6]}"
    runtime = ConnectorRuntime(
        services.store,
        guards={"crm": GuardSettings(rate_limit="5/minute", fail_max=1)},
        worker=worker,
    )
    with pytest.raises(TransientConnectorError):
        runtime.guard("crm").call(Flaky(1, TransientConnectorError("crm", "HTTP 502")))
    rows = [r for r in services.store.health.guards() if r["worker"] == worker]
    assert [(r["connector"], r["breaker_state"], r["rate_used"]) for r in rows] == [
        ("crm", "open", 1)
    ]


# --- synthetic checks on the dev server --------------------------------------------------------


def probing(services: Services, **probes: CheckResult) -> Services:
    """Services whose synthetic check probes the real SMTP server plus ``probes``."""

    class WithProbes(Services):
        def probes(self) -> dict[str, object]:  # type: ignore[override]
            extra = {name: (lambda r=result: r) for name, result in probes.items()}
            return {**super().probes(), **extra}

    fields = {f.name: getattr(services, f.name) for f in dataclasses.fields(services)}
    runtime = ConnectorRuntime(services.store, worker=f"checks-{uuid.uuid4().hex[:6]}")
    return WithProbes(**{**fields, "runtime": runtime})


async def test_passing_check_records_results_and_asks_nothing(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: RecordingSmtp,
) -> None:
    svc = probing(services)
    before = smtp.count
    async with build_worker(client, settings.task_queue, svc.activities(), executor):
        result = await client.execute_workflow(
            SyntheticCheckWorkflow.run,
            SyntheticCheckInput(),
            id=f"synthetic-check/test-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
    assert result.ok and result.failing == []
    assert [(r.connector, r.ok) for r in result.results] == [("email", True)]
    last = {c["connector"]: c for c in services.store.health.last_checks()}
    assert last["email"]["ok"] is True
    assert smtp.count == before  # the probe sent nothing (other tests may not run meanwhile)


async def test_failing_connector_is_an_inbox_item_until_acknowledged(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> None:
    svc = probing(services, crm=CheckResult(ok=False, detail="not authorised: HTTP 401"))
    workflow_id = f"synthetic-check/test-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, settings.task_queue, svc.activities(), executor):
        handle = await client.start_workflow(
            SyntheticCheckWorkflow.run,
            SyntheticCheckInput(),
            id=workflow_id,
            task_queue=settings.task_queue,
        )
        gate = await wait_for_gate(client, workflow_id)
        assert gate.gate == "connectors"
        assert gate.title == "Connector check failed: crm"
        assert "not authorised: HTTP 401" in gate.summary
        async with asyncio.timeout(20):
            while workflow_id not in [i.workflow_id for i in await operations.inbox(client)]:
                await asyncio.sleep(0.2)
        await handle.signal(
            "decide", GateDecision(decision="approve", approver="ops", comment="rotating key")
        )
        result = await handle.result()
    assert (result.ok, result.failing, result.acknowledged_by) == (False, ["crm"], "ops")
    last = {c["connector"]: c for c in services.store.health.last_checks()}
    assert last["crm"]["ok"] is False and last["email"]["ok"] is True


async def test_schedule_is_created_once_and_updated_after(
    client: Client, settings: Settings
) -> None:
    s = settings.model_copy(update={"synthetic_check_every": timedelta(minutes=30)})
    try:
        assert await operations.ensure_check_schedule(client, s) in ("created", "updated")
        assert await operations.ensure_check_schedule(client, s) == "updated"
        desc = await client.get_schedule_handle(CHECK_SCHEDULE_ID).describe()
        assert [i.every for i in desc.schedule.spec.intervals] == [timedelta(minutes=30)]
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        action = desc.schedule.action
        assert getattr(action, "workflow", None) == "SyntheticCheckWorkflow"
        assert getattr(action, "task_queue", None) == s.task_queue
    finally:
        await client.get_schedule_handle(CHECK_SCHEDULE_ID).delete()


async def test_aios_health_shows_checks_breakers_and_rate_limits(settings: Settings) -> None:
    from tests.test_cli import aios

    code, out, err = await aios(settings, "health")
    assert code == 0, err
    assert "Synthetic checks" in out and "Circuit breakers and rate limits" in out


# --- over HTTP: the webhook connector against a server that fails on demand --------------------


def webhook(server: FlakyHttpServer, timeout: float = 2.0) -> WebhookConnector:
    return WebhookConnector(
        WebhookConfig(url=server.url, secret=SecretStr("s" * 32), timeout_seconds=timeout)
    )


EVENT = WebhookEvent(type="invoice.paid", data={"invoice": "INV-000042"})


def test_breaker_opens_on_a_failing_server_and_closes_when_it_recovers(
    services: Services,
) -> None:
    runtime = ConnectorRuntime(
        services.store,
        guards={"webhook": GuardSettings(rate_limit="100/second", fail_max=3, reset_timeout=0.5)},
        worker="test-worker",
    )
    with FlakyHttpServer() as server:
        hook = webhook(server)
        webhook_op = hook.operations["deliver"]
        server.fail(5, status=503)
        keys = [f"test/{uuid.uuid4().hex}/hook/{n}" for n in range(5)]
        for key in keys[:3]:
            with pytest.raises(TransientConnectorError, match="HTTP 503"):
                runtime.effect("webhook", webhook_op, key, _deliver(hook, key))
        with pytest.raises(TransientConnectorError, match="circuit open"):
            runtime.effect("webhook", webhook_op, keys[3], _deliver(hook, keys[3]))
        assert len(server.received) == 3  # the open breaker spared the failing server

        server.reset()
        time.sleep(0.6)  # the breaker's reset timeout
        result, ran = runtime.effect("webhook", webhook_op, keys[0], _deliver(hook, keys[0]))
        assert ran and result["status_code"] == 200
        assert runtime.guard("webhook").snapshot()["breaker_state"] == "closed"
        again, ran_again = runtime.effect("webhook", webhook_op, keys[0], _deliver(hook, keys[0]))
        assert not ran_again and again == result
        assert [r.method for r in server.received] == ["POST"]  # delivered once


def _deliver(hook: WebhookConnector, key: str) -> Callable[[bool], dict[str, Any]]:
    return lambda dry_run: hook.deliver(key, EVENT, dry_run=dry_run).model_dump()


def test_rate_limited_and_slow_servers_are_retryable_errors(services: Services) -> None:
    runtime = ConnectorRuntime(services.store, worker="test-worker")
    with FlakyHttpServer() as server:
        hook = webhook(server, timeout=0.3)
        op = hook.operations["deliver"]
        server.rate_limit(retry_after=3)
        key = f"test/{uuid.uuid4().hex}/hook"
        with pytest.raises(RateLimited) as info:
            runtime.effect("webhook", op, key, _deliver(hook, key))
        assert info.value.retry_after == 3
        server.slow(1.0)
        with pytest.raises(TransientConnectorError):
            runtime.effect("webhook", op, key, _deliver(hook, key))
        result, ran = runtime.effect("webhook", op, key, _deliver(hook, key))
        assert ran and result["status_code"] == 200
        deliveries = {r.headers["x-aios-delivery"] for r in server.received}
        assert len(deliveries) == 1  # every retry carried the same delivery id


async def test_temporal_retries_a_failing_webhook_and_it_is_delivered_once(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> None:
    from tests.webhook_flow import DeliverWebhookTwiceWorkflow

    with FlakyHttpServer() as server:
        server.fail(2, status=502)
        s = settings.model_copy(
            update={"webhook_url": server.url, "webhook_secret": SecretStr("k" * 32)}
        )
        svc = dataclasses.replace(services, settings=s, webhook=webhook(server))
        async with Worker(
            client,
            task_queue=s.task_queue,
            workflows=[DeliverWebhookTwiceWorkflow],
            activities=svc.activities(),
            activity_executor=executor,
        ):
            first, second = await client.execute_workflow(
                DeliverWebhookTwiceWorkflow.run,
                f"test/{uuid.uuid4().hex}/webhook",
                id=f"test-webhook-{uuid.uuid4().hex[:8]}",
                task_queue=s.task_queue,
            )
        # Two 502s, each retried by Temporal's retry policy, then the 200; the second run of
        # the step found the outbox done and sent nothing.
        assert [r.method for r in server.received] == ["POST", "POST", "POST"]
        assert first.delivered_now and not second.delivered_now
        assert first.delivery_id == second.delivery_id
        assert len({r.headers["x-aios-delivery"] for r in server.received}) == 1


async def test_synthetic_check_probes_a_real_caldav_server_and_reports_it_down(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    with RadicaleServer(tmp_path / "radicale") as radicale:
        calendar = CalDavConnector(
            CalDavConfig(
                url=radicale.url,
                username=radicale.username,
                password=SecretStr(radicale.password),
                calendar="AiOs",
                create_missing=True,
                timeout_seconds=2,
            )
        )
        svc = dataclasses.replace(probing(services), calendar=calendar, webhook=None)
        assert set(svc.probes()) == {"email", "caldav"}
        async with build_worker(client, settings.task_queue, svc.activities(), executor):
            up = await client.execute_workflow(
                SyntheticCheckWorkflow.run,
                SyntheticCheckInput(),
                id=f"synthetic-check/test-{uuid.uuid4().hex[:8]}",
                task_queue=settings.task_queue,
            )
            assert up.ok, up.results
            radicale.stop()
            workflow_id = f"synthetic-check/test-{uuid.uuid4().hex[:8]}"
            handle = await client.start_workflow(
                SyntheticCheckWorkflow.run,
                SyntheticCheckInput(),
                id=workflow_id,
                task_queue=settings.task_queue,
            )
            gate = await wait_for_gate(client, workflow_id)
            assert gate.title == "Connector check failed: caldav"
            await handle.signal("decide", GateDecision(decision="approve", approver="ops"))
            down = await handle.result()
    assert down.failing == ["caldav"]
    assert "cannot reach" in next(r.detail for r in down.results if r.connector == "caldav")
