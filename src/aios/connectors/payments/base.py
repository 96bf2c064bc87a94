"""The payment provider contract.

A provider takes an issued invoice (number, lines, total, due date) and makes it payable: the
bank-transfer provider prints payment details, the Stripe provider creates and finalizes an
invoice at Stripe. Every call takes an idempotency key; repeating a call with the same key has
no further outside effect. Errors are ``TransientConnectorError`` (retry),
``PermanentConnectorError`` (do not retry; includes a response that does not match the expected
schema, named "schema drift") or ``InvalidInput``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from aios.kernel.money import LineItem

__all__ = ["PaymentProvider", "ProviderInvoice", "ProviderReceipt"]


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
