"""``aios mail``: the inbound mailbox (``AIOS_IMAP_*``).

Registered by ``cli.app``; everything past Typer loads inside the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["mail_app"]

mail_app = typer.Typer(help="Inbound email: poll the mailbox now, or set up the poll schedule.")

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a JSON document for scripts (see README)")
]


@mail_app.command("poll")
def poll(as_json: JsonOpt = False) -> None:
    """Fetch the unseen emails now; each gets its own run (`aios status inbound-mail/...`)."""
    from aios.cli.app import command

    command(_poll)(as_json)


def _poll(as_json: bool) -> None:
    from aios.cli.app import run, settings
    from aios.cli.render import emit_json, line
    from aios.operations.mail import poll_mail, require_imap
    from aios.temporal import connect
    from aios.workflows.inbound_mail import MailPollResult

    s = settings()
    require_imap(s)  # before Temporal: the missing setting is the one thing to fix

    async def go() -> MailPollResult:
        return await poll_mail(await connect(s), s)

    result = run(go())
    if as_json:
        emit_json(result.model_dump(mode="json"))
        return
    if result.skipped:
        line(f"Nothing polled: {result.skipped}")
        return
    line(
        f"Fetched {result.fetched} email(s): {len(result.started)} new run(s), "
        f"{len(result.already_started)} already handled, {result.unreadable} unreadable; "
        f"{result.marked_seen} marked seen."
    )
    for wid in result.started:
        line(f"  {wid}")


@mail_app.command("schedule")
def schedule() -> None:
    """Create or update the poll schedule (`aios dev up` does this when IMAP is configured)."""
    from aios.cli.app import command

    command(_schedule)()


def _schedule() -> None:
    from aios.cli.app import run, settings
    from aios.cli.render import age, line
    from aios.operations.mail import MAIL_SCHEDULE_ID, ensure_mail_schedule, require_imap
    from aios.temporal import connect

    s = settings()
    require_imap(s)

    async def go() -> str:
        return await ensure_mail_schedule(await connect(s), s)

    done = run(go())
    line(f"Schedule {MAIL_SCHEDULE_ID} {done}: a mail poll every {age(s.imap_poll_every)}.")
