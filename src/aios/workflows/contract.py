"""The gate contract shared by the workflows and the operator's side: signal ``decide`` and
its payload, query ``pending_gates`` and its answer.

Light on purpose (pydantic and the text rules only): ``aios inbox`` and ``aios approve`` use it
without loading the workflows and their activities, and the workflow sandbox passes it through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aios.kernel.text import Line, Text, find_unsafe

__all__ = [
    "DECIDE_SIGNAL",
    "ONE_LINE_FIELDS",
    "PENDING_GATES_QUERY",
    "GateDecision",
    "PendingGate",
]

DECIDE_SIGNAL = "decide"
PENDING_GATES_QUERY = "pending_gates"
# Edited fields that end up in an email header: one line only.
ONE_LINE_FIELDS = frozenset({"subject"})


class GateDecision(BaseModel):
    """The payload of signal ``decide``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Literal["approve", "reject", "edit"]
    approver: Line = Field(min_length=1, max_length=200)
    comment: Text = Field(default="", max_length=2000)
    edits: dict[
        Annotated[Line, Field(max_length=40)], Annotated[Text, Field(max_length=20_000)]
    ] = Field(default_factory=dict, max_length=20)
    gate: Line | None = Field(default=None, max_length=40)

    @model_validator(mode="after")
    def _edits_match_decision(self) -> GateDecision:
        if self.decision == "edit" and not self.edits:
            raise ValueError("edits: an edit decision needs at least one edited field")
        if self.decision != "edit" and self.edits:
            raise ValueError("edits: only allowed with decision 'edit'")
        for name in ONE_LINE_FIELDS & set(self.edits):
            problem = find_unsafe(self.edits[name], multiline=False)
            if problem:
                raise ValueError(f"edits.{name}: {problem}")
        return self


class PendingGate(BaseModel):
    """A gate that is waiting, as ``pending_gates`` and ``aios inbox`` show it."""

    gate: str
    title: str
    summary: str
    requested_at: datetime
    expires_at: datetime
    next_reminder_at: datetime | None = None
    reminders_sent: int = 0
    editable_fields: list[str] = Field(default_factory=list)
    rejected_signals: int = 0
    last_rejection: str | None = None
    amount: str | None = None  # what is at stake, for gates about money ("USD 4,500.00")
    drafted_by: str | None = None  # who wrote what the gate shows: a model, or the template
