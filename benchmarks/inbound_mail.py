"""Inbound mail: how long one poll of a full mailbox takes, and until every email is handled.

    .venv/bin/python benchmarks/inbound_mail.py               # 100 emails
    .venv/bin/python benchmarks/inbound_mail.py --emails 20 --json

It brings up the stack of ``benchmarks/inbox.py`` (a Temporal dev server on free ports, a fresh
database, an SMTP sink) and a Dovecot of its own (Debian's ``dovecot-imapd``), runs a worker in
this process, puts ``--emails`` emails that answer nothing AiOs sent into the mailbox (IMAP
APPEND) and polls once (``aios mail poll``'s ``poll_mail``). It prints the poll's wall time
(fetch, keep, start one run per email, mark seen), the time until every email's run ended (each
opens an ``unmatched_email`` notice), the emails left unseen and the notices opened, with the
machine's load before and after. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def email(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"sender-{n}@bench.example"
    msg["To"] = "aios@inbox.bench"
    msg["Subject"] = f"Question {n}"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@bench.example>"
    msg.set_content(f"Hello, this is message {n}. Could you send me your rates?")
    return msg.as_bytes()


async def scenario(count: int, settings: Any) -> dict[str, Any]:
    from aios.connectors.imap import message_key, parse_email
    from aios.operations.mail import poll_mail
    from aios.temporal import connect
    from aios.workers.main import build_worker
    from aios.workers.services import Services
    from aios.workflows.inbound_mail import InboundMailResult, inbound_workflow_id
    from tests.dovecot_server import Dovecot, available

    reason = available()
    if reason:
        raise SystemExit(reason)
    dovecot = Dovecot().start()
    try:
        settings = settings.model_copy(
            update={
                "imap_host": "127.0.0.1",
                "imap_port": dovecot.port,
                "imap_security": "none",
                "imap_username": dovecot.user,
                "imap_password": dovecot.password,
                "imap_batch": max(count, 1),
            }
        )
        messages = [email(n) for n in range(count)]
        start = time.perf_counter()
        for raw in messages:
            dovecot.deliver(raw)
        append_s = time.perf_counter() - start
        services = await asyncio.to_thread(Services.from_settings, settings)
        client = await connect(settings)
        try:
            with ThreadPoolExecutor(max_workers=settings.worker_activity_slots) as pool:
                async with build_worker(
                    client,
                    settings.task_queue,
                    services.activities(),
                    pool,
                    activity_slots=settings.worker_activity_slots,
                ):
                    start = time.perf_counter()
                    polled = await poll_mail(client, settings)
                    poll_s = time.perf_counter() - start
                    ids = [
                        inbound_workflow_id(
                            message_key(parse_email(raw, max_attachment_bytes=0).message_id)
                        )
                        for raw in messages
                    ]
                    results = await asyncio.gather(
                        *(
                            client.get_workflow_handle(i, result_type=InboundMailResult).result()
                            for i in ids
                        )
                    )
                    handled_s = time.perf_counter() - start
            notices = sum(
                1
                for n in services.store.notices.open_notices(limit=count + 100)
                if n.kind == "unmatched_email" and n.source == "imap"
            )
        finally:
            services.close()
        return {
            "emails": count,
            "append_s": round(append_s, 3),
            "poll_s": round(poll_s, 3),
            "all_handled_s": round(handled_s, 3),
            "emails_per_s": round(count / handled_s, 1) if handled_s else None,
            "runs_started": len(polled.started),
            "outcomes": sorted({r.outcome for r in results}),
            "left_unseen": dovecot.unseen(),
            "notices_opened": notices,
        }
    finally:
        dovecot.stop()


def main() -> None:
    from inbox import stack

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=100, help="emails in the mailbox")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as tmp, stack(Path(tmp)) as settings:
        result = asyncio.run(scenario(opts.emails, settings))
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
    print(
        f"{report['emails']} emails appended in {report['append_s']} s; one poll took "
        f"{report['poll_s']} s ({report['runs_started']} runs started); every email handled "
        f"after {report['all_handled_s']} s ({report['emails_per_s']} emails/s); outcomes "
        f"{','.join(report['outcomes'])}; left unseen {report['left_unseen']}; notices opened "
        f"{report['notices_opened']}"
    )


if __name__ == "__main__":
    main()
