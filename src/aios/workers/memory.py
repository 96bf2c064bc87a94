"""Memory on its own task queue, served by the process that owns the memory store.

Runs on task queue ``T`` schedule their memory steps on ``memory_task_queue(T)`` (``aios-memory``
for the default ``aios``). On the embedded stack one process owns the Qdrant Edge shard (a
file lock) and serves that queue; every other worker runs workflows and the other activities.
With a Qdrant server (``AIOS_QDRANT_URL``) any worker serves it.

Roles (``aios worker --role``):

- ``all`` (the default): general work, plus memory when this process can own the shard. When
  another process owns it the worker logs so once, runs general work only, and keeps trying
  the lock every ``STANDBY_RETRY_SECONDS``: when the owner stops, one standby takes memory over.
- ``general``: workflows and every activity but memory.
- ``memory``: memory only (waits, with one log line, while another process owns the shard).

Every worker also registers the memory activities on the task queue itself, where an earlier
build scheduled them, over a ``DeferredMemory``: served once the process owns memory, a
retryable ``MemoryNotHere`` until then, so such a step moves on until the owner takes it.

``build_worker`` (tests, the demo) serves both queues from one ``Worker``: when its activities
include memory ones, ``memory_queue_plugins`` runs a companion worker on the memory queue for
as long as the main one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.plugin import SimplePlugin
from temporalio.worker import Worker

from aios.activities.memory import MEMORY_ACTIVITY_NAMES, MemoryActivities
from aios.errors import StackError
from aios.memory.backends import open_memory, shard_lock, shard_path
from aios.memory.edge import ShardOwned
from aios.memory.records import MemoryRecord, RecalledMemory
from aios.memory.store import MemoryStore
from aios.workflows.timeouts import memory_task_queue

if TYPE_CHECKING:
    from aios.config import Settings
    from aios.workers.services import Services

__all__ = [
    "MEMORY_THREADS",
    "STANDBY_RETRY_SECONDS",
    "DeferredMemory",
    "MemoryNotHere",
    "WorkerRole",
    "is_memory_activity",
    "memory_queue_plugins",
    "memory_service",
    "memory_worker",
]

WorkerRole = Literal["all", "general", "memory"]
# Memory activities one process runs at once (recall and remember take milliseconds).
MEMORY_THREADS = 4
# How often a worker without the shard tries to take it over.
STANDBY_RETRY_SECONDS = 2.0
log = structlog.get_logger("aios.worker")


def is_memory_activity(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is registered under a memory activity's name (a test's replacement
    registered under the real name counts)."""
    defn = activity._Definition.from_callable(fn)
    return defn is not None and defn.name in MEMORY_ACTIVITY_NAMES


def memory_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    executor: ThreadPoolExecutor,
    *,
    activity_slots: int = MEMORY_THREADS,
    shutdown_grace: timedelta = timedelta(seconds=10),
) -> Worker:
    """A worker on the memory queue of ``task_queue``: the memory activities among
    ``activities`` and the ``MemoryLookupWorkflow`` readers start there."""
    from aios.workers.main import workflow_runner
    from aios.workflows.memory_lookup import MemoryLookupWorkflow

    return Worker(
        client,
        task_queue=memory_task_queue(task_queue),
        workflows=[MemoryLookupWorkflow],
        workflow_runner=workflow_runner(),
        activities=[fn for fn in activities if is_memory_activity(fn)],
        activity_executor=executor,
        max_concurrent_activities=activity_slots,
        graceful_shutdown_timeout=shutdown_grace,
    )


def memory_queue_plugins(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    executor: ThreadPoolExecutor,
) -> list[SimplePlugin]:
    """Plugins for the worker on ``task_queue``: when ``activities`` include memory ones, a
    companion worker serves the memory queue while that worker runs; otherwise none."""
    if not any(is_memory_activity(fn) for fn in activities):
        return []
    companion = memory_worker(client, task_queue, activities, executor)

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        async with companion:
            yield

    return [SimplePlugin("aios.memory-task-queue", run_context=running)]


@contextlib.asynccontextmanager
async def memory_service(
    client: Client, settings: Settings, services: Services, role: WorkerRole, stop: asyncio.Event
) -> AsyncIterator[None]:
    """Serve the memory task queue in the background as ``role`` says, until the block ends
    (in-flight memory activities then finish). When memory fails to open, ``stop`` is set,
    so the whole worker stops, and the error is raised as the block ends."""
    if role == "general":
        yield
        return
    done = asyncio.Event()

    async def serve() -> None:
        try:
            await _serve(client, settings, services, role, done)
        except BaseException:
            stop.set()
            raise

    task = asyncio.create_task(serve())
    try:
        yield
    finally:
        done.set()
        await task


