"""Proposals, invoices, credit notes and ledger entries: the records of the money side.

Amounts are integer minor units of ``currency``. A proposal version is immutable: an edit or a
counter-offer makes the next version. An invoice is a draft (no number) until it is issued; its
number comes from a gap-free series (``INV-000042``), credit notes from their own (``CN-000003``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, Field

from aios.kernel.money import LineItem, line_items_total

__all__ = [
    "CreditNote",
    "Invoice",
    "InvoiceStatus",
    "LedgerEntry",
    "Proposal",
    "ProposalVersion",
    "VersionSource",
    "credit_note_number",
    "discount_minor_for",
    "discount_pct_for",
    "invoice_number",
]

InvoiceStatus = Literal["draft", "issued", "paid", "void"]
VersionSource = Literal["agent", "edit", "counter"]
PCT = Decimal("0.01")


def invoice_number(number: int) -> str:
    return f"INV-{number:06d}"


def credit_note_number(number: int) -> str:
    return f"CN-{number:06d}"


def discount_minor_for(subtotal_minor: int, discount_pct: Decimal) -> int:
    """The discount in minor units, rounded half up to a whole minor unit."""
    raw = Decimal(subtotal_minor) * discount_pct / 100
    return int(raw.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def discount_pct_for(subtotal_minor: int, total_minor: int) -> Decimal:
    """The discount (percent, two decimals) that takes ``subtotal_minor`` to ``total_minor``."""
    if subtotal_minor <= 0 or total_minor >= subtotal_minor:
        return Decimal("0.00")
    pct = Decimal(subtotal_minor - total_minor) * 100 / Decimal(subtotal_minor)
    return pct.quantize(PCT, rounding=ROUND_HALF_UP)


class Proposal(BaseModel):
    proposal_id: str
    client_key: str
    workflow_id: str
    scope: str
    currency: str
    budget_hint_minor: int | None = None
    deadline: date | None = None
    created_at: datetime | None = None


class ProposalVersion(BaseModel):
    """One immutable version of a proposal."""

    id: str
    proposal_id: str
    version: int = Field(ge=1)
    source: VersionSource
    author: str
    currency: str
    line_items: list[LineItem] = Field(min_length=1)
    subtotal_minor: int = Field(ge=0)
    discount_pct: Decimal = Field(ge=0, le=100, decimal_places=2)
    total_minor: int = Field(ge=0)
    terms: str
    rationale: str = ""
    note: str = ""
    memory_ids: list[str] = Field(default_factory=list)
    based_on: str | None = None
    created_at: datetime | None = None

    @property
    def discount_minor(self) -> int:
        return self.subtotal_minor - self.total_minor

    @classmethod
    def priced(
        cls,
        *,
        line_items: list[LineItem],
        discount_pct: Decimal | None = None,
        total_minor: int | None = None,
        **fields: object,
    ) -> ProposalVersion:
        """A version whose subtotal, discount and total are computed, never taken on trust."""
        subtotal = line_items_total(line_items)
        if total_minor is not None:
            total = min(total_minor, subtotal)
            pct = discount_pct_for(subtotal, total)
        else:
            pct = (discount_pct or Decimal(0)).quantize(PCT, rounding=ROUND_HALF_UP)
            total = subtotal - discount_minor_for(subtotal, pct)
        return cls.model_validate(
            {
                **fields,
                "line_items": line_items,
                "subtotal_minor": subtotal,
                "discount_pct": pct,
                "total_minor": total,
            }
        )


class Invoice(BaseModel):
    invoice_id: str
    number: int | None = None
    client_key: str
    proposal_id: str | None = None
    workflow_id: str
    currency: str
    line_items: list[LineItem] = Field(min_length=1)
    total_minor: int = Field(ge=0)
    status: InvoiceStatus
    provider: str | None = None
    provider_reference: str | None = None
    payment_instructions: str | None = None
    hosted_url: str | None = None
    issued_at: datetime | None = None
    due_at: datetime | None = None
    paid_at: datetime | None = None
    voided_at: datetime | None = None

    @property
    def display_number(self) -> str:
        return invoice_number(self.number) if self.number is not None else "(draft)"


class CreditNote(BaseModel):
    credit_note_id: str
    number: int
    invoice_id: str
    currency: str
    amount_minor: int = Field(gt=0)
    reason: str
    created_at: datetime | None = None

    @property
    def display_number(self) -> str:
        return credit_note_number(self.number)


class LedgerEntry(BaseModel):
    id: int
    entry_key: str
    invoice_id: str
    kind: Literal["payment", "credit_note", "refund"]
    amount_minor: int
    currency: str
    reference: str = ""
    occurred_at: datetime
