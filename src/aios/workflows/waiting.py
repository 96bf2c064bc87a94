"""Waiting in workflow code: for a condition, with reminders on durable timers and a deadline.

``wait_until`` is the one loop behind gates, client answers and payments: it sleeps on a
Temporal timer until the next reminder or the deadline, wakes early when the condition holds or
a signal needs recording, sends each reminder once (an activity with its own idempotency key),
and survives worker restarts because timers and activity results live in history.

While it waits, signals the run rejected (``workflows.signals``) are written to the event log
as they arrive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.workflows.signals import SignalLog

__all__ = ["Schedule", "wait_until"]

IDLE_WAKE = timedelta(days=30)


@dataclass
class Schedule:
    """When to remind (absolute times) and when to give up (``None``: never)."""

    reminders: list[datetime]
    deadline: datetime | None
    sent: int = 0

    @property
    def next_reminder(self) -> datetime | None:
        return self.reminders[self.sent] if self.sent < len(self.reminders) else None


async def wait_until(
    ready: Callable[[], bool],
    schedule: Schedule,
    *,
    remind: Callable[[int], Awaitable[object]],
    signals: SignalLog,
    summary: str,
) -> bool:
    """Wait until ``ready()``; returns False if the deadline passed first."""
    while not ready():
        await signals.flush()
        now = workflow.now()
        if schedule.deadline is not None and now >= schedule.deadline:
            return False
        due = schedule.next_reminder
        if due is not None and now >= due:
            schedule.sent += 1
            await remind(schedule.sent)
            continue
        wake = due or schedule.deadline or now + IDLE_WAKE
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: ready() or bool(signals.pending),
                timeout=max(wake - now, timedelta(milliseconds=1)),
                timeout_summary=summary,
            )
    return True
