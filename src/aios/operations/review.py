"""What the system cost the operator's attention, and what it brought in: ``aios review``.

Every figure is one SQL query over the event log and the ledgers (``events``, ``model_calls``,
``invoices`` with ``ledger_entries``, ``proposal_versions``, ``outbox``), for a window
``[since, until)``. The definitions, as the README documents them:

- **gates decided**: ``gate.decided`` events in the window (expired gates are counted apart).
- **wait per gate**: ``waited_seconds`` of those decisions, per gate name; the median and the
  90th percentile are PostgreSQL's ``percentile_cont`` (linear interpolation between the two
  nearest ranks: with waits 60, 120, 180 and 600 s the median is 150 s, the p90 474 s).
- **interruptions**: gates opened (``gate.requested``) plus reminders (``gate.reminded``);
  per day is that total over the window's length in days.
- **override rate per agent**: for decisions on gates an agent drafted (``drafted_by`` of the
  gate's ``gate.requested``), edits and rejections over all its decisions.
- **auto-approval rate**: ``*.auto_approved`` over ``*.auto_approved`` plus
  ``*.needs_approval`` (proposals and invoices the policy checked in the window).
- **proposals**: sent (distinct proposals with a ``proposal.sent``), accepted and declined
  (their end events); win rate is accepted over accepted plus declined; the average discount
  is that of the accepted versions (``proposal_versions.discount_pct``).
- **invoices**: issued (``invoice.issued``) and paid (``invoice.paid``) in the window; days
  sales outstanding is the mean of ``paid_at - issued_at`` in days over invoices paid in the
  window; overdue is, per currency, the open balance (total less payments and credit notes
  recorded before ``until``) of invoices issued, not paid and not void at ``until`` whose due
  date is before it.
- **model spend**: ``model_calls.cost_usd`` per process in the window; per completed run is the
  whole model spend of the runs that ended normally in the window (an end event
  ``<process>.<outcome>`` other than ``failed`` or ``cancelled``) over how many there were.
- **failures by error class**: ``<process>.failed`` end events in the window by their
  ``error_class`` (the Temporal error type, else the exception's class; ``unrecorded`` for
  runs that ended before it was recorded).
- **effects in doubt**: outbox rows started before ``until`` (and over five minutes ago) and
  never finished.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from aios.errors import InvalidInput
from aios.kernel.money import format_amount

if TYPE_CHECKING:
    from aios.kernel.store import KernelStore

__all__ = [
    "AgentOverrides",
    "DayCount",
    "FailureClass",
    "GateWait",
    "InDoubtCount",
    "OverdueTotal",
    "ProcessSpend",
    "Review",
    "ReviewWindow",
    "compute_review",
    "digest_text",
    "iso_week_window",
    "review_window",
]

# Outcomes of a run that ended normally (Process.end); failed and cancelled are the others.
ENDED_NORMALLY = ("completed", "accepted", "declined", "paid", "rejected", "expired")
IN_DOUBT_AFTER = timedelta(minutes=5)


class ReviewWindow(BaseModel):
    """The reviewed period ``[since, until)``, in UTC, and how it is named."""

    since: datetime
    until: datetime
    label: str

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400


def review_window(
    *,
    week: bool = False,
    month: bool = False,
    since: str | None = None,
    now: datetime | None = None,
) -> ReviewWindow:
    """The last 7 days (default, ``week``), the last 30 days (``month``), or from the date
    ``since`` (YYYY-MM-DD, UTC midnight) until now. Asking for two at once is an error."""
    now = now or datetime.now(UTC)
    if sum((week, month, since is not None)) > 1:
        raise InvalidInput("review: choose one of --week, --month and --since")
    if since is not None:
        try:
            start = datetime.combine(date.fromisoformat(since.strip()), time(), tzinfo=UTC)
        except ValueError:
            raise InvalidInput(f"--since: {since!r} is not a date (YYYY-MM-DD)") from None
        if start >= now:
            raise InvalidInput(f"--since: {since} is not in the past")
        return ReviewWindow(since=start, until=now, label=f"since {start:%Y-%m-%d}")
    if month:
        return ReviewWindow(since=now - timedelta(days=30), until=now, label="last 30 days")
    return ReviewWindow(since=now - timedelta(days=7), until=now, label="last 7 days")


def iso_week_window(year: int, week: int) -> ReviewWindow:
    """ISO week ``week`` of ``year``: Monday 00:00 UTC to the next Monday."""
    start = datetime.combine(date.fromisocalendar(year, week, 1), time(), tzinfo=UTC)
    return ReviewWindow(since=start, until=start + timedelta(days=7), label=f"{year}-W{week:02d}")


class GateWait(BaseModel):
    gate: str
    decided: int
    median_seconds: float
    p90_seconds: float


class DayCount(BaseModel):
    day: date
    gates_opened: int
    reminders: int


class AgentOverrides(BaseModel):
    agent: str
    decisions: int
    edits: int
    rejections: int
    override_rate: float


class OverdueTotal(BaseModel):
    currency: str
    invoices: int
    amount_minor: int

    @property
    def amount(self) -> str:
        return format_amount(self.amount_minor, self.currency)


class ProcessSpend(BaseModel):
    process: str
    calls: int
    cost_usd: Decimal
    completed_runs: int
    cost_per_completed_run_usd: Decimal | None


class FailureClass(BaseModel):
    error_class: str
    runs: int


class InDoubtCount(BaseModel):
    connector: str
    operation: str
    effects: int


class Review(BaseModel):
    """Attention and outcome metrics for one window (definitions: the module docstring)."""

    window: ReviewWindow
    gates_decided: int = 0
    gates_expired: int = 0
    gate_waits: list[GateWait] = Field(default_factory=list)
    gates_opened: int = 0
    reminders: int = 0
    interruptions: int = 0
    interruptions_per_day: float = 0.0
    by_day: list[DayCount] = Field(default_factory=list)
    overrides: list[AgentOverrides] = Field(default_factory=list)
    auto_approved: int = 0
    needed_approval: int = 0
    auto_approval_rate: float | None = None
    proposals_sent: int = 0
    proposals_accepted: int = 0
    proposals_declined: int = 0
    win_rate: float | None = None
    average_discount_pct: Decimal | None = None
    invoices_issued: int = 0
    invoices_paid: int = 0
    days_sales_outstanding: float | None = None
    overdue: list[OverdueTotal] = Field(default_factory=list)
    model_spend_usd: Decimal = Decimal(0)
    spend: list[ProcessSpend] = Field(default_factory=list)
    failures: list[FailureClass] = Field(default_factory=list)
    effects_in_doubt: int = 0
    in_doubt: list[InDoubtCount] = Field(default_factory=list)


# --- the SQL -------------------------------------------------------------------------------

_GATES = """
SELECT count(*) FILTER (WHERE kind = 'gate.decided')   AS decided,
       count(*) FILTER (WHERE kind = 'gate.expired')   AS expired,
       count(*) FILTER (WHERE kind = 'gate.requested') AS opened,
       count(*) FILTER (WHERE kind = 'gate.reminded')  AS reminders
