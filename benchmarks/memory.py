"""How fast memory recalls and remembers: Qdrant Edge (the default) beside qdrant-client's
local mode (the earlier default), with the offline WordLlama embedder.

    .venv/bin/python benchmarks/memory.py                   # Edge at 1k, 10k, 20k, 100k
    .venv/bin/python benchmarks/memory.py --json
    .venv/bin/python benchmarks/memory.py --edge-sizes 20000 --local-sizes 1000 --hnsw-sizes ""

For each size it fills a fresh store (in a temporary folder) with that many memories written
as ``remember`` writes them (text, provenance payload, one vector each; clients, kinds and
versions spread as in real use) and then times, per operation, p50 and p95 in milliseconds:

- ``embed``: embedding one query text (the same for every backend);
- ``search``: the store's search alone for an embedded query, with a payload filter as recall
  uses it: ``kinds`` (onboarding: similar clients' summaries and decisions) and ``entity``
  (proposal: one client's history);
- ``recall``: embed + search, what the ``recall_memory`` activity does;
- ``remember``: a new memory, embedding included (idempotency check, version count, write).

Edge runs twice at the ``--hnsw-sizes``: as ``remember`` leaves the shard (searches scan the
points one by one), and as ``qdrant-edge+hnsw`` once the HNSW index is built (what the memory
worker does when it opens a shard with 50,000 or more points outside the index, and what
``aios memory optimize`` does), with the time the indexing took.

Targets for Qdrant Edge on the project's 2-core machine: recall p95 <= 10 ms at 20,000 points
and <= 25 ms at 100,000; remember p95 <= 15 ms. The machine's load (``os.getloadavg()``)
before and after is printed with the figures. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aios.memory.client import QdrantClientStore
from aios.memory.edge import EdgeMemoryStore
from aios.memory.embedders import WordLlamaEmbedder
from aios.memory.records import RecalledMemory, new_payload, point_id

SEGMENTS = ["web", "brand", "seo", "ecommerce", "consulting", "mobile", "content", "data"]
SERVICES = [
    "a new website",
    "a webshop",
    "a logo refresh",
    "search engine optimisation",
    "a mobile app",
    "a content calendar",
    "a data dashboard",
    "hosting and maintenance",
    "a brand book",
    "newsletter templates",
]
KINDS = ["onboarding_summary", "decision", "proposal_outcome", "payment"]
RECALL_KINDS = ["onboarding_summary", "decision"]
CLIENTS = 2000


class Searchable(Protocol):
    backend: str

    def search_vector(
        self,
        vector: list[float],
        *,
        kinds: list[str] | None = None,
        entity: str | None = None,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[RecalledMemory]: ...

    def recall(
        self,
        query: str,
        *,
        kinds: list[str] | None = None,
        entity: str | None = None,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[RecalledMemory]: ...

    def remember(
        self,
        text: str,
        *,
        entity: str,
        kind: str,
        source_workflow_id: str,
        source_run_id: str,
        idempotency_key: str,
    ) -> Any: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


@dataclass
class Timing:
    p50_ms: float
    p95_ms: float
    n: int


@dataclass
class SizeReport:
    backend: str
    points: int
    fill_seconds: float
    index_seconds: float
    embed: Timing
    search_kinds: Timing
    search_entity: Timing
    recall: Timing
    remember: Timing


@dataclass
class Report:
    embedder: str
    load_before: list[float]
    load_after: list[float]
    cpus: int
    results: list[SizeReport] = field(default_factory=list)


def text(rng: random.Random, client: int) -> str:
    return (
        f"Onboarded Client {client} Ltd ({rng.choice(SEGMENTS)}). Request: "
        f"{rng.choice(SERVICES)} and {rng.choice(SERVICES)} by week {rng.randint(1, 52)}. "
        f"Budget: {rng.randint(2, 80)}k. Kickoff on day {rng.randint(1, 28)}. "
        f"Welcome approved by {rng.choice(['pat', 'sam', 'policy'])}."
    )


def timing(samples: list[float]) -> Timing:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Timing(
        p50_ms=round(statistics.median(ordered) * 1000, 3),
        p95_ms=round(p95 * 1000, 3),
        n=len(ordered),
    )


def timed(fn: Callable[[int], object], n: int) -> Timing:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return timing(samples)


def fill(
    backend: str, folder: Path, embedder: WordLlamaEmbedder, points: int, rng: random.Random
) -> tuple[Searchable, float]:
    """A store of ``backend`` holding ``points`` memories, and how long filling it took."""
    start = time.perf_counter()
    versions: dict[tuple[str, str], int] = {}
    batch: list[tuple[str, list[float], dict[str, Any]]] = []
    store: Searchable
    if backend == "qdrant-edge":
        edge = EdgeMemoryStore(embedder, path=folder / "edge")
        store = edge
        write: Callable[[list[tuple[str, list[float], dict[str, Any]]]], object] = (
            edge.import_points
        )
    else:
        from qdrant_client import models

        local = QdrantClientStore(embedder, collection="bench", path=folder / "local")
        store = local

        def write(rows: list[tuple[str, list[float], dict[str, Any]]]) -> object:
            return local._client.upsert(  # bulk load; the timed remember uses the store's API
                "bench",
                points=[models.PointStruct(id=i, vector=v, payload=p) for i, v, p in rows],
                wait=True,
            )

    for n in range(points):
        client = rng.randrange(CLIENTS)
        entity, kind = f"client:client-{client}", rng.choice(KINDS)
        versions[(entity, kind)] = versions.get((entity, kind), 0) + 1
        body = text(rng, client)
        key = f"onboarding/client-{client}/run-{n}/remember-summary"
        payload = new_payload(
            body,
            entity=entity,
            kind=kind,
            version=versions[(entity, kind)],
            source_workflow_id=f"onboarding/client-{client}",
            source_run_id=f"run-{n}",
            idempotency_key=key,
            embedder=embedder.name,
        )
        batch.append((point_id(key), [], payload))
        if len(batch) == 1000 or n == points - 1:
            vectors = embedder.embed([p["text"] for _, _, p in batch])
            write([(i, v, p) for (i, _, p), v in zip(batch, vectors, strict=True)])
            batch = []
    return store, time.perf_counter() - start


def measure(
    backend: str, points: int, queries: int, embedder: WordLlamaEmbedder, folder: Path
) -> SizeReport:
    rng = random.Random(points)  # noqa: S311  (sample data, not secrets)
    store, filled = fill(backend.removesuffix("+hnsw"), folder, embedder, points, rng)
    indexed = 0.0
    if backend.endswith("+hnsw") and isinstance(store, EdgeMemoryStore):
        start = time.perf_counter()
        store.optimize()
        indexed = time.perf_counter() - start
    try:
        asks = [text(rng, rng.randrange(CLIENTS)) for _ in range(queries)]
        clients = [f"client:client-{rng.randrange(CLIENTS)}" for _ in range(queries)]
        vectors = embedder.embed(asks)
        store.search_vector(vectors[0], kinds=RECALL_KINDS)  # warm up
        report = SizeReport(
            backend=backend,
            points=points,
            fill_seconds=round(filled, 2),
            index_seconds=round(indexed, 2),
            embed=timed(lambda i: embedder.embed([asks[i]]), queries),
            search_kinds=timed(
                lambda i: store.search_vector(vectors[i], kinds=RECALL_KINDS), queries
            ),
            search_entity=timed(
                lambda i: store.search_vector(vectors[i], entity=clients[i]), queries
            ),
            recall=timed(lambda i: store.recall(asks[i], kinds=RECALL_KINDS), queries),
            remember=timed(
                lambda i: store.remember(
                    asks[i],
                    entity=clients[i],
                    kind="onboarding_summary",
                    source_workflow_id="onboarding/benchmark",
                    source_run_id="run-benchmark",
                    idempotency_key=f"benchmark/{uuid.uuid4()}",
                ),
                queries,
            ),
        )
    finally:
        store.close()
    return report


def print_report(report: Report) -> None:
    print(f"embedder {report.embedder}; {report.cpus} CPUs; load before {report.load_before}")
    head = (
        f"{'backend':<18}{'points':>8}{'fill s':>8}{'index s':>9}  {'embed':>13}  "
        f"{'search kinds':>13}  {'search entity':>13}  {'recall':>13}  {'remember':>13}"
    )
    print("p50 / p95 in ms")
    print(head)
    for r in report.results:
        cells = [r.embed, r.search_kinds, r.search_entity, r.recall, r.remember]
        row = "  ".join(f"{f'{t.p50_ms:.2f}/{t.p95_ms:.2f}':>13}" for t in cells)
        print(f"{r.backend:<18}{r.points:>8}{r.fill_seconds:>8.1f}{r.index_seconds:>9.1f}  {row}")
    print(f"load after {report.load_after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--edge-sizes", default="1000,10000,20000,100000")
    parser.add_argument("--local-sizes", default="1000,10000")
    parser.add_argument("--hnsw-sizes", default="20000,100000", help="Edge again, indexed")
    parser.add_argument("--queries", type=int, default=200, help="timed calls per operation")
    parser.add_argument(
        "--local-queries", type=int, default=30, help="timed calls per operation, local mode"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    embedder = WordLlamaEmbedder()
    report = Report(
        embedder=embedder.name,
        load_before=[round(x, 2) for x in os.getloadavg()],
        load_after=[],
        cpus=os.cpu_count() or 0,
    )
    plan = [("qdrant-local", int(n), args.local_queries) for n in args.local_sizes.split(",") if n]
    plan += [("qdrant-edge", int(n), args.queries) for n in args.edge_sizes.split(",") if n]
    plan += [("qdrant-edge+hnsw", int(n), args.queries) for n in args.hnsw_sizes.split(",") if n]
    plan.sort(key=lambda p: (p[1], p[0]))
    for backend, points, queries in plan:
        with tempfile.TemporaryDirectory(prefix="aios-bench-memory-") as folder:
            result = measure(backend, points, queries, embedder, Path(folder))
        report.results.append(result)
        print(f"done: {backend} at {points} points", file=sys.stderr, flush=True)
    report.load_after = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
