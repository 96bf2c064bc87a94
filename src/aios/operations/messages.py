"""The processes' signal and query contract, as the operator's side uses it.

``aios inbox`` and ``aios approve`` must start in well under a second, so they use the names
and payloads they exchange with a run from light modules, never the workflows themselves:

- signal ``decide`` and its payload (``Decision``), query ``pending_gates`` and its answer
  (``WaitingGate``): the workflows' own ``GateDecision`` and ``PendingGate`` from
  ``workflows.contract``; query ``progress``;
- the search attributes the inbox and ``aios status`` read, and the id of the synthetic-check
  schedule (``tests/test_operations.py`` keeps these equal to the workflows' constants).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

from aios.workflows.contract import DECIDE_SIGNAL, PENDING_GATES_QUERY
from aios.workflows.contract import GateDecision as Decision
from aios.workflows.contract import PendingGate as WaitingGate

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

PROGRESS_QUERY = "progress"
CHECK_SCHEDULE_ID = "aios-synthetic-checks"

PROCESS = SearchAttributeKey.for_keyword("AiosProcess")
AWAITING_APPROVAL = SearchAttributeKey.for_bool("AiosAwaitingApproval")
OUTCOME = SearchAttributeKey.for_keyword("AiosOutcome")
