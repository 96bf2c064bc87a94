"""A cancel never cuts an effect in half: real dev server, PostgreSQL, worker.

A step is cancelled when its run is (or when it is no longer needed, like a gate's email after
the decision). Temporal delivers the cancel to a running step in the answer to a heartbeat, by
raising an exception in the step's thread wherever it is. The connector runtime holds that
exception back while an effect runs (outbox record, the effect, its commit), so the step is
cancelled before or after its effect, never in the middle, and nothing is left in doubt.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import CancelledError

from aios.config import Settings
from aios.connectors.contract import Operation
from aios.connectors.runtime import ConnectorRuntime
from aios.kernel.store import OutboxResult
from aios.workers.main import WorkerTuning, build_worker
from aios.workers.services import Services, connector_runtime

with workflow.unsafe.imports_passed_through():
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT

SLOW = Operation(name="slow_effect", effect=True, compensation="undo_slow_effect")


class SlowEffectInput(BaseModel):
    idempotency_key: str


class SlowEffects:
    """An effect that takes a second and a half and heartbeats in the middle of it (as a long
    upload would), so a cancel reaches it while it runs."""

    def __init__(self, runtime: ConnectorRuntime) -> None:
        self._runtime = runtime
        self.started = threading.Event()
        self.finished = threading.Event()
        self.cancelled_after_effect = threading.Event()

    @activity.defn(name="test_slow_effect")
    def slow_effect(self, inp: SlowEffectInput) -> None:
        def effect(dry_run: bool) -> OutboxResult:
            self.started.set()
            for _ in range(3):
                time.sleep(0.5)
                activity.heartbeat("halfway")
            self.finished.set()
            return {"done": True}

        try:
            self._runtime.effect("webhook", SLOW, inp.idempotency_key, effect)
        except CancelledError:
            self.cancelled_after_effect.set()
            raise
        time.sleep(5)  # a cancel still pending would land here


@workflow.defn(name="TestSlowEffect")
class SlowEffectWorkflow:
    @workflow.run
    async def run(self) -> None:
        await step(
            SlowEffects.slow_effect,
            SlowEffectInput(idempotency_key=step_key("slow")),
            CONNECTOR_EFFECT,
        )


async def test_a_cancel_during_an_effect_lands_after_it_and_leaves_nothing_in_doubt(
    client: Client, settings: Settings, services: Services, executor: ThreadPoolExecutor
) -> None:
    runtime = connector_runtime(services.settings, services.store)
    effects = SlowEffects(runtime)
    tuning = WorkerTuning(heartbeat_throttle=timedelta(seconds=0.2))
    async with build_worker(
        client,
        settings.task_queue,
        [effects.slow_effect],
        executor,
        workflows=[SlowEffectWorkflow],
        tuning=tuning,
        memory_queue=False,
    ):
        handle = await client.start_workflow(
            SlowEffectWorkflow.run,
            id=f"test-slow-effect/{uuid.uuid4().hex[:10]}",
            task_queue=settings.task_queue,
        )
        await asyncio.wait_for(asyncio.to_thread(effects.started.wait), 30)
        await handle.cancel()
        await asyncio.wait_for(asyncio.to_thread(effects.cancelled_after_effect.wait), 30)
    assert effects.finished.is_set()  # the effect ran to its end before the cancel landed
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    key = f"{handle.id}/{handle.result_run_id}/slow"
    entry = services.store.outbox.entry(key)
    assert entry is not None and entry["status"] == "done", entry
    doubt = services.store.outbox.in_doubt(older_than_seconds=0)
    assert [e for e in doubt if e["idempotency_key"] == key] == []
