"""``aios subscribers``: the newsletter's list (add, import, remove, list, confirm).

Registered by ``cli.app``; everything past Typer loads inside the commands. New addresses are
pending until their owner follows the signed link in the confirmation email (double opt-in):
on the console (``aios serve``) or, without one, with ``aios subscribers confirm LINK``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, ParamSpec, TypeVar

import typer

from aios.cli.base import JsonOpt, command

if TYPE_CHECKING:
    from aios.config import Settings
    from aios.kernel.store import KernelStore
    from aios.kernel.stores.subscribers import Subscriber
    from aios.operations.subscribers import Added, ConfirmationSender

__all__ = ["subscribers_app"]

P = ParamSpec("P")
R = TypeVar("R")

subscribers_app = typer.Typer(
    help="Newsletter subscribers: add or import (double opt-in), remove, list, confirm."
)

Status = Literal["pending", "confirmed", "unsubscribed", "bounced", "removed"]
# The store of one command: the outbox holds one connection while an email goes out, and the
# connector runtime may record its health meanwhile.
STORE_CONNECTIONS = 3


def _settings() -> Settings:
    from aios.cli.app import settings

    return settings()


@contextmanager
def _store(settings: Settings) -> Iterator[KernelStore]:
    from aios.operations.common import open_store

    store = open_store(settings, max_size=STORE_CONNECTIONS)
    try:
        yield store
    finally:
        store.close()


def _sender(settings: Settings, store: KernelStore) -> ConfirmationSender:
    from aios.operations.subscribers import ConfirmationSender
    from aios.serve.subscriber_links import SubscriberLinks
    from aios.workers.services import connector_runtime, smtp_connector

    return ConfirmationSender(
        store,
        smtp_connector(settings),
        connector_runtime(settings, store),
        SubscriberLinks.from_settings(settings),
        sender_name=settings.business_identity.name,
    )


def _view(s: Subscriber) -> dict[str, object]:
    return s.model_dump(mode="json")


def _report(results: list[Added], as_json: bool, source: str) -> None:
    from aios.cli.render import emit_json, line

    added = [r for r in results if r.created]
    known = [r for r in results if not r.created]
    emailed = sum(1 for r in results if r.confirmation_sent)
    if as_json:
        emit_json(
            {
                "source": source,
                "added": [_view(r.subscriber) for r in added],
                "already_listed": [_view(r.subscriber) for r in known],
                "confirmations_sent": emailed,
            }
        )
        return
    for r in added:
        line(
            f"added {r.subscriber.email} (pending; confirmation email sent: "
            f"{'yes' if r.confirmation_sent else 'already'})"
        )
    for r in known:
        line(f"already on the list: {r.subscriber.email} ({r.subscriber.status}); unchanged")
    line(
        f"{len(added)} added, {len(known)} already on the list, {emailed} confirmation emails sent"
    )


@subscribers_app.command("add")
@command
def add(
    email: Annotated[str, typer.Argument(help="The address (one plain address)")],
    name: Annotated[str, typer.Option("--name", help="How the newsletter greets them")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add EMAIL as pending and send it the confirmation email (double opt-in)."""
    from aios.kernel.stores.subscribers import SubscriberDraft
    from aios.operations.subscribers import add_subscribers

    draft = SubscriberDraft(email=email, name=name)
    s = _settings()
    with _store(s) as store:
        results = add_subscribers(store, [draft], source="cli", sender=_sender(s, store))
    _report(results, as_json, "cli")


@subscribers_app.command("import")
@command
def import_csv(
    file: Annotated[Path, typer.Argument(help="A CSV file with a header: email[,name]")],
    as_json: JsonOpt = False,
) -> None:
    """Add every address of FILE as pending and send each new one its confirmation email.

    Addresses already on the list are left as they are, so importing the same file again
    adds nothing. A bad row (its line and field are named) stops the import before anything
    is added."""
    from aios.operations.subscribers import add_subscribers, read_csv

    drafts = read_csv(file)
    source = f"import:{file.name}"
    s = _settings()
    with _store(s) as store:
        results = add_subscribers(store, drafts, source=source, sender=_sender(s, store))
    _report(results, as_json, source)


@subscribers_app.command("remove")
@command
def remove(
    email: Annotated[str, typer.Argument(help="The address to take off the list")],
    by: Annotated[str, typer.Option("--by", help="Who removes it (default: you)")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Take EMAIL off the list: it receives nothing more (the record and its history stay)."""
    import getpass

    from aios.cli.render import emit_json, line
    from aios.errors import InvalidInput

    who = by.strip() or getpass.getuser()
    with _store(_settings()) as store:
        subscriber, changed = store.subscribers.remove(email, by=who)
    if subscriber is None:
        raise InvalidInput(f"email: {email.strip()!r} is not on the list")
    if as_json:
        emit_json({"subscriber": _view(subscriber), "changed": changed})
        return
    line(f"removed {subscriber.email}" if changed else f"{subscriber.email} was already removed")


@subscribers_app.command("list")
@command
def list_subscribers(
    status: Annotated[Status | None, typer.Option("--status", help="Only this status")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The subscribers, oldest first, with their status."""
    from aios.cli.render import Col, emit_json, line, records

    with _store(_settings()) as store:
        rows = store.subscribers.list(status=status)
        confirmed = store.subscribers.confirmed_count()
    if as_json:
        emit_json({"subscribers": [_view(r) for r in rows], "confirmed": confirmed})
        return
    if not rows:
        line("No subscribers" + (f" with status {status}." if status else "."))
        return
    records(
        [
            Col("id", key=True),
            Col("email", key=True),
            Col("name", max_width=40),
            Col("status", key=True),
            Col("added (UTC)", key=True),
        ],
        [[str(r.id), r.email, r.name, r.status, f"{r.created_at:%Y-%m-%d %H:%M}"] for r in rows],
    )
    line(f"{confirmed} confirmed (the audience of the next issue)")


@subscribers_app.command("confirm")
@command
def confirm(
    link: Annotated[str, typer.Argument(help="The confirmation link (or its token)")],
    as_json: JsonOpt = False,
) -> None:
    """Confirm a subscription with the signed link of its confirmation email."""
    from aios.cli.render import emit_json, line
    from aios.operations.subscribers import confirm_link
    from aios.serve.subscriber_links import SubscriberLinks

    s = _settings()
    with _store(s) as store:
        subscriber, changed = confirm_link(store, SubscriberLinks.from_settings(s), link, via="cli")
    if as_json:
        emit_json({"subscriber": _view(subscriber), "changed": changed})
        return
    line(
        f"confirmed {subscriber.email}" if changed else f"{subscriber.email} was already confirmed"
    )
