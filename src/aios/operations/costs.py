"""Model spend: one calendar month by process, agent and day, and the budget left."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.store import KernelStore
from aios.operations.common import kernel_store

__all__ = ["BudgetLine", "CostLine", "CostReport", "cost_report", "month_bounds", "month_costs"]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class CostLine(BaseModel):
    key: str
    calls: int
    model_calls: int
    tokens: int
    usd: Decimal


class BudgetLine(BaseModel):
    scope: str  # "all agents" or an agent name
    cap_usd: Decimal
    spent_usd: Decimal
    remaining_usd: Decimal


class CostReport(BaseModel):
    """Model spend in one calendar month (UTC), as ``aios costs`` shows it."""

    month: str
    provider: str
    total_usd: Decimal
    by_process: list[CostLine]
    by_agent: list[CostLine]
    by_day: list[CostLine]
    budgets: list[BudgetLine]


def month_bounds(month: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``"2026-11"`` (or the current month) as [start, end) in UTC."""
    if month is None:
        today = (now or datetime.now(UTC)).astimezone(UTC)
        year, number = today.year, today.month
    else:
        match = _MONTH.match(month.strip())
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise InvalidInput(f"month: {month!r} is not a month like 2026-11")
        year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def cost_report(store: KernelStore, settings: Settings, month: str | None = None) -> CostReport:
    start, end = month_bounds(month)
    rows = store.costs.report(start, end)

    def group(field_name: str) -> list[CostLine]:
        lines: dict[str, CostLine] = {}
        for row in rows:
            key = str(row[field_name])
            line = lines.setdefault(key, CostLine(key=key, calls=0, model_calls=0, tokens=0, usd=0))
            line.calls += int(row["calls"])
            line.model_calls += int(row["model_calls"])
            line.tokens += int(row["tokens"] or 0)
            line.usd += Decimal(row["usd"])
        return sorted(lines.values(), key=lambda line: line.key)

    by_agent = group("agent")
    total = sum((line.usd for line in by_agent), Decimal(0))
    spent = {line.key: line.usd for line in by_agent}
    policy = settings.agent_policy
    budgets = [
        BudgetLine(
            scope="all agents",
            cap_usd=policy.monthly_budget_usd,
            spent_usd=total,
            remaining_usd=max(policy.monthly_budget_usd - total, Decimal(0)),
        )
    ]
    for agent, cap in sorted(policy.agent_budgets_usd.items()):
        used = spent.get(agent, Decimal(0))
        budgets.append(
            BudgetLine(
                scope=agent, cap_usd=cap, spent_usd=used, remaining_usd=max(cap - used, Decimal(0))
            )
        )
    return CostReport(
        month=f"{start:%Y-%m}",
        provider=settings.agent_provider,
        total_usd=total,
        by_process=group("process"),
        by_agent=by_agent,
        by_day=group("day"),
        budgets=budgets,
    )


def month_costs(settings: Settings, month: str | None = None) -> CostReport:
    """``cost_report`` with its own store (``aios costs``); a bad month opens nothing."""
    month_bounds(month)
    with kernel_store(settings) as store:
        return cost_report(store, settings, month)
