"""What a proposal, an invoice and a credit note say, validated before anything is drawn.

The models carry amounts in integer minor units (see ``aios.kernel.money``) and check that the
figures add up: a subtotal that is not the sum of its lines, or a total that is not the subtotal
less the discount, is a ``ValueError`` naming the field (pydantic raises it as a
``ValidationError``). Dates must carry a time zone, so a rendered document never depends on the
machine's local time. Free texts (scope, terms, payment instructions, names) are untrusted; the
renderer cleans them, the models only bound their length.

Every document carries ``business``, the sender's ``aios.identity.BusinessIdentity`` (name,
address, tax id, logo, bank account, footer, time zone); without one, it is the bare
``operator_name`` in UTC. ``operator_name`` is the person who prepared the document.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from aios.errors import InvalidInput
from aios.identity import BusinessIdentity
from aios.kernel.money import MAX_AMOUNT_MINOR, LineItem, line_items_total, normalize_currency

__all__ = [
    "MAX_LINE_ITEMS",
    "MAX_NAME_CHARS",
    "MAX_SCOPE_CHARS",
    "MAX_TEXT_CHARS",
    "CreditNoteDocument",
    "InvoiceDocument",
    "MinorUnits",
    "ProposalDocument",
]

MAX_NAME_CHARS = 200
MAX_SCOPE_CHARS = 100_000  # about thirty pages of running text
MAX_TEXT_CHARS = 20_000  # terms, payment instructions, reasons
MAX_LINE_ITEMS = 500

MinorUnits = Annotated[int, Field(ge=0)]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    client_name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    operator_name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    business: BusinessIdentity
    issued_at: AwareDatetime
    currency: str

    @model_validator(mode="before")
    @classmethod
    def _default_business(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("business") is None:
            name = data.get("operator_name")
            if isinstance(name, str) and name.strip():
                return {**data, "business": BusinessIdentity(name=name)}
        return data

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        try:
            return normalize_currency(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None


class ProposalDocument(_Document):
    """A proposal as sent to the client: scope, priced lines, an optional discount, terms."""

    proposal_id: str = Field(min_length=1, max_length=100)
    version: int = Field(ge=1)
    valid_until: AwareDatetime
    scope: str = Field(min_length=1, max_length=MAX_SCOPE_CHARS)
    line_items: list[LineItem] = Field(min_length=1, max_length=MAX_LINE_ITEMS)
    subtotal_minor: MinorUnits
    discount_pct: Decimal = Field(default=Decimal(0), ge=0, le=100)
    discount_minor: MinorUnits = 0
    total_minor: MinorUnits
    terms: str = Field(max_length=MAX_TEXT_CHARS)

    @model_validator(mode="after")
    def _figures_add_up(self) -> ProposalDocument:
        lines = line_items_total(self.line_items)
        if self.subtotal_minor != lines:
            raise ValueError(
                f"subtotal_minor: {self.subtotal_minor} is not the sum of the line items ({lines})"
            )
        if self.discount_minor > self.subtotal_minor:
            raise ValueError(
                f"discount_minor: {self.discount_minor} exceeds "
                f"the subtotal ({self.subtotal_minor})"
            )
        # The percentage is shown with two decimals, so it may be rounded by up to 0.005
        # points; the discount must match it within that rounding (and one minor unit).
        expected = Decimal(self.subtotal_minor) * self.discount_pct / 100
        slack = Decimal(self.subtotal_minor) * Decimal("0.005") / 100 + 1
        if abs(Decimal(self.discount_minor) - expected) > slack:
            raise ValueError(
                f"discount_minor: {self.discount_minor} is not {self.discount_pct}% "
                f"of the subtotal ({self.subtotal_minor})"
            )
        if self.total_minor != self.subtotal_minor - self.discount_minor:
            raise ValueError(
                f"total_minor: {self.total_minor} is not the subtotal less the discount "
                f"({self.subtotal_minor - self.discount_minor})"
            )
        if self.valid_until < self.issued_at:
            raise ValueError("valid_until: must not be before issued_at")
        return self


class InvoiceDocument(_Document):
    """An invoice: who owes what for which lines, by when, and how to pay."""

    invoice_id: str = Field(min_length=1, max_length=100)
    number: str = Field(min_length=1, max_length=64)
    client_email: EmailStr
    due_at: AwareDatetime
    line_items: list[LineItem] = Field(min_length=1, max_length=MAX_LINE_ITEMS)
    total_minor: MinorUnits
    payment_instructions: str = Field(max_length=MAX_TEXT_CHARS)
    reference: str | None = Field(default=None, max_length=MAX_NAME_CHARS)

    @model_validator(mode="after")
    def _figures_add_up(self) -> InvoiceDocument:
        lines = line_items_total(self.line_items)
        if self.total_minor != lines:
            raise ValueError(
                f"total_minor: {self.total_minor} is not the sum of the line items ({lines})"
            )
        if self.due_at < self.issued_at:
            raise ValueError("due_at: must not be before issued_at")
        return self


class CreditNoteDocument(_Document):
    """A credit note against an issued invoice."""

    number: str = Field(min_length=1, max_length=64)
    invoice_number: str = Field(min_length=1, max_length=64)
    amount_minor: int = Field(ge=1, le=MAX_AMOUNT_MINOR)
    reason: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