FROM events
WHERE kind IN ('gate.decided', 'gate.expired', 'gate.requested', 'gate.reminded')
  AND occurred_at >= %(since)s AND occurred_at < %(until)s
"""

_GATE_WAITS = """
SELECT payload->>'gate' AS gate,
       count(*) AS decided,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (payload->>'waited_seconds')::float8)
           AS median_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY (payload->>'waited_seconds')::float8)
           AS p90_seconds
FROM events
WHERE kind = 'gate.decided' AND occurred_at >= %(since)s AND occurred_at < %(until)s
  AND payload ? 'waited_seconds'
GROUP BY 1
ORDER BY 1
"""

_BY_DAY = """
SELECT d::date AS day,
       count(e.id) FILTER (WHERE e.kind = 'gate.requested') AS gates_opened,
       count(e.id) FILTER (WHERE e.kind = 'gate.reminded')  AS reminders
FROM generate_series(
         date_trunc('day', %(since)s::timestamptz AT TIME ZONE 'UTC'),
         %(until)s::timestamptz AT TIME ZONE 'UTC' - interval '1 microsecond',
         interval '1 day') AS d
LEFT JOIN events e
       ON e.kind IN ('gate.requested', 'gate.reminded')
      AND e.occurred_at >= %(since)s AND e.occurred_at < %(until)s
      AND (e.occurred_at AT TIME ZONE 'UTC')::date = d::date
