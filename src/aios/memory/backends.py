"""Which memory backend the settings select, and who owns the embedded shard.

- ``AIOS_QDRANT_URL`` set: ``QdrantClientStore`` against that server; any process may open it.
- Otherwise (the default): ``EdgeMemoryStore``, the Qdrant Edge shard in
  ``<AIOS_QDRANT_PATH>/edge/<AIOS_QDRANT_COLLECTION>`` (``AIOS_QDRANT_PATH`` defaults to
  ``<state>/qdrant``). One process owns it; ``shard_owner`` names it without opening anything.
  The first open migrates memory left in the older local-mode folder (``aios.memory.migrate``).
  An open that finds ``OPTIMIZE_AT_OPEN`` or more points outside the HNSW index builds it
  first (a search scans those one by one: about 10 ms at 50,000 on two cores, 2-3 ms once
  indexed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from aios.memory.edge import EdgeMemoryStore, ShardLock
from aios.memory.embedders import Embedder, WordLlamaEmbedder
from aios.memory.migrate import has_local_mode_data, migrate_local_mode, migration_note
from aios.memory.store import MemoryStore

if TYPE_CHECKING:
    from aios.config import Settings

__all__ = ["OPTIMIZE_AT_OPEN", "open_memory", "shard_lock", "shard_owner", "shard_path"]

OPTIMIZE_AT_OPEN = 50_000

log = structlog.get_logger("aios.memory")


def shard_path(settings: Settings) -> Path:
    """Where the embedded shard lives."""
    return settings.resolved_qdrant_path / "edge" / settings.qdrant_collection


def shard_lock(settings: Settings) -> ShardLock:
    return ShardLock(shard_path(settings))


def shard_owner(settings: Settings) -> int | None:
    """The pid of the process that has the embedded shard open; ``None`` when no process
    does, or when memory is a Qdrant server (nobody owns it)."""
    if settings.qdrant_url:
        return None
    return shard_lock(settings).owner()


def open_memory(
    settings: Settings,
    embedder: Embedder | None = None,
    *,
    migrate: bool = True,
    optimize: bool = True,
    lock: ShardLock | None = None,
) -> MemoryStore:
    """The memory store of ``settings``. For the embedded shard this process becomes its
    owner: ``ShardOwned`` (at once, before the embedder loads) when another process is, unless
    ``lock`` is already held for it. With ``migrate``, local-mode data moves in on first open;
    with ``optimize``, a large unindexed part is indexed (see the module docstring)."""
    if settings.qdrant_url:
        from aios.memory.client import QdrantClientStore

        key = settings.qdrant_api_key
        return QdrantClientStore(
            embedder or WordLlamaEmbedder(),
            collection=settings.qdrant_collection,
            url=settings.qdrant_url,
            api_key=key.get_secret_value() if key else None,
        )
    path = shard_path(settings)
    lock = lock if lock is not None and lock.held else ShardLock(path).acquire()
    try:
        embedder = embedder or WordLlamaEmbedder()
        store = EdgeMemoryStore(embedder, path=path, lock=lock)
    except BaseException:
        lock.release()
        raise
    folder = settings.resolved_qdrant_path
    collection = settings.qdrant_collection
    if migrate and not migration_note(path).exists() and has_local_mode_data(folder, collection):
        try:
            done = migrate_local_mode(folder, collection, store)
        except BaseException:
            store.close()
            raise
        log.info(
            f"memory: migrated {done.added} of {done.found} points from the local-mode folder "
            f"{folder} into the Qdrant Edge shard {path}",
            found=done.found,
            added=done.added,
        )
    if optimize and (unindexed := store.unindexed()) >= OPTIMIZE_AT_OPEN:
        log.info(f"memory: indexing {unindexed} points for search (HNSW), once", points=unindexed)
        started = time.perf_counter()
        store.optimize()
        log.info(f"memory: indexed in {time.perf_counter() - started:.1f} s", points=unindexed)
    return store
