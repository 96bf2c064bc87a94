"""How long `aios` takes to start: wall time and import time of a few commands.

    .venv/bin/python benchmarks/cli_start.py            # 7 runs each
    .venv/bin/python benchmarks/cli_start.py --runs 15 --json

For each command it runs a fresh interpreter N times and prints the median (and min, max) of

- ``wall``: the whole command, start to exit, as the operator waits for it;
- ``imports``: the sum of every module's own import time in that process, from
  ``python -X importtime`` (one extra run per command), and whether a heavy library
  (openai, qdrant_client, fpdf, caldav) was imported at all.

``inbox`` and ``approve`` talk to Temporal as configured (``AIOS_*``, ``.env``): with the stack
up they do their real work (``approve`` asks about a run that does not exist, so nothing is
decided); with it down they fail after the connection attempt, which is still their start.
The machine's load (``os.getloadavg()``) before and after is printed with the figures, since
a loaded machine starts everything slower. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

HEAVY = ("openai", "qdrant_client", "fpdf", "caldav")
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def commands() -> dict[str, list[str]]:
    missing = f"onboarding/benchmark-{uuid.uuid4().hex[:8]}"
    return {
        "import aios.cli": ["-c", "import aios.cli"],
        "aios --help": ["-m", "aios.cli", "--help"],
        "aios inbox": ["-m", "aios.cli", "inbox"],
        "aios approve": ["-m", "aios.cli", "approve", missing, "--approver", "benchmark"],
    }


def wall(args: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, check=False, env=_env(), timeout=120
    )
    return time.perf_counter() - start, proc.returncode


def imports(args: list[str]) -> tuple[float, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
        timeout=120,
    )
    total = 0
    heavy: set[str] = set()
    for line in proc.stderr.splitlines():
        found = _IMPORT_LINE.match(line)
        if found:
            total += int(found.group(1))
            top = found.group(4).split(".")[0]
            if top in HEAVY:
                heavy.add(top)
    return total / 1e6, sorted(heavy)


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "120"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    for name, args in commands().items():
        wall(args)  # warm the file cache; not counted
        times, codes = [], set()
        for _ in range(opts.runs):
            seconds, code = wall(args)
            times.append(seconds)
            codes.add(code)
        import_seconds, heavy = imports(args)
        results.append(
            {
                "command": name,
                "runs": opts.runs,
                "wall_median_s": round(statistics.median(times), 3),
                "wall_min_s": round(min(times), 3),
                "wall_max_s": round(max(times), 3),
                "imports_s": round(import_seconds, 3),
                "heavy_imported": heavy,
                "exit_codes": sorted(codes),
            }
        )
    before = [round(x, 2) for x in load_before]
    after = [round(x, 2) for x in os.getloadavg()]
    python = sys.version.split()[0]
    report: dict[str, Any] = {
        "python": python,
        "cpus": os.cpu_count(),
        "load_before": before,
        "load_after": after,
        "results": results,
    }
    if opts.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"python {python}, {os.cpu_count()} CPUs, load (1/5/15 min) "
        f"before {' '.join(map(str, before))}, after {' '.join(map(str, after))}"
    )
    print(f"{'command':<18} {'wall median':>11} {'min':>7} {'max':>7} {'imports':>8}  heavy  exit")
    for r in results:
        print(
            f"{r['command']:<18} {r['wall_median_s']:>10.3f}s {r['wall_min_s']:>6.3f}s "
            f"{r['wall_max_s']:>6.3f}s {r['imports_s']:>7.3f}s  "
            f"{','.join(r['heavy_imported']) or '-'}  {','.join(map(str, r['exit_codes']))}"
        )


if __name__ == "__main__":
    main()
