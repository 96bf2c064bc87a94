"""Small helpers shared by the workflow tests."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from aios import operations
from aios.config import Settings
from aios.kernel.models import ClientIntake
from aios.workflows.gates import PendingGate
from aios.workflows.onboarding import OnboardingResult

HISTORIES = Path(__file__).parent / "histories"
# Workflow ids of the runs this session made, to replay at the end.
RUNS: list[str] = []


async def start(
    client: Client,
    settings: Settings,
    name: str,
    key: str,
    email: str,
    notes: str = "Needs a new website by May 3, budget $5k.",
) -> WorkflowHandle:
    started = await operations.start_onboarding(
        client, settings, ClientIntake(name=name, key=key, email=email, notes=notes)
    )
    RUNS.append(started.workflow_id)
    return client.get_workflow_handle(
        started.workflow_id, run_id=started.run_id, result_type=OnboardingResult
    )


async def start_at_gate(
    client: Client, settings: Settings, timeout: float = 30
) -> tuple[WorkflowHandle, PendingGate, str, str]:
    """Onboard a fresh client and wait until its run waits at the welcome gate.

    Returns the handle, the pending gate, the client key and the client's email address.
    """
    from tests.conftest import unique_client

    name, key, email = unique_client()
    handle = await start(client, settings, name, key, email)
    return handle, await wait_for_gate(client, handle.id, timeout), key, email


async def wait_for_gate(client: Client, workflow_id: str, timeout: float = 30) -> PendingGate:
    """Poll the ``pending_gates`` query until the workflow waits at a gate.

    A query that times out is asked again: right after a server restart the server first
    offers it to the previous worker's sticky queue, and only after that times out to the
    new worker.
    """
    async with asyncio.timeout(timeout):
        while True:
            try:
                gates = await operations.pending_gates(client, workflow_id)
            except RPCError as exc:
                if exc.status != RPCStatusCode.DEADLINE_EXCEEDED and "Timeout" not in str(exc):
                    raise
                continue
            if gates:
                return gates[0]
            await asyncio.sleep(0.1)


async def save_history(handle: WorkflowHandle, name: str) -> None:
    """With AIOS_SAVE_HISTORIES=1, store the run's history under tests/histories."""
    if os.environ.get("AIOS_SAVE_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))


async def notice_lost_worker_soon(
    client: Client, workflow_id: str, activity_type: str, seconds: float = 1.0
) -> None:
    """After a test kills a worker inside ``activity_type``: shorten that pending step's
    heartbeat timeout (Temporal's UpdateActivityOptions, what `temporal activity
    update-options` sends), so the server notices the lost attempt within ``seconds`` instead
    of the step's 30 s, and retries it on another worker the usual way."""
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.field_mask_pb2 import FieldMask
    from temporalio.api.activity.v1 import ActivityOptions
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import UpdateActivityOptionsRequest

    timeout = Duration()
    timeout.FromMilliseconds(int(seconds * 1000))
    await client.workflow_service.update_activity_options(
        UpdateActivityOptionsRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id),
            identity="tests",
            activity_options=ActivityOptions(heartbeat_timeout=timeout),
            update_mask=FieldMask(paths=["heartbeat_timeout"]),
            type=activity_type,
        )
    )


def replacing(activities: Sequence[Callable[..., Any]], **stand_ins: Callable[..., Any]) -> list:
    """``activities`` with the one named by each keyword swapped for its stand-in: a test's own
    ``record_event`` that fails or lingers is ``replacing(activities, record_event=fails)``."""
    return [
        *(a for a in activities if getattr(a, "__name__", "") not in stand_ins),
        *stand_ins.values(),
    ]
