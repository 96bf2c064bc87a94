"""Worker memory with many runs waiting at gates: RSS per cached run, and what a cache limit
holds a worker to.

    aios dev up                      # the stack, without a worker (this script starts its own)
    .venv/bin/python benchmarks/worker_memory.py [--runs 600] [--cached-runs 1000]

Starts ``aios worker`` with ``AIOS_WORKER_CACHED_RUNS`` (Temporal's sticky cache: the runs a
worker keeps in memory between their tasks), warms it up with one onboarding, then opens
``--runs`` onboardings and waits until every one waits at its welcome gate. Prints the worker's
RSS before and after, the RSS per run held in the cache, the worker's CPU seconds per run, and
the projected RSS of a worker with 10,000 runs waiting (the cache holds at most
``--cached-runs`` of them; the others cost nothing until a decision wakes them, when they are
replayed from history). Then it terminates the runs it opened. Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from engine import cpu_seconds, gate_open, rss_mb  # benchmarks/engine.py
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError


async def sample(pid: int, handles: list[WorkflowHandle], every: float = 15.0) -> None:
    """Print the worker's RSS as runs open, so a leak shows as a rising line once the cache is
    full (a plateau is what the cache limit promises)."""
    while True:
        await asyncio.sleep(every)
        print(f"  {len(handles):>6} runs opened: worker RSS {rss_mb(pid):.0f} MB", flush=True)


async def open_gates(
    client: Client, count: int, tag: str, parallel: int, handles: list[WorkflowHandle] | None = None
) -> list[WorkflowHandle]:
    from aios import operations
    from aios.config import get_settings
    from aios.kernel import ClientIntake

    settings = get_settings()
    gate = asyncio.Semaphore(parallel)
    handles = [] if handles is None else handles

    async def one(n: int) -> None:
        async with gate:
            started = await operations.start_onboarding(
                client,
                settings,
                ClientIntake(
                    name=f"Memory {tag} {n}",
                    key=f"mem-{tag}-{n}",
                    email=f"mem-{tag}-{n}@example.com",
                    notes="Needs a new website by May 3, budget $5k.",
                ),
            )
            handle = client.get_workflow_handle(started.workflow_id, run_id=started.run_id)
            handles.append(handle)
            await gate_open(handle)

    await asyncio.gather(*(one(n) for n in range(count)))
    return handles


def start_worker(cached_runs: int, role: str) -> list[subprocess.Popen[bytes]]:
    """The worker measured, and with ``--role general`` the memory worker it needs."""
    env = {**os.environ, "AIOS_WORKER_CACHED_RUNS": str(cached_runs)}
    procs = [_worker(env, role)]
    if role == "general":
        procs.append(_worker(env, "memory"))
    return procs


def _worker(env: dict[str, str], role: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aios.cli", "worker", "--role", role],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def bench(opts: argparse.Namespace) -> None:
    from aios.config import get_settings
    from aios.temporal import connect

    client = await connect(get_settings())
    procs = start_worker(opts.cached_runs, opts.role)
    worker = procs[0]
    tag = uuid.uuid4().hex[:6]
    load_before = os.getloadavg()
    handles: list[WorkflowHandle] = []
    try:
        warm = await open_gates(client, 1, f"{tag}w", 1)
        handles += warm
        await asyncio.sleep(2)
        rss0, cpu0 = rss_mb(worker.pid), cpu_seconds(worker.pid)
        began = time.perf_counter()
        opened: list[WorkflowHandle] = []
        sampler = asyncio.create_task(sample(worker.pid, opened))
        try:
            await open_gates(client, opts.runs, tag, opts.parallel, opened)
        finally:
            sampler.cancel()
            handles += opened
        took = time.perf_counter() - began
        await asyncio.sleep(2)
        rss1, cpu1 = rss_mb(worker.pid), cpu_seconds(worker.pid)
    finally:
        for handle in handles:
            with contextlib.suppress(RPCError):  # the run may have ended
                await handle.terminate("benchmark done")
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    cached = min(opts.runs, opts.cached_runs)
    per_run_kb = (rss1 - rss0) * 1024 / max(cached, 1)
    projected = rss0 + per_run_kb * min(10_000, opts.cached_runs) / 1024
    print(
        f"{os.cpu_count()} CPUs, load before {[round(x, 2) for x in load_before]}, after "
        f"{[round(x, 2) for x in os.getloadavg()]}"
    )
    print(
        f"worker --role {opts.role}: {opts.runs} runs opened at their gates in {took:.1f} s "
        f"({opts.runs / took:.2f}/s), cache limit {opts.cached_runs}"
    )
    print(f"worker RSS: {rss0:.0f} MB after warm-up, {rss1:.0f} MB with the runs waiting")
    print(
        f"RSS per cached run: {per_run_kb:.0f} KB; worker CPU per run to its gate: "
        f"{(cpu1 - cpu0) / opts.runs:.3f} s"
    )
    print(f"projected RSS with 10,000 runs waiting: {projected:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=600, help="runs to open (default 600)")
    parser.add_argument(
        "--cached-runs", type=int, default=1000, help="AIOS_WORKER_CACHED_RUNS (default 1000)"
    )
    parser.add_argument("--parallel", type=int, default=20, help="runs started at once")
    parser.add_argument(
        "--role",
        choices=["all", "general"],
        default="all",
        help="the worker measured: all (memory in it) or general (a memory worker beside it)",
    )
    opts = parser.parse_args()
    asyncio.run(bench(opts))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
