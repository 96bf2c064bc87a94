"""A saga: compensations pushed after each successful step, run in reverse when the run ends.

Each compensation is an activity call (idempotent, keyed), never a direct call. ``compensate``
shields every compensation from cancellation, catches ``BaseException`` per compensation so one
failure does not stop the rest, and reports what ran and what failed.

``unwind`` compensates only for an exception that really ends the run (``ends_run``): the
run's cancellation, or a failure that fails the workflow (an activity or child that failed for
good, an ``ApplicationError``, a timeout). Any other exception is a bug in workflow code (an
assertion, a ``KeyError``): it fails the workflow *task*, which Temporal retries, so the run
stays open and a fixed worker resumes it from history. Compensating then would send real
cancellation emails for a run that is not over. A worker evicting the run from its cache
(``GeneratorExit``) is not an end either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

__all__ = ["Saga", "SagaReport", "ends_run", "error_class"]

Finish = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass
class SagaReport:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Saga:
    def __init__(self) -> None:
        self._compensations: list[tuple[str, Callable[[], Awaitable[Any]]]] = []

    def add(self, name: str, compensation: Callable[[], Awaitable[Any]]) -> None:
        """Register the undo of a step that has just succeeded."""
        self._compensations.append((name, compensation))

    def discard(self, name: str) -> None:
        """Forget the compensation ``name``: its step no longer needs undoing."""
        self._compensations = [(n, c) for n, c in self._compensations if n != name]

    @property
    def pending(self) -> list[str]:
        return [name for name, _ in self._compensations]

    async def compensate(self) -> SagaReport:
        report = SagaReport()
        while self._compensations:
            name, compensation = self._compensations.pop()
            task = asyncio.ensure_future(compensation())
            while not task.done():
                # A cancel from outside interrupts only this await: keep waiting for the undo.
                try:
                    await asyncio.shield(task)
                except GeneratorExit:  # the worker evicts the run; replay resumes it later
                    raise
                except BaseException:  # noqa: S110 (the loop checks the task itself)
                    pass
            error = "cancelled" if task.cancelled() else task.exception()
            if error is None:
                report.done.append(name)
            else:  # a failed undo must not stop the others
                workflow.logger.error("compensation %s failed: %s", name, error)
                report.failed.append(name)
        return report

    async def unwind(self, error: BaseException, finish: Finish) -> bool:
        """If ``error`` ends the run, compensate, then record the end with
        ``finish(status, details)`` and return True; otherwise do nothing and return False.

        ``status`` is ``cancelled`` or ``failed``; the record is shielded from cancellation.
        The caller re-raises ``error`` either way.
        """
        if isinstance(error, GeneratorExit):  # the worker evicts the run: not an end, no bug
            return False
        if not ends_run(error):
            workflow.logger.error(
                "not compensating: %s is a bug in workflow code, not the end of the run; "
                "the workflow task fails and is retried",
                type(error).__name__,
            )
            return False
        report = await self.compensate()
        status = "cancelled" if isinstance(error, asyncio.CancelledError) else "failed"
        details = {
            "reason": "the run was cancelled" if status == "cancelled" else "the run failed",
            "error": str(error),
            "error_class": error_class(error),
            "compensated": report.done,
            "compensation_failed": report.failed,
        }
        await asyncio.shield(asyncio.ensure_future(finish(status, details)))
        return True


def error_class(error: BaseException) -> str:
    """What kind of failure ended a run, for ``aios review``: the Temporal error type of the
    innermost cause behind activity and child-workflow errors, else its exception class."""
    seen = error
    while isinstance(seen, ActivityError | ChildWorkflowError) and seen.cause is not None:
        seen = seen.cause
    if isinstance(seen, ApplicationError) and seen.type:
        return seen.type
    return type(seen).__name__


def ends_run(error: BaseException) -> bool:
    """Whether ``error``, raised out of the run, ends it (see the module docstring)."""
    if isinstance(error, asyncio.CancelledError):
        return True
    if not isinstance(error, Exception):  # GeneratorExit (eviction), KeyboardInterrupt...
        return False
    return workflow.is_failure_exception(error)
