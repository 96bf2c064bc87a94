"""Moving memory from qdrant-client's local-mode folder into the Qdrant Edge shard.

Earlier versions kept memory in local mode under ``AIOS_QDRANT_PATH`` (``meta.json`` and
``collection/<name>/``). The shard lives beside it, in ``<AIOS_QDRANT_PATH>/edge/<name>``.
Every point moves as it is: same id, vector and payload (text, provenance, version). Points the
shard already has are left alone, so migrating twice adds nothing. The local-mode folder is
only read; once the migration is done a note ``<shard>.migrated.json`` records it, and the
memory worker does not look at the old folder again (``aios memory migrate`` always does).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from aios.errors import StackError
from aios.memory.edge import EdgeMemoryStore

__all__ = ["Migration", "has_local_mode_data", "migrate_local_mode", "migration_note"]

_BATCH = 256


class Migration(BaseModel):
    """What one migration found and added."""

    source: str
    collection: str
    found: int
    added: int
    at: datetime


def has_local_mode_data(folder: Path, collection: str) -> bool:
    """Whether ``folder`` holds a local-mode collection named ``collection``."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and collection in (meta.get("collections") or {})


def migration_note(shard: Path) -> Path:
    return shard.with_name(shard.name + ".migrated.json")


def migrate_local_mode(folder: Path, collection: str, target: EdgeMemoryStore) -> Migration:
    """Copy every point of the local-mode ``collection`` in ``folder`` into ``target``."""
    from aios.memory.client import QdrantClientStore

    try:
        source = QdrantClientStore(
            target.embedder, collection=collection, path=folder, create=False
        )
    except RuntimeError as exc:  # qdrant-client's own lock: an older worker still runs
        raise StackError(
            f"memory: cannot read the local-mode folder {folder} to migrate it ({exc}); stop the "
            "process that has it open (an older `aios worker`?) and start again"
        ) from exc
    found = added = 0
    try:
        if source.exists():
            batch: list[tuple[str, list[float], dict[str, Any]]] = []
            for point in source.points():
                batch.append(point)
                if len(batch) >= _BATCH:
                    found, added = found + len(batch), added + target.import_points(batch)
                    batch = []
            found, added = found + len(batch), added + target.import_points(batch)
    finally:
        source.close()
    done = Migration(
        source=str(folder), collection=collection, found=found, added=added, at=datetime.now(UTC)
    )
    migration_note(target.path).write_text(done.model_dump_json(indent=2) + "\n")
    return done
