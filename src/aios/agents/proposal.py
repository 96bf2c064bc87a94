"""The proposal agent: line items, discount, terms and a rationale that cites memory.

The agent chooses *what* to offer: lines of the operator's rate card by id (``web-1``), with a
quantity, and a discount of at most ``MAX_AGENT_DISCOUNT``. Code looks the prices up and computes
every amount, so a model can neither invent a price nor do the arithmetic. The template provider
picks lines by matching the scope against the rate card's segments, discounts toward the
client's budget (at most ``MAX_AGENT_DISCOUNT``), and cites the similar past proposals it was
given, with a small discount when a similar offer was declined on price. The policy, not the
agent, decides whether a human must approve the result.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aios.agents.base import FENCE_RULE, Agent, fence
from aios.agents.corrections import CorrectionHint, correction_lines, unknown_correction_ids
from aios.agents.intake import SEGMENT_KEYWORDS
from aios.agents.welcome import MemoryHint, memory_lines, unknown_memory_ids
from aios.kernel.money import LineItem, format_amount, line_items_total
from aios.kernel.pricing import DEFAULT_RATE_CARD
from aios.kernel.text import Line, PastedText

__all__ = [
    "DEFAULT_RATE_CARD",
    "MAX_AGENT_DISCOUNT",
    "ProposalAgent",
    "ProposalDraft",
    "ProposalLine",
    "ProposalRequest",
    "price_lines",
    "proposal_terms",
    "rate_card_index",
    "segments_in",
]

PROMPT_VERSION = "proposal@2"
SYSTEM_PROMPT_TEMPLATE = """You draft a fixed-price proposal for a client of a one-person
consultancy. Reply with JSON only: {{"confidence": 0..1, "output": {{...}}}}, where output has
lines (items of the rate card by id, each with a quantity; never an item that is not on it),
discount_pct (0 to {max_discount}), rationale (for the operator: why these lines and this
discount, citing memories by id) and memory_ids_used (only ids you were given).
You cannot set prices: they come from the rate card. Fit the scope, then the budget.
{fence_rule}"""
PROMPT = """Operator: {operator}
Client: {client}; segment: {segment}; currency: {currency}; budget hint: {budget}
Rate card (id: description, quantity x unit price):
{rate_card}
Similar past proposals and their outcomes (id: text):
{memories}
The scope the client asked for:
{scope}"""

MAX_AGENT_DISCOUNT = Decimal(25)
PRICE_DECLINE_DISCOUNT = Decimal(5)
_PRICE_WORDS = re.compile(r"\b(?:price|expensive|budget|cost|cheaper|afford)", re.IGNORECASE)
_OUTCOME = re.compile(r"Outcome: (accepted|declined|expired)", re.IGNORECASE)
_REASON = re.compile(r"Reason: (.*?)\. Counters:", re.IGNORECASE | re.DOTALL)


CORRECTIONS = """
Corrections the operator made at the gate to your earlier proposals for similar clients (id,
then each change of total, discount_pct or terms; {{client}} stands for the client's name).
Take them into account for the lines and the discount (the terms are applied for you), and
list the ids you drew on in corrections_used (only ids given here):
{corrections}"""
SYSTEM_PROMPT = SYSTEM_PROMPT_TEMPLATE.format(
    max_discount=MAX_AGENT_DISCOUNT, fence_rule=FENCE_RULE
)


def rate_card_index(card: dict[str, list[LineItem]]) -> dict[str, LineItem]:
    """Rate card items by id: ``<segment>-<n>``, counting from 1 in card order."""
    return {
        f"{segment}-{n}": item for segment, items in card.items() for n, item in enumerate(items, 1)
    }


class ProposalLine(BaseModel):
    """A rate-card item chosen for a proposal; the price comes from the card."""

    model_config = ConfigDict(extra="forbid")

    item: Line = Field(min_length=1, max_length=60)
    quantity: int = Field(ge=1, le=1000)


def price_lines(card: dict[str, list[LineItem]], lines: list[ProposalLine]) -> list[LineItem]:
    """Line items with the card's descriptions and unit prices; unknown ids are an error."""
    index = rate_card_index(card)
    priced: list[LineItem] = []
    for n, line in enumerate(lines):
        item = index.get(line.item)
        if item is None:
            raise ValueError(f"lines.{n}.item: {line.item!r} is not on the rate card")
        priced.append(item.model_copy(update={"quantity": line.quantity}))
    return priced


class ProposalRequest(BaseModel):
    client_name: str
    segment: str
    scope: str
    currency: str
    budget_hint_minor: int | None = None
    deadline: date | None = None
    operator_name: str
    rate_card: dict[str, list[LineItem]]
    memories: list[MemoryHint] = Field(default_factory=list)
    corrections: list[CorrectionHint] = Field(default_factory=list)


class ProposalDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[ProposalLine] = Field(min_length=1, max_length=30)
    discount_pct: Decimal = Field(ge=0, le=MAX_AGENT_DISCOUNT, decimal_places=2)
    rationale: PastedText = Field(min_length=1, max_length=2000)
    memory_ids_used: list[Line] = Field(default_factory=list)
    corrections_used: list[Line] = Field(default_factory=list)


def segments_in(scope: str, fallback: str) -> list[str]:
    lowered = f" {scope.lower()} "
    found = [
        segment
        for segment, words in SEGMENT_KEYWORDS.items()
        if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in words)
    ]
    return found or [fallback if fallback in SEGMENT_KEYWORDS else "general"]


