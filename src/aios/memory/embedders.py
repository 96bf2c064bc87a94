"""Embedders turn text into vectors. One small interface; the default runs offline.

``WordLlamaEmbedder`` uses the WordLlama model whose weights ship inside the ``wordllama``
wheel, so memory works with no network and no API key. A hosted embedder (Azure OpenAI or
OpenAI) implements the same two members.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

__all__ = ["Embedder", "WordLlamaEmbedder"]


class Embedder(Protocol):
    """Anything with a name, a fixed dimension and a batch ``embed``."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class WordLlamaEmbedder:
    """Offline embeddings from the WordLlama ``l2_supercat`` model bundled in its wheel."""

    def __init__(self, dim: int = 256) -> None:
        import wordllama
        from wordllama import WordLlama

        # The wheel carries its weights and tokenizer; pointing the cache at the package
        # folder and disabling downloads makes loading strictly offline.
        package_dir = Path(wordllama.__file__).parent
        self._model = WordLlama.load(cache_dir=package_dir, dim=dim, disable_download=True)
        self._lock = threading.Lock()
        self.dim = dim
        self.name = f"wordllama/l2_supercat-{dim}"

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            vectors = self._model.embed(texts, norm=True)
        return [[float(x) for x in row] for row in vectors]