GROUP BY 1
ORDER BY 1
"""

_OVERRIDES = """
SELECT r.payload->>'drafted_by' AS agent,
       count(*) AS decisions,
       count(*) FILTER (WHERE d.payload->>'decision' = 'edit')   AS edits,
       count(*) FILTER (WHERE d.payload->>'decision' = 'reject') AS rejections
FROM events d
JOIN LATERAL (  -- the gate's request, found through the run's index (events_workflow)
    SELECT q.payload FROM events q
    WHERE q.workflow_id = d.workflow_id AND q.run_id = d.run_id AND q.kind = 'gate.requested'
      AND q.payload->>'gate_key' = d.payload->>'gate_key'
    ORDER BY q.id
    LIMIT 1
) r ON true
WHERE d.kind = 'gate.decided' AND d.occurred_at >= %(since)s AND d.occurred_at < %(until)s
  AND coalesce(r.payload->>'drafted_by', '') <> ''
GROUP BY 1
ORDER BY 1
"""

_POLICY = """
SELECT count(*) FILTER (WHERE kind LIKE '%%.auto_approved')  AS auto_approved,
       count(*) FILTER (WHERE kind LIKE '%%.needs_approval') AS needed_approval
FROM events
WHERE kind IN ('proposal.auto_approved', 'invoice.auto_approved',
               'proposal.needs_approval', 'invoice.needs_approval')
  AND occurred_at >= %(since)s AND occurred_at < %(until)s
"""

_PROPOSALS = """
WITH ended AS (
    SELECT e.kind, substr(e.entity, length('proposal:') + 1) AS proposal_id,
           (e.payload->>'version')::int AS version
    FROM events e
    WHERE e.kind IN ('proposal.accepted', 'proposal.declined')
      AND e.process = 'proposal' AND e.entity LIKE 'proposal:%%'
      AND e.occurred_at >= %(since)s AND e.occurred_at < %(until)s
)
SELECT (SELECT count(DISTINCT entity) FROM events
        WHERE kind = 'proposal.sent'
          AND occurred_at >= %(since)s AND occurred_at < %(until)s) AS sent,
       count(*) FILTER (WHERE kind = 'proposal.accepted') AS accepted,
       count(*) FILTER (WHERE kind = 'proposal.declined') AS declined,
       round(avg(v.discount_pct) FILTER (WHERE kind = 'proposal.accepted'), 2) AS discount
FROM ended
LEFT JOIN proposal_versions v
       ON v.proposal_id = ended.proposal_id AND v.version = ended.version
"""

_INVOICES = """
SELECT (SELECT count(*) FROM events WHERE kind = 'invoice.issued'
        AND occurred_at >= %(since)s AND occurred_at < %(until)s) AS issued,
       (SELECT count(*) FROM events WHERE kind = 'invoice.paid'
        AND occurred_at >= %(since)s AND occurred_at < %(until)s) AS paid,
       (SELECT avg(extract(epoch FROM paid_at - issued_at) / 86400) FROM invoices
        WHERE paid_at >= %(since)s AND paid_at < %(until)s AND issued_at IS NOT NULL) AS dso
"""

_OVERDUE = """
SELECT i.currency, count(*) AS invoices,
       sum(i.total_minor - coalesce((
           SELECT sum(l.amount_minor) FROM ledger_entries l
           WHERE l.invoice_id = i.invoice_id AND l.occurred_at < %(until)s), 0)) AS amount_minor
