"""Running an activity step from workflow code with the options for its kind of work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.workflows.timeouts import StepOptions

__all__ = ["step", "step_key"]

ArgT = TypeVar("ArgT")
ResT = TypeVar("ResT")


async def step(fn: Callable[[Any, ArgT], ResT], arg: ArgT, options: StepOptions) -> ResT:
    """Execute the activity method ``fn`` with ``arg`` and the timeouts in ``options``."""
    return await workflow.execute_activity_method(
        fn,
        arg,
        start_to_close_timeout=options.start_to_close,
        schedule_to_close_timeout=options.schedule_to_close,
        retry_policy=options.retry,
    )


def step_key(name: str) -> str:
    """The idempotency key of step ``name`` in this run: ``<workflow id>/<run id>/<name>``."""
    info = workflow.info()
    return f"{info.workflow_id}/{info.run_id}/{name}"
