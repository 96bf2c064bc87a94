"""Scale under hard kills: three `aios worker --role general` processes and one `--role memory`
on the embedded stack with the machine's PostgreSQL, 300 onboardings and 60 proposals, and one
general worker killed with SIGKILL (and started again) every 10 seconds.

Every run completes; every client gets exactly one welcome or proposal email and the operator
exactly one gate email per gate; no effect is left in doubt. Gates are answered the way an
operator's script would: by watching the gate projection and sending signal ``decide``.
``AIOS_SCALE_ONBOARDINGS`` and ``AIOS_SCALE_PROPOSALS`` change the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from aios import operations
from aios.config import Settings
from aios.kernel import ClientIntake
from aios.workers.services import Services
from aios.workflows.onboarding import OnboardingResult
from aios.workflows.proposal import ProposalResult
from tests.conftest import ROOT, RecordingSmtp, subprocess_env, unique_client
from tests.money_helpers import known_client

ONBOARDINGS = int(os.environ.get("AIOS_SCALE_ONBOARDINGS", "300"))
PROPOSALS = int(os.environ.get("AIOS_SCALE_PROPOSALS", "60"))
KILL_EVERY = 10.0
GENERAL_WORKERS = 3


class Workers:
    """The worker processes; ``kill_one`` SIGKILLs a general worker and starts a new one."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.general: list[asyncio.subprocess.Process] = []
        self.memory: asyncio.subprocess.Process | None = None
        self.kills = 0

    async def spawn(self, role: str) -> asyncio.subprocess.Process:
        log = open(self.logs / f"{role}-{time.monotonic_ns()}.log", "wb")  # noqa: ASYNC230, SIM115
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aios.cli",
            "worker",
            "--role",
            role,
            env=self.env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )

    async def start(self) -> None:
        self.memory = await self.spawn("memory")
        self.general = [await self.spawn("general") for _ in range(GENERAL_WORKERS)]

    async def kill_one(self) -> None:
        victim = self.general[self.kills % GENERAL_WORKERS]
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        self.general[self.kills % GENERAL_WORKERS] = await self.spawn("general")
        self.kills += 1

    async def stop(self) -> None:
        procs = [*self.general, *([self.memory] if self.memory else [])]
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def killer(workers: Workers, done: asyncio.Event) -> None:
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), KILL_EVERY)
        if not done.is_set():
            await workers.kill_one()


