"""Semantic memory in Qdrant, with provenance on every point.

Local mode (a folder on disk) is the default; ``AIOS_QDRANT_URL`` selects a server. Point ids
derive from idempotency keys, so a retried ``remember`` finds its own point instead of adding
a second one. Each point records where it came from: source workflow and run, entity, kind,
version (per entity and kind) and creation time.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from qdrant_client import QdrantClient, models

from aios.errors import InvalidInput
from aios.memory.embedders import Embedder

__all__ = ["MemoryRecord", "MemoryStore", "Provenance", "RecalledMemory"]

_POINT_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4a44-9a57-2a1f0c9b7e10")
MAX_TEXT = 8000


class Provenance(BaseModel):
    """Where a memory came from."""

    source_workflow_id: str
    source_run_id: str
    entity: str
    kind: str
    version: int
    created_at: datetime
    idempotency_key: str
    embedder: str


class MemoryRecord(BaseModel):
    """A stored memory: its id, text and provenance."""

    id: str
    text: str
    provenance: Provenance


class RecalledMemory(MemoryRecord):
    """A memory returned by ``recall``, with its similarity score."""

    score: float = Field(ge=-1.0, le=1.0001)


class MemoryStore:
    """``remember`` and ``recall`` over one Qdrant collection."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        collection: str,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
    ) -> None:
        self._server = bool(url)
        if url:
            self._client = QdrantClient(url=url, api_key=api_key)
        else:
            if path is None:
                raise InvalidInput("memory: either a Qdrant url or a local path is required")
            path.mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(path))
        self._embedder = embedder
        self._collection = collection
        self._lock = threading.Lock()
        self._ensure_collection()

    def close(self) -> None:
        self._client.close()

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
        for field in ("entity", "kind", "source_workflow_id"):
            self._client.create_payload_index(
                self._collection, field, field_schema=models.PayloadSchemaType.KEYWORD
            )

    @staticmethod
    def point_id(idempotency_key: str) -> str:
        return str(uuid.uuid5(_POINT_NAMESPACE, idempotency_key))

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
        """Store ``text`` as the next version for (entity, kind); a repeat returns the first."""
        text = text.strip()
        if not text:
            raise InvalidInput("memory: text must not be empty")
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"memory: text is {len(text)} characters, the limit is {MAX_TEXT}")
        point_id = self.point_id(idempotency_key)
        with self._lock:
            existing = self._client.retrieve(self._collection, [point_id], with_payload=True)
            if existing:
                return _record(str(existing[0].id), existing[0].payload or {})
            version = self._next_version(entity, kind)
            payload: dict[str, Any] = {
                "text": text,
                "source_workflow_id": source_workflow_id,
                "source_run_id": source_run_id,
                "entity": entity,
                "kind": kind,
                "version": version,
                "created_at": datetime.now(UTC).isoformat(),
                "idempotency_key": idempotency_key,
                "embedder": self._embedder.name,
            }
            [vector] = self._embedder.embed([text])
            self._client.upsert(
                self._collection,
                points=[models.PointStruct(id=point_id, vector=vector, payload=payload)],
                wait=True,
            )
        return _record(point_id, payload)

    def _next_version(self, entity: str, kind: str) -> int:
        count = self._client.count(
            self._collection,
            count_filter=_filter(entity=entity, kinds=[kind]),
            exact=True,
        ).count
        return count + 1

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
        if not query.strip():
            return []
        [vector] = self._embedder.embed([query])
        with self._lock:
            hits = self._client.query_points(
                self._collection,
                query=vector,
                query_filter=_filter(entity=entity, kinds=kinds),
                limit=limit,
                with_payload=True,
            ).points
        return [
            RecalledMemory(**_record(str(h.id), h.payload or {}).model_dump(), score=h.score)
            for h in hits
            if h.score >= min_score
        ]

    def get(self, point_id: str) -> MemoryRecord | None:
        with self._lock:
            found = self._client.retrieve(self._collection, [point_id], with_payload=True)
        return _record(str(found[0].id), found[0].payload or {}) if found else None

    def history(self, entity: str, kind: str) -> list[MemoryRecord]:
        """Every version stored for (entity, kind), oldest first."""
        with self._lock:
            points, _ = self._client.scroll(
                self._collection,
                scroll_filter=_filter(entity=entity, kinds=[kind]),
                limit=1000,
                with_payload=True,
            )
        records = [_record(str(p.id), p.payload or {}) for p in points]
        return sorted(records, key=lambda r: r.provenance.version)


def _filter(*, entity: str | None, kinds: list[str] | None) -> models.Filter | None:
    must: list[models.Condition] = []
    if entity:
        must.append(models.FieldCondition(key="entity", match=models.MatchValue(value=entity)))
    if kinds:
        must.append(models.FieldCondition(key="kind", match=models.MatchAny(any=kinds)))
    return models.Filter(must=must) if must else None


def _record(point_id: str, payload: dict[str, Any]) -> MemoryRecord:
    return MemoryRecord(
        id=point_id,
        text=payload["text"],
        provenance=Provenance.model_validate(payload),
    )
