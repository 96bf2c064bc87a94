"""The embedded engine under load: AiOs onboarding against a bare Temporal workflow.

    aios dev up                      # the stack, without a worker (this script starts its own)
    .venv/bin/python benchmarks/engine.py [--pairs 12] [--batch 10] [--serial 20] [--json]

In one process tree on the same dev server it starts two workers, ``aios worker`` (the real
one: Postgres, memory, SMTP sink, template agents) and a bare worker
(``benchmarks/bare_workflow.py``: the same shape, 12 no-op activities, 6 search-attribute
writes, one signal wait, nothing else), then runs interleaved pairs of batches: ``--batch``
bare runs at once, then as many onboardings, ``--pairs`` times. Each run gets its approval
(signal ``decide``) as soon as its gate opens: the script follows the run's history and signals
at the event that sets ``AiosAwaitingApproval=true``.

First ``--serial`` runs of each kind go one at a time (latency with nothing else running),
then the batches. Printed, for each kind: throughput (runs/s over a batch, median of the
batches) and the ratio onboarding/bare; start-to-gate and signal-to-completed p50/p99 as the
client sees them; signal-to-next-activity p50/p99 from the server's history (signal event to
the next activity's start); CPU seconds per run of the worker and of the dev server (from
/proc, over that kind's batches); each worker's RSS at the end; how many activities a run of
each kind scheduled through the task queue and how many it ran as local activities (from its
history). The machine's load before and
after is printed too. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (and its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def server_pid(port: int) -> int | None:
    """The dev server listening on ``port`` (found by its command line)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start-dev" in cmd and str(port).encode() in b" ".join(cmd):
            return int(proc.name)
    return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Kind:
    name: str
    throughput: list[float] = field(default_factory=list)
    start_to_gate: list[float] = field(default_factory=list)
    signal_to_done: list[float] = field(default_factory=list)
    signal_to_activity: list[float] = field(default_factory=list)
    activities: list[int] = field(default_factory=list)
    local_activities: list[int] = field(default_factory=list)
    worker_cpu: float = 0.0
    server_cpu: float = 0.0
    runs: int = 0


async def gate_open(handle: WorkflowHandle) -> None:
    """Return once the run has set ``AiosAwaitingApproval=true`` (following its history)."""
    async for event in handle.fetch_history_events(wait_new_event=True):
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes
            payload = fields.search_attributes.indexed_fields.get("AiosAwaitingApproval")
            if payload is not None and payload.data.strip() == b"true":
                return
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            raise RuntimeError(f"{handle.id} completed without a gate")


async def read_history(handle: WorkflowHandle) -> tuple[float | None, int, int]:
    """Seconds from the signal event to the start of the first activity scheduled after it
    (per the server's history), and how many activities the run scheduled and ran locally."""
    signalled: float | None = None
    scheduled: int | None = None
    latency: float | None = None
    activities = local = 0
    async for event in handle.fetch_history_events():
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities += 1
        elif (
            kind == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ):
            local += 1
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED and signalled is None:
            signalled = event.event_time.ToDatetime().timestamp()
        elif (
            signalled is not None
            and scheduled is None
            and kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ):
            scheduled = event.event_id
        elif (
            signalled is not None
            and latency is None
            and kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and event.activity_task_started_event_attributes.scheduled_event_id == scheduled
        ):
            latency = event.event_time.ToDatetime().timestamp() - signalled
    return latency, activities, local


async def one_run(
    client: Client, kind: Kind, start: Callable[[], Awaitable[WorkflowHandle]]
) -> None:
    began = time.perf_counter()
    handle = await start()
    await gate_open(handle)
    opened = time.perf_counter()
    await handle.signal("decide", {"decision": "approve", "approver": "benchmark"})
    signalled = time.perf_counter()
    await handle.result()
    done = time.perf_counter()
    kind.start_to_gate.append(opened - began)
    kind.signal_to_done.append(done - signalled)
    latency, activities, local = await read_history(handle)
    if latency is not None:
        kind.signal_to_activity.append(latency)
    kind.activities.append(activities)
    kind.local_activities.append(local)


