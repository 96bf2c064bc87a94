"""Waiting in workflow code: for a condition, with reminders on durable timers and a deadline.

``wait_until`` is the one loop behind gates, client answers and payments: it sleeps on a
Temporal timer until the next reminder or the deadline, wakes early when the condition holds or
a signal needs recording, sends each reminder once (an activity with its own idempotency key),
and survives worker restarts because timers and activity results live in history.

While it waits, signals the run rejected (``workflows.signals``) are written to the event log
as they arrive.

A reminder is awaited in line, unless the caller says how to cancel it (``unsent``): then it
runs beside the wait, and if the condition holds first (the operator decided while the
reminder waits at a paused switch or a slow server) the wait ends at once and the reminder
that is no longer needed is cancelled, outbox row and all (``steps.drop``), and not counted
as sent. Only runs with ``versions.FEWER_ROUND_TRIPS`` do this; earlier histories awaited it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.models import CancelEffectInput
    from aios.workflows import versions
    from aios.workflows.signals import SignalLog
    from aios.workflows.steps import drop

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
    unsent: Callable[[int], CancelEffectInput] | None = None,
) -> bool:
    """Wait until ``ready()``; returns False if the deadline passed first.

    ``unsent(n)`` names reminder ``n``'s effect step, to cancel it if ``ready()`` comes first.
    A cancelled reminder is not counted as sent, so a wait started again (billing waits anew
    after each payment while a balance is open) sends reminder ``n`` again when it is due:
    ``remind`` must then use a new key, as a cancelled key never runs again.
    """
    beside = unsent is not None and versions.fewer_round_trips()
    reminding: asyncio.Task[object] | None = None

    def settled() -> bool:
        return ready() or (reminding is not None and reminding.done())

    try:
        while not ready():
            if reminding is not None:  # a reminder on its way: wait for it or for ready()
                await workflow.wait_condition(settled)
                if not reminding.done():
                    break
                task, reminding = reminding, None
                task.result()  # a reminder that failed fails the wait, as in line
                continue
            await signals.flush()
            now = workflow.now()
            if schedule.deadline is not None and now >= schedule.deadline:
                return False
            due = schedule.next_reminder
            if due is not None and now >= due:
                schedule.sent += 1
                if beside:
                    reminding = asyncio.ensure_future(remind(schedule.sent))
                else:
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
    except GeneratorExit:  # the run left this worker's cache: nothing to cancel from here
        reminding = None
        raise
    finally:
        if reminding is not None and not reminding.done() and unsent is not None:
            n = schedule.sent
            if await asyncio.shield(asyncio.ensure_future(drop(reminding, unsent(n)))):
                schedule.sent = n - 1
        elif reminding is not None and not reminding.cancelled():
            # Done as the wait ended: a reminder that failed then no longer matters to the
            # run (its outbox row keeps the error).
            reminding.exception()
