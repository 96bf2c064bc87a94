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
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from aios import operations
from aios.config import Settings
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows import versions
from tests.conftest import RecordingSmtp
from tests.helpers import start_at_gate, wait_for_gate
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


async def _history_shape(handle: WorkflowHandle) -> tuple[list[str], list[str], int]:
    """The activities the run scheduled, the local activities it ran, and how many
    ``fewer-round-trips`` markers it holds."""
    scheduled, local, markers = [], [], 0
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            data = marker.details["data"].payloads[0].data if "data" in marker.details else b""
            if marker.marker_name == "core_local_activity":
                local.append(json.loads(data)["activity_type"])
            elif marker.marker_name == "core_patch" and versions.FEWER_ROUND_TRIPS in str(
                marker.details
            ):
                markers += 1
    return scheduled, local, markers


async def test_an_onboarding_waiting_since_the_build_before_fewer_round_trips_completes(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: RecordingSmtp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run the previous build started (every step an ordinary activity, no plan) waits at its
    gate; this build replays it and finishes it the old way, with one welcome email; a run this
    build starts takes the new path (kernel writes local, unconfigured connectors skipped)."""

    def worker() -> Worker:
        return build_worker(client, settings.task_queue, services.activities(), executor)

    with monkeypatch.context() as build_one:  # the previous build: no fewer-round-trips path
        build_one.setattr(versions, "fewer_round_trips", lambda: False)
        async with worker():
            old, _, _, old_email = await start_at_gate(client, settings)

    async with worker():
        new, _, _, new_email = await start_at_gate(client, settings)
        for handle in (old, new):
            await _approve(client, handle)
        old_result = await asyncio.wait_for(old.result(), 60)
        new_result = await asyncio.wait_for(new.result(), 60)
    assert (old_result.status, new_result.status) == ("completed", "completed")
    assert len(smtp.to(old_email)) == 1 and len(smtp.to(new_email)) == 1

    scheduled, local, markers = await _history_shape(old)
    assert markers == 0 and local == []
    assert scheduled.count("record_event") == 3  # gate requested, gate decided, the end
    for step in ("upsert_client", "recall_memory", "kickoff_event", "mirror_client"):
        assert step in scheduled

    scheduled, local, markers = await _history_shape(new)
    assert markers == 1
    assert local.count("record_event") == 2 and "upsert_client" in local  # decided, the end
    assert "connector_plan" in local
    assert scheduled == [
        "classify_intake",
        "recall_for_draft",
        "draft_welcome",
        "record_event",  # gate.requested: the inbox shows only a gate the history holds open
        "send_gate_reminder",
        "send_welcome",
        "remember",
    ]
