"""``aios export`` and ``aios import``: the whole stack as files, and back into an empty one.

An export is a folder:

- ``tables/<table>.jsonl``: every kernel table, one row per line, in primary-key order. The
  table list comes from the database catalog (every table of the schema but yoyo's own), so a
  table a later migration adds is exported without a change here. Each line is PostgreSQL's own
  ``to_jsonb(row)`` text: numbers (``numeric`` included) are JSON numbers with every digit
  kept, ``timestamptz`` an ISO 8601 string in UTC (``2026-01-05T09:00:00+00:00``), ``date``
  ``YYYY-MM-DD``, ``jsonb`` the JSON value itself, ``bytea`` a ``"\\x..."`` hex string. Import
  reads them back with ``jsonb_populate_recordset``, the exact inverse.
- ``memory/points.jsonl``: every memory point as ``{"id", "vector", "payload"}``, by id.
- ``histories/*.json``: the Temporal history of every run in the namespace (``to_json``).
- ``manifest.json``: the format, the schema version (the applied migrations), and per file its
  row, point or event count and SHA-256.

Import checks every checksum first, refuses a stack where any kernel table or memory holds
data (naming them), then in one transaction inserts the tables in foreign-key order (parents
first) and moves each table's sequences past the imported ids, writes the memory points with
their ids, vectors and payloads, and commits only once memory is written. Histories cannot be
put back into Temporal: they are copied to ``<state>/archive/<export name>/``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field, ValidationError

from aios.errors import InvalidInput, StackError

if TYPE_CHECKING:
    from temporalio.client import Client

    from aios.config import Settings

__all__ = [
    "FORMAT",
    "ExportedFile",
    "ImportResult",
    "Manifest",
    "check_export_path",
    "export_stack",
    "import_stack",
    "kernel_tables",
]

FORMAT = 1
MANIFEST = "manifest.json"
# Tables a migration fills with starting rows; such a row is data only when this holds.
SEEDED = {"document_counters": "last_number > 0"}
ROWS_PER_INSERT = 2000
POINTS_PER_WRITE = 256


class ExportedFile(BaseModel):
    file: str
    count: int
    sha256: str


class TableFile(ExportedFile):
    columns: list[str]


class HistoryFile(ExportedFile):
    workflow_id: str
    run_id: str


class Manifest(BaseModel):
    """What an export holds; ``count`` is rows, points or history events per file."""

    format: int
    created_at: datetime
    migrations: list[str]
    tables: dict[str, TableFile]
    memory: ExportedFile
    memory_backend: str
    histories: list[HistoryFile] = Field(default_factory=list)


class ImportResult(BaseModel):
    path: str
    tables: dict[str, int]
    memory_points: int
    histories: int
    archive: str


class PointStore(Protocol):
    """The memory backends' bulk side (``EdgeMemoryStore`` and ``QdrantClientStore``)."""

    backend: str

    def points(self) -> Iterator[tuple[str, list[float], dict[str, Any]]]: ...

    def import_points(self, points: Iterable[tuple[str, list[float], dict[str, Any]]]) -> int: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


# --- the catalog -------------------------------------------------------------------------------


