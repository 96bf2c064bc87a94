"""One typed input and one typed output per activity, named after the step.

Idempotency keys are derived in workflow code from workflow id, run id and step name, and
travel in the input so they are visible in history. Large texts (drafts) travel by id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from aios.agents.intake import IntakeFacts
from aios.kernel.models import Client
from aios.memory.store import RecalledMemory

__all__ = [
    "CancelKickoffInput",
    "ClassifyIntakeInput",
    "ClassifyIntakeResult",
    "DraftResult",
    "DraftWelcomeInput",
    "RecallMemoryInput",
    "RecallMemoryResult",
    "RecordEventInput",
    "RememberInput",
    "RememberResult",
    "ReviseDraftInput",
    "SendGateReminderInput",
    "SendResult",
    "SendWelcomeInput",
    "UpsertClientInput",
    "UpsertClientResult",
]


class AgentCall(BaseModel):
    model: str
    confidence: float
    cost_usd: float
    input_tokens: int
    output_tokens: int


class ClassifyIntakeInput(BaseModel):
    idempotency_key: str
    client_key: str
    name: str
    notes: str = ""


class ClassifyIntakeResult(BaseModel):
    facts: IntakeFacts
    call: AgentCall


class UpsertClientInput(BaseModel):
    idempotency_key: str
    client: Client


class UpsertClientResult(BaseModel):
    client_key: str


class RecallMemoryInput(BaseModel):
    query: str
    kinds: list[str] = Field(default_factory=list)
    limit: int = Field(default=5, ge=1, le=20)


class RecallMemoryResult(BaseModel):
    memories: list[RecalledMemory]


class DraftWelcomeInput(BaseModel):
    idempotency_key: str
    client_key: str
    client_name: str
    notes: str = ""
    facts: IntakeFacts
    kickoff_at: datetime
    memories: list[RecalledMemory] = Field(default_factory=list)


class DraftResult(BaseModel):
    draft_id: str
    version: int
    subject: str
    preview: str
    memory_ids_used: list[str] = Field(default_factory=list)
    call: AgentCall | None = None


class ReviseDraftInput(BaseModel):
    idempotency_key: str
    draft_id: str
    edits: dict[str, str]
    editor: str
    comment: str = ""


class SendWelcomeInput(BaseModel):
    idempotency_key: str
    draft_id: str
    to: str
    client_name: str
    kickoff_at: datetime


class CancelKickoffInput(BaseModel):
    idempotency_key: str
    to: str
    client_name: str
    kickoff_at: datetime
    reason: str


class SendGateReminderInput(BaseModel):
    idempotency_key: str
    gate: str
    title: str
    summary: str
    requested_at: datetime
    expires_at: datetime
    reminder: int


class SendResult(BaseModel):
    message_id: str
    to: str
    sent_now: bool


class RememberInput(BaseModel):
    idempotency_key: str
    text: str
    entity: str
    kind: str


class RememberResult(BaseModel):
    id: str
    version: int


class RecordEventInput(BaseModel):
    idempotency_key: str
    kind: str
    entity: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
