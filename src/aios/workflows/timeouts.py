"""Timeouts and retry policies, one named set per kind of work.

A connector effect gets 30 s per attempt from its last heartbeat (it heartbeats right before
the effect; an SMTP hand-off takes well under a second; the margin covers slow servers) and
keeps retrying transient failures until a day past ``PAUSE_LIMIT`` has gone by since it was
scheduled (the limit has to leave room for a step that waited at a paused switch). A model
step may make up to four HTTP requests (two tiers, each with one repair), each bounded by
``MODEL_REQUEST_TIMEOUT`` (the ``openai`` client's timeout); the step heartbeats before each,
so a lost worker is noticed within ``MODEL_CALL.heartbeat`` rather than at the end of the step.

Kernel and memory writes are local and fast. Kernel writes nobody answers (an event, a notice,
a client record, a draft revision: ``LOCAL_WRITE``) run as local activities: in the worker that
runs the workflow task, with their result recorded as a marker, so they take no task-queue
round trip and no workflow task of their own. They are idempotent by key, so a worker lost
before the workflow task completed just writes again. One that fails (the database unreachable)
is tried again by the worker under the same retry policy, each failed attempt in the worker's
log; the Web UI shows no pending activity for it, only the run's workflow tasks going on until
the write succeeds. Runs started before this (no ``fewer-round-trips`` marker) keep their
kernel writes as ordinary activities when they replay (``steps.step``).

Model steps and connector effects wait, inside the activity, while a kill switch covering them
is paused (``aios.kernel.pause``), for as long as the operator keeps it paused, up to
``PAUSE_LIMIT``. So their start-to-close and schedule-to-close allow that long, and what bounds
a single attempt instead is the heartbeat timeout: a waiting step heartbeats every second or
so, and a step doing its work heartbeats before each request (a model call) or effect, so a
lost worker or a hung request is noticed within ``heartbeat`` (30 s for an effect, two minutes
for a model call).

Memory steps run on their own task queue, ``memory_task_queue(<the run's task queue>)``
(``aios-memory`` for the default ``aios``), served by the one process that owns the memory
store; every other step runs on the run's own task queue.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from aios.activities.errors import NON_RETRYABLE_TYPES

__all__ = [
    "CONNECTOR_CHECK",
    "CONNECTOR_EFFECT",
    "CONNECTOR_PLAN",
    "KERNEL_WRITE",
    "LOCAL_WRITE",
    "MAILBOX",
    "MEMORY",
    "MEMORY_QUEUE_SUFFIX",
    "MEMORY_READ",
    "MODEL_CALL",
    "MODEL_REQUEST_TIMEOUT",
    "NEWSLETTER_BATCH",
    "PAUSE_LIMIT",
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
    # Run as a local activity (in the worker that runs the workflow task, recorded as a marker):
    # for short idempotent writes whose own task-queue round trip would cost more than the write.
    local: bool = False


def _retry(initial: float, maximum: float, attempts: int = 0) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=maximum),
        maximum_attempts=attempts,
        non_retryable_error_types=NON_RETRYABLE_TYPES,
    )


KERNEL_WRITE = StepOptions(timedelta(seconds=30), timedelta(hours=1), _retry(1, 30))
# A kernel write nobody answers: an event, a notice, a client record, a draft revision, a
# signal's rejection. It runs as a local activity (see above). A write that makes something
# answerable from outside (a gate opening, an invoice or a proposal or a post a person or a
# payment then answers with a signal) stays ``KERNEL_WRITE``: a local write is visible before
# its workflow task is in history, and if the worker then dies, the answer could reach the
# replayed run before the state it answers and be turned down.
LOCAL_WRITE = dataclasses.replace(KERNEL_WRITE, local=True)
MEMORY = StepOptions(
    timedelta(seconds=60), timedelta(hours=1), _retry(1, 30), task_queue_suffix=MEMORY_QUEUE_SUFFIX
)
# A person waits for a memory read (`aios memory`, the console): a few quick tries.
MEMORY_READ = StepOptions(timedelta(seconds=20), timedelta(seconds=45), _retry(1, 5, attempts=3))
# The longest a step waits at a paused kill switch; past it the step times out like a stuck one.
PAUSE_LIMIT = timedelta(days=30)
MODEL_REQUEST_TIMEOUT = timedelta(seconds=90)
MODEL_CALL = StepOptions(
    timedelta(minutes=8) + PAUSE_LIMIT,
    timedelta(hours=2) + PAUSE_LIMIT,
    _retry(2, 60, attempts=8),
    heartbeat=MODEL_REQUEST_TIMEOUT + timedelta(seconds=30),
)
CONNECTOR_EFFECT = StepOptions(
    timedelta(seconds=30) + PAUSE_LIMIT,
    timedelta(days=1) + PAUSE_LIMIT,
    _retry(2, 300),
    heartbeat=timedelta(seconds=30),
)
# Which optional connectors are configured: a local read of the worker's settings.
CONNECTOR_PLAN = StepOptions(
    timedelta(seconds=10), timedelta(minutes=10), _retry(1, 10), local=True
)
# Probing every connector once (each bounded by its own client timeout); a failing probe is a
# result, not an error, so retries are few.
CONNECTOR_CHECK = StepOptions(
    timedelta(minutes=3),
    timedelta(minutes=10),
    _retry(2, 30, attempts=3),
    heartbeat=timedelta(seconds=60),
)
# One newsletter batch (up to a few hundred messages under the email rate limit): it
# heartbeats after every message, so a lost worker is noticed within 10 s and a cancel reaches
# it between two messages; transient SMTP failures retry the batch with backoff for a day. A
# batch held at a paused switch (connector email, process newsletter) waits in its step, up to
# PAUSE_LIMIT, heartbeating, like any effect.
NEWSLETTER_BATCH = StepOptions(
    timedelta(minutes=30) + PAUSE_LIMIT,
    timedelta(days=1) + PAUSE_LIMIT,
    _retry(2, 60),
    heartbeat=timedelta(seconds=10),
)
# Reading the inbound mailbox (a batch of emails with their attachments, each kept in
# PostgreSQL): longer than a kernel write; a silent server is cut off by the IMAP client's own
# socket timeout.
MAILBOX = StepOptions(timedelta(minutes=5), timedelta(minutes=30), _retry(2, 60))
