"""Timeouts and retry policies, one named set per kind of work.

A connector effect gets 30 s per attempt (an SMTP hand-off takes well under a second; the
margin covers slow servers) and keeps retrying transient failures for up to a day. A model
step may make up to four HTTP requests (two tiers, each with one repair), each bounded by
``MODEL_REQUEST_TIMEOUT`` (the ``openai`` client's timeout); the step heartbeats before each,
so a lost worker is noticed within ``MODEL_CALL.heartbeat`` rather than at the end of the step.
Kernel and memory writes are local and fast.

Memory steps run on their own task queue, ``memory_task_queue(<the run's task queue>)``
(``aios-memory`` for the default ``aios``), served by the one process that owns the memory
store; every other step runs on the run's own task queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from aios.activities.errors import NON_RETRYABLE_TYPES

__all__ = [
    "CONNECTOR_CHECK",
    "CONNECTOR_EFFECT",
    "KERNEL_WRITE",
    "MAILBOX",
    "MEMORY",
    "MEMORY_QUEUE_SUFFIX",
    "MEMORY_READ",
    "MODEL_CALL",
    "MODEL_REQUEST_TIMEOUT",
    "StepOptions",
    "memory_task_queue",
]

MEMORY_QUEUE_SUFFIX = "-memory"


def memory_task_queue(task_queue: str) -> str:
    """The task queue of memory steps for runs on ``task_queue``."""
    return task_queue + MEMORY_QUEUE_SUFFIX


@dataclass(frozen=True)
class StepOptions:
    start_to_close: timedelta
    schedule_to_close: timedelta
    retry: RetryPolicy
    heartbeat: timedelta | None = None
    # Appended to the run's task queue for steps that run elsewhere (memory); None: the same.
    task_queue_suffix: str | None = None


def _retry(initial: float, maximum: float, attempts: int = 0) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=maximum),
        maximum_attempts=attempts,
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    )


KERNEL_WRITE = StepOptions(timedelta(seconds=30), timedelta(hours=1), _retry(1, 30))
MEMORY = StepOptions(
    timedelta(seconds=60), timedelta(hours=1), _retry(1, 30), task_queue_suffix=MEMORY_QUEUE_SUFFIX
)
# A person waits for a memory read (`aios memory`, the console): a few quick tries.
MEMORY_READ = StepOptions(timedelta(seconds=20), timedelta(seconds=45), _retry(1, 5, attempts=3))
MODEL_REQUEST_TIMEOUT = timedelta(seconds=90)
MODEL_CALL = StepOptions(
    timedelta(minutes=8),
    timedelta(hours=2),
    _retry(2, 60, attempts=8),
    heartbeat=MODEL_REQUEST_TIMEOUT + timedelta(seconds=30),
)
CONNECTOR_EFFECT = StepOptions(timedelta(seconds=30), timedelta(days=1), _retry(2, 300))
# Probing every connector once (each bounded by its own client timeout); a failing probe is a
# result, not an error, so retries are few.
CONNECTOR_CHECK = StepOptions(
    timedelta(minutes=3),
    timedelta(minutes=10),
    _retry(2, 30, attempts=3),
    heartbeat=timedelta(seconds=60),
)
# Reading the inbound mailbox (a batch of emails with their attachments, each kept in
# PostgreSQL): longer than a kernel write; a silent server is cut off by the IMAP client's own
# socket timeout.
MAILBOX = StepOptions(timedelta(minutes=5), timedelta(minutes=30), _retry(2, 60))