async def _serve(
    client: Client, settings: Settings, services: Services, role: WorkerRole, done: asyncio.Event
) -> None:
    memory = await _own_memory(settings, role, done)
    if memory is None:
        return
    try:
        acts = MemoryActivities(memory, services.store)
        with ThreadPoolExecutor(max_workers=MEMORY_THREADS) as executor:
            worker = memory_worker(
                client,
                settings.task_queue,
                acts.activities(),
                executor,
                shutdown_grace=settings.worker_shutdown_grace,
            )
            deferred = services.memory if isinstance(services.memory, DeferredMemory) else None
            if deferred is not None:
                deferred.serve(memory)  # the task queue's own memory activities, too
            async with worker:
                log.info(
                    f"memory worker started on task queue {worker.task_queue} ({memory.backend})",
                    task_queue=worker.task_queue,
                    backend=memory.backend,
                )
                await done.wait()
        log.info("memory worker stopped")
    finally:
        if isinstance(services.memory, DeferredMemory):
            services.memory.serve(None)
        await asyncio.to_thread(memory.close)


async def _own_memory(
    settings: Settings, role: WorkerRole, done: asyncio.Event
) -> MemoryStore | None:
    """The memory store, once this process may serve it; ``None`` when ``done`` first."""
    if settings.qdrant_url:
        return await asyncio.to_thread(open_memory, settings)
    lock = shard_lock(settings)
    told = False
    while not done.is_set():
        try:
            lock.acquire()
        except ShardOwned as exc:
            if not told:
                told = True
                queue = memory_task_queue(settings.task_queue)
                also = (
                    "this worker runs general work and takes memory over if that process stops"
                    if role == "all"
                    else "waiting until that process stops"
                )
                log.info(
                    f"memory: the shard {shard_path(settings)} is open in process "
                    f"{exc.owner_pid or '?'}, which serves task queue {queue}; {also}",
                    owner_pid=exc.owner_pid,
                    task_queue=queue,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), STANDBY_RETRY_SECONDS)
            continue
        try:
            return await asyncio.to_thread(open_memory, settings, lock=lock)
        except BaseException:
            lock.release()
            raise
    return None


class MemoryNotHere(StackError):
    """This process does not serve memory (now): retried, so the step reaches the owner."""

    retryable = True


class DeferredMemory:
    """The memory of a worker that does not own it at start: every call goes to the store
    this process took over (``serve``), or is a retryable ``MemoryNotHere`` until then.

    Memory activities on the task queue itself (where an earlier build scheduled them, before
    memory had its own queue) use it, so they end up served by the owner."""

    backend = "deferred"

    def __init__(self) -> None:
        self._store: MemoryStore | None = None

    def serve(self, store: MemoryStore | None) -> None:
        self._store = store

    def _here(self) -> MemoryStore:
        if self._store is None:
            raise MemoryNotHere(
                "memory is served by the process that owns it (task queue <queue>-memory), "
                "not by this worker"
            )
        return self._store

    def remember(
        self,
        text: str,
        *,
        entity: str,
        kind: str,
        source_workflow_id: str,
        source_run_id: str,
        idempotency_key: str,
    ) -> MemoryRecord:
        return self._here().remember(
            text,
            entity=entity,
            kind=kind,
            source_workflow_id=source_workflow_id,
            source_run_id=source_run_id,
            idempotency_key=idempotency_key,
        )

    def recall(
        self,
        query: str,
        *,
        kinds: list[str] | None = None,
        entity: str | None = None,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[RecalledMemory]:
        return self._here().recall(
            query, kinds=kinds, entity=entity, limit=limit, min_score=min_score
        )

    def get(self, point_id: str) -> MemoryRecord | None:
        return self._here().get(point_id)

    def history(self, entity: str, kind: str) -> list[MemoryRecord]:
        return self._here().history(entity, kind)

    def entries(self, entity: str, limit: int = 100) -> list[MemoryRecord]:
        return self._here().entries(entity, limit)

    def count(self) -> int:
        return self._here().count()

    def close(self) -> None:
        self._store = None
