"""The processes' signal and query contract, as the operator's side uses it.

``aios inbox`` and ``aios approve`` must start in well under a second, and importing
``aios.workflows`` loads every process with its activities (models, PDFs, calendars, memory:
seconds). So the names and payloads the operator's side exchanges with a run are here, in a
module that needs only pydantic and ``temporalio.common``:

- signal ``decide`` and its payload (``Decision``, the fields and rules of
  ``workflows.gates.GateDecision``), query ``pending_gates`` and its answer (``WaitingGate``,
  the fields of ``workflows.gates.PendingGate``), query ``progress``;
- the search attributes the inbox and ``aios status`` read, and the id of the synthetic-check
  schedule.

``tests/test_operations.py`` keeps this contract equal to the workflows' own models and
constants (same JSON schema, same names), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.common import SearchAttributeKey

from aios.kernel.text import Line, Text, find_unsafe

__all__ = [
    "AWAITING_APPROVAL",
    "CHECK_SCHEDULE_ID",
    "DECIDE_SIGNAL",
    "OUTCOME",
    "PENDING_GATES_QUERY",
    "PROCESS",
    "PROGRESS_QUERY",
    "Decision",
    "WaitingGate",
]

DECIDE_SIGNAL = "decide"
PENDING_GATES_QUERY = "pending_gates"
PROGRESS_QUERY = "progress"
CHECK_SCHEDULE_ID = "aios-synthetic-checks"

PROCESS = SearchAttributeKey.for_keyword("AiosProcess")
AWAITING_APPROVAL = SearchAttributeKey.for_bool("AiosAwaitingApproval")
OUTCOME = SearchAttributeKey.for_keyword("AiosOutcome")

# Edited fields that end up in an email header: one line only.
ONE_LINE_FIELDS = frozenset({"subject"})


class Decision(BaseModel):
    """The payload of signal ``decide``, checked before it is sent (``aios approve``...)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Literal["approve", "reject", "edit"]
    approver: Line = Field(min_length=1, max_length=200)
    comment: Text = Field(default="", max_length=2000)
    edits: dict[
        Annotated[Line, Field(max_length=40)], Annotated[Text, Field(max_length=20_000)]
    ] = Field(default_factory=dict, max_length=20)
    gate: Line | None = Field(default=None, max_length=40)

    @model_validator(mode="after")
    def _edits_match_decision(self) -> Decision:
        if self.decision == "edit" and not self.edits:
            raise ValueError("edits: an edit decision needs at least one edited field")
        if self.decision != "edit" and self.edits:
            raise ValueError("edits: only allowed with decision 'edit'")
        for name in ONE_LINE_FIELDS & set(self.edits):
            problem = find_unsafe(self.edits[name], multiline=False)
            if problem:
                raise ValueError(f"edits.{name}: {problem}")
        return self


class WaitingGate(BaseModel):
    """A gate that is waiting, as query ``pending_gates`` answers and ``aios inbox`` shows."""

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