FROM invoices i
WHERE i.issued_at < %(until)s AND i.due_at < %(until)s
  AND (i.paid_at IS NULL OR i.paid_at >= %(until)s)
  AND (i.voided_at IS NULL OR i.voided_at >= %(until)s)
GROUP BY 1
ORDER BY 1
"""

_SPEND = """
WITH spent AS (
    SELECT process, count(*) AS calls, sum(cost_usd) AS cost_usd
    FROM model_calls
    WHERE created_at >= %(since)s AND created_at < %(until)s
    GROUP BY 1
), completed AS (
    SELECT e.process, e.workflow_id, e.run_id
    FROM events e
    WHERE e.kind = e.process || '.' || split_part(e.kind, '.', 2)
      AND split_part(e.kind, '.', 2) = ANY(%(ended)s::text[])
      AND e.occurred_at >= %(since)s AND e.occurred_at < %(until)s
    GROUP BY 1, 2, 3
), per_run AS (
    SELECT c.process, count(*) AS runs,
           sum(coalesce((SELECT sum(m.cost_usd) FROM model_calls m
                         WHERE m.workflow_id = c.workflow_id AND m.run_id = c.run_id), 0))
               AS cost_usd
    FROM completed c
    GROUP BY 1
)
SELECT coalesce(s.process, p.process) AS process,
       coalesce(s.calls, 0) AS calls,
       coalesce(s.cost_usd, 0)::numeric(14, 6) AS cost_usd,
       coalesce(p.runs, 0) AS completed_runs,
       round(p.cost_usd / nullif(p.runs, 0), 6) AS cost_per_completed_run_usd
FROM spent s
FULL JOIN per_run p ON p.process = s.process
ORDER BY 1
"""

_FAILURES = """
SELECT coalesce(nullif(payload->>'error_class', ''), 'unrecorded') AS error_class,
       count(*) AS runs
FROM events
WHERE kind = process || '.failed'
  AND occurred_at >= %(since)s AND occurred_at < %(until)s
GROUP BY 1
ORDER BY 2 DESC, 1
"""

_IN_DOUBT = """
SELECT connector, operation, count(*) AS effects
FROM outbox
WHERE status = 'pending' AND started_at IS NOT NULL
  AND started_at < least(%(until)s::timestamptz, now()) - %(in_doubt_after)s
