"""``aios memory``: search and show memory with provenance and versions; migrate old data.

Registered by ``cli.app``; like the other commands, everything past Typer loads inside them.
Reads go through ``operations.memory.lookup_memory``: directly when no worker has the
embedded shard open, otherwise through the memory worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from aios.cli.base import JsonOpt, command

if TYPE_CHECKING:
    from aios.memory.records import MemoryQuery, MemoryRecord, MemoryView

__all__ = ["memory_app"]

P = ParamSpec("P")
R = TypeVar("R")

memory_app = typer.Typer(
    help="Semantic memory: search it, show a memory with its versions, migrate, index."
)


@memory_app.command("search")
@command
def search(
    text: Annotated[str, typer.Argument(help="What to look for (similar meaning, not words)")],
    client: Annotated[
        str | None, typer.Option("--client", help="Only this client's memories (client key)")
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Only this kind (repeatable): onboarding_summary, ..."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-100)")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The memories most similar to TEXT, best first, with score, provenance and version."""
    from aios.memory.records import MemoryQuery

    query = MemoryQuery(
        text=text, entity=f"client:{client}" if client else None, kinds=kind or [], limit=limit
    )
    view = _lookup(query)
    if as_json:
        _emit(view)
        return
    from aios.cli.render import Cell, Col, line, one_line, records

    line(f"{len(view.hits)} of {view.total} memories ({view.backend}), most similar first:")
    rows: list[list[Cell]] = [
        [
            h.id,
            f"{h.score:.3f}",
            h.provenance.kind,
            h.provenance.entity,
            str(h.provenance.version),
            f"{h.provenance.created_at:%Y-%m-%d %H:%M}",
            h.provenance.source_workflow_id,
            one_line(h.text),
        ]
        for h in view.hits
    ] or [["(none)", "", "", "", "", "", "", ""]]
    records(
        [
            Col("id", key=True),
            Col("score", key=True),
            Col("kind", key=True),
            Col("entity", key=True),
            Col("version", key=True),
            Col("created (UTC)", key=True),
            Col("source workflow", key=True),
            Col("text", min_width=20, max_width=80),
        ],
        rows,
    )
    if view.hits:
        line("Show one in full, with every version: aios memory show <id>")


@memory_app.command("show")
@command
def show(
    memory_id: Annotated[str, typer.Argument(metavar="ID", help="A memory id (from search)")],
    as_json: JsonOpt = False,
) -> None:
    """One memory in full: text, provenance, and every version of its entity and kind."""
    from aios.errors import InvalidInput
    from aios.memory.records import MemoryQuery

    view = _lookup(MemoryQuery(point_id=memory_id))
    if view.record is None:
        raise InvalidInput(f"no memory with id {memory_id} ({view.total} memories stored)")
    if as_json:
        _emit(view)
        return
    _print_record(view.record, view.versions)


def _print_record(record: MemoryRecord, versions: list[MemoryRecord]) -> None:
    from aios.cli.render import Col, bold, line, one_line, out, records

    p = record.provenance
    line(bold(record.id))
    line(f"entity {p.entity}, kind {p.kind}, version {p.version} of {len(versions)}")
    line(f"created {p.created_at:%Y-%m-%d %H:%M:%S} UTC by workflow ", bold(p.source_workflow_id))
    line(f"run {p.source_run_id}")
    line(f"idempotency key {p.idempotency_key}")
    line(f"embedder {p.embedder}")
    out().print()
    line(record.text)
    out().print()
    records(
        [
            Col("version", key=True),
            Col("id", key=True),
            Col("created (UTC)", key=True),
            Col("source workflow", key=True),
            Col("text", min_width=20, max_width=80),
        ],
        [
            [
                f"{v.provenance.version}{' *' if v.id == record.id else ''}",
                v.id,
                f"{v.provenance.created_at:%Y-%m-%d %H:%M}",
                v.provenance.source_workflow_id,
                one_line(v.text),
            ]
            for v in versions
        ],
        title=f"Versions of {p.kind} for {p.entity} (* this one)",
    )


@memory_app.command("migrate")
@command
def migrate(as_json: JsonOpt = False) -> None:
    """Move memory from the older local-mode folder into the Qdrant Edge shard.

    The memory worker does this by itself on its first start; this command is for doing it
    before, or again (points already moved are left alone, so nothing doubles). It needs
    the shard: stop the memory worker first."""
    from aios.cli.app import line, settings
    from aios.cli.render import emit_json
    from aios.errors import InvalidInput, StackError
    from aios.memory.backends import open_memory, shard_path
    from aios.memory.edge import EdgeMemoryStore, ShardOwned
    from aios.memory.migrate import has_local_mode_data, migrate_local_mode, migration_note

    s = settings()
    if s.qdrant_url:
        raise InvalidInput(
            "memory is a Qdrant server (AIOS_QDRANT_URL): there is no local-mode folder to migrate"
        )
    folder, collection = s.resolved_qdrant_path, s.qdrant_collection
    if not has_local_mode_data(folder, collection):
        if as_json:
            emit_json({"source": str(folder), "collection": collection, "found": 0, "added": 0})
        else:
            line(f"Nothing to migrate: {folder} holds no local-mode collection {collection}.")
        return
    try:
        store = open_memory(s, migrate=False)
    except ShardOwned as exc:
        note = migration_note(shard_path(s))
        done = f" It migrated at its start (see {note})." if note.exists() else ""
        raise StackError(f"{exc}. Stop the memory worker, then run this again.{done}") from None
    try:
        assert isinstance(store, EdgeMemoryStore)
        result = migrate_local_mode(folder, collection, store)
    finally:
        store.close()
    if as_json:
        emit_json(result.model_dump(mode="json"))
        return
    line(
        f"Migrated {result.added} new of {result.found} points from {folder} into "
        f"{shard_path(s)} (ids, payloads and versions kept). The old folder is no longer read; "
        "delete its meta.json and collection/ when you no longer need them."
    )


@memory_app.command("optimize")
@command
def optimize() -> None:
    """Index every stored point for search (HNSW) now.

    The memory worker does this by itself when it starts with 50,000 or more points outside
    the index; this command is for doing it at a time you choose. It needs the shard: stop the
    memory worker first. It takes about 10 s per 20,000 points on two cores."""
    import time

    from aios.cli.app import line, settings
    from aios.errors import InvalidInput, StackError
    from aios.memory.backends import open_memory
    from aios.memory.edge import EdgeMemoryStore, ShardOwned

    s = settings()
    if s.qdrant_url:
        raise InvalidInput("memory is a Qdrant server (AIOS_QDRANT_URL): the server indexes itself")
    try:
        store = open_memory(s, optimize=False)
    except ShardOwned as exc:
        raise StackError(f"{exc}. Stop the memory worker, then run this again.") from None
    try:
        assert isinstance(store, EdgeMemoryStore)
        before = store.unindexed()
        started = time.perf_counter()
        store.optimize()
        took = time.perf_counter() - started
        line(
            f"Indexed: {store.count()} points, {store.unindexed()} outside the index "
            f"(was {before}), in {took:.1f} s."
        )
    finally:
        store.close()


def _lookup(query: MemoryQuery) -> MemoryView:
    from aios.cli.app import run, settings
    from aios.operations.memory import lookup_memory

    s = settings()
    return run(lookup_memory(s, query))


def _emit(view: MemoryView) -> None:
    from aios.cli.render import emit_json

    emit_json(view.model_dump(mode="json"))
