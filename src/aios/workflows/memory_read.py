"""Reading semantic memory from outside the worker: one short, read-only run.

The embedded Qdrant is opened by one process only, the worker; the console reads a client's
memory points through Temporal instead, with this workflow.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.memory import MemoryActivities
    from aios.activities.models import RecallMemoryInput, RecallMemoryResult
    from aios.workflows.steps import step
    from aios.workflows.timeouts import MEMORY

__all__ = ["MEMORY_READ_PREFIX", "MemoryReadWorkflow"]

# Workflow ids: ``aios-memory-read/<uuid>``, one per read.
MEMORY_READ_PREFIX = "aios-memory-read"


@workflow.defn(name="MemoryReadWorkflow")
class MemoryReadWorkflow:
    """Recall the memory points of one entity (``RecallMemoryInput``) and return them with
    their provenance: activity ``recall_memory`` once, nothing written.

    Started by the console (``operations.console_lists.memory_points``) with id
    ``aios-memory-read/<uuid>`` and a short execution timeout. No signals, queries or search
    attributes. End state: completed with ``RecallMemoryResult``.
    """

    @workflow.run
    async def run(self, inp: RecallMemoryInput) -> RecallMemoryResult:
        return await step(
            MemoryActivities.recall_memory, inp, MEMORY, summary=f"recall memory: {inp.entity}"
        )
