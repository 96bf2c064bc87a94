"""The Temporal Schedules of the stack (checks, the weekly review, content planning, the mail
poll) as the operator lists them: what each starts, when next, whether paused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client, ScheduleListActionStartWorkflow

__all__ = ["ScheduleLine", "list_schedules"]


@dataclass(frozen=True)
class ScheduleLine:
    id: str
    workflow: str  # the workflow type it starts
    paused: bool
    next_run: datetime | None
    last_run: datetime | None
    note: str  # why it is paused, when it is


async def list_schedules(client: Client) -> list[ScheduleLine]:
    """Every schedule of the namespace, by id."""
    found: list[ScheduleLine] = []
    async for listed in await client.list_schedules():
        schedule, info = listed.schedule, listed.info
        action = schedule.action if schedule is not None else None
        recent = info.recent_actions if info is not None else []
        upcoming = info.next_action_times if info is not None else []
        found.append(
            ScheduleLine(
                id=listed.id,
                workflow=action.workflow
                if isinstance(action, ScheduleListActionStartWorkflow)
                else "",
                paused=bool(schedule and schedule.state.paused),
                next_run=upcoming[0] if upcoming else None,
                last_run=recent[-1].started_at if recent else None,
                note=(schedule.state.note or "") if schedule is not None else "",
            )
        )
    return sorted(found, key=lambda s: s.id)