def kernel_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every table of the kernel's schema but the migration tool's, parents before children
    (foreign keys), by name among equals."""
    names = [
        r[0]
        for r in conn.execute(
            """
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
              AND c.relname NOT LIKE '\\_yoyo%%' AND c.relname NOT LIKE 'yoyo\\_%%'
            ORDER BY 1
            """
        ).fetchall()
    ]
    edges = conn.execute(
        """
        SELECT DISTINCT ch.relname AS child, pa.relname AS parent
        FROM pg_constraint f
        JOIN pg_class ch ON ch.oid = f.conrelid
        JOIN pg_class pa ON pa.oid = f.confrelid
        JOIN pg_namespace n ON n.oid = ch.relnamespace
        WHERE f.contype = 'f' AND n.nspname = current_schema()
        """
    ).fetchall()
    graph: dict[str, set[str]] = {name: set() for name in names}
    for child, parent in edges:
        if child in graph and parent in graph and child != parent:
            graph[child].add(parent)
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    ordered: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(ready)
        sorter.done(*ready)
    return ordered


def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
            (table,),
        ).fetchall()
    ]


def _primary_key(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            """
            SELECT a.attname FROM pg_index i
            JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = %s::regclass AND i.indisprimary
            ORDER BY k.n
            """,
            (table,),
        ).fetchall()
    ]


def _self_referencing(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass"
        " AND confrelid = conrelid",
        (table,),
    ).fetchone()
    return row is not None


def applied_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    return [
        r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1").fetchall()
    ]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- export ------------------------------------------------------------------------------------


def check_export_path(path: Path) -> Path:
    """``path`` made absolute; ``InvalidInput`` unless it is new (or an empty folder) in an
    existing folder."""
    path = path.expanduser().absolute()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInput(f"PATH: {path} exists and is not an empty folder; choose a new one")
    if not path.parent.is_dir():
        raise InvalidInput(f"PATH: the folder {path.parent} does not exist")
    return path


def _prepare_target(path: Path) -> Path:
    """A fresh temporary folder beside ``path`` (``check_export_path``)."""
    path = check_export_path(path)
    work = path.parent / f".{path.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return work


def _export_tables(url: str, work: Path) -> tuple[list[str], dict[str, TableFile]]:
    (work / "tables").mkdir()
    tables: dict[str, TableFile] = {}
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        migrations = applied_migrations(conn)
        for table in kernel_tables(conn):
            columns = _columns(conn, table)
            order = _primary_key(conn, table) or columns
            query = sql.SQL("SELECT to_jsonb(t)::text FROM {} AS t ORDER BY {}").format(
                sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in order)
            )
            target = work / "tables" / f"{table}.jsonl"
            count = 0
            with target.open("w", encoding="utf-8", newline="\n") as f, conn.cursor() as cur:
                for (text,) in cur.stream(query):
                    f.write(text + "\n")
                    count += 1
            tables[table] = TableFile(
                file=f"tables/{table}.jsonl",
                count=count,
                sha256=_sha256(target),
                columns=columns,
            )
    return migrations, tables


def _export_memory(memory: PointStore, work: Path) -> ExportedFile:
    (work / "memory").mkdir()
    points = sorted(memory.points(), key=lambda p: p[0])
    target = work / "memory" / "points.jsonl"
    with target.open("w", encoding="utf-8", newline="\n") as f:
        for pid, vector, payload in points:
            f.write(
                json.dumps(
                    {"id": pid, "vector": vector, "payload": payload},
                    sort_keys=True,
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                + "\n"
            )
    return ExportedFile(file="memory/points.jsonl", count=len(points), sha256=_sha256(target))


def _history_name(workflow_id: str, run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", workflow_id)[:150] + f"__{run_id}.json"


def _write_history(target: Path, text: str) -> str:
    target.write_text(text, encoding="utf-8")
    return _sha256(target)


async def _export_histories(client: Client, work: Path) -> list[HistoryFile]:
    folder = work / "histories"
    await asyncio.to_thread(folder.mkdir)
    runs = sorted([(w.id, w.run_id) async for w in client.list_workflows()])
    files: list[HistoryFile] = []
    for workflow_id, run_id in runs:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        name = _history_name(workflow_id, run_id)
        digest = await asyncio.to_thread(_write_history, folder / name, history.to_json())
        files.append(
            HistoryFile(
                file=f"histories/{name}",
                count=len(history.events),
                sha256=digest,
                workflow_id=workflow_id,
                run_id=run_id,
            )
        )
    return files


def _export_local(
    settings: Settings, work: Path, memory: PointStore | None
) -> tuple[list[str], dict[str, TableFile], ExportedFile, str]:
    """The tables, then memory (opened here unless given)."""
    from aios.devstack import database_url

    migrations, tables = _export_tables(database_url(settings), work)
    store = memory if memory is not None else _open_memory(settings)
    try:
        return migrations, tables, _export_memory(store, work), store.backend
    finally:
        if memory is None:
            store.close()


def _finish(work: Path, path: Path, manifest: Manifest) -> None:
    path = path.expanduser().absolute()
    (work / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if path.exists():
        path.rmdir()
    work.rename(path)


async def export_stack(
    settings: Settings, path: Path, *, client: Client, memory: PointStore | None = None
) -> Manifest:
    """Write the stack of ``settings`` to the new folder ``path`` (see the module docstring).

    ``memory`` is an open memory store; without one the settings' store is opened here (the
    embedded shard must then not be open in a worker). Nothing is left at ``path`` on error.
    """
    work = await asyncio.to_thread(_prepare_target, path)
    try:
        migrations, tables, memory_file, backend = await asyncio.to_thread(
            _export_local, settings, work, memory
        )
        histories = await _export_histories(client, work)
        manifest = Manifest(
            format=FORMAT,
            created_at=datetime.now(UTC),
            migrations=migrations,
            tables=tables,
            memory=memory_file,
            memory_backend=backend,
            histories=histories,
        )
        await asyncio.to_thread(_finish, work, path, manifest)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, work, True)
        raise
    return manifest


def _open_memory(settings: Settings) -> PointStore:
    from aios.memory.backends import open_memory

    return cast(PointStore, open_memory(settings, migrate=False, optimize=False))


# --- import ------------------------------------------------------------------------------------


def read_manifest(path: Path) -> Manifest:
    """The export's manifest, with every file present and matching its checksum."""
    file = path / MANIFEST
    if not file.is_file():
        raise InvalidInput(f"PATH: {path} is not an export (no {MANIFEST})")
    try:
        manifest = Manifest.model_validate_json(file.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise InvalidInput(f"{file}: not a manifest this version reads: {exc}") from None
    if manifest.format != FORMAT:
        raise InvalidInput(f"{file}: export format {manifest.format}; this version reads {FORMAT}")
    entries: list[ExportedFile] = [*manifest.tables.values(), manifest.memory, *manifest.histories]
    for entry in entries:
        target = path / entry.file
        if not target.resolve().is_relative_to(path.resolve()) or not target.is_file():
            raise InvalidInput(f"{path}: {entry.file} is missing")
        if _sha256(target) != entry.sha256:
            raise InvalidInput(f"{path}: {entry.file} does not match its SHA-256 in {MANIFEST}")
    return manifest


def _has_data(conn: psycopg.Connection[Any], tables: list[str]) -> list[str]:
    found = []
    for table in tables:
        where = SEEDED.get(table, "true")
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
            sql.Identifier(table),
            sql.SQL(where),
        )
        row = conn.execute(query).fetchone()
        if row is not None and row[0]:
            found.append(table)
    return found


