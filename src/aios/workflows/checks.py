"""Synthetic checks: probe every configured connector on a schedule, tell the operator."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.health import HealthActivities
    from aios.activities.models import CheckConnectorsInput, ConnectorCheck
    from aios.converter import ProcessInput
    from aios.kernel.policy import GatePolicy
    from aios.workflows.attributes import PROCESS
    from aios.workflows.gates import GateHost
    from aios.workflows.steps import record, step, step_key
    from aios.workflows.timeouts import CONNECTOR_CHECK

__all__ = [
    "CHECK_SCHEDULE_ID",
    "CHECK_WORKFLOW_ID",
    "SyntheticCheckInput",
    "SyntheticCheckResult",
    "SyntheticCheckWorkflow",
]

PROCESS_NAME = "synthetic-check"
CHECK_SCHEDULE_ID = "aios-synthetic-checks"
CHECK_WORKFLOW_ID = f"{PROCESS_NAME}/scheduled"  # Temporal appends the scheduled time


class SyntheticCheckInput(ProcessInput):
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)


class SyntheticCheckResult(BaseModel):
    ok: bool
    failing: list[str]
    results: list[ConnectorCheck]
    acknowledged_by: str | None = None


@workflow.defn(name="SyntheticCheckWorkflow")
class SyntheticCheckWorkflow(GateHost):
    """One round of synthetic checks: each configured connector's dry-run probe.

    Started by the Temporal Schedule ``aios-synthetic-checks`` (hourly by default; ``aios dev
    up`` and ``aios checks schedule`` create it) or ``aios checks run``. Results go to
    PostgreSQL (``aios health``). If a connector fails, the run waits at gate ``connectors``,
    so the failure is an item in ``aios inbox``; approving acknowledges it. The gate expires
    before the next round, which then reports afresh.

    Search attributes: ``AiosProcess=synthetic-check``, ``AiosAwaitingApproval`` while it
    waits. End state: completed, with ``ok`` and the failing connectors.
    """

    @workflow.run
    async def run(self, inp: SyntheticCheckInput) -> SyntheticCheckResult:
        workflow.upsert_search_attributes([PROCESS.value_set(PROCESS_NAME)])
        checked = await step(
            HealthActivities.check_connectors,
            CheckConnectorsInput(idempotency_key=step_key("check")),
            CONNECTOR_CHECK,
        )
        failing = [r.connector for r in checked.results if not r.ok]
        await record(
            "synthetic_check.completed",
            "connectors",
            {"ok": not failing, "failing": failing, "checked": len(checked.results)},
        )
        acknowledged = None
        if failing:
            outcome = await self.wait_for_decision(
                gate="connectors",
                title=f"Connector check failed: {', '.join(failing)}",
                summary="; ".join(
                    f"{r.connector}: {r.detail}" for r in checked.results if not r.ok
                ),
                policy=inp.gate_policy,
                editable_fields=[],
                entity="connectors",
                details={
                    "failing": [
                        {"connector": r.connector, "detail": r.detail}
                        for r in checked.results
                        if not r.ok
                    ]
                },
            )
            if outcome.decision is not None:
                acknowledged = outcome.decision.approver
        await workflow.wait_condition(workflow.all_handlers_finished)
        return SyntheticCheckResult(
            ok=not failing,
            failing=failing,
            results=checked.results,
            acknowledged_by=acknowledged,
        )
