"""Money: integer minor units with an ISO 4217 currency, never floats.

``parse_amount("4,500.50", "USD") == 450050`` and ``format_amount(450050, "USD") ==
"USD 4,500.50"``. Amounts with more decimals than the currency has are an error, not rounded.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aios.errors import InvalidInput
from aios.kernel.text import PastedText

__all__ = [
    "MAX_AMOUNT_MINOR",
    "LineItem",
    "currency_exponent",
    "format_amount",
    "line_items_total",
    "normalize_currency",
    "parse_amount",
]

# Currencies without minor units; every other ISO code here has two decimals.
_ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
MAX_AMOUNT_MINOR = 10**12  # ten billion in a two-decimal currency: far beyond any invoice


def normalize_currency(code: str) -> str:
    value = code.strip().upper()
    if not _CURRENCY_RE.match(value):
        raise InvalidInput(f"currency: {code!r} is not a three-letter ISO 4217 code")
    return value


def currency_exponent(currency: str) -> int:
    return 0 if normalize_currency(currency) in _ZERO_DECIMAL else 2


def parse_amount(text: str | int | float | Decimal, currency: str) -> int:
    """A decimal amount in major units (``"4500"``, ``"4,500.50"``) as integer minor units."""
    shown = str(text).strip()
    raw = shown.replace(",", "").replace("_", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InvalidInput(f"amount: {shown!r} is not a number") from None
    if not value.is_finite():
        raise InvalidInput(f"amount: {shown!r} is not a finite number")
    exponent = currency_exponent(currency)
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise InvalidInput(
            f"amount: {shown!r} has more than {exponent} decimal(s) for {currency.upper()}"
        )
    result = int(minor)
    if result < 0:
        raise InvalidInput(f"amount: {shown!r} must not be negative")
    if result > MAX_AMOUNT_MINOR:
        raise InvalidInput(f"amount: {shown!r} is implausibly large")
    return result


def format_amount(minor: int, currency: str) -> str:
    """``450050, "USD"`` -> ``"USD 4,500.50"``."""
    exponent = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    major = Decimal(abs(minor)).scaleb(-exponent)
    return f"{currency.upper()} {sign}{major:,.{exponent}f}"


class LineItem(BaseModel):
    """One line of a proposal or invoice: quantity times unit price, in minor units."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    description: PastedText = Field(min_length=1, max_length=300)
    quantity: int = Field(ge=1, le=100_000)
    unit_price_minor: int = Field(ge=0, le=MAX_AMOUNT_MINOR)

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())

    @property
    def amount_minor(self) -> int:
        return self.quantity * self.unit_price_minor


def line_items_total(items: list[LineItem]) -> int:
    return sum(item.amount_minor for item in items)
