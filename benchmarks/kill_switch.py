"""How fast a kill switch reaches steps in flight, and how fast they go on after a resume.

    .venv/bin/python benchmarks/kill_switch.py                       # AIOS_DATABASE_URL / .env
    .venv/bin/python benchmarks/kill_switch.py --workers 8 --rounds 5 --json

Each of ``--workers`` threads stands for one worker: its own ``PauseGate`` and ``SwitchReader``
with the settings' cache and poll intervals (``AIOS_SWITCH_CACHE_SECONDS``,
``AIOS_SWITCH_POLL_SECONDS``), over real PostgreSQL, running one step that checks the gate
before each of a stream of effects (one every ``--every`` seconds, an effect doing nothing).
Each round pauses a switch of its own (``process:benchmark-<id>``), measures for every worker
the time from the pause's commit to its step waiting (``stop``), then resumes and measures the
time to its step going on (``go``). The steps open and resolve real notices.

The machine's load (``os.getloadavg()``) before and after is printed with the figures.
Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from typing import Any

from aios.config import Settings, get_settings
from aios.devstack import database_url
from aios.kernel.pause import PauseGate, Waiter
from aios.kernel.store import KernelStore, apply_migrations
from aios.kernel.stores import SwitchReader
from aios.kernel.stores.switches import SwitchChange


class Step(threading.Thread):
    """One worker's step: check the gate, do an effect, repeat; note when it waits and goes."""

    def __init__(self, store: KernelStore, settings: Settings, process: str, every: float):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.every = every
        self.waiting_since: float | None = None
        self.went_on_at: float | None = None
        reader = SwitchReader(store.switches, ttl=settings.switch_cache_seconds)
        waiter = Waiter(workflow_id=f"{process}/{uuid.uuid4().hex[:8]}", run_id="bench")

        def sleep(seconds: float) -> None:
            if self.waiting_since is None:
                self.waiting_since = time.monotonic()
            time.sleep(seconds)

        self.gate = PauseGate(
            reader,
            store.notices,
            current=lambda: waiter,
            poll_seconds=settings.switch_poll_seconds,
            sleep=sleep,
        )

    def run(self) -> None:
        while not self.stop.is_set():
            if self.gate.hold([], "benchmark effect") > 0:
                self.went_on_at = time.monotonic()
            time.sleep(self.every)


def until(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("a step did not react within 60 s")
        time.sleep(0.01)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(values), 3),
        "max_s": round(max(values), 3),
        "min_s": round(min(values), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="simulated workers (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="pause/resume rounds (default 3)")
    parser.add_argument("--every", type=float, default=0.05, help="seconds between effects")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()
    settings = get_settings()
    url = database_url(settings)
    apply_migrations(url)
    store = KernelStore(url, max_size=opts.workers + 2)
    load_before = os.getloadavg()
    stops: list[float] = []
    goes: list[float] = []
    try:
        for _ in range(opts.rounds):
            process = f"benchmark-{uuid.uuid4().hex[:8]}"
            steps = [Step(store, settings, process, opts.every) for _ in range(opts.workers)]
            for s in steps:
                s.start()
            # Every step has read the switches; the pause then lands anywhere in their cache
            # interval, as an operator's would.
            time.sleep(settings.switch_cache_seconds * (1 + random.random()))  # noqa: S311
            change = SwitchChange(scope="process", name=process, by="benchmark")
            store.switches.pause(change)
            paused_at = time.monotonic()
            until(lambda steps=steps: all(s.waiting_since is not None for s in steps))
            stops += [s.waiting_since - paused_at for s in steps if s.waiting_since]
            store.switches.resume(change)
            resumed_at = time.monotonic()
            until(lambda steps=steps: all(s.went_on_at is not None for s in steps))
            goes += [s.went_on_at - resumed_at for s in steps if s.went_on_at]
            for s in steps:
                s.stop.set()
            for s in steps:
                s.join()
    finally:
        store.close()
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "workers": opts.workers,
        "rounds": opts.rounds,
        "cache_seconds": settings.switch_cache_seconds,
        "poll_seconds": settings.switch_poll_seconds,
        "pause_to_waiting": summary(stops),
        "resume_to_going_on": summary(goes),
    }
    if opts.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"python {report['python']}, {report['cpus']} CPUs, load (1/5/15 min) before "
        f"{' '.join(map(str, report['load_before']))}, after "
        f"{' '.join(map(str, report['load_after']))}"
    )
    print(
        f"{opts.workers} workers x {opts.rounds} rounds, cache {settings.switch_cache_seconds} s, "
        f"poll {settings.switch_poll_seconds} s"
    )
    for name, key in (
        ("pause -> waiting", "pause_to_waiting"),
        ("resume -> going on", "resume_to_going_on"),
    ):
        s = report[key]
        print(
            f"{name:<20} median {s['median_s']:.3f} s  max {s['max_s']:.3f} s  "
            f"min {s['min_s']:.3f} s"
        )


if __name__ == "__main__":
    main()
