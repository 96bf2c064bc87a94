"""The intake agent: classifies a new client's request and extracts structured facts."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aios.agents.base import FENCE_RULE, Agent, fence
from aios.kernel.text import PastedText

__all__ = ["SEGMENT_KEYWORDS", "IntakeAgent", "IntakeFacts", "IntakeRequest"]

Segment = Literal["web", "marketing", "design", "software", "consulting", "general"]

PROMPT_VERSION = "intake@2"
SYSTEM_PROMPT = f"""You classify a new client's request for a one-person consultancy.
Reply with JSON only: {{"confidence": 0..1, "output": {{...}}}}, where output has
segment (one of web, marketing, design, software, consulting, general), services (the services
asked for, at most 10), budget_hint and deadline_hint (the client's words, or null), urgency
(low, normal, high) and summary (one sentence in your words, at most 300 characters).
Set confidence low when the request is vague or does not fit one segment.
{FENCE_RULE}"""
PROMPT = """Client name: {name}
The client's notes:
{notes}"""

SEGMENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "web": ("website", "web site", "landing page", "webshop", "e-commerce", "ecommerce", "web"),
    "marketing": ("marketing", "seo", "campaign", "newsletter", "social media", "ads", "content"),
    "design": ("brand", "branding", "logo", "identity", "design", "ux", "ui"),
    "software": ("app", "api", "software", "integration", "automation", "backend", "platform"),
    "consulting": ("strategy", "advice", "audit", "workshop", "consulting", "coaching"),
}
# Bounded repetitions: a long run of digits must not make matching quadratic.
_BUDGET = re.compile(
    r"(?:[$€£]\s?\d[\d,.]{0,15}\s?[kKmM]?\b|\b\d[\d,.]{0,15}\s?[kK]?\s?(?:usd|eur|gbp|dollars|euros|pounds)\b)",
    re.IGNORECASE,
)
_DEADLINE = re.compile(
    r"\b(?:by|before|until|due)\s+(?:the\s+)?(?:end of\s+)?"
    r"(?:\d{4}-\d{2}-\d{2}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?(?:\s+\d{1,2})?"
    r"|q[1-4]|next\s+\w+|\w+day)\b|\bin\s+\d+\s+(?:days?|weeks?|months?)\b",
    re.IGNORECASE,
)
_URGENT = re.compile(r"\b(?:urgent|asap|immediately|right away|this week)\b", re.IGNORECASE)


class IntakeRequest(BaseModel):
    name: str
    notes: str = ""


class IntakeFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: Segment
    services: list[PastedText] = Field(default_factory=list, max_length=10)
    budget_hint: PastedText | None = Field(default=None, max_length=60)
    deadline_hint: PastedText | None = Field(default=None, max_length=60)
    urgency: Literal["low", "normal", "high"] = "normal"
    summary: PastedText = Field(max_length=300)


class IntakeAgent(Agent[IntakeRequest, IntakeFacts]):
    name = "intake"
    prompt_version = PROMPT_VERSION
    system_prompt = SYSTEM_PROMPT
    output_model = IntakeFacts

    def render_prompt(self, request: IntakeRequest) -> str:
        return PROMPT.format(name=fence(request.name, limit=200), notes=fence(request.notes))

    def template(self, request: IntakeRequest) -> tuple[dict[str, Any], float]:
        notes = request.notes
        lowered = f" {notes.lower()} "
        scores = {
            segment: sum(1 for word in words if re.search(rf"\b{re.escape(word)}\b", lowered))
            for segment, words in SEGMENT_KEYWORDS.items()
        }
        best = max(scores, key=lambda s: scores[s])
        segment = best if scores[best] > 0 else "general"
        services = [
            word
            for words in SEGMENT_KEYWORDS.values()
            for word in words
            if re.search(rf"\b{re.escape(word)}\b", lowered)
        ][:10]
        budget = _BUDGET.search(notes)
        deadline = _DEADLINE.search(notes)
        urgency = "high" if _URGENT.search(notes) else "normal"
        first_sentence = re.split(r"(?<=[.!?])\s+|\n", notes.strip(), maxsplit=1)[0]
        summary = (first_sentence or f"New client {request.name}")[:300]
        raw = {
            "segment": segment,
            "services": services,
            "budget_hint": budget.group(0)[:60] if budget else None,
            "deadline_hint": deadline.group(0)[:60] if deadline else None,
            "urgency": urgency,
            "summary": summary,
        }
        signals = sum(1 for v in (budget, deadline) if v) + min(scores[best], 3)
        confidence = 0.3 if not notes.strip() else min(0.5 + 0.1 * signals, 0.95)
        return raw, round(confidence, 2)