def _insert_table(conn: psycopg.Connection[Any], table: str, entry: TableFile, path: Path) -> None:
    if table in SEEDED:  # its starting rows give way to the exported ones
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in entry.columns)
    insert = sql.SQL(
        "INSERT INTO {t} ({c}) SELECT {c} FROM jsonb_populate_recordset(NULL::{t}, %s::jsonb)"
    ).format(t=sql.Identifier(table), c=cols)
    # Foreign keys are checked at the end of each statement: a table that refers to itself
    # (a version based on another) goes in one statement, whatever its rows' order.
    chunk = 10**12 if _self_referencing(conn, table) else ROWS_PER_INSERT
    batch: list[str] = []
    with (path / entry.file).open(encoding="utf-8") as f:
        for line in f:
            batch.append(line.rstrip("\n"))
            if len(batch) >= chunk:
                conn.execute(insert, ("[" + ",".join(batch) + "]",))
                batch = []
    if batch:
        conn.execute(insert, ("[" + ",".join(batch) + "]",))
    for (column,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND pg_get_serial_sequence(%s, attname) IS NOT NULL",
        (table, table),
    ).fetchall():
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({c}), 0) + 1, false)"
                " FROM {t}"
            ).format(c=sql.Identifier(column), t=sql.Identifier(table)),
            (table, column),
        )


def _points(path: Path, entry: ExportedFile) -> Iterator[tuple[str, list[float], dict[str, Any]]]:
    with (path / entry.file).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                point = json.loads(line)
                yield str(point["id"]), [float(x) for x in point["vector"]], dict(point["payload"])
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidInput(f"{entry.file} line {n}: not a memory point ({exc})") from None


def _batches(points: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for p in points:
        batch.append(p)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_stack(
    settings: Settings, path: Path, *, memory: PointStore | None = None
) -> ImportResult:
    """Restore the export at ``path`` into the empty stack of ``settings`` (see the module
    docstring). ``memory`` is an open memory store, else the settings' store is opened here."""
    from aios.devstack import database_url
    from aios.kernel.store import apply_migrations

    path = path.expanduser().absolute()
    manifest = read_manifest(path)
    url = database_url(settings)
    apply_migrations(url)
    owned = memory is None
    if memory is None:
        memory = _open_memory(settings)
    try:
        with psycopg.connect(url) as conn:
            have = applied_migrations(conn)
            missing = [m for m in manifest.migrations if m not in have]
            if missing:
                raise InvalidInput(
                    f"the export's schema is newer than this database's: migrations "
                    f"{', '.join(missing)} are not known here; upgrade AiOs first"
                )
            tables = kernel_tables(conn)
            unknown = sorted(set(manifest.tables) - set(tables))
            if unknown:
                raise InvalidInput(f"the export has tables this database lacks: {unknown}")
            full = _has_data(conn, tables)
            points = memory.count()
            if full or points:
                what = ([f"tables {', '.join(full)}"] if full else []) + (
                    [f"memory ({points} points)"] if points else []
                )
                raise InvalidInput(
                    "import needs an empty stack, but it holds data: "
                    + "; ".join(what)
                    + ". Import into a new state folder or database."
                )
            for table in tables:
                if table in manifest.tables:
                    _insert_table(conn, table, manifest.tables[table], path)
            written = 0
            for batch in _batches(_points(path, manifest.memory), POINTS_PER_WRITE):
                written += memory.import_points(batch)
            if memory.count() != manifest.memory.count:
                raise StackError(
                    f"memory holds {memory.count()} points after the import, the export "
                    f"{manifest.memory.count}; nothing in the database was committed"
                )
            conn.commit()
    finally:
        if owned:
            memory.close()
    archive = settings.state_path / "archive" / path.name
    if manifest.histories:
        archive.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path / MANIFEST, archive / MANIFEST)
        shutil.copytree(path / "histories", archive / "histories", dirs_exist_ok=True)
    return ImportResult(
        path=str(path),
        tables={t: e.count for t, e in manifest.tables.items()},
        memory_points=manifest.memory.count,
        histories=len(manifest.histories),
        archive=str(archive),
    )
