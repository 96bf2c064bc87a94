"""Crash safety: a worker killed after the email left, before the activity completed."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from aios import operations
from aios.config import Settings
from aios.workflows.gates import GateDecision
from tests.conftest import RecordingSmtp, subprocess_env
from tests.helpers import notice_lost_worker_soon, start_at_gate

HERE = Path(__file__).parent


async def test_killed_worker_then_new_worker_still_sends_exactly_one_email(
    client: Client, settings: Settings, smtp: RecordingSmtp, tmp_path: Path
) -> None:
    env = subprocess_env(settings, AIOS_QDRANT_PATH=str(tmp_path / "qdrant"))
    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "crash_worker.py"),
        env=env,
        cwd=HERE.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    handle, _, _, email = await start_at_gate(client, settings, timeout=60)
    await operations.decide(client, handle.id, GateDecision(decision="approve", approver="pat"))

    # The worker kills itself inside send_welcome, after the SMTP server accepted the email.
    assert await asyncio.wait_for(crashing.wait(), timeout=60) == -signal.SIGKILL
    assert len(smtp.to(email)) == 1
    await notice_lost_worker_soon(client, handle.id, "send_welcome")

    # A fresh worker, the real `aios worker` command, picks up the retry and finishes the run.
    replacement = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aios.cli",
        "worker",
        env=env,
        cwd=HERE.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        result = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        replacement.send_signal(signal.SIGTERM)
        _, logs = await asyncio.wait_for(replacement.communicate(), timeout=30)
    assert replacement.returncode == 0, logs.decode()[-2000:]

    assert result.status == "completed"
    assert len(smtp.to(email)) == 1
    # The second attempt of send_welcome found the outbox entry and did not send again.
    history = await handle.fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert max(attempts) == 2
    lines = [json.loads(line) for line in logs.decode().splitlines() if line.startswith("{")]
    repeat = [line for line in lines if line.get("activity") == "send_welcome"]
    assert repeat and repeat[0]["workflow_id"] == handle.id
    assert repeat[0]["run_id"] == handle.run_id
    assert "already sent" in repeat[0]["event"]