GROUP BY 1, 2
ORDER BY 1, 2
"""


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute_review(store: KernelStore, window: ReviewWindow) -> Review:
    """Every metric for ``window``, read in one repeatable-read transaction."""
    params: dict[str, Any] = {
        "since": window.since,
        "until": window.until,
        "ended": list(ENDED_NORMALLY),
        "in_doubt_after": IN_DOUBT_AFTER,
    }
    with store.db.transaction() as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")

        def one(sql: str) -> dict[str, Any]:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return row

        def rows(sql: str) -> list[dict[str, Any]]:
            return conn.execute(sql, params).fetchall()

        gates = one(_GATES)
        waits = rows(_GATE_WAITS)
        by_day = rows(_BY_DAY)
        overrides = rows(_OVERRIDES)
        policy = one(_POLICY)
        proposals = one(_PROPOSALS)
        invoices = one(_INVOICES)
        overdue = rows(_OVERDUE)
        spend = rows(_SPEND)
        failures = rows(_FAILURES)
        in_doubt = rows(_IN_DOUBT)
    interruptions = gates["opened"] + gates["reminders"]
    accepted, declined = proposals["accepted"], proposals["declined"]
    dso = invoices["dso"]
    return Review(
        window=window,
        gates_decided=gates["decided"],
        gates_expired=gates["expired"],
        gate_waits=[
            GateWait(
                gate=r["gate"],
                decided=r["decided"],
                median_seconds=round(r["median_seconds"], 3),
                p90_seconds=round(r["p90_seconds"], 3),
            )
            for r in waits
        ],
        gates_opened=gates["opened"],
        reminders=gates["reminders"],
        interruptions=interruptions,
        interruptions_per_day=round(interruptions / window.days, 4) if window.days else 0.0,
        by_day=[DayCount.model_validate(r) for r in by_day],
        overrides=[
            AgentOverrides(
                **r, override_rate=_rate(r["edits"] + r["rejections"], r["decisions"]) or 0.0
            )
            for r in overrides
        ],
        auto_approved=policy["auto_approved"],
        needed_approval=policy["needed_approval"],
        auto_approval_rate=_rate(
            policy["auto_approved"], policy["auto_approved"] + policy["needed_approval"]
        ),
        proposals_sent=proposals["sent"],
        proposals_accepted=accepted,
        proposals_declined=declined,
        win_rate=_rate(accepted, accepted + declined),
        average_discount_pct=proposals["discount"],
        invoices_issued=invoices["issued"],
        invoices_paid=invoices["paid"],
        days_sales_outstanding=round(float(dso), 2) if dso is not None else None,
        overdue=[OverdueTotal.model_validate(r) for r in overdue],
        model_spend_usd=sum((r["cost_usd"] for r in spend), Decimal(0)),
        spend=[ProcessSpend.model_validate(r) for r in spend],
        failures=[FailureClass.model_validate(r) for r in failures],
        effects_in_doubt=sum(r["effects"] for r in in_doubt),
        in_doubt=[InDoubtCount.model_validate(r) for r in in_doubt],
    )


# --- the text the digest email carries --------------------------------------------------------


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def digest_text(review: Review) -> str:
    """The review as plain text: the body of the weekly digest email."""
    w = review.window
    out = [
        f"AiOs review, {w.label} ({w.since:%Y-%m-%d %H:%M} to {w.until:%Y-%m-%d %H:%M} UTC)",
        "",
        "Your attention",
        f"  Gates decided: {review.gates_decided} (expired: {review.gates_expired})",
    ]
    out += [
        f"  Wait at {g.gate}: median {_seconds(g.median_seconds)}, "
        f"p90 {_seconds(g.p90_seconds)} ({g.decided} decided)"
        for g in review.gate_waits
    ]
    out.append(
        f"  Interruptions: {review.interruptions} ({review.gates_opened} gates opened, "
        f"{review.reminders} reminders), {review.interruptions_per_day:.1f} per day"
    )
    out += [
        f"  Overrides of {o.agent}: {_pct(o.override_rate)} ({o.edits} edited, "
        f"{o.rejections} rejected of {o.decisions})"
        for o in review.overrides
    ]
    out.append(
        f"  Auto-approved: {_pct(review.auto_approval_rate)} ({review.auto_approved} of "
        f"{review.auto_approved + review.needed_approval} checked by policy)"
    )
    discount = review.average_discount_pct
    out += [
        "",
        "Outcomes",
        f"  Proposals: {review.proposals_sent} sent, {review.proposals_accepted} accepted, "
        f"{review.proposals_declined} declined; win rate {_pct(review.win_rate)}; "
        f"average discount {'n/a' if discount is None else f'{discount}%'}",
        f"  Invoices: {review.invoices_issued} issued, {review.invoices_paid} paid; "
        "days sales outstanding "
        + (
            "n/a"
            if review.days_sales_outstanding is None
            else f"{review.days_sales_outstanding:.1f}"
        ),
        "  Overdue: "
        + (", ".join(f"{o.amount} ({o.invoices})" for o in review.overdue) or "nothing"),
        "",
        "Cost and trouble",
        f"  Model spend: ${review.model_spend_usd:.4f}",
    ]
    out += [
        f"  {s.process}: ${s.cost_usd:.4f} over {s.calls} call(s); "
        + (
            f"${s.cost_per_completed_run_usd:.4f} per completed run ({s.completed_runs})"
            if s.cost_per_completed_run_usd is not None
            else "no completed run"
        )
        for s in review.spend
    ]
    out.append(
        "  Failed runs: "
        + (", ".join(f"{f.error_class} {f.runs}" for f in review.failures) or "none")
    )
    out.append(f"  Effects in doubt: {review.effects_in_doubt}")
    return "\n".join(out) + "\n"
