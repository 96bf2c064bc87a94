"""Connector health: the synthetic-check schedule, and what ``aios health`` reports.

The report reads only the kernel store; the workflows are imported when a schedule is made.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
)

from aios.config import Settings
from aios.kernel.policy import GatePolicy
from aios.kernel.store import KernelStore
from aios.operations.common import kernel_store
from aios.operations.messages import CHECK_SCHEDULE_ID

__all__ = [
    "CHECK_SCHEDULE_ID",
    "CheckRow",
    "GuardRow",
    "HealthReport",
    "InDoubtEffect",
    "check_schedule",
    "connector_health",
    "ensure_check_schedule",
    "health_report",
    "run_checks_now",
]


def check_schedule(settings: Settings) -> Schedule:
    from aios.workflows.checks import CHECK_WORKFLOW_ID, SyntheticCheckInput, SyntheticCheckWorkflow

    every = settings.synthetic_check_every
    # The gate of a failing round expires before the next round starts (which then reports
    # afresh); overlapping rounds are skipped.
    window = max(every * 0.9, every - timedelta(minutes=5))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SyntheticCheckWorkflow.run,
            SyntheticCheckInput(gate_policy=GatePolicy(remind_after=window, expire_after=window)),
            id=CHECK_WORKFLOW_ID,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="AiOs synthetic connector checks"),
    )


async def ensure_check_schedule(client: Client, settings: Settings) -> str:
    """Create the synthetic-check schedule, or bring it up to date; returns what it did."""
    schedule = check_schedule(settings)
    try:
        await client.create_schedule(CHECK_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(CHECK_SCHEDULE_ID)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
        return "updated"


async def run_checks_now(client: Client, settings: Settings) -> None:
    """Trigger one round now (creating the schedule first if it is missing)."""
    await ensure_check_schedule(client, settings)
    await client.get_schedule_handle(CHECK_SCHEDULE_ID).trigger()


class CheckRow(BaseModel):
    """The latest synthetic check of one connector."""

    connector: str
    ok: bool
    detail: str
    latency_ms: int
    checked_at: datetime
    workflow_id: str


class GuardRow(BaseModel):
    """One worker's circuit breaker and rate limit for one connector."""

    connector: str
    worker: str
    breaker_state: str
    failures: int
    opened_at: datetime | None = None
    rate_limit: str
    rate_used: int
    rate_remaining: int
    updated_at: datetime


class InDoubtEffect(BaseModel):
    """An outside effect that started but never finished (a worker stopped mid-call)."""

    idempotency_key: str
    connector: str
    operation: str
    attempts: int
    started_at: datetime | None = None
    last_error: str | None = None


class HealthReport(BaseModel):
    checks: list[CheckRow]
    guards: list[GuardRow]
    in_doubt: list[InDoubtEffect]


def health_report(store: KernelStore) -> HealthReport:
    return HealthReport(
        checks=[CheckRow.model_validate(_fields(r, CheckRow)) for r in store.health.last_checks()],
        guards=[GuardRow.model_validate(_fields(r, GuardRow)) for r in store.health.guards()],
        in_doubt=[
            InDoubtEffect.model_validate(_fields(r, InDoubtEffect)) for r in store.outbox.in_doubt()
        ],
    )


def _fields(row: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The row's columns the model names (tables gain columns; the report stays the same)."""
    return {name: row[name] for name in model.model_fields if name in row}


def connector_health(settings: Settings) -> HealthReport:
    """``health_report`` with its own store (``aios health``)."""
    with kernel_store(settings) as store:
        return health_report(store)
