"""Custom search attributes AiOs sets, so the Web UI and ``aios inbox`` can find runs.

They are registered by ``aios dev up`` from ``temporal-dev.yaml``; a production namespace needs
the same five (``temporal operator search-attribute create``).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = ["AWAITING_APPROVAL", "CLIENT", "COST_USD", "OUTCOME", "PROCESS", "REQUIRED"]

PROCESS = SearchAttributeKey.for_keyword("AiosProcess")
CLIENT = SearchAttributeKey.for_keyword("AiosClient")
AWAITING_APPROVAL = SearchAttributeKey.for_bool("AiosAwaitingApproval")
COST_USD = SearchAttributeKey.for_float("AiosCostUsd")
# How the run ended: completed, rejected, expired, accepted, declined, paid, cancelled, failed.
OUTCOME = SearchAttributeKey.for_keyword("AiosOutcome")

REQUIRED: dict[str, str] = {
    PROCESS.name: "Keyword",
    CLIENT.name: "Keyword",
    AWAITING_APPROVAL.name: "Bool",
    COST_USD.name: "Double",
    OUTCOME.name: "Keyword",
}
