"""``aios worker --count N``: N worker processes side by side, started and stopped together.

Each is an ordinary ``aios worker --role <role>`` process with the same settings; on the
embedded stack the first to take the memory shard serves memory and the others stand by for it
(``aios.workers.memory``). A process that ends while the pool runs is started again after
``RESTART_DELAY_SECONDS``; SIGINT/SIGTERM is passed to every process, which finish their
in-flight tasks, and the pool waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys

import structlog

__all__ = ["RESTART_DELAY_SECONDS", "run_worker_processes"]

RESTART_DELAY_SECONDS = 1.0
# How long the pool waits for its processes after passing on SIGTERM, beyond their own grace.
STOP_MARGIN_SECONDS = 30.0
log = structlog.get_logger("aios.worker")


async def run_worker_processes(
    count: int, role: str, *, stop: asyncio.Event | None = None, grace_seconds: float = 30.0
) -> None:
    """Run ``count`` worker processes of ``role`` until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    argv = [sys.executable, "-m", "aios.cli", "worker", "--role", role]

    async def spawn(index: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL)
        log.info(f"worker process {index} started (pid {proc.pid})", index=index, pid=proc.pid)
        return proc

    procs = [await spawn(i) for i in range(count)]
    waits = {i: asyncio.create_task(p.wait()) for i, p in enumerate(procs)}
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            await asyncio.wait([stopping, *waits.values()], return_when=asyncio.FIRST_COMPLETED)
            for i, task in list(waits.items()):
                if not task.done() or stop.is_set():
                    continue
                log.warning(
                    f"worker process {i} (pid {procs[i].pid}) ended with code {task.result()}; "
                    f"starting it again in {RESTART_DELAY_SECONDS:g} s",
                    index=i,
                    pid=procs[i].pid,
                    code=task.result(),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESTART_DELAY_SECONDS)
                if stop.is_set():
                    break
                procs[i] = await spawn(i)
                waits[i] = asyncio.create_task(procs[i].wait())
    finally:
        log.info("worker processes stopping: finishing in-flight tasks")
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        _, pending = await asyncio.wait(waits.values(), timeout=grace_seconds + STOP_MARGIN_SECONDS)
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        if pending:
            await asyncio.wait(pending)
        stopping.cancel()
    log.info("worker processes stopped")
