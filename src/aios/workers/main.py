"""Worker assembly and the ``aios worker`` entry point."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import pkgutil
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from aios.config import Settings, identity_warning
from aios.errors import StackError
from aios.temporal import connect
from aios.workers.memory import WorkerRole, memory_queue_plugins, memory_service
from aios.workers.services import Services, scrubber

__all__ = [
    "ACTIVITY_THREADS",
    "WorkerTuning",
    "build_worker",
    "connect_when_reachable",
    "run_worker",
    "workflow_runner",
]

ACTIVITY_THREADS = 8
# While Temporal is not reachable at start, `aios worker` tries again this often.
CONNECT_RETRY_SECONDS = 5.0
# Imported lazily by pydantic when a workflow validates an email address; they are pure and
# deterministic, so the sandbox passes them through instead of re-importing them per run.
PASSTHROUGH_MODULES = ("email_validator", "idna")
# The process modules: the sandbox imports each afresh for every new run, so a run never sees
# state another run left in its module. Every other aios module (models, policies, the
# Process base, gates, saga, activities' contracts) holds no per-run state, is deterministic
# where workflows use it, and is imported once per worker: re-importing those for every run
# cost a third of the worker's CPU.
PROCESS_MODULES = frozenset(
    {
        "onboarding",
        "proposal",
        "billing",
        "checks",
        "memory_lookup",
        "review",
        "newsletter",
        "newsletter_batch",
        "content",
        "inbound_mail",
    }
)
log = structlog.get_logger("aios.worker")


def shared_modules() -> list[str]:
    """The aios modules the sandbox passes through: all but ``PROCESS_MODULES``."""
    import aios
    import aios.workflows

    shared = [
        f"aios.{m.name}" for m in pkgutil.iter_modules(aios.__path__) if m.name != "workflows"
    ]
    shared += [
        f"aios.workflows.{m.name}"
        for m in pkgutil.iter_modules(aios.workflows.__path__)
        if m.name not in PROCESS_MODULES
    ]
    return sorted(shared)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every worker and replayer uses."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *PASSTHROUGH_MODULES, *shared_modules()
        )
    )


@dataclass(frozen=True)
class WorkerTuning:
    """A worker's capacity (``AIOS_WORKER_*``); the defaults are the settings' defaults."""

    workflow_slots: int = 50
    pollers: int = 5
    cached_runs: int = 150
    shutdown_grace: timedelta = timedelta(seconds=30)
    # How long an activity's heartbeats may be held back at most (Temporal's default). A
    # cancel reaches a running activity in the answer to its next heartbeat sent.
    heartbeat_throttle: timedelta = timedelta(seconds=60)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerTuning:
        return cls(
            workflow_slots=settings.worker_workflow_slots,
            pollers=settings.worker_pollers,
            cached_runs=settings.worker_cached_runs,
            shutdown_grace=settings.worker_shutdown_grace,
        )


def build_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    executor: ThreadPoolExecutor,
    *,
    workflows: Sequence[type] | None = None,
    activity_slots: int = ACTIVITY_THREADS,
    tuning: WorkerTuning | None = None,
    memory_queue: bool = True,
) -> Worker:
    """One worker with every workflow (or ``workflows``) and the given activities, running
    at most ``activity_slots`` activities at once (``executor`` needs as many threads).
    With ``memory_queue``, memory activities among them also serve the memory task queue."""
    from aios.workflows import WORKFLOWS

    tune = tuning or WorkerTuning()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS if workflows is None else workflows,
        workflow_runner=workflow_runner(),
        activities=activities,
        activity_executor=executor,
        plugins=memory_queue_plugins(client, task_queue, activities, executor)
        if memory_queue
        else [],
        max_concurrent_activities=activity_slots,
        max_concurrent_workflow_tasks=tune.workflow_slots,
        max_concurrent_workflow_task_polls=tune.pollers,
        max_concurrent_activity_task_polls=tune.pollers,
        max_cached_workflows=tune.cached_runs,
        graceful_shutdown_timeout=tune.shutdown_grace,
        max_heartbeat_throttle_interval=tune.heartbeat_throttle,
    )


async def connect_when_reachable(
    settings: Settings, stop: asyncio.Event, *, retry_every: float = CONNECT_RETRY_SECONDS
) -> Client | None:
    """Connect to Temporal, waiting while it is not reachable (one log line per try);
    ``None`` when ``stop`` is set first (Ctrl-C while waiting)."""
    runtime = worker_runtime()
    while not stop.is_set():
        try:
            return await connect(settings, runtime=runtime)
        except StackError:
            log.warning(
                f"Temporal at {settings.temporal_address} is not reachable; retrying in "
                f"{retry_every:g} s (start it with `aios dev up`)",
                address=settings.temporal_address,
                namespace=settings.temporal_namespace,
                retry_in_seconds=retry_every,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_every)
    return None


@functools.cache
def worker_runtime() -> Runtime:
    """The Temporal runtime of a worker process: the SDK core's own log lines (Rust) go to
    logger ``temporalio.core.<target>`` instead of straight to stderr, so they are JSON too."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
        )
    )


async def run_worker(
    settings: Settings, *, stop: asyncio.Event | None = None, role: WorkerRole = "all"
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop``), then finish in-flight tasks and exit.

    ``role`` (see ``aios.workers.memory``): ``all`` and ``general`` run the workflows and
    every activity but memory on the task queue; ``all`` and ``memory`` serve the memory task
    queue when this process owns memory (``all`` stands by for it otherwise)."""
    scrubber(settings)  # installed process-wide first: logs and errors from here on know it
    if warning := identity_warning(settings):
        log.warning(warning)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect_when_reachable(settings, stop)
    if client is None:
        log.info("worker stopped before Temporal was reachable")
        return
    from aios.operations.policies import pin_from_database, policy_values, unheeded_settings

    given = settings
    settings = await asyncio.to_thread(pin_from_database, settings, migrate=True)
    log.info("policy version %s: agent and connector values", settings.policy_version)
    if unheeded := unheeded_settings(given, policy_values(settings)):
        log.warning("%s: no effect, policy version %s decides", unheeded, settings.policy_version)
    services = await asyncio.to_thread(Services.from_settings, settings, with_memory=False)
    try:
        async with memory_service(client, settings, services, role, stop):
            if role == "memory":
                await stop.wait()
            else:
                await _run_general(client, settings, services, stop)
        log.info("worker stopped")
    finally:
        services.close()


async def _run_general(
    client: Client, settings: Settings, services: Services, stop: asyncio.Event
) -> None:
    """The worker on the task queue: every workflow, every activity but memory."""
    slots = settings.worker_activity_slots
    with ThreadPoolExecutor(max_workers=slots) as executor:
        worker = build_worker(
            client,
            settings.task_queue,
            services.activities(),
            executor,
            activity_slots=slots,
            tuning=WorkerTuning.from_settings(settings),
            memory_queue=False,  # the memory task queue is memory_service's
        )
        async with worker:
            log.info(
                "worker started",
                task_queue=settings.task_queue,
                namespace=settings.temporal_namespace,
                address=settings.temporal_address,
            )
            await stop.wait()
            log.info("worker stopping: finishing in-flight tasks")
