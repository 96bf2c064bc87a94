"""Entities of the work model. Plain pydantic models, shared by the CLI, workflows and stores."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from aios.kernel.text import Line, PastedText

__all__ = ["Client", "ClientIntake", "Draft", "Event", "ModelCall", "client_key_for"]

MAX_NOTES = 4000
_KEY_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def client_key_for(name: str) -> str:
    """A stable, URL-safe key from a client name: ``"Acme Ltd."`` -> ``"acme-ltd"``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:64].rstrip("-")


class ClientIntake(BaseModel):
    """What the operator tells AiOs about a new client. Validated before anything starts."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Line = Field(min_length=1, max_length=200)
    email: EmailStr
    # Often pasted from a client's email: control characters are removed, not refused.
    notes: PastedText = Field(default="", max_length=MAX_NOTES)
    key: str = Field(default="", description="client key; derived from the name when empty")

    @model_validator(mode="after")
    def _derive_key(self) -> ClientIntake:
        key = self.key or client_key_for(self.name)
        if not key:
            if any(ch.isalnum() for ch in self.name):
                raise ValueError(
                    "key: a key cannot be derived from a name without Latin letters or "
                    "digits; give one (aios onboard --key, e.g. moskva-ooo)"
                )
            raise ValueError("name must contain at least one letter or digit")
        if not _KEY_RE.match(key):
            raise ValueError(
                "key must be 1-64 lowercase letters, digits or hyphens, "
                "starting and ending with a letter or digit"
            )
        self.key = key
        return self


class Client(BaseModel):
    """The canonical client record."""

    key: str
    name: str
    email: str
    notes: str = ""
    segment: str = "general"
    facts: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Draft(BaseModel):
    """An immutable version of a document a process produced (welcome email, proposal...)."""

    id: str
    workflow_id: str
    run_id: str
    kind: str
    version: int
    subject: str
    body: str
    plan: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None


class Event(BaseModel):
    """One entry of the append-only event log."""

    id: int
    event_key: str
    workflow_id: str
    run_id: str
    process: str
    kind: str
    entity: str | None
    payload: dict[str, Any]
    occurred_at: datetime


CallOutcome = Literal["accepted", "invalid", "low_confidence", "refused", "template"]


class ModelCall(BaseModel):
    """One row of the cost ledger: a model call (or a template run, at zero cost).

    ``content`` is the reply as received, so a retried step reuses it instead of paying for the
    call again; ``over_budget`` marks a call the operator approved past a monthly cap.
    """

    call_key: str
    agent: str
    prompt_version: str
    workflow_id: str
    run_id: str
    process: str
    tier: str
    provider: str
    model: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: Decimal = Field(ge=0)
    confidence: float | None = Field(default=None, ge=0, le=1)
    outcome: CallOutcome
    reason: str = ""
    content: str | None = None
    over_budget: bool = False
    created_at: datetime | None = None
