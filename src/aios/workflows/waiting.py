"""Waiting in workflow code: for a condition, with reminders on durable timers and a deadline.

``wait_until`` is the one loop behind gates, client answers and payments: it sleeps on a
Temporal timer until the next reminder or the deadline, wakes early when the condition holds or
a signal needs recording, sends each reminder once (an activity with its own idempotency key),
and survives worker restarts because timers and activity results live in history.

``SignalLog`` keeps rejected signal payloads until they are written to the event log: a bad
payload never fails the workflow, it is counted, logged and recorded as ``signal.rejected``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from aios.activities.kernel import KernelActivities
    from aios.activities.models import RecordEventInput
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import KERNEL_WRITE

__all__ = ["Schedule", "SignalLog", "decode_signal", "wait_until"]

ModelT = TypeVar("ModelT", bound=BaseModel)
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
    flush: Callable[[], Awaitable[object]],
    needs_flush: Callable[[], bool],
    summary: str,
) -> bool:
    """Wait until ``ready()``; returns False if the deadline passed first."""
    while not ready():
        await flush()
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
                lambda: ready() or needs_flush(),
                timeout=max(wake - now, timedelta(milliseconds=1)),
                timeout_summary=summary,
            )
    return True


def decode_signal(payload: RawValue, model: type[ModelT]) -> ModelT | str:
    """The payload as ``model``, or one line saying what is wrong with it."""
    from aios.workflows.gates import describe_invalid

    try:
        return workflow.payload_converter().from_payload(payload.payload, model)
    except Exception as exc:
        return describe_invalid(exc)


@dataclass
class SignalLog:
    """Rejected signals, counted, and queued until the workflow records them as events."""

    total: int = 0
    last: str | None = None
    pending: list[tuple[str, str]] = field(default_factory=list)

    def reject(self, signal: str, reason: str) -> None:
        workflow.logger.warning("rejected a %s signal: %s", signal, reason)
        self.total += 1
        self.last = f"{signal}: {reason}"
        self.pending.append((signal, reason))

    async def flush(self) -> None:
        while self.pending:
            signal, reason = self.pending.pop(0)
            n = self.total - len(self.pending)
            await step(
                KernelActivities.record_event,
                RecordEventInput(
                    idempotency_key=step_key(f"signal/{signal}/rejected/{n}"),
                    kind="signal.rejected",
                    payload={"signal": signal, "reason": reason},
                ),
                KERNEL_WRITE,
            )
