"""``aios export PATH`` and ``aios import PATH``: the whole stack as files, and back.

Registered by ``cli.app`` (``register``); everything past Typer loads inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aios.cli.base import JsonOpt, command

if TYPE_CHECKING:
    from aios.operations.exchange import Manifest

__all__ = ["register"]


@command
def export(
    path: Annotated[Path, typer.Argument(help="A new folder to write the export to")],
    as_json: JsonOpt = False,
) -> None:
    """Write every kernel table (JSON Lines), the memory points with payloads and vectors,
    and the Temporal history of every run to PATH, with a manifest of counts and SHA-256s.
    Stop the worker first: the embedded memory shard is opened here."""
    from aios.cli.app import run, settings
    from aios.operations.exchange import check_export_path, export_stack
    from aios.temporal import connect

    check_export_path(path)  # before any connection: a bad PATH is the first thing said
    s = settings()

    async def go() -> Manifest:
        return await export_stack(s, path, client=await connect(s))

    manifest = run(go())
    if as_json:
        from aios.cli.render import emit_json

        emit_json({"path": str(path.absolute()), **manifest.model_dump(mode="json")})
        return
    from aios.cli.render import line

    rows = sum(t.count for t in manifest.tables.values())
    line(
        f"Exported to {path.absolute()}: {len(manifest.tables)} tables ({rows} rows), "
        f"{manifest.memory.count} memory points, {len(manifest.histories)} run histories"
    )
    schema = manifest.migrations[-1] if manifest.migrations else "(none)"
    line(f"Schema: {schema}; counts and SHA-256 of every file in manifest.json")


@command
def import_(
    path: Annotated[Path, typer.Argument(help="A folder written by `aios export`")],
    as_json: JsonOpt = False,
) -> None:
    """Restore an export into an empty stack: records, events and memory. Run histories are
    kept as an archive in the state folder. Refuses a stack that already holds data."""
    from aios.cli.app import settings
    from aios.operations.exchange import import_stack

    result = import_stack(settings(), path)
    if as_json:
        from aios.cli.render import emit_json

        emit_json(result.model_dump(mode="json"))
        return
    from aios.cli.render import line

    line(
        f"Imported {path.absolute()}: {sum(result.tables.values())} rows in "
        f"{len(result.tables)} tables, {result.memory_points} memory points"
    )
    if result.histories:
        line(f"{result.histories} run histories archived in {result.archive}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_)
