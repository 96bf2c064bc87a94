"""A new worker build must not break runs that wait at a gate for days.

AiOs versions every change to a process's commands with ``workflow.patched`` (see README,
"Upgrading running processes"). Here runs start on build 1 and wait at their gate; build 2,
with a new step before the gate behind a patch and a changed step after it, takes over: the
waiting runs replay and complete, new runs take the new path. The same change shipped without
the patch fails the waiting run's workflow task (it is not failed or compensated: it waits for a
fixed build), which is what the patch prevents.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from aios import operations
from aios.config import Settings
from aios.workers.main import build_worker
from aios.workers.services import Services
from tests.helpers import wait_for_gate
from tests.versioned_workflows import BuildOne, BuildTwo, BuildTwoUnpatched, note


async def _start(client: Client, settings: Settings) -> WorkflowHandle:
    return await client.start_workflow(
        "VersionedProcess",
        "order",
        id=f"versioned/{uuid.uuid4().hex[:10]}",
        task_queue=settings.task_queue,
        result_type=list[str],
    )


async def _approve(client: Client, handle: WorkflowHandle) -> None:
    await operations.decide(
        client, handle.id, operations.Decision(decision="approve", approver="pat")
    )


async def _task_failures(handle: WorkflowHandle) -> list[str]:
    history = await handle.fetch_history()
    return [
        e.workflow_task_failed_event_attributes.failure.message
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def test_runs_waiting_at_a_gate_survive_a_new_build(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> None:
    activities = [*services.activities(), note]

    def worker(build: type) -> Worker:
        return build_worker(client, settings.task_queue, activities, executor, workflows=[build])

    async with worker(BuildOne):
        waiting = [await _start(client, settings) for _ in range(2)]
        for handle in waiting:
            await wait_for_gate(client, handle.id)
    first, second = waiting

    # The unpatched build cannot replay a waiting run: its workflow task fails, the run waits.
    async with worker(BuildTwoUnpatched):
        await _approve(client, second)
        async with asyncio.timeout(30):
            while not await _task_failures(second):
                await asyncio.sleep(0.2)
    assert "nondetermin" in " ".join(await _task_failures(second)).lower()

    # Build 2 (patched): both waiting runs complete, on the old path before the gate and the
    # new one after it; a new run takes the new path throughout.
    async with worker(BuildTwo):
        await _approve(client, first)
        assert await asyncio.wait_for(first.result(), 60) == ["intake", "approved", "send v2"]
        assert await asyncio.wait_for(second.result(), 60) == ["intake", "approved", "send v2"]
        fresh = await _start(client, settings)
        await wait_for_gate(client, fresh.id)
        await _approve(client, fresh)
        assert await asyncio.wait_for(fresh.result(), 60) == [
            "intake",
            "audit",
            "approved",
            "send v2",
        ]
