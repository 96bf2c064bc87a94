"""Memory activities: recall with provenance, remember idempotently, look memory up.

They run on the memory task queue (``<task queue>-memory``, ``aios-memory`` by default), served
by the process that owns the memory store; ``MEMORY_ACTIVITY_NAMES`` lists them so worker
assembly can put them there.
"""

from __future__ import annotations

from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    RecallMemoryInput,
    RecallMemoryResult,
    RememberInput,
    RememberResult,
)
from aios.kernel.store import KernelStore
from aios.memory.records import MemoryQuery, MemoryView
from aios.memory.store import MemoryStore, lookup

__all__ = ["MEMORY_ACTIVITY_NAMES", "MemoryActivities"]

MEMORY_ACTIVITY_NAMES = frozenset({"recall_memory", "remember", "lookup_memory"})


class MemoryActivities:
    def __init__(self, memory: MemoryStore, store: KernelStore) -> None:
        self._memory = memory
        self._store = store

    @activity.defn(name="recall_memory")
    @translating_errors
    def recall_memory(self, inp: RecallMemoryInput) -> RecallMemoryResult:
        found = self._memory.recall(
            inp.query, kinds=inp.kinds or None, entity=inp.entity, limit=inp.limit
        )
        return RecallMemoryResult(memories=found)

    @activity.defn(name="remember")
    @translating_errors
    def remember(self, inp: RememberInput) -> RememberResult:
        info = activity.info()
        record = self._memory.remember(
            inp.text,
            entity=inp.entity,
            kind=inp.kind,
            source_workflow_id=info.workflow_id or "",
            source_run_id=info.workflow_run_id or "",
            idempotency_key=inp.idempotency_key,
        )
        self._store.events.append(
            event_for_step(
                inp.idempotency_key,
                "memory.stored",
                entity=inp.entity,
                payload={
                    "point_id": record.id,
                    "kind": inp.kind,
                    "version": record.provenance.version,
                },
            )
        )
        return RememberResult(id=record.id, version=record.provenance.version)

    @activity.defn(name="lookup_memory")
    @translating_errors
    def lookup_memory(self, inp: MemoryQuery) -> MemoryView:
        """Read memory for a person (``aios memory``, the console): no effect."""
        return lookup(self._memory, inp)