class ProposalAgent(Agent[ProposalRequest, ProposalDraft]):
    name = "proposal"
    prompt_version = PROMPT_VERSION
    system_prompt = SYSTEM_PROMPT
    output_model = ProposalDraft
    relevant_score = 0.3

    def render_prompt(self, request: ProposalRequest) -> str:
        cur = request.currency
        card = "\n".join(
            f"{item_id}: {item.description}, {item.quantity} x "
            f"{format_amount(item.unit_price_minor, cur)}"
            for item_id, item in rate_card_index(request.rate_card).items()
        )
        budget = request.budget_hint_minor
        return PROMPT.format(
            operator=request.operator_name,
            client=fence(request.client_name, limit=200),
            segment=request.segment,
            currency=cur,
            budget=format_amount(budget, cur) if budget is not None else "none",
            rate_card=card,
            memories=memory_lines(request.memories),
            scope=fence(request.scope),
        ) + (
            CORRECTIONS.format(corrections=correction_lines(request.corrections))
            if request.corrections
            else ""
        )

    def check(self, output: ProposalDraft, request: ProposalRequest) -> str | None:
        try:
            price_lines(request.rate_card, output.lines)
        except ValueError as exc:
            return str(exc)
        return unknown_memory_ids(
            output.memory_ids_used, request.memories
        ) or unknown_correction_ids(output.corrections_used, request.corrections)

    def memory_ids(self, request: ProposalRequest) -> list[str]:
        return [m.id for m in request.memories]

    def template(self, request: ProposalRequest) -> tuple[dict[str, Any], float]:
        card = request.rate_card
        segments = [s for s in segments_in(request.scope, request.segment) if s in card]
        chosen = [s for s in (segments or ["general"]) if s in card] + (
            ["base"] if "base" in card else []
        )
        picked = [
            ProposalLine(item=f"{s}-{n}", quantity=item.quantity)
            for s in chosen
            for n, item in enumerate(card[s], 1)
        ]
        lines = price_lines(card, picked)
        subtotal = line_items_total(lines)
        notes: list[str] = [f"Scope matched {', '.join(segments) or 'general'} on the rate card."]

        discount = Decimal(0)
        budget = request.budget_hint_minor
        if budget is not None and subtotal > 0 and budget < subtotal:
            needed = Decimal(math.ceil((subtotal - budget) * 200 / subtotal)) / 2  # half points
            discount = min(needed, MAX_AGENT_DISCOUNT)
            notes.append(
                f"Budget {format_amount(budget, request.currency)} is below the list price "
                f"{format_amount(subtotal, request.currency)}: {discount}% discount"
                + (" (the most I offer; consider a smaller scope)." if needed > discount else ".")
            )

        used = [m for m in request.memories if m.score >= self.relevant_score][:3]
        for memory in used:
            outcome = _OUTCOME.search(memory.text)
            verdict = outcome.group(1).lower() if outcome else "unknown"
            notes.append(f"Similar proposal {memory.id} ended {verdict}.")
            reason = _REASON.search(memory.text)
            on_price = verdict == "declined" and reason and _PRICE_WORDS.search(reason.group(1))
            if on_price and discount < PRICE_DECLINE_DISCOUNT:
                discount = PRICE_DECLINE_DISCOUNT
                notes.append(f"It was declined on price, so I start at {discount}% off.")
        if not used:
            notes.append("No similar past proposals in memory.")

        raw = {
            "lines": [line.model_dump() for line in picked],
            "discount_pct": discount,
            "rationale": " ".join(notes),
            "memory_ids_used": [m.id for m in used],
        }
        confidence = 0.6 if segments == ["general"] else (0.9 if used else 0.8)
        return raw, confidence


def proposal_terms(*, valid_until: datetime, payment_terms_days: int, provider: str) -> str:
    """The standard terms printed on every proposal version."""
    how = (
        "online through the payment link on the invoice"
        if provider == "stripe"
        else ("by bank transfer to the account on the invoice")
    )
    return (
        f"This offer is valid until {valid_until:%d %B %Y}. "
        f"On acceptance the full amount is invoiced, payable within {payment_terms_days} days "
        f"{how}. Prices are fixed for the scope described; changes to the scope are quoted "
        "separately."
    )
