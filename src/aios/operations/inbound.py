"""Payments that come in by themselves: a Stripe webhook event, a credit line of a bank
statement. Each is settled once: it signals the billing run it pays (or refunds), or it is
ignored (an event type we do not handle), or it becomes a notice in the inbox (no invoice
matches, several do, a part payment, an overpayment), never dropped.

Exactly once, in this order (``settle``):

1. record the event in ``inbound_events`` by ``(source, external id)`` (a Stripe event id, a
   statement line's id). If its outcome is already written, it was settled before: nothing
   happens (a Stripe redelivery, the same statement imported again).
2. decide and act: signal ``payment_received`` / ``refund_received`` carrying an idempotent
   payment id (``stripe:in_...``, ``bank:<line id>``), or open the notice (idempotent by its
   key ``payment/<source>/<external id>``).
3. write the outcome.

A crash between 1 and 3 leaves the row ``received``; the next delivery (Stripe retries until
it gets a 2xx, the operator imports the file again) settles it again, and the billing run
refuses a payment id it already has, so the money is recorded once and never lost. Signalling
first and recording afterwards would lose the payment when the crash came between the two;
recording "done" before signalling would lose it when the crash came after the record.

Matching: a Stripe payment names our invoice in its metadata (set by the Stripe provider) or
by its Stripe invoice id; a bank credit names it by the number in its reference, and its
amount must be the open balance (``statements.match_credit``). An amount above the open
balance is refused as ``aios paid`` refuses it, with the same message, and noticed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from temporalio.client import Client

from aios.config import Settings
from aios.connectors.payments.statements import (
    Credit,
    CsvLayout,
    Match,
    OpenInvoice,
    OpenInvoices,
    StatementError,
    StatementFormat,
    match_credit,
    read_statement,
)
from aios.connectors.payments.stripe_events import StripeMoney, one_line
from aios.errors import InvalidInput
from aios.kernel.commerce import Invoice
from aios.kernel.money import currency_exponent, format_amount
from aios.kernel.store import KernelStore
from aios.kernel.stores.inbound import InboundOutcome
from aios.kernel.stores.notices import NoticeDraft
from aios.operations.common import Session

__all__ = [
    "ImportReport",
    "InboundItem",
    "Settled",
    "import_statement",
    "settle",
    "settle_stripe",
]


@dataclass(frozen=True)
class InboundItem:
    """One payment or refund that came in, ready to settle."""

    source: Literal["stripe", "bank"]
    external_id: str  # evt_..., the statement line's id
    kind: str  # invoice.paid, refund.created, credit
    action: Literal["payment", "refund", "ignore"]
    amount_minor: int = 0
    currency: str = ""
    invoice: Invoice | None = None  # the invoice it pays; None: no single invoice fits
    money_id: str = ""  # the payment or refund id, unique within the source
    reference: str = ""  # what the ledger shows
    occurred_at: datetime | None = None
    refs: list[str] = field(default_factory=list)
    why: str = ""  # ignored: why; noticed: what is wrong
    notice_kind: str = "unmatched_payment"
    refuse: bool = False  # an overpayment: refused as `aios paid` refuses it
    candidates: list[str] = field(default_factory=list)
    payer: str = ""
    where: str = ""  # "line 7" of a statement


@dataclass(frozen=True)
class Settled:
    item: InboundItem
    outcome: InboundOutcome
    duplicate: bool  # settled before: nothing happened now
    workflow_id: str | None = None
    message: str = ""


def _amount_text(item: InboundItem) -> str:
    return format_amount(item.amount_minor, item.currency) if item.currency else "?"


def _notice(item: InboundItem, message: str, kind: str) -> NoticeDraft:
    what = "Refund" if item.action == "refund" else "Payment"
    title = f"{what} of {_amount_text(item)} from {item.source}" + (
        f" ({item.payer})" if item.payer else ""
    )
    details: dict[str, Any] = {
        "source": item.source,
        "external_id": item.external_id,
        "event": item.kind,
        "amount": _amount_text(item),
        "reference": item.reference,
        "candidates": item.candidates,
    }
    if item.where:
        details["where"] = item.where
    return NoticeDraft(
        key=f"payment/{item.source}/{item.external_id}",
        kind=kind,
        title=title[:300],
        summary=message[:2000],
        details=details,
        client_key=item.invoice.client_key if item.invoice else None,
        workflow_id=item.invoice.workflow_id if item.invoice else None,
        source=item.source,
    )


async def settle(client: Client, store: KernelStore, item: InboundItem) -> Settled:
    """Settle ``item`` once (see the module docstring). Temporal or database errors propagate
    with the event still ``received``: settling it again later finishes it."""
    row, _ = store.inbound.receive(
        item.source,
        item.external_id,
        item.kind,
        refs=item.refs,
        details={
            "action": item.action,
            "amount": _amount_text(item) if item.action != "ignore" else "",
            "reference": item.reference[:200],
            "invoice_id": item.invoice.invoice_id if item.invoice else None,
        },
    )
    if row.done:
        return Settled(item, row.outcome, True, row.workflow_id, row.note)

    def finish(outcome: InboundOutcome, message: str, workflow_id: str | None = None) -> Settled:
        store.inbound.finish(
            item.source, item.external_id, outcome, workflow_id=workflow_id, note=message
        )
        return Settled(item, outcome, False, workflow_id, message)

    def notice(message: str, kind: str, outcome: InboundOutcome = "notice") -> Settled:
        store.notices.open(_notice(item, message, kind))
        workflow_id = item.invoice.workflow_id if item.invoice else None
        return finish(outcome, message, workflow_id)

    if item.action == "ignore":
        return finish("ignored", item.why)
    if item.invoice is None:
        return notice(item.why or "no invoice matches", item.notice_kind)
    invoice = item.invoice
    if item.refuse:
        return notice(item.why, "refused_payment", "refused")
    from aios.operations.billing import record_payment, record_refund

    amount = Decimal(item.amount_minor).scaleb(-currency_exponent(item.currency))
    try:
        if item.action == "payment":
            await record_payment(
                client,
                store,
                invoice.invoice_id,
                amount=amount,
                reference=item.reference,
                recorded_by=item.source,
                paid_at=item.occurred_at,
                payment_id=f"{item.source}:{item.money_id}",
            )
        else:
            await record_refund(
                client,
                store,
                invoice.invoice_id,
                amount=amount,
                reference=item.reference,
                recorded_by=item.source,
                refunded_at=item.occurred_at,
                refund_id=f"{item.source}:{item.money_id}",
            )
    except InvalidInput as exc:
        if _in_ledger(store, invoice.invoice_id, item.reference):
            # Settled before an interruption: the run recorded it and may have ended since.
            return finish("signalled", "recorded before", invoice.workflow_id)
        kind = "refused_payment" if item.action == "payment" else "unmatched_refund"
        return notice(str(exc), kind, "refused")
    return finish("signalled", f"{item.action} of {_amount_text(item)}", invoice.workflow_id)


def _in_ledger(store: KernelStore, invoice_id: str, reference: str) -> bool:
    return bool(reference) and any(
        e.reference == reference for e in store.invoices.ledger(invoice_id)
    )


# --- Stripe ------------------------------------------------------------------------------------


def stripe_item(store: KernelStore, money: StripeMoney) -> InboundItem:
    """The inbound item of a verified, read Stripe event: its invoice found in the kernel."""
    base: dict[str, Any] = {
        "source": "stripe",
        "external_id": money.event_id,
        "kind": money.event_type,
        "action": money.action,
    }
    if money.action == "ignore":
        return InboundItem(**base, why=money.why_ignored)
    invoice = _stripe_invoice(store, money)
    item = InboundItem(
        **base,
        amount_minor=money.amount_minor,
        currency=money.currency,
        invoice=invoice,
        money_id=money.money_id,
        reference=f"Stripe {money.money_id}",
        occurred_at=money.occurred_at,
        refs=money.refs,
        payer=money.payer,
        notice_kind="unmatched_payment" if money.action == "payment" else "unmatched_refund",
    )
    if money.problem:
        return _replace(item, invoice=None, why=money.problem)
    if invoice is None:
        named = money.invoice_number or money.invoice_id or money.stripe_invoice
        why = (
            f"{_amount_text(item)} names {named}, which is no invoice here"
            if named
            else f"{_amount_text(item)} names no invoice"
        )
        return _replace(item, why=why)
    if money.action == "payment":
        balance = store.invoices.balance(invoice.invoice_id)
        if invoice.status in ("issued", "paid") and money.amount_minor > balance:
            return _replace(
                item,
                refuse=True,
                why=f"amount: {_amount_text(item)} is more than the open balance "
                f"{format_amount(balance, invoice.currency)} of {invoice.workflow_id}",
            )
    return item


def _replace(item: InboundItem, **changes: Any) -> InboundItem:
    from dataclasses import replace

    return replace(item, **changes)


def _stripe_invoice(store: KernelStore, money: StripeMoney) -> Invoice | None:
    if money.invoice_id:
        found = store.invoices.get(money.invoice_id)
        if found is not None:
            return found
    if money.stripe_invoice:
        found = store.invoices.by_provider_reference("stripe", money.stripe_invoice)
        if found is not None:
            return found
    if money.invoice_number:
        from aios.connectors.payments.statements import invoice_numbers

        numbers = invoice_numbers(money.invoice_number)
        if len(numbers) == 1:
            return store.invoices.by_number(numbers[0])
    if money.action == "refund":
        for ref in money.refs:
            paid = store.inbound.by_ref("stripe", ref)
            if paid is not None and paid.details.get("invoice_id"):
                return store.invoices.get(str(paid.details["invoice_id"]))
    return None


async def settle_stripe(client: Client, store: KernelStore, money: StripeMoney) -> Settled:
    """Settle one verified Stripe event."""
    return await settle(client, store, stripe_item(store, money))


# --- bank statements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    """What ``aios bank import`` did with each credit of the file."""

    file: str
    format: str
    account: str
    skipped: int  # debits, reversals, pending entries
    results: list[Settled]

    def count(self, outcome: InboundOutcome, *, new: bool = True) -> int:
        return sum(1 for r in self.results if r.outcome == outcome and r.duplicate != new)

    @property
    def new(self) -> int:
        return sum(1 for r in self.results if not r.duplicate)

    @property
    def refused(self) -> list[Settled]:
        return [r for r in self.results if r.outcome == "refused" and not r.duplicate]


def open_invoices(store: KernelStore) -> list[OpenInvoice]:
    return [
        OpenInvoice(
            invoice_id=inv.invoice_id,
            number=inv.number,
            workflow_id=inv.workflow_id,
            currency=inv.currency,
            balance_minor=balance,
        )
        for inv, balance in store.invoices.open_with_balances()
        if inv.number is not None
    ]


def bank_item(store: KernelStore, credit: Credit, match: Match) -> InboundItem:
    from aios.kernel.money import parse_amount

    invoice = store.invoices.get(match.invoice.invoice_id) if match.invoice else None
    kinds = {
        "ambiguous": "ambiguous_payment",
        "partial": "partial_payment",
        "unmatched": "unmatched_payment",
    }
    occurred = (
        datetime.combine(credit.booked_on, time(12), UTC) if credit.booked_on is not None else None
    )
    return InboundItem(
        source="bank",
        external_id=credit.line_id,
        kind="credit",
        action="payment",
        amount_minor=parse_amount(credit.amount, credit.currency),
        currency=credit.currency,
        invoice=invoice if match.kind in ("exact", "over") else None,
        money_id=credit.line_id,
        reference=_bank_reference(credit),
        occurred_at=occurred,
        why=match.why,
        notice_kind=kinds.get(match.kind, "unmatched_payment"),
        refuse=match.kind == "over",
        candidates=match.candidates,
        payer=one_line(credit.payer),
        where=credit.where,
    )


def _bank_reference(credit: Credit) -> str:
    """The ledger's reference for a credit: its text and a tag of its line id, so the ledger
    tells two transfers with the same text apart."""
    import hashlib

    tag = hashlib.sha256(credit.line_id.encode()).hexdigest()[:10]
    return f"bank {one_line(credit.reference, 150) or 'transfer'} #{tag}"


async def import_statement(
    settings: Settings,
    path: Path,
    *,
    format: StatementFormat | Literal["auto"] = "auto",
    layout: CsvLayout | None = None,
) -> ImportReport:
    """Read the statement at ``path`` whole (a bad file is refused before anything is
    recorded), then settle each credit in order."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read it ({exc.strerror or exc})") from None
    statement = read_statement(
        data, layout=layout or settings.bank_csv_layout, format=format, name=path.name
    )
    ids = [c.line_id for c in statement.credits]
    if len(set(ids)) != len(ids):
        raise StatementError(f"{path.name}: two credits carry the same transaction id")
    results: list[Settled] = []
    with Session(settings) as session:
        store = session.store()
        client = await session.client()
        # Indexed once: a credit that pays an invoice is recorded by its run a moment later,
        # so a second credit for it would match again; the run's own balance check (counting
        # payments received but not yet recorded) refuses that one, and it becomes a notice.
        index = OpenInvoices(open_invoices(store))
        for credit in statement.credits:
            item = bank_item(store, credit, match_credit(credit, index))
            results.append(await settle(client, store, item))
    return ImportReport(path.name, statement.format, statement.account, statement.skipped, results)
