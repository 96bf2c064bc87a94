"""Durability across a dev server restart, and replay of recorded histories."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from aios import operations
from aios.config import Settings
from aios.converter import DATA_CONVERTER
from aios.devstack import start_temporal, stop_temporal
from aios.kernel.models import ClientIntake
from aios.temporal import connect
from aios.workers.main import build_worker, workflow_runner
from aios.workers.services import Services
from aios.workflows import WORKFLOWS
from aios.workflows.gates import GateDecision
from aios.workflows.onboarding import OnboardingResult
from tests.conftest import RecordingSmtp, dev_config, unique_client
from tests.helpers import HISTORIES, RUNS, wait_for_gate


async def test_gate_survives_a_dev_server_restart(
    settings: Settings,
    services: Services,
    smtp: RecordingSmtp,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    config = dev_config()
    state = tmp_path / "server"
    own = settings.model_copy(update={"temporal_address": config.address})
    await asyncio.to_thread(start_temporal, state, config)
    try:
        name, key, email = unique_client()
        client = await connect(own)
        async with build_worker(client, own.task_queue, services.activities(), executor):
            started = await operations.start_onboarding(
                client, own, ClientIntake(name=name, key=key, email=email)
            )
            await wait_for_gate(client, started.workflow_id)

        await asyncio.to_thread(stop_temporal, state, config)
        await asyncio.to_thread(start_temporal, state, config)  # same SQLite file

        client = await connect(own)
        async with build_worker(client, own.task_queue, services.activities(), executor):
            gate = await wait_for_gate(client, started.workflow_id)
            assert gate.gate == "welcome"
            await operations.decide(
                client, started.workflow_id, GateDecision(decision="approve", approver="pat")
            )
            result = await client.get_workflow_handle(
                started.workflow_id, result_type=OnboardingResult
            ).result()
        assert result.status == "completed"
        assert len(smtp.to(email)) == 1
    finally:
        await asyncio.to_thread(stop_temporal, state, config)


async def test_this_sessions_runs_replay_cleanly(client: Client) -> None:
    """Every onboarding run the other tests made replays against today's workflow code."""
    if not RUNS:
        pytest.skip("run together with the workflow tests")
    histories = []
    for workflow_id in dict.fromkeys(RUNS):
        histories.append(await client.get_workflow_handle(workflow_id).fetch_history())
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=DATA_CONVERTER,
        workflow_runner=workflow_runner(),
    )
    for history in histories:
        await replayer.replay_workflow(history)  # raises on any nondeterminism


async def test_stored_histories_replay_cleanly() -> None:
    """Histories saved from earlier versions must replay: a change that breaks them needs
    ``workflow.patched``. Those in ``tests/histories`` were written before the
    ``fewer-round-trips`` patch, those in ``tests/histories/fewer-round-trips`` after it.
    Write new ones with ``AIOS_SAVE_HISTORIES=1 pytest tests/test_onboarding.py
    tests/test_proposal.py tests/test_billing.py tests/test_newsletter.py`` (they overwrite
    the files in ``tests/histories``: keep the earlier versions, move the new ones to a folder
    named after the newest patch).
    """
    files = sorted(HISTORIES.rglob("*.json"))
    assert any(f.parent != HISTORIES for f in files), "no histories of the newest patch"
    assert files, "no stored histories in tests/histories"
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=DATA_CONVERTER,
        workflow_runner=workflow_runner(),
    )
    for path in files:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        await replayer.replay_workflow(history)
