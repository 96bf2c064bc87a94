"""Semantic memory: one interface, two Qdrant backends, embedders, provenance.

``MemoryStore`` is the interface; ``EdgeMemoryStore`` (Qdrant Edge, embedded, the default) and
``QdrantClientStore`` (a Qdrant server) implement it; ``open_memory`` picks one from the
settings. ``lookup`` answers a ``MemoryQuery`` (search, one memory with its versions, an
entity's memories) from any store.
"""

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
