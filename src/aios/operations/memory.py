"""Reading memory from outside the worker: ``aios memory search|show``, the console.

One mechanism: a reader opens memory itself when it may, and otherwise asks the process that
owns it through Temporal.

- A Qdrant server (``AIOS_QDRANT_URL``): any process may open it; the reader does.
- The embedded shard, open in a worker (the memory worker owns it): the reader starts
  ``MemoryLookupWorkflow`` on the memory task queue; the owner answers it from its open store.
- The embedded shard, open nowhere: the reader opens it (taking its lock for the moment it
  reads, so a worker starting meanwhile waits and then takes it).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from aios.errors import StackError
from aios.memory.backends import open_memory, shard_owner
from aios.memory.edge import ShardOwned
from aios.memory.records import MemoryQuery, MemoryView
from aios.memory.store import lookup

if TYPE_CHECKING:
    from temporalio.client import Client

    from aios.config import Settings

__all__ = ["LOOKUP_TIMEOUT", "lookup_memory", "read_directly"]

# How long a reader waits for the memory worker to answer.
LOOKUP_TIMEOUT = timedelta(seconds=30)


def read_directly(settings: Settings, query: MemoryQuery) -> MemoryView:
    """Open memory in this process, answer ``query``, close it (``ShardOwned`` when a worker
    has the embedded shard)."""
    store = open_memory(settings, optimize=False)  # a reader does not stop to index
    try:
        return lookup(store, query)
    finally:
        store.close()


async def lookup_memory(
    settings: Settings, query: MemoryQuery, *, client: Client | None = None
) -> MemoryView:
    """Answer ``query`` directly or through the memory worker (see the module docstring);
    ``client`` is connected on demand when Temporal is needed."""
    if settings.qdrant_url or shard_owner(settings) is None:
        try:
            return await asyncio.to_thread(read_directly, settings, query)
        except ShardOwned:
            pass  # a worker took the shard meanwhile: ask it
    from temporalio.client import WorkflowFailureError

    from aios.temporal import connect
    from aios.workflows.memory_lookup import MEMORY_LOOKUP_PREFIX, MemoryLookupWorkflow
    from aios.workflows.timeouts import memory_task_queue

    client = client or await connect(settings)
    queue = memory_task_queue(settings.task_queue)
    try:
        return await client.execute_workflow(
            MemoryLookupWorkflow.run,
            query,
            id=f"{MEMORY_LOOKUP_PREFIX}/{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=LOOKUP_TIMEOUT,
        )
    except WorkflowFailureError as exc:
        inner: BaseException = exc
        while inner.__cause__ is not None:
            inner = inner.__cause__
        owner = shard_owner(settings)
        where = f" (process {owner} owns the memory shard)" if owner else ""
        raise StackError(
            f"memory: the memory worker on task queue {queue}{where} did not answer: "
            f"{getattr(inner, 'message', '') or inner}"
        ) from None
