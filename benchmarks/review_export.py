"""``aios review`` and ``aios export``/``import`` over a large event log: figures only.

    .venv/bin/python benchmarks/review_export.py                  # 200,000 events
    .venv/bin/python benchmarks/review_export.py --events 50000 --json

It makes a fresh database on the machine's PostgreSQL (``AIOS_TEST_ADMIN_URL`` or the local
server as user ``postgres``), migrated, and fills it with ``--events`` events spread over a
year (gates requested, decided and reminded, emails, agent calls) and one model call per ten
events. Then it prints, with the machine's load before and after:

- ``compute_review`` for the last 7 and the last 30 days: median and max of ``--runs`` runs;
- exporting every table to JSON Lines (``_export_tables``), rows per second;
- importing them into a second fresh database (``_insert_table`` per table, one
  transaction), rows per second.

Nothing here passes or fails. The databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from aios.kernel.store import KernelStore, apply_migrations
from aios.operations.exchange import _export_tables, _insert_table, kernel_tables
from aios.operations.review import compute_review, review_window

ADMIN_URL = os.environ.get("AIOS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

SEED = """
INSERT INTO events (event_key, workflow_id, run_id, process, kind, entity, payload, occurred_at)
SELECT 'bench/' || g, 'onboarding/c' || (g / 6), 'r1', 'onboarding',
       (ARRAY['gate.requested', 'gate.decided', 'gate.reminded', 'email.sent',
              'client.upserted', 'agent.called'])[1 + g %% 6],
       'client:c' || (g / 6),
       jsonb_build_object('gate', 'welcome', 'gate_key', 'gate/welcome',
                          'decision', (ARRAY['approve', 'edit', 'reject'])[1 + g %% 3],
                          'waited_seconds', (g * 37) %% 86400, 'drafted_by', 'welcome'),
       now() - ((g * 7919) %% (365 * 24 * 60)) * interval '1 minute'
FROM generate_series(1, %(n)s) AS g;
INSERT INTO model_calls (call_key, agent, prompt_version, workflow_id, run_id, process, tier,
                         provider, model, input_tokens, output_tokens, cost_usd, outcome,
                         created_at)
SELECT 'bench/' || g, 'welcome', 'v1', 'onboarding/c' || (g / 6), 'r1', 'onboarding', 'fast',
       'openai', 'gpt-4.1-mini', 500, 200, 0.000420,
       'accepted', now() - ((g * 7919) %% (365 * 24 * 60)) * interval '1 minute'
FROM generate_series(1, %(n)s, 10) AS g;
"""


@contextmanager
def database() -> Iterator[str]:
    name = f"aios_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def time_review(url: str, runs: int) -> dict[str, Any]:
    store = KernelStore(url, max_size=1)
    try:
        figures = {}
        for name, window in (
            ("week", review_window(week=True)),
            ("month", review_window(month=True)),
        ):
            took = []
            for _ in range(runs):
                started = time.perf_counter()
                compute_review(store, window)
                took.append((time.perf_counter() - started) * 1000)
            figures[name] = {
                "median_ms": round(statistics.median(took), 1),
                "max_ms": round(max(took), 1),
            }
        return figures
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"events": args.events, "load_before": load()}
    with database() as source, database() as target:
        with psycopg.connect(source) as conn:
            for statement in SEED.split(";")[:2]:
                conn.execute(statement, {"n": args.events})
            conn.execute("ANALYZE")
        result["review"] = time_review(source, args.runs)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            started = time.perf_counter()
            _, tables = _export_tables(source, work)
            took = time.perf_counter() - started
            rows = sum(t.count for t in tables.values())
            size = sum((work / t.file).stat().st_size for t in tables.values())
            result["export"] = {
                "rows": rows,
                "seconds": round(took, 2),
                "rows_per_s": round(rows / took),
                "mb": round(size / 1e6, 1),
            }
            started = time.perf_counter()
            with psycopg.connect(target) as conn:
                for table in kernel_tables(conn):
                    if table in tables:
                        _insert_table(conn, table, tables[table], work)
            took = time.perf_counter() - started
            result["import"] = {
                "rows": rows,
                "seconds": round(took, 2),
                "rows_per_s": round(rows / took),
            }
    result["load_after"] = load()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.events:,} events; load before {result['load_before']}")
    for name, f in result["review"].items():
        print(f"review --{name}: median {f['median_ms']} ms, max {f['max_ms']} ms")
    e, i = result["export"], result["import"]
    print(f"export: {e['rows']:,} rows, {e['mb']} MB in {e['seconds']} s ({e['rows_per_s']:,}/s)")
    print(f"import: {i['rows']:,} rows in {i['seconds']} s ({i['rows_per_s']:,}/s)")
    print(f"load after {result['load_after']}")


if __name__ == "__main__":
    main()
