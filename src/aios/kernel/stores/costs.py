"""The cost ledger of model calls."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from aios.kernel.models import ModelCall
from aios.kernel.stores.database import Store

__all__ = ["CostLedger"]


class CostLedger(Store):
    """The cost ledger of model calls."""

    def record(self, call: ModelCall) -> ModelCall:
        """Append a call to the cost ledger; a repeat of the same ``call_key`` is ignored and
        the stored row is returned."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO model_calls (call_key, agent, prompt_version, workflow_id, run_id,
                    process, tier, provider, model, input_tokens, output_tokens, cost_usd,
                    confidence, outcome, reason, content, over_budget)
                VALUES (%(call_key)s, %(agent)s, %(prompt_version)s, %(workflow_id)s,
                    %(run_id)s, %(process)s, %(tier)s, %(provider)s, %(model)s, %(input_tokens)s,
                    %(output_tokens)s, %(cost_usd)s, %(confidence)s, %(outcome)s, %(reason)s,
                    %(content)s, %(over_budget)s)
                ON CONFLICT (call_key) DO NOTHING
                """,
                call.model_dump(exclude={"created_at"}),
            )
            row = conn.execute(
                "SELECT * FROM model_calls WHERE call_key = %s", (call.call_key,)
            ).fetchone()
        return ModelCall.model_validate(row)

    def get(self, call_key: str) -> ModelCall | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM model_calls WHERE call_key = %s", (call_key,)
            ).fetchone()
        return ModelCall.model_validate(row) if row else None

    def for_workflow(self, workflow_id: str) -> list[ModelCall]:
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM model_calls WHERE workflow_id = %s ORDER BY created_at, call_key",
                (workflow_id,),
            ).fetchall()
        return [ModelCall.model_validate(r) for r in rows]

    def run_cost(self, workflow_id: str, run_id: str) -> Decimal:
        """USD spent on model calls by one workflow run."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM model_calls "
                "WHERE workflow_id = %s AND run_id = %s",
                (workflow_id, run_id),
            ).fetchone()
        return Decimal(row["usd"]) if row else Decimal(0)

    def spend(self, since: datetime, *, agent: str | None = None) -> Decimal:
        """USD spent on model calls since ``since`` (all agents, or one)."""
        query = "SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM model_calls WHERE created_at >= %s"
        params: list[Any] = [since]
        if agent is not None:
            query += " AND agent = %s"
            params.append(agent)
        with self.transaction() as conn:
            row = conn.execute(query, params).fetchone()
        return Decimal(row["usd"]) if row else Decimal(0)

    def report(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Spend in [since, until) grouped by day, process and agent."""
        with self.transaction() as conn:
            return conn.execute(
                """
                SELECT (created_at AT TIME ZONE 'UTC')::date AS day, process, agent,
                       count(*) AS calls,
                       count(*) FILTER (WHERE provider <> 'template') AS model_calls,
                       SUM(input_tokens + output_tokens) AS tokens,
                       SUM(cost_usd) AS usd
                FROM model_calls
                WHERE created_at >= %s AND created_at < %s
                GROUP BY 1, 2, 3
                ORDER BY 1, 2, 3
                """,
                (since, until),
            ).fetchall()
