"""What an activity knows about the workflow step it serves."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from temporalio import activity

from aios.kernel.events import EventDraft
from aios.kernel.pause import Waiter

__all__ = ["cancel_shield", "event_for_step", "pause_waiter"]


def pause_waiter() -> Waiter | None:
    """The running step as a ``PauseGate`` sees it (its run, its heartbeat); None outside one."""
    if not activity.in_activity():
        return None
    info = activity.info()
    return Waiter(
        workflow_id=info.workflow_id or "",
        run_id=info.workflow_run_id or "",
        beat=activity.heartbeat,
        cancelled=_cancelled_by_the_run,
    )


def _cancelled_by_the_run() -> bool:
    """The running step was cancelled by its run (a cancel request, or the run has ended and
    the step is gone), not by its worker stopping."""
    details = activity.cancellation_details()
    return details is not None and (details.cancel_requested or details.not_found)


def cancel_shield() -> AbstractContextManager[object]:
    """In a running step: a block a cancel does not cut (it is raised when the block ends)."""
    if not activity.in_activity():
        return nullcontext()
    return activity.shield_thread_cancel_exception()


def event_for_step(
    key: str, kind: str, *, entity: str | None = None, payload: dict[str, Any] | None = None
) -> EventDraft:
    """An event keyed by the step's idempotency key, stamped with the running workflow."""
    info = activity.info()
    return EventDraft(
        event_key=key,
        workflow_id=info.workflow_id or "",
        run_id=info.workflow_run_id or "",
        process=(info.workflow_id or "").split("/", 1)[0],
        kind=kind,
        entity=entity,
        payload=payload or {},
    )
