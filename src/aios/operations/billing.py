"""Billing: invoice a known client, record a payment, show an invoice."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.money import (
    LineItem,
    currency_exponent,
    format_amount,
    normalize_currency,
    parse_amount,
)
from aios.kernel.store import KernelStore
from aios.operations.common import (
    DocumentLine,
    NewId,
    Session,
    Started,
    describe_run,
    document_lines,
    new_id,
    require_running,
    run_progress,
    start_new,
    workflow_id_for,
)
from aios.operations.onboarding import require_client
from aios.workflows.billing import (
    PAYMENT_RECEIVED_SIGNAL,
    REFUND_RECEIVED_SIGNAL,
    BillingInput,
    BillingWorkflow,
    PaymentReceived,
    RefundReceived,
    billing_workflow_id,
)
from aios.workflows.progress import BillingProgress

__all__ = [
    "Billed",
    "InvoiceDocument",
    "InvoiceState",
    "NewInvoice",
    "PaymentLine",
    "PaymentSent",
    "await_invoice",
    "bill",
    "billing_progress",
    "invoice_document",
    "invoice_workflow_id",
    "pay",
    "record_payment",
    "record_refund",
    "start_billing",
]

_NUMBER = re.compile(r"(?i)INV-(\d+)")


class NewInvoice(BaseModel):
    """What the operator gives ``aios bill``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    client_key: str = Field(min_length=1, max_length=64)
    items: list[LineItem] = Field(min_length=1, max_length=100)
    currency: str | None = None
    invoice_id: NewId | None = None


async def start_billing(
    client: Client, settings: Settings, store: KernelStore, new: NewInvoice
) -> Started:
    """Start ``BillingWorkflow`` for a known client; bad input raises and starts nothing."""
    currency = normalize_currency(new.currency or settings.currency)
    require_client(store, new.client_key)
    invoice_id = new.invoice_id or new_id(new.client_key, datetime.now(UTC).date())
    total = sum(item.amount_minor for item in new.items)
    if total <= 0:
        raise InvalidInput("items: the invoice total must be more than zero")
    return await start_new(
        client,
        BillingWorkflow.run,
        BillingInput(
            invoice_id=invoice_id,
            client_key=new.client_key,
            currency=currency,
            line_items=new.items,
            provider=settings.payment_provider,
            policy=settings.billing_policy,
            gate_policy=settings.gate_policy,
        ),
        billing_workflow_id(invoice_id),
        settings,
        f"Bill {new.client_key}: {format_amount(total, currency)}",
    )


@dataclass(frozen=True)
class InvoiceState:
    """Where a new billing run got to: issued (``number``), at its gate, or unknown."""

    answered: bool  # False: no worker answered the progress query
    number: str | None = None  # "INV-000042" once issued
    gate: str | None = None  # "invoice" while the draft waits for approval
    total: str = ""
    status: str = "running"  # the run's status when it ended before either


@dataclass(frozen=True)
class Billed:
    started: Started
    invoice: InvoiceState


async def billing_progress(client: Client, workflow_id: str) -> BillingProgress | None:
    """The billing run's progress, or ``None`` when no worker answered."""
    try:
        progress = await run_progress(client, workflow_id)
    except (RPCError, WorkflowQueryFailedError):
        return None
    assert isinstance(progress, BillingProgress)
    return progress


