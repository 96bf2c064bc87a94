"""``aios review``: attention and outcome metrics from a seeded event log with known answers,
the CLI's bad input, the console page, and the weekly digest (once per ISO week) over SMTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    WorkflowFailureError,
)
from temporalio.worker import Worker

from aios.config import Settings
from aios.kernel.store import KernelStore
from aios.operations.review import compute_review, digest_text, iso_week_window
from aios.operations.review_digest import REVIEW_SCHEDULE_ID, ensure_review_schedule
from aios.serve.auth import set_password
from aios.workers.services import Services
from aios.workflows.proposal import ProposalInput, ProposalWorkflow
from aios.workflows.review import ReviewDigestInput, ReviewDigestWorkflow
from tests.conftest import RecordingSmtp, subprocess_env
from tests.fresh_db import fresh_database
from tests.helpers import save_history

# The reviewed window: ISO week 2026-W02, Monday 5 to Monday 12 January 2026 (UTC).
WEEK = iso_week_window(2026, 2)


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


class Seed:
    """Writes rows straight into a fresh kernel, each at a chosen time."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def event(
        self,
        kind: str,
        when: datetime,
        *,
        wf: str,
        run: str = "r1",
        entity: str | None = None,
        **payload: Any,
    ) -> None:
        self.conn.execute(
            "INSERT INTO events (event_key, workflow_id, run_id, process, kind, entity, payload,"
            " occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (uuid.uuid4().hex, wf, run, wf.split("/", 1)[0], kind, entity, Jsonb(payload), when),
        )

    def gate(
        self,
        wf: str,
        gate: str,
        requested: datetime,
        decided: datetime | None,
        decision: str | None,
        waited: float,
        agent: str | None,
    ) -> None:
        key = f"gate/{gate}"
        extra = {"drafted_by": agent} if agent else {}
        self.event("gate.requested", requested, wf=wf, gate=gate, gate_key=key, **extra)
        if decided is not None and decision is not None:
            self.event(
                "gate.decided",
                decided,
                wf=wf,
                gate=gate,
                gate_key=key,
                decision=decision,
                waited_seconds=waited,
            )

    def call(self, wf: str, run: str, cost: str, when: datetime) -> None:
        self.conn.execute(
            "INSERT INTO model_calls (call_key, agent, prompt_version, workflow_id, run_id,"
            " process, tier, provider, model, input_tokens, output_tokens, cost_usd, outcome,"
            " created_at) VALUES (%s, 'welcome', 'v1', %s, %s, %s, 'fast', 'openai', 'm',"
            " 10, 10, %s, 'accepted', %s)",
            (uuid.uuid4().hex, wf, run, wf.split("/", 1)[0], Decimal(cost), when),
        )

    def proposal(self, pid: str, discounts: list[str]) -> None:
        self.conn.execute(
            "INSERT INTO proposals (proposal_id, client_key, workflow_id, scope, currency)"
            " VALUES (%s, 'acme', %s, 'work', 'USD')",
            (pid, f"proposal/{pid}"),
        )
        for n, pct in enumerate(discounts, 1):
            self.conn.execute(
                "INSERT INTO proposal_versions (id, proposal_id, version, source, author,"
                " currency, line_items, subtotal_minor, discount_pct, total_minor, terms)"
                " VALUES (%s, %s, %s, 'agent', 'a', 'USD', '[]', 100000, %s, 90000, 't')",
                (f"{pid}-v{n}", pid, n, Decimal(pct)),
            )

    def invoice(
        self,
        iid: str,
        number: int,
        status: str,
        total: int,
        *,
        currency: str = "USD",
        issued: datetime,
        due: datetime,
        paid: datetime | None = None,
        voided: datetime | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO invoices (invoice_id, number, client_key, workflow_id, currency,"
            " line_items, total_minor, status, issued_at, due_at, paid_at, voided_at)"
            " VALUES (%s, %s, 'acme', %s, %s, '[]', %s, %s, %s, %s, %s, %s)",
            (iid, number, f"billing/{iid}", currency, total, status, issued, due, paid, voided),
        )

    def payment(self, iid: str, amount: int, when: datetime) -> None:
        self.conn.execute(
            "INSERT INTO ledger_entries (entry_key, invoice_id, kind, amount_minor, currency,"
            " occurred_at) VALUES (%s, %s, 'payment', %s, 'USD', %s)",
            (uuid.uuid4().hex, iid, amount, when),
        )

    def outbox(self, key: str, status: str, started: datetime | None) -> None:
        self.conn.execute(
            "INSERT INTO outbox (idempotency_key, connector, operation, status, attempts,"
            " started_at) VALUES (%s, 'email', 'send_welcome', %s, 1, %s)",
            (key, status, started),
        )


def seed(url: str) -> None:
    """The known event log. Comments give each figure it should produce for WEEK."""
    with psycopg.connect(url) as conn:
        s = Seed(conn)
        conn.execute(
            "INSERT INTO clients (client_key, name, email)"
            " VALUES ('acme', 'Acme', 'a@acme.example')"
        )
        # Gates. welcome: 4 decisions in the week, waits 60/120/180/600 s (median 150, p90 474);
        # approve, edit, reject, approve: 2 overrides of 4 for agent "welcome".
        s.gate("onboarding/a", "welcome", at(5, 8), at(5, 9), "approve", 60, "welcome")
        s.gate("onboarding/b", "welcome", at(5, 8), at(6, 9), "edit", 120, "welcome")
        s.gate("onboarding/c", "welcome", at(4, 8), at(7, 9), "reject", 180, "welcome")  # asked
        s.gate("onboarding/d", "welcome", at(7, 8), at(8, 9), "approve", 600, "welcome")
        # proposal: 1 decision, 3600 s, approved: agent "proposal" 0 of 1 overridden.
        s.gate("proposal/p1", "proposal", at(6, 8), at(6, 9), "approve", 3600, "proposal")
        # budget: no agent drafted it (not in overrides), rejected after 30 s.
        s.gate("onboarding/e", "budget", at(9, 8), at(9, 9), "reject", 30, None)
        # Outside the week: a decision at the very end (until is exclusive) and one before.
        s.gate("onboarding/f", "welcome", at(11, 23), at(12, 0), "reject", 999, "welcome")
        s.gate("onboarding/g", "welcome", at(3, 8), at(4, 23, 59), "edit", 999, "welcome")
        # One gate opened and expired in the week.
        s.gate("onboarding/h", "welcome", at(10, 8), None, None, 0, "welcome")
        s.event("gate.expired", at(10, 20), wf="onboarding/h", gate="welcome")
        # Gates opened in the week: a b d p1 e f(11th) h = 7 (c on the 4th, g on the 3rd).
        # Reminders: 3 in the week, 1 after.
        s.event("gate.reminded", at(5, 10), wf="onboarding/a")
        s.event("gate.reminded", at(5, 11), wf="onboarding/b")
        s.event("gate.reminded", at(7, 10), wf="onboarding/d")
        s.event("gate.reminded", at(12, 1), wf="onboarding/f")
        # Policy: 3 auto-approved, 1 needed approval in the week (0.75); one auto before it.
        s.event("proposal.auto_approved", at(6), wf="proposal/p2")
        s.event("proposal.auto_approved", at(7), wf="proposal/p3")
        s.event("invoice.auto_approved", at(8), wf="billing/inv2")
        s.event("proposal.needs_approval", at(6), wf="proposal/p1")
        s.event("invoice.auto_approved", at(2), wf="billing/inv1")
        # Proposals: sent p1 (twice), p2, p3 = 3 distinct; p1 accepted at v2 (10.00% off),
        # p2 accepted at v1 (5.00%), p3 declined: win rate 2/3, average discount 7.50.
        s.proposal("p1", ["0", "10"])
        s.proposal("p2", ["5"])
        s.proposal("p3", ["20"])
        s.proposal("p4", ["50"])
        for pid, day in (("p1", 6), ("p1", 7), ("p2", 6), ("p3", 7)):
            s.event("proposal.sent", at(day), wf=f"proposal/{pid}", entity=f"proposal:{pid}")
        s.event("proposal.accepted", at(8), wf="proposal/p1", entity="proposal:p1", version=2)
        s.event("proposal.accepted", at(9), wf="proposal/p2", entity="proposal:p2", version=1)
        s.event("proposal.declined", at(9), wf="proposal/p3", entity="proposal:p3", version=1)
        s.event("proposal.accepted", at(2), wf="proposal/p4", entity="proposal:p4", version=1)
        # Invoices: inv1 issued 1 Jan paid 6 Jan (5 days), inv2 issued 5 Jan 12:00 paid 8 Jan 00:00
        # (2.5 days): DSO 3.75. Issued events in the week: inv2, inv3, inv4; paid: inv1, inv2.
        s.invoice("inv1", 1, "paid", 10000, issued=at(1), due=at(15), paid=at(6))
        s.invoice("inv2", 2, "paid", 10000, issued=at(5, 12), due=at(19), paid=at(8, 0))
        s.event("invoice.issued", at(5, 12), wf="billing/inv2", entity="invoice:inv2")
        s.event("invoice.paid", at(6), wf="billing/inv1", entity="invoice:inv1")
        s.event("invoice.paid", at(8, 0), wf="billing/inv2", entity="invoice:inv2")
        # Overdue at the week's end: inv3 (due 10 Jan) 100000 less 30000 paid on the 9th;
        # inv7 (due 10 Jan) paid only on the 15th: 20000. USD 2 invoices, 90000.
        # inv5 EUR 50000 overdue since December; inv6 voided; inv4 not due yet.
        s.invoice("inv3", 3, "issued", 100000, issued=at(6), due=at(10))
        s.payment("inv3", 30000, at(9))
        s.invoice("inv4", 4, "issued", 40000, issued=at(7), due=at(20))
        s.event("invoice.issued", at(6), wf="billing/inv3", entity="invoice:inv3")
        s.event("invoice.issued", at(7), wf="billing/inv4", entity="invoice:inv4")
        december = datetime(2025, 12, 1, tzinfo=UTC)
        s.invoice(
            "inv5",
            5,
            "issued",
            50000,
            currency="EUR",
            issued=december,
            due=at(1) - timedelta(days=17),
        )
        s.invoice(
            "inv6",
            6,
            "void",
            70000,
            issued=december,
            due=december + timedelta(days=14),
            voided=december + timedelta(days=19),
        )
        s.invoice("inv7", 7, "paid", 20000, issued=at(3), due=at(10), paid=at(15))
        s.payment("inv7", 20000, at(15))
        # Model spend in the week: onboarding 2 calls $0.03, proposal 1 call $0.10.
        s.call("onboarding/a", "r1", "0.010000", at(5))
        s.call("onboarding/b", "r1", "0.020000", at(6))
        s.call("onboarding/b", "r1", "0.005000", at(4))  # before the week, same run
        s.call("proposal/p1", "r1", "0.100000", at(6))
        # Runs that ended normally: onboarding a and b ($0.035 over 2 = $0.0175), proposals
        # p1 p2 p3 ($0.10 over 3), billing inv1 ($0 over 1). c failed: not completed.
        s.event("onboarding.completed", at(7), wf="onboarding/a", entity="client:a")
        s.event("onboarding.completed", at(8), wf="onboarding/b", entity="client:b")
        s.event("billing.paid", at(6), wf="billing/inv1", entity="invoice:inv1")
        # Failures: SmtpRejected 2, unrecorded 1; one more before the week.
        s.event("onboarding.failed", at(7), wf="onboarding/c", error_class="SmtpRejected")
        s.event("proposal.failed", at(8), wf="proposal/p5", error_class="SmtpRejected")
        s.event("billing.failed", at(9), wf="billing/inv8", error="old run")
        s.event("onboarding.failed", at(4), wf="onboarding/x", error_class="InvalidInput")
        # Outbox: one effect in doubt (started on the 8th, never finished).
        s.outbox("k-doubt", "pending", at(8))
        s.outbox("k-never-started", "pending", None)
        s.outbox("k-done", "done", at(8))
        s.outbox("k-later", "pending", at(13))


@pytest.fixture(scope="module")
def seeded() -> Iterator[str]:
    with fresh_database() as url:
        seed(url)
        yield url


def test_review_of_a_seeded_week_gives_the_known_answers(seeded: str) -> None:
    store = KernelStore(seeded, max_size=1)
    try:
        review = compute_review(store, WEEK)
    finally:
        store.close()
    assert (review.gates_decided, review.gates_expired) == (6, 1)
    waits = {w.gate: (w.decided, w.median_seconds, w.p90_seconds) for w in review.gate_waits}
    assert waits == {
        "budget": (1, 30.0, 30.0),
        "proposal": (1, 3600.0, 3600.0),
        "welcome": (4, 150.0, 474.0),
    }
    assert (review.gates_opened, review.reminders, review.interruptions) == (7, 3, 10)
    assert review.interruptions_per_day == pytest.approx(10 / 7, abs=1e-4)
    days = {d.day.day: (d.gates_opened, d.reminders) for d in review.by_day}
    assert days == {5: (2, 2), 6: (1, 0), 7: (1, 1), 8: (0, 0), 9: (1, 0), 10: (1, 0), 11: (1, 0)}
    overrides = {
        o.agent: (o.decisions, o.edits, o.rejections, o.override_rate) for o in review.overrides
    }
    assert overrides == {"welcome": (4, 1, 1, 0.5), "proposal": (1, 0, 0, 0.0)}
    assert (review.auto_approved, review.needed_approval, review.auto_approval_rate) == (3, 1, 0.75)
    assert (review.proposals_sent, review.proposals_accepted, review.proposals_declined) == (
        3,
        2,
        1,
    )
    assert review.win_rate == pytest.approx(0.6667)
    assert review.average_discount_pct == Decimal("7.50")
    assert (review.invoices_issued, review.invoices_paid) == (3, 2)
    assert review.days_sales_outstanding == 3.75
    assert [(o.currency, o.invoices, o.amount_minor) for o in review.overdue] == [
        ("EUR", 1, 50000),
        ("USD", 2, 90000),
    ]
    spend = {
        s.process: (s.calls, s.cost_usd, s.completed_runs, s.cost_per_completed_run_usd)
        for s in review.spend
    }
    assert spend == {
        "billing": (0, Decimal(0), 1, Decimal("0.000000")),
        "onboarding": (2, Decimal("0.030000"), 2, Decimal("0.017500")),
        "proposal": (1, Decimal("0.100000"), 3, Decimal("0.033333")),
    }
    assert review.model_spend_usd == Decimal("0.13")
    assert [(f.error_class, f.runs) for f in review.failures] == [
        ("SmtpRejected", 2),
        ("unrecorded", 1),
    ]
    assert review.effects_in_doubt == 1
    text = digest_text(review)
    assert "Wait at welcome: median 2.5 min, p90 7.9 min (4 decided)" in text
    assert "Overdue: EUR 500.00 (1), USD 900.00 (2)" in text


def test_an_empty_week_has_no_rates_rather_than_zero_division(seeded: str) -> None:
    store = KernelStore(seeded, max_size=1)
    try:
        review = compute_review(store, iso_week_window(2025, 30))
    finally:
        store.close()
    assert review.gates_decided == 0 and review.gate_waits == []
    assert review.win_rate is None and review.auto_approval_rate is None
    assert review.days_sales_outstanding is None and review.average_discount_pct is None
    assert len(review.by_day) == 7 and review.interruptions_per_day == 0


def aios(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {"AIOS_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "AIOS_STATE_DIR": "/tmp/aios-none"}
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_review_json_and_bad_input(seeded: str) -> None:
    done = aios("review", "--since", "2026-01-05", "--json", url=seeded)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    # Since 5 January: the week's 6 decisions and the one at midnight on the 12th.
    assert doc["gates_decided"] == 7
    assert doc["window"]["label"] == "since 2026-01-05"
    shown = aios("review", "--since", "2026-01-05", url=seeded)
    assert shown.returncode == 0, shown.stderr
    assert "Gates decided: 7 (expired: 1)" in shown.stdout
    assert "Overrides of welcome: 60% (1 edited, 2 rejected of 5)" in shown.stdout
    both = aios("review", "--week", "--month", url=seeded)
    assert both.returncode == 1
    assert "choose one of --week, --month and --since" in both.stderr
    bad = aios("review", "--since", "last tuesday", url=seeded)
    assert bad.returncode == 1
    assert "--since: 'last tuesday' is not a date (YYYY-MM-DD)" in bad.stderr


async def test_console_review_page_shows_the_metrics_and_refuses_a_bad_date(
    seeded: str, base_settings: Settings, client: Client
) -> None:
    from tests.test_serve import PASSWORD, http_client, sign_in

    settings = base_settings.model_copy(
        update={"operator_token": None, "operator_name": f"Rev {uuid.uuid4().hex[:6]}"}
    )
    store = KernelStore(seeded, max_size=2)
    try:
        set_password(store.operators, settings.operator_name, PASSWORD)
        async with http_client(settings, client, store) as http:
            anonymous = await http.get("/review")
            assert anonymous.status_code == 303
            assert anonymous.headers["location"] == "/signin?next=/review"
            signed = await sign_in(http, settings.operator_name, PASSWORD)
            assert signed.status_code == 303, signed.text
            page = await http.get("/review", params={"since": "2026-01-05"})
            assert page.status_code == 200
            # Since 5 January: the week's 6 decisions and the one at midnight on the 12th.
            assert "<tr><th>Gates decided</th><td>7 (expired: 1)</td></tr>" in page.text
            assert "EUR 500.00 (1)" in page.text
            bad = await http.get("/review", params={"since": "tomorrow"})
            assert bad.status_code == 400
            assert "--since: &#39;tomorrow&#39; is not a date (YYYY-MM-DD)" in bad.text
    finally:
        store.close()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``aios`` as the operator runs it, against this test's stack and task queue."""
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(settings),
        timeout=60,
    )


async def _recent_run(handle: ScheduleHandle, known: int) -> str:
    """The workflow id of the schedule's newest action, once it has more than ``known``."""
    for _ in range(300):
        actions = (await handle.describe()).info.recent_actions
        if len(actions) > known:
            action = actions[-1].action
            assert isinstance(action, ScheduleActionExecutionStartWorkflow)
            return action.workflow_id
        await asyncio.sleep(0.1)
    raise AssertionError("the schedule started no run")


async def test_weekly_digest_emails_the_operator_once_per_iso_week(
    client: Client, settings: Settings, worker: Worker, smtp: RecordingSmtp
) -> None:
    assert await ensure_review_schedule(client, settings) == "created"
    handle = client.get_schedule_handle(REVIEW_SCHEDULE_ID)
    try:
        updated = await asyncio.to_thread(cli, settings, "review", "schedule")
        assert updated.returncode == 0, updated.stderr
        assert f"Schedule {REVIEW_SCHEDULE_ID} updated: Mondays 07:00 (UTC)" in updated.stdout
        described = await handle.describe()
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "ReviewDigestWorkflow"
        assert action.task_queue == settings.task_queue
        [calendar] = described.schedule.spec.calendars
        assert [(r.start, r.end) for r in calendar.day_of_week] == [(1, 1)]  # Monday
        assert [(r.start, r.end) for r in calendar.hour] == [(7, 7)]

        # Two runs for the same ISO week (the schedule triggered twice): one email.
        runs, results = [], []
        for _ in range(2):  # one after the other: the second finds the week's email sent
            run = await client.start_workflow(
                ReviewDigestWorkflow.run,
                ReviewDigestInput(year=2026, week=2),
                id=f"review/test-{uuid.uuid4().hex[:8]}",
                task_queue=settings.task_queue,
            )
            runs.append(run)
            results.append(await run.result())
        await save_history(runs[0], "review_digest_sent")
        assert [r.digest.sent_now for r in results] == [True, False]
        week2 = [
            m
            for m in smtp.to(settings.operator_email)
            if "AiOs weekly review 2026-W02" in m["Subject"]
        ]
        assert len(week2) == 1
        body = bytes(week2[0].get_payload(decode=True)).decode()
        assert body.startswith("AiOs review, 2026-W02 (2026-01-05 00:00 to 2026-01-12 00:00 UTC)")
        assert "Gates decided: 0 (expired: 0)" in body  # nothing happened that week here

        # The schedule's own run reviews the ISO week before the one it starts in.
        before = len((await handle.describe()).info.recent_actions)
        triggered = await asyncio.to_thread(cli, settings, "review", "digest")
        assert triggered.returncode == 0, triggered.stderr
        started = await _recent_run(handle, before)
        result = await client.get_workflow_handle(started).result()
        year, week, _ = (datetime.now(UTC) - timedelta(days=7)).isocalendar()
        label = f"{year}-W{week:02d}"
        assert result["digest"]["week"] == label
        subject = f"AiOs weekly review {label}"
        assert len([m for m in smtp.to(settings.operator_email) if subject in m["Subject"]]) == 1
    finally:
        await handle.delete()


async def test_a_failed_run_records_its_error_class_for_the_review(
    client: Client, settings: Settings, worker: Worker, services: Services
) -> None:
    window = iso_week_window(*datetime.now(UTC).isocalendar()[:2])

    def invalid_input_failures() -> int:
        found = compute_review(services.store, window).failures
        return sum(f.runs for f in found if f.error_class == "InvalidInput")

    before = invalid_input_failures()  # the session's other tests may have failed runs too
    # A proposal for a client the kernel does not know fails at its first step.
    proposal_id = f"ghost-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        ProposalWorkflow.run,
        ProposalInput(
            proposal_id=proposal_id,
            client_key=f"ghost-{uuid.uuid4().hex[:8]}",
            scope="A website.",
            currency="USD",
            provider=settings.payment_provider,
            policy=settings.proposal_policy,
            billing_policy=settings.billing_policy,
            gate_policy=settings.gate_policy,
        ),
        id=f"proposal/{proposal_id}",
        task_queue=settings.task_queue,
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    [failed] = [e for e in services.store.events.for_run(handle.id) if e.kind == "proposal.failed"]
    assert failed.payload["error_class"] == "InvalidInput"
    assert invalid_input_failures() == before + 1
