"""What things cost: model prices per million tokens, model tiers, and the default rate card.

Plain data shared by the settings (``aios.config``), the agent runner and the proposal agent.
It lives here, apart from the agents, so reading the settings (every ``aios`` command does)
does not load the agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel

from aios.kernel.money import LineItem

__all__ = ["DEFAULT_MODEL_PRICES", "DEFAULT_RATE_CARD", "ModelPrice", "Tier"]

_MICRO = Decimal("0.000001")


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        usd = (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 10**6
        return usd.quantize(_MICRO, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Tier:
    name: str
    model: str  # model name (OpenAI) or deployment name (Azure)
    price: ModelPrice


def _price(input_per_mtok: str, output_per_mtok: str) -> ModelPrice:
    return ModelPrice(
        input_per_mtok=Decimal(input_per_mtok), output_per_mtok=Decimal(output_per_mtok)
    )


# USD per million tokens, from the providers' published list prices. Azure deployments are
# priced under their deployment name: add an entry for each (AIOS_MODEL_PRICES, JSON).
DEFAULT_MODEL_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": _price("0.15", "0.60"),
    "gpt-4o": _price("2.50", "10.00"),
    "gpt-4.1-nano": _price("0.10", "0.40"),
    "gpt-4.1-mini": _price("0.40", "1.60"),
    "gpt-4.1": _price("2.00", "8.00"),
    "gpt-5-nano": _price("0.05", "0.40"),
    "gpt-5-mini": _price("0.25", "2.00"),
    "gpt-5": _price("1.25", "10.00"),
}


def _item(description: str, quantity: int, unit_price: int) -> LineItem:
    return LineItem(description=description, quantity=quantity, unit_price_minor=unit_price)


# The services a proposal is priced from, by segment (AIOS_RATE_CARD replaces it).
DEFAULT_RATE_CARD: dict[str, list[LineItem]] = {
    "web": [
        _item("Website design (up to 8 page templates)", 1, 240_000),
        _item("Website build and launch", 1, 280_000),
    ],
    "marketing": [_item("Marketing plan and first campaign", 1, 240_000)],
    "design": [_item("Brand identity: logo, palette, typography", 1, 320_000)],
    "software": [_item("Software development (days)", 10, 80_000)],
    "consulting": [_item("Strategy workshop and written recommendations", 1, 180_000)],
    "general": [_item("Consulting (days)", 3, 90_000)],
    "base": [_item("Project management and kickoff", 1, 40_000)],
}
