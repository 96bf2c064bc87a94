"""The reply agent: reads a client's email answer to a proposal.

Output ``ReplyReading``: ``intent`` (``accept``, ``decline``, ``counter`` with a
``proposed_total`` in major units, or ``question``), a short ``note`` in the client's words and,
for a question, a drafted ``answer`` for the operator to approve or edit. The client's email is
fenced; code, not the reading, decides what happens (``aios.workflows.inbound_mail``: only a
confident reading that the proposal policy allows is signalled without the operator).

The template provider (the offline default) reads the text with fixed rules: the quoted part of
the email (lines starting ``>``, everything after ``On ... wrote:``) is dropped; a negated
agreement ("cannot accept") or a refusal reads as decline; an amount with counter words ("could
you do 3,500", "our budget is", "counter") as counter; agreement words ("we accept", "go
ahead") as accept; a question mark and nothing else as question. Several intents at once, or
none, read with low confidence, so the operator decides.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aios.agents.base import FENCE_RULE, Agent, fence

__all__ = ["ReplyAgent", "ReplyReading", "ReplyRequest", "strip_quoted"]

Intent = Literal["accept", "decline", "counter", "question"]

PROMPT_VERSION = "reply@1"
SYSTEM_PROMPT = f"""You read a client's email reply to a proposal from a one-person consultancy.
Reply with JSON only: {{"confidence": 0..1, "output": {{...}}}}, where output has intent (one of
accept, decline, counter, question), proposed_total (for counter only: the total the client
offers, a plain number in the proposal's currency, else null), note (the client's reason or
words, at most 300 characters) and answer (for question only: a short, polite draft answer the
operator will review, else null). Set confidence low when the email is unclear or mixes intents.
{FENCE_RULE}"""
PROMPT = """Proposal {proposal_id} version {version}: total {total}.
The client's email (subject {subject}):
{text}"""

_QUOTE_START = re.compile(r"^\s*(on .{0,200}wrote:|-----\s*original message\s*-----)", re.I | re.M)
_DECLINE = re.compile(
    r"\b(?:decline|declining|not (?:going to )?(?:go|move) ahead|not proceed|won'?t proceed|"
    r"(?:cannot|can'?t|can not|won'?t|will not|do not|don'?t) (?:accept|agree|proceed)|"
    r"no thanks?|not interested|reject|pass on|another (?:vendor|agency|supplier)|"
    r"go(?:ing)? with someone else)\b",
    re.I,
)
_ACCEPT = re.compile(
    r"\b(?:we accept|i accept|accepted|accept (?:the|your|this)|we agree|agreed|go ahead|"
    r"let'?s (?:proceed|go|do it)|approved?|sounds good|looks good|deal|happy to proceed|"
    r"we'?re in|signed)\b",
    re.I,
)
_COUNTER = re.compile(
    r"\b(?:counter|could you do|can you do|would you (?:do|accept|consider)|our budget is|"
    r"budget of|we can (?:pay|offer|do)|we could (?:pay|offer|do)|offer|how about|at most|"
    r"meet (?:us )?(?:at|in the middle))\b",
    re.I,
)
_AMOUNT = re.compile(
    r"(?:[$€£]\s?)?(\d{1,3}(?:[,\s]\d{3})+|\d+)(?:\.(\d{1,2}))?\s?([kK])?\b"
    r"(?:\s?(?:usd|eur|gbp|dollars|euros|pounds))?",
)


class ReplyRequest(BaseModel):
    proposal_id: str
    version: int
    total: str  # "USD 2,200.00"
    subject: str = ""
    text: str


class ReplyReading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent: Intent
    proposed_total: Decimal | None = Field(default=None, gt=0, max_digits=14, decimal_places=2)
    note: str = Field(default="", max_length=300)
    answer: str | None = Field(default=None, max_length=2000)


def strip_quoted(text: str) -> str:
    """The new part of a reply: without quoted lines and the quoted original below it."""
    match = _QUOTE_START.search(text)
    if match:
        text = text[: match.start()]
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    return "\n".join(lines).strip()


def _amounts(text: str) -> list[Decimal]:
    found = []
    for m in _AMOUNT.finditer(text):
        whole, cents, k = m.group(1), m.group(2), m.group(3)
        try:
            value = Decimal(re.sub(r"[,\s]", "", whole) + (f".{cents}" if cents else ""))
        except InvalidOperation:
            continue
        if k:
            value *= 1000
        # A year, a day or a version number is not a price.
        if value >= 100 and not (1900 <= value <= 2100 and not k and "," not in whole):
            found.append(value)
    return found


def _first_sentence(text: str) -> str:
    line = " ".join(text.split())
    return re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0][:300]


class ReplyAgent(Agent[ReplyRequest, ReplyReading]):
    name = "reply"
    prompt_version = PROMPT_VERSION
    system_prompt = SYSTEM_PROMPT
    output_model = ReplyReading

    def render_prompt(self, request: ReplyRequest) -> str:
        return PROMPT.format(
            proposal_id=request.proposal_id,
            version=request.version,
            total=request.total,
            subject=fence(request.subject, limit=300),
            text=fence(strip_quoted(request.text)),
        )

    def template(self, request: ReplyRequest) -> tuple[dict[str, Any], float]:
        text = strip_quoted(request.text) or request.subject
        decline = bool(_DECLINE.search(text))
        accept = bool(_ACCEPT.search(_DECLINE.sub(" ", text)))
        amounts = _amounts(text)
        counter = bool(_COUNTER.search(text)) and bool(amounts)
        question = "?" in text
        intents = [
            name
            for name, hit in (("decline", decline), ("counter", counter), ("accept", accept))
            if hit
        ]
        note = _first_sentence(text)
        if len(intents) == 1:
            intent = intents[0]
            # "We accept?" is not an acceptance; "could you do 1,800?" is still a counter.
            confidence = 0.6 if question and intent != "counter" else 0.9
        elif intents:  # mixed ("we accept, but could you do 3,000?"): the operator reads it
            intent = "counter" if counter else intents[0]
            confidence = 0.4
        else:
            intent = "question"
            confidence = 0.8 if question else 0.3
        raw: dict[str, Any] = {"intent": intent, "note": note}
        if intent == "counter":
            raw["proposed_total"] = str(amounts[0])
        if intent == "question":
            raw["answer"] = (
                "Thank you for your message about proposal "
                f"{request.proposal_id}. I will look into your question and come back to you "
                "shortly."
            )
        return raw, confidence

    def check(self, output: ReplyReading, request: ReplyRequest) -> str | None:
        if output.intent == "counter" and output.proposed_total is None:
            return "proposed_total: a counter needs a total"
        if output.intent != "counter" and output.proposed_total is not None:
            return "proposed_total: only for a counter"
        if output.intent == "question" and not (output.answer or "").strip():
            return "answer: a question needs a drafted answer"
        return None
