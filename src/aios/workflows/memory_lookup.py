"""Looking memory up for a person, through the process that owns it: one short read-only run.

The embedded memory shard is open in one process only, the memory worker. `aios memory search`
and `aios memory show` (and any other reader outside that process) start this workflow on the
memory task queue, where the memory worker runs it and its one activity, ``lookup_memory``.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.memory import MemoryActivities
    from aios.memory.records import MemoryQuery, MemoryView
    from aios.workflows.steps import step
    from aios.workflows.timeouts import MEMORY_READ

__all__ = ["MEMORY_LOOKUP_PREFIX", "MemoryLookupWorkflow"]

# Workflow ids: ``memory-lookup/<uuid>``, one per read.
MEMORY_LOOKUP_PREFIX = "memory-lookup"


@workflow.defn(name="MemoryLookupWorkflow")
class MemoryLookupWorkflow:
    """Answer one ``MemoryQuery`` with a ``MemoryView``: activity ``lookup_memory`` once, on
    the workflow's own task queue (the memory task queue), nothing written.

    No signals, queries, updates or search attributes. Started with a short execution
    timeout; end state: completed with the ``MemoryView``, or failed when memory could not be
    read.
    """

    @workflow.run
    async def run(self, inp: MemoryQuery) -> MemoryView:
        return await step(MemoryActivities.lookup_memory, inp, MEMORY_READ)
