"""``aios worker`` as an operator runs it: a subprocess that waits for Temporal, works, logs
JSON lines, and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio.client import Client

from aios import operations
from aios.config import Settings
from aios.devstack import start_temporal, stop_temporal
from aios.kernel.money import LineItem
from aios.temporal import connect
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.onboarding import OnboardingResult
from tests.conftest import ROOT, dev_config, free_port, subprocess_env
from tests.flaky_http import FlakyHttpServer
from tests.helpers import start_at_gate
from tests.money_helpers import known_client

Line = dict[str, Any]


async def read_until(
    stream: asyncio.StreamReader, seen: list[Line], wanted: Callable[[Line], bool], timeout: float
) -> Line:
    """Read JSON lines into ``seen`` until one is ``wanted``; every line must be JSON."""
    async with asyncio.timeout(timeout):
        while True:
            raw = await stream.readline()
            assert raw, f"the worker exited; it wrote: {seen}"
            line = json.loads(raw)  # a line that is not JSON fails the test here
            seen.append(line)
            if wanted(line):
                return line


async def test_worker_waits_for_temporal_then_works_and_stops_on_ctrl_c(
    settings: Settings, services: Services, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = subprocess_env(
        settings, AIOS_TEMPORAL_ADDRESS=address, AIOS_QDRANT_PATH=str(tmp_path / "qdrant")
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[Line] = []
    config = dev_config(grpc_port=port)
    state = tmp_path / "temporal"
    try:
        waiting = await read_until(
            proc.stderr, seen, lambda line: "not reachable" in line["event"], timeout=60
        )
        assert waiting["event"] == (
            f"Temporal at {address} is not reachable; retrying in 5 s (start it with `aios dev up`)"
        )
        assert (waiting["logger"], waiting["level"]) == ("aios.worker", "warning")
        assert proc.returncode is None  # it waits instead of exiting

        await asyncio.to_thread(start_temporal, state, config)
        await read_until(proc.stderr, seen, lambda line: line["event"] == "worker started", 90)

        # It works: an onboarding through this worker, decided, completes; the decision is
        # logged with the run's ids.
        here = settings.model_copy(update={"temporal_address": address})
        client = await connect(here)
        handle, _, _, _ = await start_at_gate(client, here, timeout=60)
        await operations.decide(
            client, handle.id, operations.Decision(decision="approve", approver="pat")
        )
        result = await asyncio.wait_for(handle.result(), timeout=60)
        assert isinstance(result, OnboardingResult) and result.status == "completed"
        decided = await read_until(
            proc.stderr, seen, lambda line: line["logger"] == "aios.gates", timeout=30
        )
        assert decided["event"] == "gate welcome approve by pat"
        assert (decided["workflow_id"], decided["run_id"]) == (handle.id, handle.run_id)

        # An invoice (a PDF with a subset font) leaves no font-subsetting chatter.
        _, key, _ = known_client(services.store)
        invoice = operations.NewInvoice(
            client_key=key,
            items=[LineItem(description="Design", quantity=1, unit_price_minor=30_000)],
        )
        started = await operations.start_billing(client, here, services.store, invoice)
        state_of = await operations.await_invoice(client, started.workflow_id, wait_seconds=60)
        assert state_of.number, state_of
        await read_until(proc.stderr, seen, lambda line: line["event"] == "email sent", timeout=60)
        await client.get_workflow_handle(started.workflow_id).terminate("test done")

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.to_thread(stop_temporal, state, config)
    assert proc.returncode == 0
    assert rest == b""  # nothing on stdout
    assert seen[-1]["logger"] in ("aios.worker", "aios.gates", "temporalio.activity")
    assert not [line for line in seen if str(line["logger"]).startswith("fontTools")]
    assert all("logger" in line and "level" in line for line in seen)


async def test_ctrl_c_while_waiting_stops_the_worker_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = subprocess_env(
        settings, AIOS_TEMPORAL_ADDRESS=address, AIOS_QDRANT_PATH=str(tmp_path / "qdrant")
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[Line] = []
    try:
        await read_until(proc.stderr, seen, lambda line: "not reachable" in line["event"], 60)
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), timeout=4)  # before the next try, 5 s later
        remaining = await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    last = json.loads(remaining.decode().strip().splitlines()[-1])
    assert last["event"] == "worker stopped before Temporal was reachable"


async def test_sigterm_lets_the_effect_in_flight_finish_and_hands_the_run_on(
    client: Client, settings: Settings, services: Services, tmp_path: Path
) -> None:
    """A worker told to stop (SIGTERM, as a deploy or `kubectl rollout` does) stops taking
    work, lets the webhook delivery it is in the middle of finish, and exits cleanly; another
    worker finishes the run, and the webhook was delivered once."""
    with FlakyHttpServer() as hook:
        hook.slow(4.0)  # the first delivery is answered 4 s late: the worker is mid-effect
        env = subprocess_env(
            settings,
            AIOS_QDRANT_PATH=str(tmp_path / "qdrant"),
            AIOS_WEBHOOK_URL=hook.url,
            AIOS_WEBHOOK_SECRET="a-test-webhook-secret-0123456789",
            AIOS_WORKER_SHUTDOWN_GRACE="20",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aios.cli",
            "worker",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        seen: list[Line] = []
        try:
            await read_until(proc.stderr, seen, lambda line: line["event"] == "worker started", 90)
            handle, _, _, _ = await start_at_gate(client, settings, timeout=60)
            await operations.decide(
                client, handle.id, operations.Decision(decision="approve", approver="pat")
            )
            await asyncio.to_thread(hook.wait_for, 1, 60)  # the delivery is under way
            proc.send_signal(signal.SIGTERM)
            await read_until(
                proc.stderr, seen, lambda line: line["event"] == "worker stopped", timeout=40
            )
            await asyncio.wait_for(proc.wait(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0
        events = [line["event"] for line in seen]
        assert "worker stopping: finishing in-flight tasks" in events

        with ThreadPoolExecutor(4) as pool:
            async with build_worker(client, settings.task_queue, services.activities(), pool):
                result = await asyncio.wait_for(handle.result(), timeout=60)
        assert isinstance(result, OnboardingResult) and result.status == "completed"
        deliveries = [r for r in hook.received if r.method == "POST"]
        assert len(deliveries) == 1, [r.body[:80] for r in deliveries]
        assert json.loads(deliveries[0].body)["type"] == "client.onboarded"