async def operator(
    client: Client, services: Services, ours: set[str], since: datetime, done: asyncio.Event
) -> tuple[set[str], set[str]]:
    """Approve every gate of our runs as it opens; decline each proposal once it is sent.
    Returns the gate keys approved and the proposals answered."""
    approved: set[str] = set()
    answered: set[str] = set()
    while not done.is_set():
        for gate in await asyncio.to_thread(services.store.gates.waiting):
            key = f"{gate.workflow_id}/{gate.run_id}/{gate.gate_key}"
            if gate.workflow_id in ours and key not in approved:
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(gate.workflow_id).signal(
                        "decide",
                        operations.Decision(decision="approve", approver="scale", gate=gate.gate),
                    )
                    approved.add(key)
        sent = await asyncio.to_thread(
            services.store.events.since, since, ["proposal.sent"], limit=10_000
        )
        for event in sent:
            if event.workflow_id in ours and event.workflow_id not in answered:
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(event.workflow_id).signal(
                        "client_response", {"response": "decline", "note": "not now"}
                    )
                    answered.add(event.workflow_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
    return approved, answered


@pytest.mark.timeout(1200)
async def test_three_workers_and_a_memory_worker_survive_sigkill_every_ten_seconds(
    client: Client, settings: Settings, services: Services, smtp: RecordingSmtp, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    env = subprocess_env(
        settings,
        AIOS_QDRANT_PATH=str(tmp_path / "qdrant"),
        AIOS_WORKER_SHUTDOWN_GRACE="5",
        AIOS_WORKER_ACTIVITY_SLOTS="4",
    )
    workers = Workers(env, tmp_path)
    since = datetime.now(UTC)
    done = asyncio.Event()
    await workers.start()
    onboarding: dict[str, tuple[WorkflowHandle[Any, Any], str]] = {}
    proposals: dict[str, tuple[WorkflowHandle[Any, Any], str]] = {}
    ours: set[str] = set()
    kill_task = asyncio.create_task(killer(workers, done))
    operator_task = asyncio.create_task(operator(client, services, ours, since, done))
    try:
        limit = asyncio.Semaphore(20)

        async def onboard() -> None:
            name, key, email = unique_client("scale")
            async with limit:
                started = await operations.start_onboarding(
                    client,
                    settings,
                    ClientIntake(name=name, key=key, email=email, notes="A new site."),
                )
            ours.add(started.workflow_id)
            handle = client.get_workflow_handle(started.workflow_id, result_type=OnboardingResult)
            onboarding[started.workflow_id] = (handle, email)

        async def propose() -> None:
            _, key, email = await asyncio.to_thread(known_client, services.store)
            async with limit:
                started = await operations.start_proposal(
                    client,
                    settings,
                    services.store,
                    operations.NewProposal(
                        client_key=key, scope="A new website", budget=Decimal(9000)
                    ),
                )
            ours.add(started.workflow_id)
            handle = client.get_workflow_handle(started.workflow_id, result_type=ProposalResult)
            proposals[started.workflow_id] = (handle, email)

        await asyncio.gather(
            *[onboard() for _ in range(ONBOARDINGS)], *[propose() for _ in range(PROPOSALS)]
        )
        results = await asyncio.wait_for(
            asyncio.gather(*(h.result() for h, _ in [*onboarding.values(), *proposals.values()])),
            timeout=900,
        )
    finally:
        done.set()
        await asyncio.gather(kill_task, return_exceptions=True)
        approved, answered = await operator_task
        await workers.stop()

    assert workers.kills >= 3, "the runs finished before the kills began; raise the counts"
    statuses = [r.status for r in results]
    assert statuses.count("completed") == ONBOARDINGS, statuses
    assert statuses.count("declined") == PROPOSALS, statuses
    # Each client got exactly one email, the welcome or the proposal, whenever the kills fell
    # (the outbox commits an email just before the terminating dot of DATA).
    for _, email in [*onboarding.values(), *proposals.values()]:
        received = smtp.to(email)
        assert len(received) == 1, (email, len(received))
    requested = [
        e
        for e in services.store.events.since(since, ["gate.requested"], limit=10_000)
        if e.workflow_id in ours
    ]
    assert len(requested) == len(approved) >= ONBOARDINGS

    def workflow_of(key: str) -> str:  # "<process>/<id>/<run id>/<step>"
        return "/".join(key.split("/")[:2])

    # The operator's gate email: at most one per gate (none when the decision came first).
    keys = [
        str(make_header(decode_header(str(m["X-Aios-Idempotency-Key"]))))
        for m in smtp.to(settings.operator_email)
    ]
    mine = [k for k in keys if workflow_of(k) in ours]
    gate_mails = [k.removesuffix("/reminder/0") for k in mine]
    assert len(mine) == len(set(mine)), [k for k in set(mine) if mine.count(k) > 1]
    assert set(gate_mails) <= {e.event_key.removesuffix("/gate.requested") for e in requested}
    # ... and exactly the gates whose email the run recorded as sent (none is skipped or lost).
    emailed = [
        e
        for e in services.store.events.since(since, ["gate.emailed"], limit=10_000)
        if e.workflow_id in ours
    ]
    assert len(set(gate_mails)) == len(emailed) > 0
    in_doubt = [
        e
        for e in services.store.outbox.in_doubt(older_than_seconds=0)
        if workflow_of(e["idempotency_key"]) in ours
    ]
    assert in_doubt == []
    assert answered == set(proposals)
