"""Subscriber operations shared by ``aios subscribers`` and the console's subscriber pages.

- ``read_csv``: a CSV file with an ``email`` column (and optionally ``name``) as drafts; every
  bad row is named (line and field) and nothing is added when any row is bad;
- ``add_subscribers``: add drafts as pending and send each new one the confirmation email with
  its signed link, through the connector runtime and the outbox (at most once per address
  and addition: key ``subscriber/<id>/confirm/<added at>``). An address already on the list
  is left as it is, so importing the same file again adds nothing and sends nothing, except to
  an address still pending whose confirmation never went out (the SMTP server was down);
- ``confirm_link`` and ``unsubscribe_link``: follow a signed link.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from aios.converter import describe_validation
from aios.errors import ConnectorError, InvalidInput, RateLimited
from aios.kernel.stores.subscribers import Subscriber, SubscriberDraft
from aios.serve.links import LinkProblem
from aios.serve.subscriber_links import SubscriberLinks, SubscriberPurpose

if TYPE_CHECKING:
    from aios.connectors.email import SmtpEmailConnector
    from aios.connectors.runtime import ConnectorRuntime
    from aios.kernel.store import KernelStore

__all__ = [
    "Added",
    "ConfirmationSender",
    "add_subscribers",
    "confirm_link",
    "read_csv",
    "unsubscribe_link",
]

MAX_ROWS = 100_000
MAX_FILE_BYTES = 20_000_000


@dataclass(frozen=True)
class Added:
    subscriber: Subscriber
    created: bool
    confirmation_sent: bool


def read_csv(path: Path) -> list[SubscriberDraft]:
    """The subscribers of a CSV file (header ``email`` and optionally ``name``), validated.

    Raises ``InvalidInput`` naming every bad line (up to ten) when any row is bad."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_FILE_BYTES // 1_000_000} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 (byte {exc.start})") from None
    # newline="" keeps a CR or LF inside a quoted field, so it is refused, not split.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "email" not in fields:
        raise InvalidInput(f"{path}: the first line must be a header with an 'email' column")
    unknown = set(fields) - {"email", "name"}
    if unknown:
        raise InvalidInput(f"{path}: unknown columns {sorted(unknown)}; only email and name")
    reader.fieldnames = fields
    drafts: list[SubscriberDraft] = []
    problems: list[str] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        if len(drafts) >= MAX_ROWS:
            raise InvalidInput(f"{path}: more than {MAX_ROWS} rows")
        if None in row:
            problems.append(f"line {line}: more values than columns")
            continue
        try:
            draft = SubscriberDraft(email=row.get("email") or "", name=row.get("name") or "")
        except ValidationError as exc:
            problems.append(f"line {line}: {describe_validation(exc)}")
            continue
        if draft.email not in seen:  # the same address twice in a file: once
            seen.add(draft.email)
            drafts.append(draft)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidInput(f"{path}: nothing added; " + "; ".join(problems[:10]) + more)
    return drafts


class ConfirmationSender:
    """Sends the double opt-in email through the connector runtime (rate limit, breaker,
    outbox), waiting out the local rate limit rather than failing."""

    def __init__(
        self,
        store: KernelStore,
        email: SmtpEmailConnector,
        runtime: ConnectorRuntime,
        links: SubscriberLinks,
        *,
        sender_name: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._email = email
        self._runtime = runtime
        self._links = links
        self._sender_name = sender_name
        self._sleep = sleep

    def send(self, subscriber: Subscriber) -> bool:
        """Send ``subscriber`` (pending) the confirmation email; whether it was sent now."""
        from aios.connectors.email import OPERATIONS, OutgoingEmail
        from aios.kernel.events import EventDraft
        from aios.templates.newsletter import confirmation

        now = datetime.now(UTC)
        message = confirmation(
            name=subscriber.name,
            sender=self._sender_name,
            confirm_url=self._links.url("confirm", subscriber.id, subscriber.email, now),
        )
        key = f"subscriber/{subscriber.id}/confirm/{subscriber.updated_at.isoformat()}"
        outgoing = OutgoingEmail(
            to=subscriber.email, subject=message.subject, body=message.text, idempotency_key=key
        )
        event = EventDraft(
            event_key=key,
            workflow_id="",
            run_id="",
            process="subscribers",
            kind="subscriber.confirmation_emailed",
            entity=f"subscriber:{subscriber.id}",
            payload={"to": subscriber.email},
        )
        while True:
            try:
                result, ran = self._runtime.committing_effect(
                    self._email.name,
                    OPERATIONS["send"],
                    key,
                    lambda dry_run, commit: self._email.send(
                        outgoing, dry_run=dry_run, commit=commit
                    ),
                    step="send_subscriber_confirmation",
                    event=event,
                )
                break
            except RateLimited as exc:
                self._sleep(exc.retry_after or 0.5)
        if not result.get("dry_run"):  # sent now, or by an attempt that died before noting it
            self._store.subscribers.mark_confirmation_sent(subscriber.id)
        return ran


def add_subscribers(
    store: KernelStore,
    drafts: list[SubscriberDraft],
    *,
    source: str,
    sender: ConfirmationSender | None,
) -> list[Added]:
    """Add ``drafts`` (one transaction) and email each new one its confirmation link; an
    address already pending whose confirmation never went out (the SMTP server was down when
    it was added) gets it now."""
    added = store.subscribers.add_many(drafts, source=source)
    results: list[Added] = []
    for subscriber, created in added:
        sent = False
        unsent = subscriber.status == "pending" and subscriber.confirm_sent_at is None
        if sender is not None and (created or unsent):
            try:
                sent = sender.send(subscriber)
            except ConnectorError as exc:
                raise type(exc)(
                    exc.connector,
                    f"{str(exc).removeprefix(exc.connector + ': ')}; the confirmation to "
                    f"{subscriber.email} was not sent: it and any address after it wait "
                    "pending; add or import them again once the server answers",
                ) from exc
        results.append(Added(subscriber, created, sent))
    return results


def _claimed(
    store: KernelStore, links: SubscriberLinks, purpose: SubscriberPurpose, token: str
) -> Subscriber:
    claim = links.read(purpose, token, datetime.now(UTC))
    subscriber = store.subscribers.get(claim.subscriber_id)
    if subscriber is None or subscriber.email != claim.email:
        raise LinkProblem("tampered", "This link names no address on the list; it changes nothing.")
    return subscriber


def confirm_link(
    store: KernelStore, links: SubscriberLinks, token: str, *, via: str
) -> tuple[Subscriber, bool]:
    """Confirm the subscriber of a signed confirm link; (subscriber, whether it changed now).

    A confirmed address stays confirmed; an unsubscribed, bounced or removed one is not
    brought back by an old link (``InvalidInput``)."""
    subscriber = _claimed(store, links, "confirm", token)
    if subscriber.status == "confirmed":
        return subscriber, False
    if subscriber.status != "pending":
        raise InvalidInput(
            f"{subscriber.email} is {subscriber.status}; an old confirmation link does not "
            "subscribe it again"
        )
    updated, changed = store.subscribers.confirm(subscriber.id, via=via)
    assert updated is not None
    return updated, changed


def unsubscribe_link(
    store: KernelStore, links: SubscriberLinks, token: str, *, via: str
) -> tuple[Subscriber, bool]:
    """Unsubscribe the subscriber of a signed unsubscribe link (once; a repeat changes
    nothing and is not an error)."""
    subscriber = _claimed(store, links, "unsubscribe", token)
    updated, changed = store.subscribers.unsubscribe(subscriber.id, via=via)
    return (updated or subscriber), changed
