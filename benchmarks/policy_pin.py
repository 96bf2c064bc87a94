"""What pinning the policy adds to starting a run, and what applying corrections costs a draft.

    AIOS_DATABASE_URL=postgresql://... .venv/bin/python benchmarks/policy_pin.py [--runs 200]

``pin``: read the latest policy version from PostgreSQL and validate it with ``Settings`` (what
``aios onboard``, ``aios propose`` and ``aios bill`` do once before starting a run), over one
open connection. ``apply``: the welcome template applying three recalled corrections of two
replacements each to a draft (pure Python). Prints the median and p95 in milliseconds and the
machine's load before and after. Figures only: nothing here passes or fails. It adds nothing
to the policy when a version exists; on an empty database it seeds version 1 from the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from aios.agents.corrections import CorrectionHint, Replacement, apply_corrections
from aios.config import get_settings
from aios.operations.common import open_store
from aios.operations.policies import pin

BODY = (
    "Hello {name},\n\nThank you for choosing to work with me. I understood your request as: a "
    "new website.\n\nHere is how we will get started:\n  1. Kickoff call\n  2. Agree on the "
    "sitemap\n\nThe calendar invite for our kickoff is attached.\n\nBest regards,\nJo Operator\n"
)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    settings = get_settings()
    store = open_store(settings)
    try:
        pin(settings, store)  # warm: the pool's connection, version 1 if there is none
        pins = []
        for _ in range(args.runs):
            started = time.perf_counter()
            pin(settings, store)
            pins.append(time.perf_counter() - started)
    finally:
        store.close()
    hints = [
        CorrectionHint(
            id=f"c{i}",
            replacements=[
                Replacement(field="body", before="Hello {client},\n", after="Dear {client},\n"),
                Replacement(field="body", before="Best regards,\n", after=f"Cheers {i},\n"),
            ],
        )
        for i in range(3)
    ]
    applies = []
    for _ in range(args.runs):
        started = time.perf_counter()
        apply_corrections(
            {"subject": "Welcome aboard, Beta", "body": BODY.format(name="Beta")},
            hints,
            client_name="Beta",
        )
        applies.append(time.perf_counter() - started)
    figures = {
        "runs": args.runs,
        "pin": _ms(pins),
        "apply_corrections": _ms(applies),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"pin the latest policy (read + validate), {args.runs} runs: {figures['pin']}")
    print(f"apply 3 corrections to a welcome draft: {figures['apply_corrections']}")
    print(f"load before {figures['load_before']}, after {figures['load_after']}")


if __name__ == "__main__":
    main()
