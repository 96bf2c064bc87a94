"""The welcome agent: drafts the welcome email and kickoff plan for a new client."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aios.agents.base import FENCE_RULE, Agent, fence
from aios.agents.corrections import (
    CorrectionHint,
    apply_corrections,
    correction_lines,
    unknown_correction_ids,
)
from aios.agents.intake import IntakeFacts
from aios.identity import zone_label
from aios.kernel.text import Line, PastedText

__all__ = [
    "MemoryHint",
    "WelcomeAgent",
    "WelcomeDraft",
    "WelcomeRequest",
    "memory_lines",
    "unknown_memory_ids",
]

PROMPT_VERSION = "welcome@2"
SYSTEM_PROMPT = f"""You write the welcome email and kickoff plan a one-person consultancy sends
a new client. Reply with JSON only: {{"confidence": 0..1, "output": {{...}}}}, where output has
subject, body (plain text, signed by the operator, mentioning the attached kickoff invite), plan
(the first steps, 1 to 12), memory_ids_used (ids of the memories you drew on; only ids you were
given) and rationale (one or two sentences for the operator, not the client).
Promise nothing about price, discounts or deadlines: those come later, in a proposal.
{FENCE_RULE}"""
PROMPT = """Operator: {operator}
Client name: {client}
Facts from intake: {facts}
Kickoff call: {kickoff}
Related memories (id: text), written by the operator's earlier runs; they may quote clients:
{memories}
The client's notes:
{notes}"""
CORRECTIONS = """
Corrections the operator made at the gate to your earlier drafts for similar clients (id, then
each change; {{client}} stands for the client's name). Apply each one that fits this email, and
list the ids you applied in corrections_used (only ids given here):
{corrections}"""

_PLAN: dict[str, list[str]] = {
    "web": ["Collect access to the current site and analytics", "Agree on sitemap and key pages"],
    "marketing": ["Review current channels and numbers", "Agree on goals for the first quarter"],
    "design": ["Gather existing brand material", "Agree on references and constraints"],
    "software": ["Map the systems involved and their owners", "Agree on the first deliverable"],
    "consulting": ["Share background documents", "Agree on the questions to answer first"],
    "general": ["Share background material", "Agree on goals and first deliverable"],
}


class MemoryHint(BaseModel):
    """A recalled memory as an agent sees it."""

    id: str
    text: str
    entity: str
    score: float


class WelcomeRequest(BaseModel):
    client_name: str
    facts: IntakeFacts
    kickoff_at: datetime
    operator_name: str
    notes: str = ""
    memories: list[MemoryHint] = Field(default_factory=list)
    corrections: list[CorrectionHint] = Field(default_factory=list)


class WelcomeDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A model's text is cleaned of what cannot be stored; a subject with a line break is
    # refused (it would split the email header), which the runner repairs or escalates.
    subject: Line = Field(min_length=1, max_length=200)
    body: PastedText = Field(min_length=1, max_length=10000)
    plan: list[PastedText] = Field(min_length=1, max_length=12)
    memory_ids_used: list[Line] = Field(default_factory=list)
    rationale: PastedText = ""
    corrections_used: list[Line] = Field(default_factory=list)


def memory_lines(memories: list[MemoryHint]) -> str:
    """Recalled memories for a prompt, each fenced: they may quote client text."""
    return "\n".join(f"{m.id}: {fence(m.text, limit=1000)}" for m in memories) or "(none)"


def unknown_memory_ids(used: list[str], given: list[MemoryHint]) -> str | None:
    known = {m.id for m in given}
    unknown = [i for i in used if i not in known]
    if unknown:
        return f"memory_ids_used: {unknown[0]!r} is not one of the memories given"
    return None


class WelcomeAgent(Agent[WelcomeRequest, WelcomeDraft]):
    name = "welcome"
    prompt_version = PROMPT_VERSION
    system_prompt = SYSTEM_PROMPT
    output_model = WelcomeDraft
    relevant_score = 0.3

    def render_prompt(self, request: WelcomeRequest) -> str:
        prompt = PROMPT.format(
            operator=request.operator_name,
            client=fence(request.client_name, limit=200),
            facts=fence(request.facts.model_dump_json()),
            kickoff=request.kickoff_at.isoformat(),
            memories=memory_lines(request.memories),
            notes=fence(request.notes),
        )
        if request.corrections:
            prompt += CORRECTIONS.format(corrections=correction_lines(request.corrections))
        return prompt

    def check(self, output: WelcomeDraft, request: WelcomeRequest) -> str | None:
        return unknown_memory_ids(
            output.memory_ids_used, request.memories
        ) or unknown_correction_ids(output.corrections_used, request.corrections)

    def memory_ids(self, request: WelcomeRequest) -> list[str]:
        return [m.id for m in request.memories]

    def template(self, request: WelcomeRequest) -> tuple[dict[str, Any], float]:
        facts = request.facts
        used = [m for m in request.memories if m.score >= self.relevant_score][:3]
        plan = [
            f"Kickoff call on {request.kickoff_at:%A %d %B %Y at %H:%M} "
            f"{zone_label(request.kickoff_at)} (invite attached)",
            *_PLAN[facts.segment],
        ]
        if used:
            plan.append("Reuse the checklist that worked for a similar engagement")
        if facts.deadline_hint:
            plan.append(f"Plan backwards from your deadline ({facts.deadline_hint})")
        plan.append("Confirm scope, budget and timeline in a short proposal")
        steps = "\n".join(f"  {i}. {step}" for i, step in enumerate(plan, 1))
        body = (
            f"Hello {request.client_name},\n\n"
            f"Thank you for choosing to work with me. I understood your request as: "
            f"{facts.summary}\n\n"
            f"Here is how we will get started:\n{steps}\n\n"
            f"The calendar invite for our kickoff is attached. If the time does not suit you, "
            f"reply to this email and I will find another slot.\n\n"
            f"Best regards,\n{request.operator_name}\n"
        )
        rationale = f"Segment {facts.segment}; urgency {facts.urgency}. " + (
            "Drew on memories " + ", ".join(m.id for m in used) + "."
            if used
            else "No similar engagements in memory."
        )
        # The operator's corrections for similar clients: field-level replacements.
        fields, applied = apply_corrections(
            {"subject": f"Welcome aboard, {request.client_name}", "body": body},
            request.corrections,
            client_name=request.client_name,
        )
        if applied:
            rationale += " Applied the operator's corrections " + ", ".join(applied) + "."
        raw = {
            "subject": fields["subject"],
            "body": fields["body"],
            "plan": plan,
            "memory_ids_used": [m.id for m in used],
            "rationale": rationale,
            "corrections_used": applied,
        }
        return raw, 0.9 if used else 0.8