async def batch(
    client: Client,
    kind: Kind,
    size: int,
    start: Callable[[], Awaitable[WorkflowHandle]],
    pids: tuple[int, int],
) -> None:
    worker, server = pids
    cpu_w, cpu_s = cpu_seconds(worker), cpu_seconds(server)
    began = time.perf_counter()
    await asyncio.gather(*(one_run(client, kind, start) for _ in range(size)))
    kind.throughput.append(size / (time.perf_counter() - began))
    kind.worker_cpu += cpu_seconds(worker) - cpu_w
    kind.server_cpu += cpu_seconds(server) - cpu_s
    kind.runs += size


def start_workers(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    logs = open(os.devnull, "wb")  # noqa: SIM115 - closed with the process
    aios = subprocess.Popen(
        [sys.executable, "-m", "aios.cli", "worker"], env=env, stdout=logs, stderr=logs
    )
    bare = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--bare-worker"],
        env=env,
        stdout=logs,
        stderr=logs,
    )
    return aios, bare


async def run_bare_worker() -> None:
    from bare_workflow import TASK_QUEUE, BareWorkflow, bare_step
    from temporalio.worker import Worker

    from aios.config import get_settings
    from aios.temporal import connect

    client = await connect(get_settings())
    async with Worker(
        client, task_queue=TASK_QUEUE, workflows=[BareWorkflow], activities=[bare_step]
    ):
        await asyncio.Event().wait()


async def warm_up(
    client: Client, starts: Mapping[str, Callable[[], Awaitable[WorkflowHandle]]]
) -> None:
    """One run of each kind, not counted: the workers have connected and loaded everything."""
    scratch = {name: Kind(name) for name in starts}
    async with asyncio.timeout(180):
        await asyncio.gather(*(one_run(client, scratch[n], s) for n, s in starts.items()))


