"""Semantic memory: one interface, two Qdrant backends, embedders, provenance.

``MemoryStore`` is the interface; ``EdgeMemoryStore`` (Qdrant Edge, embedded, the default) and
``QdrantClientStore`` (a Qdrant server) implement it; ``open_memory`` picks one from the
settings. ``lookup`` answers a ``MemoryQuery`` (search, one memory with its versions, an
entity's memories) from any store.

Names load on first use (PEP 562): a worker that does not serve memory, and the models every
workflow shares, must not load qdrant-client (about 90 MB of memory) or the embedder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.memory.backends import open_memory, shard_owner, shard_path
    from aios.memory.client import QdrantClientStore
    from aios.memory.edge import EdgeMemoryStore, ShardLock, ShardOwned
    from aios.memory.embedders import Embedder, WordLlamaEmbedder
    from aios.memory.migrate import Migration, migrate_local_mode
    from aios.memory.records import (
        MemoryQuery,
        MemoryRecord,
        MemoryView,
        Provenance,
        RecalledMemory,
        point_id,
    )
    from aios.memory.store import MemoryStore, lookup

_HOMES = {
    "backends": ["open_memory", "shard_owner", "shard_path"],
    "client": ["QdrantClientStore"],
    "edge": ["EdgeMemoryStore", "ShardLock", "ShardOwned"],
    "embedders": ["Embedder", "WordLlamaEmbedder"],
    "migrate": ["Migration", "migrate_local_mode"],
    "records": [
        "MemoryQuery",
        "MemoryRecord",
        "MemoryView",
        "Provenance",
        "RecalledMemory",
        "point_id",
    ],
    "store": ["MemoryStore", "lookup"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'aios.memory' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"aios.memory.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "EdgeMemoryStore",
    "Embedder",
    "MemoryQuery",
    "MemoryRecord",
    "MemoryStore",
    "MemoryView",
    "Migration",
    "Provenance",
    "QdrantClientStore",
    "RecalledMemory",
    "ShardLock",
    "ShardOwned",
    "WordLlamaEmbedder",
    "lookup",
    "migrate_local_mode",
    "open_memory",
    "point_id",
    "shard_owner",
    "shard_path",
]
