#!/usr/bin/env python3
"""Health probe of an AiOs container (installed in the image as ``aios-probe``).

    aios-probe worker [--memory]             this host's worker polls its task queue
                                             (AIOS_TASK_QUEUE; with --memory the memory queue,
                                             <task queue>-memory): it reached Temporal with
                                             its settings, applied migrations and took work
    aios-probe serve                         the console answers HTTP on AIOS_SERVE_PORT

Exit 0 when healthy, 1 with one line on stderr saying why not. A worker is known to Temporal
by its identity ``<pid>@<hostname>``, so the probe, run inside the worker's container (the
same hostname), asks Temporal which pollers the task queue has and looks for one from this
host. The connection uses the worker's own settings (address, namespace, TLS, API key).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import socket
import sys

TIMEOUT_SECONDS = 8.0


async def _worker_polls(memory: bool) -> str | None:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from aios.config import get_settings
    from aios.errors import StackError
    from aios.temporal import connect
    from aios.workflows.timeouts import memory_task_queue

    settings = get_settings()
    queue = memory_task_queue(settings.task_queue) if memory else settings.task_queue
    try:
        client = await connect(settings)
    except StackError as exc:
        return str(exc)
    host = socket.gethostname()
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=kind,
            )
        )
        if any(p.identity.endswith(f"@{host}") for p in response.pollers):
            return None
    return f"no worker on {host} polls task queue {queue!r} at {settings.temporal_address}"


def _serve_answers() -> str | None:
    from aios.config import get_settings

    port = get_settings().serve_port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/signin")
        status = connection.getresponse().status
    except OSError as exc:
        return f"the console on port {port} does not answer: {exc}"
    finally:
        connection.close()
    return None if status < 500 else f"the console on port {port} answered {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aios-probe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    worker = sub.add_parser("worker", help="this host's worker polls its task queue")
    worker.add_argument("--memory", action="store_true", help="the memory worker's queue")
    sub.add_parser("serve", help="the console answers HTTP")
    args = parser.parse_args(argv)
    try:
        if args.what == "worker":
            problem = asyncio.run(asyncio.wait_for(_worker_polls(args.memory), TIMEOUT_SECONDS))
        else:
            problem = _serve_answers()
    except TimeoutError:
        problem = f"no answer within {TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # a probe reports, it never shows a traceback
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        print(f"aios-probe {args.what}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
