"""The payment provider contract.

A provider takes an issued invoice (number, lines, total, due date) and makes it payable: the
bank-transfer provider prints payment details, the Stripe provider creates and finalizes an
invoice at Stripe. Every call takes an idempotency key; repeating a call with the same key has
no further outside effect. Errors are ``TransientConnectorError`` (retry),
``PermanentConnectorError`` (do not retry; includes a response that does not match the expected
schema, named "schema drift") or ``InvalidInput``.

``OPERATIONS`` is the contract's operations table (``aios.connectors.contract``) for every
provider; the billing activities run each call through ``ConnectorRuntime.effect`` under the
connector name ``payments:<provider name>``, so it gets that worker's rate limit and circuit
breaker, dry-run and the outbox:

===================  =========================================================================
``create_invoice``   effect; undone by ``void_invoice``
``void_invoice``     effect; the compensation of ``create_invoice``
``mark_paid``        effect with no compensation: irreversible (a provider cannot un-pay an
                     invoice), so it runs only with an approval, the run's ``payment.recorded``
===================  =========================================================================

The protocol has no ``dry_run`` parameter: in a dry run the activities call no provider at all
and return a ``ProviderReceipt`` with ``dry_run=True`` that says nothing happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from aios.connectors.contract import Operation
from aios.kernel.money import LineItem

__all__ = ["OPERATIONS", "PaymentProvider", "ProviderInvoice", "ProviderReceipt"]

OPERATIONS: dict[str, Operation] = {
    "create_invoice": Operation("create_invoice", effect=True, compensation="void_invoice"),
    "void_invoice": Operation("void_invoice", effect=True, undoes="create_invoice"),
    # Money that arrived cannot be "un-arrived" at the provider: irreversible.
    "mark_paid": Operation("mark_paid", effect=True),
}


class ProviderInvoice(BaseModel):
    """What a provider needs to make an invoice payable."""

    invoice_id: str
    number: str
    client_key: str
    client_name: str
    client_email: str
    currency: str
    line_items: list[LineItem] = Field(min_length=1)
    total_minor: int = Field(ge=0)
    issued_at: datetime
    due_at: datetime


class ProviderReceipt(BaseModel):
    """The provider's view of an invoice after a call."""

    provider: str
    reference: str  # the provider's id for the invoice (Stripe ``in_...``, bank: the number)
    status: Literal["open", "paid", "void"]
    payment_instructions: str  # shown in the invoice email and PDF
    hosted_url: str | None = None
    # A dry-run rehearsal: no provider was called and nothing changed there. Defaults to
    # False so receipts in older workflow histories still decode.
    dry_run: bool = False


class PaymentProvider(Protocol):
    name: str

    def create_invoice(self, invoice: ProviderInvoice, *, idempotency_key: str) -> ProviderReceipt:
        """Create (and finalize) the invoice at the provider; a repeat returns the same one."""
        ...

    def void_invoice(self, reference: str, *, idempotency_key: str) -> ProviderReceipt:
        """Void an open invoice; voiding an already void invoice succeeds."""
        ...

    def mark_paid(
        self, reference: str, amount_minor: int, *, idempotency_key: str
    ) -> ProviderReceipt:
        """Record that the invoice was paid outside the provider (e.g. by bank transfer)."""
        ...