async def bench(opts: argparse.Namespace) -> dict[str, Any]:
    from bare_workflow import TASK_QUEUE, BareWorkflow

    from aios import operations
    from aios.config import get_settings
    from aios.kernel import ClientIntake
    from aios.temporal import connect

    settings = get_settings()
    client = await connect(settings)
    port = int(settings.temporal_address.rsplit(":", 1)[1])
    server = server_pid(port)
    if server is None:
        raise SystemExit(f"no dev server on port {port}: run `aios dev up` first")
    tag = uuid.uuid4().hex[:6]
    counter = iter(range(1_000_000))

    async def start_bare() -> WorkflowHandle:
        return await client.start_workflow(
            BareWorkflow.run,
            f"client-{tag}",
            id=f"bench-bare/{tag}-{next(counter)}",
            task_queue=TASK_QUEUE,
        )

    async def start_onboarding() -> WorkflowHandle:
        n = next(counter)
        started = await operations.start_onboarding(
            client,
            settings,
            ClientIntake(
                name=f"Bench {tag} {n}",
                key=f"bench-{tag}-{n}",
                email=f"bench-{tag}-{n}@example.com",
                notes="Needs a new website by May 3, budget $5k.",
            ),
        )
        return client.get_workflow_handle(started.workflow_id, run_id=started.run_id)

    env = {**os.environ}
    aios_worker, bare_worker = start_workers(env)
    load_before = os.getloadavg()
    try:
        starts = {"bare": start_bare, "onboarding": start_onboarding}
        await warm_up(client, starts)
        kinds = {name: Kind(name) for name in starts}
        # Latency with nothing else running: one run at a time, interleaved.
        serial = {name: Kind(name) for name in starts}
        for _ in range(opts.serial):
            await batch(client, serial["bare"], 1, start_bare, (bare_worker.pid, server))
            await batch(
                client, serial["onboarding"], 1, start_onboarding, (aios_worker.pid, server)
            )
        for _ in range(opts.pairs):
            await batch(client, kinds["bare"], opts.batch, start_bare, (bare_worker.pid, server))
            await batch(
                client, kinds["onboarding"], opts.batch, start_onboarding, (aios_worker.pid, server)
            )
        rss = {"bare": rss_mb(bare_worker.pid), "onboarding": rss_mb(aios_worker.pid)}
    finally:
        for proc in (aios_worker, bare_worker):
            proc.terminate()
        for proc in (aios_worker, bare_worker):
            proc.wait(timeout=60)
    report: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "pairs": opts.pairs,
        "batch": opts.batch,
        "kinds": {},
    }
    for name, k in kinds.items():
        report["kinds"][name] = {
            "throughput_median_per_s": round(statistics.median(k.throughput), 2),
            "throughput_range_per_s": [round(min(k.throughput), 2), round(max(k.throughput), 2)],
            "start_to_gate_ms": [round(pct(k.start_to_gate, q) * 1000) for q in (0.5, 0.99)],
            "signal_to_completed_ms": [round(pct(k.signal_to_done, q) * 1000) for q in (0.5, 0.99)],
            "signal_to_next_activity_ms": [
                round(pct(k.signal_to_activity, q) * 1000) for q in (0.5, 0.99)
            ],
            "worker_cpu_s_per_run": round(k.worker_cpu / k.runs, 3),
            "server_cpu_s_per_run": round(k.server_cpu / k.runs, 3),
            "worker_rss_mb": round(rss[name]),
            "activities_per_run": statistics.median(k.activities),
            "local_activities_per_run": statistics.median(k.local_activities),
        }
    report["one_at_a_time"] = {
        name: {
            "runs": k.runs,
            "signal_to_next_activity_ms": [
                round(pct(k.signal_to_activity, q) * 1000) for q in (0.5, 0.99)
            ],
            "signal_to_completed_ms": [round(pct(k.signal_to_done, q) * 1000) for q in (0.5, 0.99)],
        }
        for name, k in serial.items()
        if k.runs
    }
    ratios = [
        o / b for o, b in zip(kinds["onboarding"].throughput, kinds["bare"].throughput, strict=True)
    ]
    report["throughput_ratio_median"] = round(statistics.median(ratios), 2)
    report["throughput_ratio_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
    return report


def show(report: dict[str, Any]) -> None:
    print(
        f"{report['cpus']} CPUs, load before {report['load_before']}, after "
        f"{report['load_after']}; {report['pairs']} interleaved pairs of {report['batch']} runs"
    )
    print(
        f"{'':<12} {'runs/s':>8} {'start-gate p50/p99':>19} {'signal-done p50/p99':>20} "
        f"{'signal-activity p50/p99':>24} {'worker cpu/run':>15} {'server cpu/run':>15} {'rss':>7}"
    )
    for name, k in report["kinds"].items():
        print(
            f"{name:<12} {k['throughput_median_per_s']:>8.2f} "
            f"{'/'.join(map(str, k['start_to_gate_ms'])) + ' ms':>19} "
            f"{'/'.join(map(str, k['signal_to_completed_ms'])) + ' ms':>20} "
            f"{'/'.join(map(str, k['signal_to_next_activity_ms'])) + ' ms':>24} "
            f"{k['worker_cpu_s_per_run']:>13.3f} s {k['server_cpu_s_per_run']:>13.3f} s "
            f"{k['worker_rss_mb']:>4} MB"
        )
    for name, k in report["kinds"].items():
        print(
            f"{name}: {k['activities_per_run']:g} activities per run through the task queue, "
            f"{k['local_activities_per_run']:g} local activities"
        )
    for name, k in report["one_at_a_time"].items():
        print(
            f"{name}, one at a time ({k['runs']} runs): signal-to-next-activity p50/p99 "
            f"{'/'.join(map(str, k['signal_to_next_activity_ms']))} ms, signal-to-completed "
            f"{'/'.join(map(str, k['signal_to_completed_ms']))} ms"
        )
    print(
        f"onboarding / bare throughput: median {report['throughput_ratio_median']} "
        f"(range {report['throughput_ratio_range'][0]}-{report['throughput_ratio_range'][1]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=12, help="interleaved pairs (default 12)")
    parser.add_argument("--batch", type=int, default=10, help="runs per batch (default 10)")
    parser.add_argument(
        "--serial", type=int, default=20, help="runs of each kind one at a time (default 20)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.bare_worker:
        asyncio.run(run_bare_worker())
        return
    report = asyncio.run(bench(opts))
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)


if __name__ == "__main__":
    main()
