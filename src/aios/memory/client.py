"""Memory through ``qdrant-client``: a Qdrant server (``AIOS_QDRANT_URL``), or the older
local-mode folder (pure Python, one process at a time), which is kept to read data that
migrates to Qdrant Edge and to compare the two in ``benchmarks/memory.py``.

Any number of workers may use one server; versions per (entity, kind) are counted in the
calling process, so two processes remembering for the same entity and kind at the same instant
could both write the same version number (each under its own idempotency key).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from aios.errors import InvalidInput
from aios.memory.embedders import Embedder
from aios.memory.records import (
    INDEXED_FIELDS,
    MemoryRecord,
    RecalledMemory,
    checked_text,
    new_payload,
    point_id,
    to_record,
)

__all__ = ["QdrantClientStore"]

_SCROLL_PAGE = 256


class QdrantClientStore:
    """``MemoryStore`` over one collection of a Qdrant server (``url``) or a local-mode
    folder (``path``)."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        collection: str,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        create: bool = True,
    ) -> None:
        self._server = bool(url)
        if url:
            self._client = QdrantClient(url=url, api_key=api_key)
        else:
            if path is None:
                raise InvalidInput("memory: either a Qdrant url or a local path is required")
            path.mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(path))
        self.backend = "qdrant-server" if self._server else "qdrant-local"
        self._embedder = embedder
        self._collection = collection
        self._lock = threading.Lock()
        if create:
            self._ensure_collection()

    def close(self) -> None:
        self._client.close()

    def exists(self) -> bool:
        return self._client.collection_exists(self._collection)

    def _ensure_collection(self) -> None:
        if self._client.collection_exists(self._collection):
            return
        self._client.create_collection(
            self._collection,
            vectors_config=models.VectorParams(
                size=self._embedder.dim, distance=models.Distance.COSINE
            ),
        )
        if not self._server:  # local mode scans; payload indexes only help a server
            return
        for field in INDEXED_FIELDS:
            self._client.create_payload_index(
                self._collection, field, field_schema=models.PayloadSchemaType.KEYWORD
            )

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
        text = checked_text(text)
        pid = point_id(idempotency_key)
        with self._lock:
            if (found := self.get(pid)) is not None:
                return found
            count = self._client.count(
                self._collection, count_filter=_filter(entity=entity, kinds=[kind]), exact=True
            ).count
            payload = new_payload(
                text,
                entity=entity,
                kind=kind,
                version=count + 1,
                source_workflow_id=source_workflow_id,
                source_run_id=source_run_id,
                idempotency_key=idempotency_key,
                embedder=self._embedder.name,
            )
            [vector] = self._embedder.embed([text])
            self._client.upsert(
                self._collection,
                points=[models.PointStruct(id=pid, vector=vector, payload=payload)],
                wait=True,
            )
        return to_record(pid, payload)

    def recall(
        self,
        query: str,
        *,
        kinds: list[str] | None = None,
        entity: str | None = None,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[RecalledMemory]:
        if not query.strip():
            return []
        [vector] = self._embedder.embed([query])
        return self.search_vector(
            vector, kinds=kinds, entity=entity, limit=limit, min_score=min_score
        )

    def search_vector(
        self,
        vector: list[float],
        *,
        kinds: list[str] | None = None,
        entity: str | None = None,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[RecalledMemory]:
        """``recall`` for an already embedded query (the benchmark times the two apart)."""
        hits = self._client.query_points(
            self._collection,
            query=vector,
            query_filter=_filter(entity=entity, kinds=kinds),
            limit=limit,
            with_payload=True,
        ).points
        return [
            RecalledMemory(**to_record(h.id, h.payload).model_dump(), score=h.score)
            for h in hits
            if h.score >= min_score
        ]

    def get(self, point_id: str) -> MemoryRecord | None:
        found = self._client.retrieve(self._collection, [point_id], with_payload=True)
        return to_record(found[0].id, found[0].payload) if found else None

    def history(self, entity: str, kind: str) -> list[MemoryRecord]:
        records = [
            to_record(p.id, p.payload)
            for p in self._scroll(_filter(entity=entity, kinds=[kind]), vectors=False)
        ]
        return sorted(records, key=lambda r: r.provenance.version)

    def entries(self, entity: str, limit: int = 100) -> list[MemoryRecord]:
        records = [
            to_record(p.id, p.payload)
            for p in self._scroll(_filter(entity=entity, kinds=None), vectors=False)
        ]
        records.sort(key=lambda r: r.provenance.created_at, reverse=True)
        return records[:limit]

    def count(self) -> int:
        return self._client.count(self._collection, exact=True).count

    def points(self) -> Iterator[tuple[str, list[float], dict[str, Any]]]:
        """Every point as (id, vector, payload), page by page (migration reads these)."""
        for p in self._scroll(None, vectors=True):
            vector = p.vector if isinstance(p.vector, list) else []
            floats = [x for x in vector if isinstance(x, float)]
            if not floats or len(floats) != len(vector):
                raise InvalidInput(f"memory: point {p.id} has no plain dense vector")
            yield str(p.id), floats, dict(p.payload or {})

    def import_points(self, points: Iterable[tuple[str, list[float], dict[str, Any]]]) -> int:
        """Insert points (id, vector, payload) as they are (``aios import``); returns how many
        were written. Ids, payloads and versions are kept."""
        batch = [
            models.PointStruct(id=pid, vector=vector, payload=payload)
            for pid, vector, payload in points
        ]
        if batch:
            self._client.upsert(self._collection, points=batch, wait=True)
        return len(batch)

    def _scroll(self, flt: models.Filter | None, *, vectors: bool) -> Iterator[models.Record]:
        offset: Any = None
        while True:
            page, offset = self._client.scroll(
                self._collection,
                scroll_filter=flt,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=vectors,
            )
            yield from page
            if offset is None or not page:
                return


def _filter(*, entity: str | None, kinds: list[str] | None) -> models.Filter | None:
    must: list[models.Condition] = []
    if entity:
        must.append(models.FieldCondition(key="entity", match=models.MatchValue(value=entity)))
    if kinds:
        must.append(models.FieldCondition(key="kind", match=models.MatchAny(any=kinds)))
    return models.Filter(must=must) if must else None
