"""The memory interface every backend implements, and the read every reader uses.

Two backends: ``EdgeMemoryStore`` (Qdrant Edge, embedded in the one process that owns the shard;
the default) and ``QdrantClientStore`` (``qdrant-client`` against a Qdrant server named by
``AIOS_QDRANT_URL``; also reads the older local-mode folder to migrate it). ``open_memory``
(``aios.memory.backends``) picks one from the settings.
"""

from __future__ import annotations

from typing import Protocol

from aios.memory.records import (
    MemoryQuery,
    MemoryRecord,
    MemoryView,
    Provenance,
    RecalledMemory,
    point_id,
)

__all__ = [
    "MemoryRecord",
    "MemoryStore",
    "Provenance",
    "RecalledMemory",
    "lookup",
    "point_id",
]


class MemoryStore(Protocol):
    """``remember`` and ``recall`` with provenance, and the reads that inspect memory."""

    backend: str

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
        """Store ``text`` as the next version for (entity, kind); a repeat of the same
        ``idempotency_key`` returns the first record and stores nothing."""
        ...

    def recall(
        self,
        query: str,
        *,
        kinds: list[str] | None = None,
        entity: str | None = None,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[RecalledMemory]:
        """The memories most similar to ``query``, best first, each with its provenance."""
        ...

    def get(self, point_id: str) -> MemoryRecord | None: ...

    def history(self, entity: str, kind: str) -> list[MemoryRecord]:
        """Every version stored for (entity, kind), oldest first."""
        ...

    def entries(self, entity: str, limit: int = 100) -> list[MemoryRecord]:
        """The memories of ``entity``, newest first."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def lookup(store: MemoryStore, query: MemoryQuery) -> MemoryView:
    """Answer ``query`` from ``store`` (see ``MemoryQuery``)."""
    view = MemoryView(total=store.count(), backend=store.backend)
    if query.point_id is not None:
        record = store.get(query.point_id)
        if record is not None:
            view.record = record
            view.versions = store.history(record.provenance.entity, record.provenance.kind)
    elif query.text is not None:
        view.hits = store.recall(
            query.text, kinds=query.kinds or None, entity=query.entity, limit=query.limit
        )
    elif query.entity is not None:
        entries = store.entries(query.entity, limit=1000)
        if query.kinds:
            entries = [e for e in entries if e.provenance.kind in query.kinds]
        view.entries = entries[: query.limit]
    return view
