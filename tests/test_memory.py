"""Memory backends (Qdrant Edge, qdrant-client local mode, a Qdrant server when one is
reachable) against the same tests, the shard's single owner, and migration from local mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest
from pydantic import ValidationError

from aios.config import Settings
from aios.errors import InvalidInput, StackError
from aios.memory import (
    EdgeMemoryStore,
    MemoryQuery,
    MemoryStore,
    QdrantClientStore,
    ShardOwned,
    WordLlamaEmbedder,
    lookup,
    open_memory,
    point_id,
    shard_owner,
    shard_path,
)
from aios.memory.migrate import migrate_local_mode, migration_note
from aios.operations.memory import lookup_memory
from tests.conftest import ROOT

SERVER_URL = os.environ.get("AIOS_TEST_QDRANT_URL", "http://127.0.0.1:6333")


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


def server_reachable() -> str | None:
    """Why the server tests cannot run, or ``None`` when a Qdrant server answers."""
    try:
        with urlopen(f"{SERVER_URL}/readyz", timeout=2) as reply:
            return None if reply.status == 200 else f"{SERVER_URL}/readyz said {reply.status}"
    except (URLError, OSError) as exc:
        return f"no Qdrant server at {SERVER_URL} ({exc}); set AIOS_TEST_QDRANT_URL to run these"


@pytest.fixture(params=["edge", "local", "server"])
def memory(
    request: pytest.FixtureRequest, embedder: WordLlamaEmbedder, tmp_path: Path
) -> Iterator[MemoryStore]:
    """The same tests against each backend."""
    store: MemoryStore
    collection = ""
    if request.param == "edge":
        store = EdgeMemoryStore(embedder, path=tmp_path / "edge" / "t")
    elif request.param == "local":
        store = QdrantClientStore(embedder, collection="t", path=tmp_path / "q")
    else:
        if (reason := server_reachable()) is not None:
            pytest.skip(reason)
        collection = f"aios_test_{uuid.uuid4().hex[:10]}"
        store = QdrantClientStore(embedder, collection=collection, url=SERVER_URL)
    yield store
    store.close()
    if collection:
        _drop(collection)


def _drop(collection: str) -> None:
    from qdrant_client import QdrantClient

    c = QdrantClient(url=SERVER_URL)
    try:
        c.delete_collection(collection)
    finally:
        c.close()


def remember(store: MemoryStore, text: str, key: str, entity: str = "acme", kind: str = "note"):
    return store.remember(
        text,
        entity=entity,
        kind=kind,
        source_workflow_id="onboarding/acme",
        source_run_id="run-1",
        idempotency_key=key,
    )


# --- one interface, every backend ----------------------------------------------------------------


def test_remember_is_idempotent_per_key(memory: MemoryStore):
    first = remember(memory, "The client wants a webshop.", "key-1")
    again = remember(memory, "A different text on retry.", "key-1")
    assert again == first
    assert again.id == point_id("key-1")
    assert again.text == "The client wants a webshop."
    assert len(memory.history("acme", "note")) == 1
    assert memory.count() == 1


def test_remember_versions_per_entity_and_kind(memory: MemoryStore):
    v1 = remember(memory, "First summary.", "key-1")
    v2 = remember(memory, "Second summary.", "key-2")
    other_kind = remember(memory, "A decision.", "key-3", kind="decision")
    other_entity = remember(memory, "Another client.", "key-4", entity="globex")
    assert (v1.provenance.version, v2.provenance.version) == (1, 2)
    assert v1.id != v2.id
    assert other_kind.provenance.version == 1
    assert other_entity.provenance.version == 1
    assert [r.id for r in memory.history("acme", "note")] == [v1.id, v2.id]
    assert [r.id for r in memory.entries("acme")] == [other_kind.id, v2.id, v1.id]


def test_remember_records_provenance(memory: MemoryStore, embedder: WordLlamaEmbedder):
    before = datetime.now(UTC)
    record = remember(memory, "  Kickoff went well.  ", "key-p", kind="decision")
    p = record.provenance
    assert record.text == "Kickoff went well."
    assert p.source_workflow_id == "onboarding/acme"
    assert p.source_run_id == "run-1"
    assert (p.entity, p.kind, p.version) == ("acme", "decision", 1)
    assert p.idempotency_key == "key-p"
    assert p.embedder == embedder.name
    assert before - timedelta(seconds=1) <= p.created_at <= datetime.now(UTC)
    assert memory.get(record.id) == record


def test_recall_returns_the_most_similar_text_first_within_the_filter(memory: MemoryStore):
    web = remember(memory, "The client wants a new website with a webshop", "k-web")
    remember(memory, "Quarterly tax filing and bookkeeping for the accountant", "k-tax")
    other = remember(memory, "An online shop for sneakers", "k-other", entity="globex")
    decision = remember(memory, "We chose a webshop platform", "k-dec", kind="decision")
    hits = memory.recall("build an online shop website", entity="acme", kinds=["note"])
    assert [h.id for h in hits][:1] == [web.id] and len(hits) == 2
    assert hits[0].score > hits[1].score
    assert hits[0].provenance.idempotency_key == "k-web"
    assert {h.id for h in memory.recall("online shop", kinds=["decision"])} == {decision.id}
    assert other.id in {h.id for h in memory.recall("online shop", limit=10)}
    assert memory.recall("   ") == []


@pytest.mark.parametrize("text", ["", "   \n\t ", "x" * 8001])
def test_remember_refuses_empty_or_too_long_text(memory: MemoryStore, text: str):
    with pytest.raises(InvalidInput, match="memory: text"):
        remember(memory, text, "key-bad")
    assert memory.get(point_id("key-bad")) is None
    assert memory.count() == 0


def test_lookup_searches_shows_versions_and_lists_an_entity(memory: MemoryStore):
    v1 = remember(memory, "Onboarded Acme: a webshop.", "k1", kind="onboarding_summary")
    v2 = remember(memory, "Acme renewed: a webshop and SEO.", "k2", kind="onboarding_summary")
    paid = remember(memory, "Invoice paid in full.", "k3", kind="payment")
    found = lookup(memory, MemoryQuery(text="webshop", entity="acme"))
    assert {h.id for h in found.hits} >= {v1.id, v2.id} and found.total == 3
    assert found.backend == memory.backend
    shown = lookup(memory, MemoryQuery(point_id=v1.id))
    assert shown.record == v1
    assert [v.id for v in shown.versions] == [v1.id, v2.id]
    listed = lookup(memory, MemoryQuery(entity="acme", kinds=["payment"]))
    assert [e.id for e in listed.entries] == [paid.id]
    missing = lookup(memory, MemoryQuery(point_id=str(uuid.uuid4())))
    assert missing.record is None and missing.versions == []


def test_a_memory_query_names_what_is_wrong():
    with pytest.raises(ValidationError, match="point_id: 'nope' is not a memory id"):
        MemoryQuery(point_id="nope")
    with pytest.raises(ValidationError, match="give a text to search, a point_id, or an entity"):
        MemoryQuery()
    with pytest.raises(ValidationError, match="text: must not be empty"):
        MemoryQuery(text="  ")
    with pytest.raises(ValidationError, match="limit"):
        MemoryQuery(text="x", limit=0)
    assert MemoryQuery(point_id=f" {point_id('k').upper()} ").point_id == point_id("k")


# --- the embedded shard: one owner, durable, checked -------------------------------------------


def test_the_shard_has_one_owner_and_keeps_what_it_stored(
    embedder: WordLlamaEmbedder, tmp_path: Path
):
    path = tmp_path / "edge" / "aios_memory"
    store = EdgeMemoryStore(embedder, path=path)
    record = remember(store, "Kept across restarts.", "k-keep")
    with pytest.raises(ShardOwned, match=f"open in process {os.getpid()}") as owned:
        EdgeMemoryStore(embedder, path=path)
    assert owned.value.owner_pid == os.getpid()
    # Another process sees the owner without opening anything, and cannot open it either.
    probe = (
        "import sys; from pathlib import Path; from aios.memory import ShardLock, ShardOwned\n"
        "lock = ShardLock(Path(sys.argv[1]))\n"
        "try:\n    lock.acquire()\nexcept ShardOwned as e:\n    print(e.owner_pid)\n"
    )
    seen = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True
    )
    assert seen.stdout.strip() == str(os.getpid())
    store.close()
    again = EdgeMemoryStore(embedder, path=path)
    try:
        assert again.get(record.id) == record
        nxt = remember(again, "Next.", "k-next")
        assert nxt.provenance.version == 2
        again.optimize()  # indexing keeps every point and what recall finds
        assert again.count() == 2 and again.get(nxt.id) == nxt
        assert again.recall("kept across restarts")[0].id == record.id
    finally:
        again.close()


def test_a_shard_made_for_another_embedder_is_a_clear_error(
    embedder: WordLlamaEmbedder, tmp_path: Path
):
    path = tmp_path / "edge" / "t"
    EdgeMemoryStore(embedder, path=path).close()

    class Small:
        name, dim = "small-8", 8

        def embed(self, texts: list[str]) -> list[list[float]]:
            return [[1.0] * 8 for _ in texts]

    with pytest.raises(StackError, match=r"cannot be opened with embedder small-8 \(8 dim"):
        EdgeMemoryStore(Small(), path=path)
    EdgeMemoryStore(embedder, path=path).close()  # the failed open let go of the lock


# --- migration from local mode -------------------------------------------------------------------


def local_settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, database_url="postgresql://unused", _env_file=None)


def test_local_mode_data_migrates_on_first_open_with_ids_payloads_and_versions(
    embedder: WordLlamaEmbedder, tmp_path: Path
):
    s = local_settings(tmp_path)
    old = QdrantClientStore(embedder, collection=s.qdrant_collection, path=s.resolved_qdrant_path)
    stored = [
        remember(old, "Onboarded Acme: a webshop.", "m1", kind="onboarding_summary"),
        remember(old, "Acme again: SEO.", "m2", kind="onboarding_summary"),
        remember(old, "Globex: a brand refresh.", "m3", entity="globex", kind="decision"),
    ]
    old.close()
    assert shard_owner(s) is None

    new = open_memory(s, embedder)
    try:
        assert isinstance(new, EdgeMemoryStore) and new.path == shard_path(s)
        assert new.count() == 3
        assert [new.get(r.id) for r in stored] == stored  # same id, text, provenance, version
        assert [r.provenance.version for r in new.history("acme", "onboarding_summary")] == [1, 2]
        assert new.recall("webshop", entity="acme")[0].id == stored[0].id
        third = remember(new, "Acme, third.", "m4", kind="onboarding_summary")
        assert third.provenance.version == 3
        note = json.loads(migration_note(new.path).read_text())
        assert (note["found"], note["added"]) == (3, 3)
        again = migrate_local_mode(s.resolved_qdrant_path, s.qdrant_collection, new)
        assert (again.found, again.added) == (3, 0)
        assert new.count() == 4
    finally:
        new.close()
    reopened = open_memory(s, embedder)  # the note says done: the old folder is not read again
    try:
        assert reopened.count() == 4
    finally:
        reopened.close()


def test_aios_memory_migrate_moves_old_data_once_and_refuses_while_a_worker_owns_it(
    embedder: WordLlamaEmbedder, tmp_path: Path
):
    s = local_settings(tmp_path)
    old = QdrantClientStore(embedder, collection=s.qdrant_collection, path=s.resolved_qdrant_path)
    first = remember(old, "Onboarded Initech.", "c1", entity="client:initech")
    old.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    env.update(AIOS_STATE_DIR=str(tmp_path), AIOS_DATABASE_URL="postgresql://unused")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aios.cli", "memory", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )

    moved = cli("migrate", "--json")
    assert moved.returncode == 0, moved.stderr
    assert (json.loads(moved.stdout)["found"], json.loads(moved.stdout)["added"]) == (1, 1)
    twice = cli("migrate", "--json")
    assert (json.loads(twice.stdout)["found"], json.loads(twice.stdout)["added"]) == (1, 0)
    indexed = cli("optimize")
    assert indexed.returncode == 0 and "Indexed: 1 points" in indexed.stdout, indexed.stderr
    shown = cli("show", first.id, "--json")  # no worker: the CLI opens the shard itself
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["record"]["provenance"]["idempotency_key"] == "c1"

    owner = open_memory(s, embedder)
    try:
        refused = cli("migrate")
        assert refused.returncode == 1
        assert f"open in process {os.getpid()}" in refused.stderr
        assert "Stop the memory worker" in refused.stderr
    finally:
        owner.close()


async def test_a_reader_opens_the_shard_itself_when_no_worker_has_it(
    embedder: WordLlamaEmbedder, tmp_path: Path
):
    s = local_settings(tmp_path)
    store = open_memory(s, embedder)
    record = remember(store, "Initech wants a CRM.", "r1", entity="client:initech")
    store.close()
    view = await lookup_memory(s, MemoryQuery(entity="client:initech"))
    assert [e.id for e in view.entries] == [record.id]
    assert shard_owner(s) is None  # the reader let go of it


def test_a_worker_without_memory_hands_memory_steps_on_until_it_owns_memory(
    embedder: WordLlamaEmbedder, tmp_path: Path
):
    from aios.workers.memory import DeferredMemory, MemoryNotHere

    deferred = DeferredMemory()
    with pytest.raises(MemoryNotHere, match="served by the process that owns it") as refused:
        deferred.recall("anything")
    assert refused.value.retryable  # Temporal retries it, so it reaches the owner
    store = EdgeMemoryStore(embedder, path=tmp_path / "edge" / "t")
    try:
        deferred.serve(store)
        record = remember(deferred, "Now served here.", "d1")
        assert store.get(record.id) == record and deferred.count() == 1
    finally:
        store.close()
