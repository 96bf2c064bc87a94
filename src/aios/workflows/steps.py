"""Running an activity step from workflow code with the options for its kind of work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from aios.activities.kernel import KernelActivities
    from aios.activities.models import CancelEffectInput, RecordEventInput
    from aios.workflows import versions
    from aios.workflows.timeouts import LOCAL_WRITE, StepOptions

__all__ = ["drop", "record", "step", "step_key"]

ArgT = TypeVar("ArgT")
ResT = TypeVar("ResT")


async def step(
    fn: Callable[[Any, ArgT], ResT],
    arg: ArgT,
    options: StepOptions,
    *,
    summary: str | None = None,
) -> ResT:
    """Execute the activity method ``fn`` with ``arg`` and the timeouts in ``options``.

    Every activity gets a summary the Web UI shows in the run's timeline: ``summary`` when
    given, otherwise what it does and its step name (``record event: gate/welcome/...``).
    A step whose options name a task queue suffix (memory) runs on the run's task queue plus
    that suffix; a step whose options say ``local`` runs as a local activity (see
    ``timeouts``; runs started before ``versions.FEWER_ROUND_TRIPS`` run it as an ordinary
    activity, as their histories hold).
    """
    summary = summary or default_summary(fn, arg)
    if options.local and versions.fewer_round_trips():
        return await workflow.execute_local_activity_method(
            fn,
            arg,
            start_to_close_timeout=options.start_to_close,
            schedule_to_close_timeout=options.schedule_to_close,
            retry_policy=options.retry,
            summary=summary,
        )
    suffix = options.task_queue_suffix
    return await workflow.execute_activity_method(
        fn,
        arg,
        task_queue=workflow.info().task_queue + suffix if suffix else None,
        start_to_close_timeout=options.start_to_close,
        schedule_to_close_timeout=options.schedule_to_close,
        retry_policy=options.retry,
        heartbeat_timeout=options.heartbeat,
        summary=summary,
    )


def default_summary(fn: Callable[..., Any], arg: object) -> str:
    """``<what the activity does>: <step name>`` from the method name and idempotency key."""
    what = fn.__name__.replace("_", " ")
    key = getattr(arg, "idempotency_key", None)
    if isinstance(key, str) and key:
        name = key.split(f"{workflow.info().run_id}/", 1)[-1]
        return f"{what}: {name}"[:200]
    return what


def step_key(name: str) -> str:
    """The idempotency key of step ``name`` in this run: ``<workflow id>/<run id>/<name>``."""
    info = workflow.info()
    return f"{info.workflow_id}/{info.run_id}/{name}"


async def record(
    kind: str, entity: str | None, payload: dict[str, Any], *, key: str | None = None
) -> None:
    """Append event ``kind`` to the event log, once per run (or per ``key`` when given)."""
    await step(
        KernelActivities.record_event,
        RecordEventInput(
            idempotency_key=step_key(key or kind), kind=kind, entity=entity, payload=payload
        ),
        LOCAL_WRITE,
    )


async def drop(effect: asyncio.Task[Any], unsent: CancelEffectInput) -> bool:
    """Cancel ``effect``, a task running an effect step the run no longer needs, and the step's
    outbox row unless the effect is done; returns whether the effect was cancelled unsent.

    Temporal does not retry a step whose cancel was requested, so an attempt that died
    mid-effect (a worker killed) would otherwise leave its row in doubt for good; cancelled,
    the row is never run by a later attempt (``Outbox.cancel``). A task that finished before
    the cancel reached it keeps its result.
    """
    if effect.done():
        return False
    effect.cancel()
    try:
        await effect
    except (asyncio.CancelledError, ActivityError):
        return await step(KernelActivities.cancel_effect, unsent, LOCAL_WRITE)
    return False
