"""``aios export`` and ``aios import`` on the real stack: export a kernel with records, events,
ledgers and memory, import it into a fresh database and memory folder, export again and get
the same files; an import into a stack with data is refused and changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from aios.config import Settings
from aios.kernel.events import EventDraft
from aios.kernel.store import KernelStore
from aios.memory.backends import open_memory
from aios.operations.exchange import export_stack, read_manifest
from tests.conftest import subprocess_env
from tests.fresh_db import fresh_database
from tests.test_review import seed

QUERY = "a bakery chain wants online ordering"


def stack(base: Settings, url: str, folder: Path) -> Settings:
    return base.model_copy(
        update={
            "database_url": SecretStr(url),
            "state_dir": folder / "state",
            "qdrant_path": folder / "qdrant",
        }
    )


def aios(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(settings, AIOS_QDRANT_PATH=str(settings.qdrant_path)),
        timeout=120,
    )


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename NOT LIKE '%yoyo%' ORDER BY 1"
            ).fetchall()
        ]
        found: dict[str, int] = {}
        for t in tables:
            row = conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()
            assert row is not None
            found[t] = row[0]
        return found


def recall_ids(settings: Settings) -> list[str]:
    memory = open_memory(settings, migrate=False, optimize=False)
    try:
        return [h.id for h in memory.recall(QUERY, limit=3)]
    finally:
        memory.close()


async def a_closed_run(client: Client) -> str:
    """A run with a history (started, then terminated: no worker needed), once listed."""
    workflow_id = f"exchange/{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        "NoSuchWorkflow", id=workflow_id, task_queue=f"nobody-{uuid.uuid4().hex[:6]}"
    )
    await handle.terminate(reason="a history for the export")
    query = f"WorkflowId = '{workflow_id}'"
    for _ in range(200):  # visibility lags the write a little
        if [w async for w in client.list_workflows(query)]:
            return workflow_id
        await handle.describe()
    raise AssertionError(f"{workflow_id} never became visible")


async def test_export_import_round_trip_keeps_counts_checksums_and_recall(
    base_settings: Settings, client: Client, tmp_path: Path
) -> None:
    with fresh_database() as source_url, fresh_database(migrate=False) as target_url:
        source = stack(base_settings, source_url, tmp_path / "source")
        target = stack(base_settings, target_url, tmp_path / "target")
        # Records, events, ledgers, an outbox, the cost ledger (the review's seeded week) ...
        seed(source_url)
        # ... and memory.
        memory = open_memory(source, migrate=False, optimize=False)
        try:
            for n, text in enumerate(
                [
                    "Bakery chain onboarding: online ordering and delivery, Danish bakeries.",
                    "A law firm wants a client portal with document upload.",
                    "Proposal accepted: a shop with online ordering, 10% discount.",
                ]
            ):
                memory.remember(
                    text,
                    entity=f"client:c{n}",
                    kind="onboarding_summary",
                    source_workflow_id=f"onboarding/c{n}",
                    source_run_id="r1",
                    idempotency_key=f"exchange-test/{n}",
                )
            recalled = [h.id for h in memory.recall(QUERY, limit=3)]
        finally:
            memory.close()
        run = await a_closed_run(client)

        exported = tmp_path / "export"
        done = aios(source, "export", str(exported), "--json")
        assert done.returncode == 0, done.stderr
        manifest = read_manifest(exported)
        assert manifest.tables["events"].count == counts(source_url)["events"] > 40
        assert manifest.memory.count == 3
        assert run in {h.workflow_id for h in manifest.histories}
        assert json.loads(done.stdout)["memory"]["count"] == 3
        assert {"0001_init", "0009_notices", "0015_review"} <= set(manifest.migrations)

        done = aios(target, "import", str(exported), "--json")
        assert done.returncode == 0, done.stderr
        assert counts(target_url) == counts(source_url)
        assert recall_ids(target) == recalled
        # The histories are kept, byte for byte, as an archive in the state folder.
        archive = Path(json.loads(done.stdout)["archive"])
        ours = next(h for h in manifest.histories if h.workflow_id == run)
        assert (archive / ours.file).read_bytes() == (exported / ours.file).read_bytes()

        # Exported again from the imported stack: the same files, byte for byte.
        again = await export_stack(target, tmp_path / "again", client=client)
        assert {t: (e.count, e.sha256) for t, e in again.tables.items()} == {
            t: (e.count, e.sha256) for t, e in manifest.tables.items()
        }
        assert (again.memory.count, again.memory.sha256) == (3, manifest.memory.sha256)

        # Sequences moved past the imported ids: the next event gets a new id.
        store = KernelStore(target_url, max_size=1)
        try:
            store.events.append(
                EventDraft(
                    event_key=f"after-import/{uuid.uuid4().hex}",
                    workflow_id="onboarding/z",
                    run_id="r1",
                    process="onboarding",
                    kind="client.upserted",
                )
            )
        finally:
            store.close()
        assert counts(target_url)["events"] == manifest.tables["events"].count + 1

        # A second import into the same (now full) stack is refused and changes nothing.
        before = counts(target_url)
        refused = aios(target, "import", str(exported))
        assert refused.returncode == 1
        assert "import needs an empty stack, but it holds data: tables " in refused.stderr
        assert "events" in refused.stderr and "memory (3 points)" in refused.stderr
        assert counts(target_url) == before

        # A file changed after the export is named, before anything is read into the stack.
        tampered = tmp_path / "tampered"
        shutil.copytree(exported, tampered)
        with (tampered / "tables" / "clients.jsonl").open("a") as f:
            f.write('{"client_key": "intruder"}\n')
        bad = aios(target, "import", str(tampered))
        assert bad.returncode == 1
        assert "tables/clients.jsonl does not match its SHA-256 in manifest.json" in bad.stderr


async def test_export_refuses_a_folder_that_holds_files(
    base_settings: Settings, client: Client, tmp_path: Path
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="exists and is not an empty folder") as caught:
        await export_stack(base_settings, busy, client=client)
    assert type(caught.value).__name__ == "InvalidInput"
    assert sorted(os.listdir(tmp_path)) == ["busy"]  # nothing half-written


def test_memory_points_move_between_the_embedded_shard_and_a_qdrant_collection(
    base_settings: Settings, tmp_path: Path
) -> None:
    """What export reads (``points``) and import writes (``import_points``) on both backends:
    the same ids, payloads and vectors, and a recall finds the same point."""
    from aios.memory.client import QdrantClientStore
    from aios.memory.edge import EdgeMemoryStore

    edge = open_memory(
        base_settings.model_copy(update={"qdrant_path": tmp_path / "edge"}),
        migrate=False,
        optimize=False,
    )
    assert isinstance(edge, EdgeMemoryStore)  # the embedded default
    collection = QdrantClientStore(edge.embedder, collection="moved", path=tmp_path / "local")
    try:
        for n, text in enumerate(["Bakery with online ordering.", "A law firm's portal."]):
            edge.remember(
                text,
                entity=f"client:m{n}",
                kind="onboarding_summary",
                source_workflow_id=f"onboarding/m{n}",
                source_run_id="r1",
                idempotency_key=f"moved/{n}",
            )
        exported = sorted(edge.points())
        assert collection.import_points(exported) == 2
        moved = sorted(collection.points())
        assert [(p[0], p[2]) for p in moved] == [(p[0], p[2]) for p in exported]
        for (_, ours, _), (_, theirs, _) in zip(moved, exported, strict=True):
            assert ours == pytest.approx(theirs, abs=1e-6)
        assert [h.id for h in collection.recall("bread shop", limit=1)] == [
            h.id for h in edge.recall("bread shop", limit=1)
        ]
    finally:
        collection.close()
        edge.close()
