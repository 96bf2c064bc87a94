"""Semantic memory: Qdrant store, embedders, provenance."""

from aios.memory.embedders import Embedder, WordLlamaEmbedder
from aios.memory.store import MemoryRecord, MemoryStore, Provenance, RecalledMemory

__all__ = [
    "Embedder",
    "MemoryRecord",
    "MemoryStore",
    "Provenance",
    "RecalledMemory",
    "WordLlamaEmbedder",
]