async def await_invoice(
    client: Client, workflow_id: str, *, wait_seconds: float = 20.0
) -> InvoiceState:
    """Follow a new billing run until its invoice has a number or waits at its gate.

    Gives up after ``wait_seconds`` (a slow worker), at once when no worker answers, and
    when the run ends first (a refused draft)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    total = ""
    while True:
        progress = await billing_progress(client, workflow_id)
        if progress is None:
            return InvoiceState(answered=False)
        total = progress.total or total
        if progress.number:
            return InvoiceState(answered=True, number=progress.number, total=total)
        if progress.pending_gates:
            gate = progress.pending_gates[0].gate
            return InvoiceState(answered=True, gate=gate, total=total)
        desc = await describe_run(client, workflow_id)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            status = desc.status.name.lower() if desc.status else "closed"
            return InvoiceState(answered=True, total=total, status=status)
        if loop.time() >= deadline:
            return InvoiceState(answered=True, total=total)
        await asyncio.sleep(0.25)


async def bill(settings: Settings, new: NewInvoice, *, wait_seconds: float = 20.0) -> Billed:
    """``start_billing`` with its own connections (``aios bill``), then ``await_invoice``; the
    run pins the latest policy version (``operations.policies.pin``)."""
    from aios.operations.policies import pin

    with Session(settings) as session:
        client = await session.client()
        store = session.store()
        started = await start_billing(client, pin(settings, store), store, new)
    state = await await_invoice(client, started.workflow_id, wait_seconds=wait_seconds)
    return Billed(started, state)


@dataclass(frozen=True)
class PaymentSent:
    workflow_id: str
    amount: str
    confirmed: bool


def invoice_workflow_id(store: KernelStore, ref: str) -> str:
    """The billing run of an invoice id, ``billing/<id>`` or a number (``INV-000042``)."""
    ref = ref.strip()
    number = _NUMBER.fullmatch(ref)
    if number:
        found = store.invoices.by_number(int(number.group(1)))
        if found is None:
            raise InvalidInput(f"invoice {ref.upper()} does not exist")
        return found.workflow_id
    return workflow_id_for("billing", ref)


async def record_payment(
    client: Client,
    store: KernelStore,
    invoice_ref: str,
    *,
    amount: Decimal | None,
    reference: str,
    recorded_by: str,
    paid_at: datetime | None = None,
    payment_id: str | None = None,
) -> PaymentSent:
    """Tell a billing run that money arrived. ``invoice_ref`` is the invoice id, its workflow
    id or its number (``INV-000042``); without ``amount`` the open balance is paid.
    ``payment_id`` names a payment that came in by itself: the run records it once."""
    workflow_id = invoice_workflow_id(store, invoice_ref)
    await require_running(client, workflow_id)
    progress = await billing_progress(client, workflow_id)
    currency = progress.currency if progress else ""
    balance = progress.balance_minor if progress else None
    if amount is None:
        if progress is None or balance is None or not currency:
            raise InvalidInput(
                "amount: no worker answered with the open balance; give --amount explicitly"
            )
        if balance <= 0:
            raise InvalidInput(f"{workflow_id} has nothing left to pay")
        amount = Decimal(balance).scaleb(-currency_exponent(currency))
    if amount <= 0:
        raise InvalidInput("amount: must be more than zero")
    if currency:
        minor = parse_amount(amount, currency)  # the right number of decimals for the currency
        if balance is not None and minor > balance:
            raise InvalidInput(
                f"amount: {format_amount(minor, currency)} is more than the open balance "
                f"{format_amount(balance, currency)} of {workflow_id}"
            )
    payment = PaymentReceived(
        amount=amount,
        reference=reference,
        recorded_by=recorded_by,
        paid_at=paid_at,
        payment_id=payment_id,
    )
    await client.get_workflow_handle(workflow_id).signal(PAYMENT_RECEIVED_SIGNAL, payment)
    shown = format_amount(parse_amount(amount, currency), currency) if currency else str(amount)
    return PaymentSent(workflow_id, shown, confirmed=progress is not None)


async def record_refund(
    client: Client,
    store: KernelStore,
    invoice_ref: str,
    *,
    amount: Decimal,
    reference: str,
    recorded_by: str,
    refunded_at: datetime | None = None,
    refund_id: str | None = None,
) -> PaymentSent:
    """Tell a billing run that money paid for it went back (signal ``refund_received``)."""
    workflow_id = invoice_workflow_id(store, invoice_ref)
    await require_running(client, workflow_id)
    if amount <= 0:
        raise InvalidInput("amount: must be more than zero")
    progress = await billing_progress(client, workflow_id)
    refund = RefundReceived(
        amount=amount,
        reference=reference,
        recorded_by=recorded_by,
        refunded_at=refunded_at,
        refund_id=refund_id,
    )
    await client.get_workflow_handle(workflow_id).signal(REFUND_RECEIVED_SIGNAL, refund)
    currency = progress.currency if progress else ""
    shown = format_amount(parse_amount(amount, currency), currency) if currency else str(amount)
    return PaymentSent(workflow_id, shown, confirmed=progress is not None)


async def pay(
    settings: Settings,
    invoice_ref: str,
    *,
    amount: Decimal | None,
    reference: str,
    recorded_by: str,
) -> PaymentSent:
    """``record_payment`` with its own connections (``aios paid``)."""
    with Session(settings) as session:
        return await record_payment(
            await session.client(),
            session.store(),
            invoice_ref,
            amount=amount,
            reference=reference,
            recorded_by=recorded_by,
        )


class PaymentLine(BaseModel):
    kind: str  # "payment" or "credit_note"
    amount: str
    amount_minor: int
    reference: str
    occurred_at: datetime


class InvoiceDocument(BaseModel):
    """An invoice, as ``aios show`` prints it: a draft has no number until it is issued."""

    kind: Literal["invoice"] = "invoice"
    invoice_id: str
    number: str | None
    status: str
    client_key: str
    proposal_id: str | None = None
    currency: str
    lines: list[DocumentLine]
    total: str
    total_minor: int
    paid: str
    paid_minor: int
    balance: str
    balance_minor: int
    issued_at: datetime | None = None
    due_at: datetime | None = None
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    provider: str | None = None
    payment_instructions: str | None = None
    hosted_url: str | None = None
    ledger: list[PaymentLine] = Field(default_factory=list)


def invoice_document(store: KernelStore, invoice_id: str) -> InvoiceDocument | None:
    """The invoice with its lines, payments and balance; ``None`` before the run created it."""
    invoice = store.invoices.get(invoice_id)
    if invoice is None:
        return None
    currency = invoice.currency
    entries = store.invoices.ledger(invoice_id)
    paid = sum(e.amount_minor for e in entries if e.kind in ("payment", "refund"))
    balance = store.invoices.balance(invoice_id)
    return InvoiceDocument(
        invoice_id=invoice.invoice_id,
        number=invoice.display_number if invoice.number is not None else None,
        status=invoice.status,
        client_key=invoice.client_key,
        proposal_id=invoice.proposal_id,
        currency=currency,
        lines=document_lines(invoice.line_items, currency),
        total=format_amount(invoice.total_minor, currency),
        total_minor=invoice.total_minor,
        paid=format_amount(paid, currency),
        paid_minor=paid,
        balance=format_amount(balance, currency),
        balance_minor=balance,
        issued_at=invoice.issued_at,
        due_at=invoice.due_at,
        paid_at=invoice.paid_at,
        voided_at=invoice.voided_at,
        provider=invoice.provider,
        payment_instructions=invoice.payment_instructions,
        hosted_url=invoice.hosted_url,
        ledger=[
            PaymentLine(
                kind=e.kind,
                amount=format_amount(e.amount_minor, currency),
                amount_minor=e.amount_minor,
                reference=e.reference,
                occurred_at=e.occurred_at,
            )
            for e in entries
        ],
    )
