"""Events as they are written: the caller names the key, so a retried write is a no-op."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["EventDraft"]


class EventDraft(BaseModel):
    """An event to append. ``event_key`` is unique: write the same key twice, get one event."""

    event_key: str
    workflow_id: str
    run_id: str
    process: str
    kind: str
    entity: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
