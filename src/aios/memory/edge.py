"""Memory in Qdrant Edge: Qdrant's embedded engine, in process, on disk.

One shard (a folder) holds the collection: HNSW-capable vector storage, keyword indexes on the
payload fields recall filters by, and a write-ahead log, so an update is durable once it
returns. Only one process may open a shard: ``ShardLock`` (an exclusive ``flock`` on
``<shard>.lock``, which also records the owner's pid) guards it, and a second opener gets
``ShardOwned`` naming the owner instead of an engine error. In AiOs the owner is the worker that
serves the memory task queue; everyone else reaches memory through it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from aios.errors import StackError
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

__all__ = ["EdgeMemoryStore", "ShardLock", "ShardOwned"]

_SCROLL_PAGE = 1000


class ShardOwned(StackError):
    """Another process has the memory shard open."""

    def __init__(self, path: Path, owner_pid: int | None) -> None:
        who = f"process {owner_pid}" if owner_pid else "another process"
        super().__init__(
            f"the memory shard {path} is open in {who} (the memory worker); one process at a "
            "time may open it"
        )
        self.path = path
        self.owner_pid = owner_pid


class ShardLock:
    """An exclusive, non-blocking lock on ``<shard>.lock`` holding the owner's pid. The
    kernel drops it when the owner exits, however it exits."""

    def __init__(self, shard: Path) -> None:
        self.shard = shard
        self.path = shard.with_name(shard.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> ShardLock:
        """Take the lock, or raise ``ShardOwned`` at once when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ShardOwned(self.shard, self.owner()) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def owner(self) -> int | None:
        """The pid of the process holding the lock, ``None`` when nobody holds it."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 32).decode(errors="replace").strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


class EdgeMemoryStore:
    """``MemoryStore`` over one Qdrant Edge shard at ``path`` (created on first use).

    ``lock`` is an already held ``ShardLock`` for ``path``; without one the store takes it
    (``ShardOwned`` when another process has the shard). Reads run concurrently; a
    ``remember`` holds a lock from its version count to its write, so versions per (entity,
    kind) are 1, 2, 3... with no gaps or repeats.
    """

    backend = "qdrant-edge"

    def __init__(self, embedder: Embedder, *, path: Path, lock: ShardLock | None = None) -> None:
        self._path = path
        self._lock = lock or ShardLock(path).acquire()
        self._embedder = embedder
        self._write = threading.Lock()
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=embedder.dim, distance=qe.Distance.Cosine)
        )
        try:
            if (path / "edge_config.json").exists():
                try:
                    self._shard = qe.EdgeShard.load(str(path), config)
                except Exception as exc:
                    raise StackError(
                        f"memory shard {path} cannot be opened with embedder {embedder.name} "
                        f"({embedder.dim} dimensions): {exc}"
                    ) from exc
            else:
                path.mkdir(parents=True, exist_ok=True)
                self._shard = qe.EdgeShard.create(str(path), config)
            indexed = set(self._shard.info().payload_schema)
            for field in INDEXED_FIELDS:
                if field not in indexed:
                    self._shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                    )
        except BaseException:
            self._lock.release()
            raise
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with self._write:
                self._shard.flush()
                self._shard.close()
        finally:
            self._lock.release()

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
        if (found := self.get(pid)) is not None:
            return found
        [vector] = self._embedder.embed([text])
        with self._write:
            if (found := self.get(pid)) is not None:
                return found
            payload = new_payload(
                text,
                entity=entity,
                kind=kind,
                version=self._count(_filter(entity=entity, kinds=[kind])) + 1,
                source_workflow_id=source_workflow_id,
                source_run_id=source_run_id,
                idempotency_key=idempotency_key,
                embedder=self._embedder.name,
            )
            self._shard.update(
                qe.UpdateOperation.upsert_points([qe.Point(id=pid, vector=vector, payload=payload)])
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
        hits = self._shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(vector),
                filter=_filter(entity=entity, kinds=kinds),
                with_payload=True,
                with_vector=False,
            )
        )
        return [
            RecalledMemory(**to_record(h.id, h.payload).model_dump(), score=h.score)
            for h in hits
            if h.score >= min_score
        ]

    def get(self, point_id: str) -> MemoryRecord | None:
        found = self._shard.retrieve([point_id], with_payload=True, with_vector=False)
        return to_record(found[0].id, found[0].payload) if found else None

    def history(self, entity: str, kind: str) -> list[MemoryRecord]:
        records = [to_record(p.id, p.payload) for p in self._scroll(_filter(entity, [kind]))]
        return sorted(records, key=lambda r: r.provenance.version)

    def entries(self, entity: str, limit: int = 100) -> list[MemoryRecord]:
        records = [to_record(p.id, p.payload) for p in self._scroll(_filter(entity, None))]
        records.sort(key=lambda r: r.provenance.created_at, reverse=True)
        return records[:limit]

    def count(self) -> int:
        return self._count(None)

    def import_points(self, points: Iterable[tuple[str, list[float], dict[str, Any]]]) -> int:
        """Insert points (id, vector, payload) as they are, skipping ids already stored;
        returns how many were added. Used by migration: ids, payloads and versions are kept."""
        batch = [
            qe.Point(id=pid, vector=vector, payload=payload) for pid, vector, payload in points
        ]
        if not batch:
            return 0
        with self._write:
            before = self._count(None)
            self._shard.update(
                qe.UpdateOperation.upsert_points(batch, update_mode=qe.UpdateMode.InsertOnly)
            )
            return self._count(None) - before

    def points(self) -> Iterator[tuple[str, list[float], dict[str, Any]]]:
        """Every point as (id, vector, payload), page by page (``aios export`` reads these)."""
        offset: Any = None
        while True:
            page, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=None,
                    with_payload=True,
                    with_vector=True,
                )
            )
            for p in page:
                yield str(p.id), _dense(p.id, p.vector), dict(p.payload or {})
            if offset is None or not page:
                return

    def unindexed(self) -> int:
        """Points a search scans one by one (not yet in the HNSW index)."""
        info = self._shard.info()
        return max(0, info.points_count - info.indexed_vectors_count)

    def optimize(self) -> bool:
        """Build the HNSW index over the stored points; ``True`` when it did work. It holds
        the interpreter while it runs (about 10 s per 20,000 points on two cores), so it runs
        when the shard opens (``open_memory``) or from ``aios memory optimize``."""
        with self._write:
            return self._shard.optimize()

    def _count(self, flt: qe.Filter | None) -> int:
        return self._shard.count(qe.CountRequest(exact=True, filter=flt))

    def _scroll(self, flt: qe.Filter | None) -> list[qe.Record]:
        points: list[qe.Record] = []
        offset: Any = None
        while True:
            page, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=flt,
                    with_payload=True,
                    with_vector=False,
                )
            )
            points.extend(page)
            if offset is None or not page:
                return points


def _dense(pid: Any, vector: Any) -> list[float]:
    """The point's one dense vector as floats (the shard has a single unnamed vector)."""
    if isinstance(vector, dict):  # named vectors: the unnamed one is ""
        vector = vector.get("", next(iter(vector.values()), None))
    if not isinstance(vector, list) or not vector:
        raise StackError(f"memory: point {pid} has no dense vector")
    return [float(x) for x in vector]


def _filter(entity: str | None, kinds: list[str] | None) -> qe.Filter | None:
    must: list[Any] = []
    if entity:
        must.append(qe.FieldCondition(key="entity", match=qe.MatchValue(entity)))
    if kinds:
        must.append(qe.FieldCondition(key="kind", match=qe.MatchAny(list(kinds))))
    return qe.Filter(must=must) if must else None
