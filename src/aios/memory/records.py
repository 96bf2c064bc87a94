"""What a memory is, whichever backend stores it: text, provenance, and the payload schema.

Every backend stores the same payload per point (``text`` plus the ``Provenance`` fields) under
the same id (a uuid5 of the idempotency key), so data moves between backends unchanged and a
retried ``remember`` finds its own point. ``MemoryQuery`` and ``MemoryView`` are what a reader
(the CLI, the console) asks and gets back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from aios.errors import InvalidInput

__all__ = [
    "INDEXED_FIELDS",
    "MAX_TEXT",
    "MemoryQuery",
    "MemoryRecord",
    "MemoryView",
    "Provenance",
    "RecalledMemory",
    "checked_text",
    "new_payload",
    "point_id",
    "to_record",
]

_POINT_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4a44-9a57-2a1f0c9b7e10")
MAX_TEXT = 8000
# Payload fields every backend indexes (keyword) for filtered recall and versioning.
INDEXED_FIELDS = ("entity", "kind", "source_workflow_id")


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


class MemoryQuery(BaseModel):
    """One read of memory: a similarity search (``text``), one memory with every version of
    its entity and kind (``point_id``), or the latest memories of an ``entity``."""

    text: str | None = Field(default=None, max_length=MAX_TEXT)
    point_id: str | None = None
    entity: str | None = Field(default=None, max_length=300)
    kinds: list[str] = Field(default_factory=list, max_length=20)
    limit: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _one_question(self) -> MemoryQuery:
        if self.point_id is not None:
            try:
                self.point_id = str(uuid.UUID(self.point_id.strip()))
            except ValueError:
                raise ValueError(
                    f"point_id: {self.point_id!r} is not a memory id (a uuid)"
                ) from None
            if self.text is not None:
                raise ValueError("ask for a point_id or a text search, not both")
        elif self.text is not None and not self.text.strip():
            raise ValueError("text: must not be empty")
        elif self.text is None and self.entity is None:
            raise ValueError("give a text to search, a point_id, or an entity")
        return self


class MemoryView(BaseModel):
    """The answer to a ``MemoryQuery``: search hits best first; or the memory asked for and
    every version of its entity and kind, oldest first; or an entity's memories, newest
    first. ``total`` is how many points the store holds."""

    hits: list[RecalledMemory] = Field(default_factory=list)
    record: MemoryRecord | None = None
    versions: list[MemoryRecord] = Field(default_factory=list)
    entries: list[MemoryRecord] = Field(default_factory=list)
    total: int = 0
    backend: str = ""


def point_id(idempotency_key: str) -> str:
    """The point id of the memory stored under ``idempotency_key``."""
    return str(uuid.uuid5(_POINT_NAMESPACE, idempotency_key))


def checked_text(text: str) -> str:
    """``text`` stripped, or ``InvalidInput`` when empty or too long."""
    text = text.strip()
    if not text:
        raise InvalidInput("memory: text must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"memory: text is {len(text)} characters, the limit is {MAX_TEXT}")
    return text


def new_payload(
    text: str,
    *,
    entity: str,
    kind: str,
    version: int,
    source_workflow_id: str,
    source_run_id: str,
    idempotency_key: str,
    embedder: str,
) -> dict[str, Any]:
    """The payload of a new point (the schema every backend stores)."""
    return {
        "text": text,
        "source_workflow_id": source_workflow_id,
        "source_run_id": source_run_id,
        "entity": entity,
        "kind": kind,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "idempotency_key": idempotency_key,
        "embedder": embedder,
    }


def to_record(point: object, payload: dict[str, Any] | None) -> MemoryRecord:
    payload = payload or {}
    return MemoryRecord(
        id=str(point), text=payload["text"], provenance=Provenance.model_validate(payload)
    )
