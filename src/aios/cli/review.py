"""``aios review``: what the system cost your attention and what it brought in; the weekly
digest's schedule (``aios review schedule``) and sending it now (``aios review digest``).

Registered by ``cli.app``; everything past Typer loads inside the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from aios.cli.base import command

if TYPE_CHECKING:
    from aios.config import Settings
    from aios.operations.review import Review

__all__ = ["ensure_schedule", "review_app"]

review_app = typer.Typer(
    help="Attention and outcome metrics from the event log and ledgers; the weekly digest.",
    invoke_without_command=True,
)


@review_app.callback()
@command
def review(
    ctx: typer.Context,
    week: Annotated[bool, typer.Option("--week", help="The last 7 days (the default)")] = False,
    month: Annotated[bool, typer.Option("--month", help="The last 30 days")] = False,
    since: Annotated[
        str | None, typer.Option("--since", metavar="DATE", help="From DATE (YYYY-MM-DD, UTC)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON document for scripts (see README)")
    ] = False,
) -> None:
    """Gates decided and how long they waited, interruptions, overrides per agent,
    auto-approvals, proposals and invoices, model spend, failures, effects in doubt."""
    if ctx.invoked_subcommand is not None:
        return
    from aios.cli.app import settings
    from aios.operations.common import kernel_store
    from aios.operations.review import compute_review, review_window

    window = review_window(week=week, month=month, since=since)
    with kernel_store(settings()) as store:
        result = compute_review(store, window)
    if as_json:
        from aios.cli.render import emit_json

        emit_json(result.model_dump(mode="json"))
        return
    _print(result)


def _print(review: Review) -> None:
    from aios.cli.render import Col, line, records
    from aios.operations.review import digest_text

    # The same lines as the digest email, then the tables a terminal shows better.
    for text in digest_text(review).splitlines():
        line(text)
    if review.by_day:
        records(
            [Col("day (UTC)", key=True), Col("gates opened", key=True), Col("reminders", key=True)],
            [[f"{d.day}", str(d.gates_opened), str(d.reminders)] for d in review.by_day],
            title="Interruptions by day",
        )
    if review.in_doubt:
        records(
            [Col("connector", key=True), Col("operation", key=True), Col("effects", key=True)],
            [[d.connector, d.operation, str(d.effects)] for d in review.in_doubt],
            title="Effects in doubt (`aios health`)",
        )


async def ensure_schedule(s: Settings) -> str:
    """Create or update the weekly review schedule (``aios dev up`` creates it too)."""
    from aios.operations.review_digest import ensure_review_schedule
    from aios.temporal import connect

    return await ensure_review_schedule(await connect(s), s)


@review_app.command("schedule")
@command
def schedule() -> None:
    """Create or update the Temporal Schedule aios-weekly-review (Mondays 07:00, in
    AIOS_BUSINESS_TIMEZONE): it emails last ISO week's review to AIOS_OPERATOR_EMAIL."""
    from aios.cli.app import run, settings
    from aios.cli.render import line
    from aios.operations.review_digest import REVIEW_SCHEDULE_ID

    s = settings()
    done = run(ensure_schedule(s))
    line(
        f"Schedule {REVIEW_SCHEDULE_ID} {done}: Mondays 07:00 ({s.business_timezone}), "
        f"digest to {s.operator_email}, task queue {s.task_queue}"
    )


@review_app.command("digest")
@command
def digest() -> None:
    """Trigger the weekly digest now (a worker must be running); one email per ISO week."""
    from aios.cli.app import run, settings
    from aios.cli.render import line
    from aios.operations.review_digest import REVIEW_SCHEDULE_ID, send_digest_now
    from aios.temporal import connect

    s = settings()

    async def go() -> None:
        await send_digest_now(await connect(s), s)

    run(go())
    line(
        f"Schedule {REVIEW_SCHEDULE_ID} triggered: last ISO week's review goes to "
        f"{s.operator_email} (once per week, however often it is triggered)"
    )
