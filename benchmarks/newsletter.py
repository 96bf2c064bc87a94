"""One newsletter issue to 5,000 subscribers through the local SMTP sink, with the worker
killed (SIGKILL) three times during the send.

    .venv/bin/python benchmarks/newsletter.py [--subscribers 5000] [--kills 3]
        [--rate 200/second] [--batch 100] [--json]

Self-contained: it starts its own Temporal dev server (free ports), the project's SMTP sink
(``aios.devstack``: every message a file in a Maildir) and a fresh database on the machine's
PostgreSQL (``AIOS_BENCH_ADMIN_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``),
all under a temporary state folder removed at the end. It adds the subscribers and confirms
them through the kernel (not timed), stages one issue, starts one ``aios worker --role
general`` and ``NewsletterSendWorkflow``; as the sink's count passes each of ``--kills`` even
steps it waits a random 0-1 s (so the kill is not timed by the sink taking a message) and
SIGKILLs the worker, then starts a new one at once.

Printed: wall time from the start of the send to its result, messages per second (messages
the sink received over that time), the workers' peak RSS (sampled every 0.5 s), the count of
messages per recipient read back from the Maildir (how many recipients got 0, 1, 2...;
exactly one each is the goal), distinct messages (Message-IDs) per recipient, outbox rows with
more than one attempt (a kill fell while they were in flight), rows left with the provisional
result (the kill fell after the outbox committed a message, just before the terminating dot of
DATA, and before the worker recorded the server's reply: the retry did not send it again), and
the machine's load before and after. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import email
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from engine import rss_mb  # noqa: E402  (benchmarks/engine.py)

ADMIN_URL = os.environ.get("AIOS_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def maildir_count(maildir: Path) -> int:
    try:
        return sum(1 for _ in (maildir / "new").iterdir())
    except FileNotFoundError:
        return 0


def per_recipient(maildir: Path, post_id: str) -> dict[str, list[tuple[str, str]]]:
    """The messages of ``post_id`` each recipient received, read back from the sink:
    recipient -> [(Message-ID, idempotency key)]."""
    received: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for path in (maildir / "new").iterdir():
        with path.open("rb") as f:
            msg = email.message_from_binary_file(f)
        key = str(msg.get("X-Aios-Idempotency-Key", ""))
        if key.startswith(f"newsletter/{post_id}/"):
            received[str(msg["To"]).lower()].append((str(msg["Message-ID"]), key))
    return received


def worker_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    env.update(settings_env)
    return env


def spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aios.cli", "worker", "--role", "general"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


async def send_and_kill(
    opts: argparse.Namespace,
    env: dict[str, str],
    state: Path,
    address: str,
    namespace: str,
    queue: str,
    post_id: str,
    workers: list[subprocess.Popen[bytes]],
) -> tuple[float, float, list[dict[str, float]], Any]:
    """The timed part: start the send on a ready worker, SIGKILL and replace the worker at
    each mark, wait for the result. Returns wall time, peak worker RSS, kills, the report."""
    from temporalio.client import Client

    from aios.converter import DATA_CONVERTER
    from aios.workflows.newsletter_contract import (
        NEWSLETTER_WORKFLOW,
        NewsletterReport,
        NewsletterSend,
    )

    maildir = state / "mail"
    client = await Client.connect(address, namespace=namespace, data_converter=DATA_CONVERTER)
    first_log = state / "worker-1.log"
    workers.append(spawn_worker(env, first_log))
    while b"worker started" not in (first_log.read_bytes() if first_log.exists() else b""):
        if workers[0].poll() is not None:
            raise SystemExit(f"the worker exited:\n{first_log.read_text()[-2000:]}")
        await asyncio.sleep(0.2)
    peak_rss = 0.0
    started = time.monotonic()
    handle = await client.start_workflow(
        NEWSLETTER_WORKFLOW,
        NewsletterSend(post_id=post_id, version=1),
        id=f"benchmark/{post_id}/send",
        task_queue=queue,
        result_type=NewsletterReport,
    )
    result_task = asyncio.ensure_future(handle.result())
    marks = [opts.subscribers * (k + 1) // (opts.kills + 1) for k in range(opts.kills)]
    kills: list[dict[str, float]] = []
    while not result_task.done():
        current = workers[-1]
        if current.poll() is None:
            peak_rss = max(peak_rss, rss_mb(current.pid))
        received = maildir_count(maildir)
        if marks and received >= marks[0]:
            marks.pop(0)
            # A message's file appears while the sink is taking it, before the worker hears
            # the sink's 250: killing right then would aim at the window between the outbox
            # commit and the reply. A real crash is not timed by the sink, so the kill waits a
            # random moment first.
            await asyncio.sleep(random.uniform(0.0, 1.0))  # noqa: S311 (a moment, not a secret)
            received = maildir_count(maildir)
            current.send_signal(signal.SIGKILL)
            current.wait()
            at = time.monotonic() - started
            kills.append({"at_messages": received, "at_seconds": round(at, 1)})
            print(f"  SIGKILL worker at {received} messages ({at:.1f} s); starting another")
            workers.append(spawn_worker(env, state / f"worker-{len(workers) + 1}.log"))
        await asyncio.wait([result_task], timeout=0.5)
    return time.monotonic() - started, peak_rss, kills, result_task.result()


def bench(opts: argparse.Namespace) -> dict[str, Any]:
    from aios.config import Settings
    from aios.devstack import (
        _smtp_marker,
        _stop_pid,
        load_dev_config,
        start_smtp,
        start_temporal,
        stop_temporal,
    )
    from aios.kernel.store import KernelStore, apply_migrations
    from aios.kernel.stores.subscribers import SubscriberDraft

    state = Path(tempfile.mkdtemp(prefix="aios-bench-news-"))
    config = load_dev_config(ROOT / "temporal-dev.yaml").model_copy(
        update={"grpc_port": free_port(), "ui_port": free_port()}
    )
    db_name = f"aios_bench_{uuid.uuid4().hex[:8]}"
    db_url = urlsplit(ADMIN_URL)._replace(path=f"/{db_name}").geturl()
    smtp_port = free_port()
    queue = f"bench-news-{uuid.uuid4().hex[:6]}"
    env = worker_env(
        {
            "AIOS_TEMPORAL_ADDRESS": config.address,
            "AIOS_TEMPORAL_NAMESPACE": config.namespace,
            "AIOS_TASK_QUEUE": queue,
            "AIOS_STATE_DIR": str(state),
            "AIOS_DATABASE_URL": db_url,
            "AIOS_SMTP_HOST": "127.0.0.1",
            "AIOS_SMTP_PORT": str(smtp_port),
            "AIOS_SMTP_EMBEDDED": "false",
            "AIOS_OPERATOR_EMAIL": "operator@bench.example",
            "AIOS_NEWSLETTER_BATCH_SIZE": str(opts.batch),
            "AIOS_CONNECTOR_RATE_LIMITS": json.dumps({"email": opts.rate}),
        }
    )
    settings = Settings(
        state_dir=state,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_embedded=True,
        database_url=db_url,
        _env_file=None,
    )
    maildir = state / "mail"
    load_before = os.getloadavg()
    workers: list[subprocess.Popen[bytes]] = []
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db_name}"')
    store: KernelStore | None = None
    try:
        start_temporal(state, config)
        start_smtp(settings)
        apply_migrations(db_url)
        store = KernelStore(db_url, max_size=2)
        t0 = time.monotonic()
        drafts = [
            SubscriberDraft(email=f"reader{i:05d}@bench.example", name=f"Reader {i}")
            for i in range(opts.subscribers)
        ]
        for subscriber, _ in store.subscribers.add_many(drafts, source="benchmark"):
            store.subscribers.confirm(subscriber.id, via="benchmark")
        seeded = time.monotonic() - t0
        post_id = f"bench-{uuid.uuid4().hex[:6]}"
        store.newsletter.stage_issue(
            post_id, 1, "The benchmark issue", "# Hello\n\nOne issue, **once** each.\n"
        )
        print(
            f"{opts.subscribers} confirmed subscribers added in {seeded:.1f} s; "
            f"rate limit {opts.rate}, batches of {opts.batch}",
            flush=True,
        )

        wall, peak_rss, kills, report = asyncio.run(
            send_and_kill(
                opts, env, state, config.address, config.namespace, queue, post_id, workers
            )
        )
        received = per_recipient(maildir, post_id)
        expected = {d.email for d in drafts}
        histogram = collections.Counter(len(received.get(e, [])) for e in expected)
        distinct = collections.Counter(len({m for m, _ in received.get(e, [])}) for e in expected)
        copies = {e: got for e, got in received.items() if len(got) > 1}
        # A recipient with nothing whose row is done at the commit point: the worker died
        # between the commit and the send of the terminating dot (recorded sent, never left).
        lost_at_commit = 0
        for address in sorted(expected - set(received)):
            found = store.subscribers.by_email(address)
            assert found is not None
            entry = store.outbox.entry(f"newsletter/{post_id}/{found.id}")
            if entry is not None and "provisional" in (entry["result"] or {}):
                lost_at_commit += 1
        with store.db.transaction() as conn:
            retried = conn.execute(
                "SELECT count(*) AS n FROM outbox WHERE idempotency_key LIKE %s AND attempts > 1",
                (f"newsletter/{post_id}/%",),
            ).fetchone()
            provisional = conn.execute(
                "SELECT count(*) AS n FROM outbox WHERE idempotency_key LIKE %s"
                " AND status = 'done' AND result ? 'provisional'",
                (f"newsletter/{post_id}/%",),
            ).fetchone()
        total = sum(len(got) for got in received.values())
        figures: dict[str, Any] = {
            "subscribers": opts.subscribers,
            "kills": kills,
            "wall_seconds": round(wall, 1),
            "messages": total,
            "messages_per_second": round(total / wall, 1),
            "worker_peak_rss_mb": round(peak_rss, 1),
            "recipients_by_count": {str(k): v for k, v in sorted(histogram.items())},
            "exactly_one_each": histogram == collections.Counter({1: opts.subscribers}),
            "distinct_messages_by_count": {str(k): v for k, v in sorted(distinct.items())},
            "recipients_with_a_second_copy": len(copies),
            "recipients_with_none": histogram.get(0, 0),
            "recipients_with_none_killed_between_commit_and_dot": lost_at_commit,
            "outbox_rows_tried_more_than_once": int(retried["n"]) if retried else 0,
            "outbox_rows_done_at_the_commit_point": int(provisional["n"]) if provisional else 0,
            "report": report.model_dump(),
            "rate_limit": opts.rate,
            "batch": opts.batch,
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }
        return figures
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if store is not None:
            store.close()
        _stop_pid(state, "smtp", _smtp_marker(settings))
        stop_temporal(state, config)
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rate", default="200/second", help="the email connector's rate limit")
    parser.add_argument("--batch", type=int, default=100, help="AIOS_NEWSLETTER_BATCH_SIZE")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    figures = bench(opts)
    if opts.json:
        print(json.dumps(figures, indent=1))
        return
    print(
        f"sent {figures['messages']} messages to {opts.subscribers} subscribers in "
        f"{figures['wall_seconds']} s ({figures['messages_per_second']} messages/s), worker "
        f"killed {len(figures['kills'])} times"
    )
    print(f"worker peak RSS: {figures['worker_peak_rss_mb']} MB")
    print(
        f"messages per recipient: {figures['recipients_by_count']} "
        f"(exactly one each: {'yes' if figures['exactly_one_each'] else 'NO'})"
    )
    print(f"distinct messages (Message-ID) per recipient: {figures['distinct_messages_by_count']}")
    print(
        f"recipients with a second copy: {figures['recipients_with_a_second_copy']}, "
        f"with none: {figures['recipients_with_none']} (of which killed between the outbox "
        f"commit and the dot: {figures['recipients_with_none_killed_between_commit_and_dot']})"
    )
    print(f"outbox rows tried more than once: {figures['outbox_rows_tried_more_than_once']}")
    print(
        "outbox rows left with the provisional result (killed after the commit before the dot, "
        f"before the reply was recorded): {figures['outbox_rows_done_at_the_commit_point']}"
    )
    print(f"report: {figures['report']}")
    print(
        f"load (1, 5, 15 min) before {figures['load_before']}, after {figures['load_after']} "
        f"on {figures['cpus']} CPUs"
    )


if __name__ == "__main__":
    main()
