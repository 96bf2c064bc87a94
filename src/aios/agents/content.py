"""The content agent: topics from memory, their novelty, the draft of a post, its fact-check.

Plain rules, no Temporal, each unit-testable:

- ``propose_topics``: candidate topics from recalled memories: questions clients asked (a
  sentence ending in ``?``), recent client outcomes (onboardings, proposals, payments) and
  earlier posts (a follow-up). Each names the memory ids it came from.
- ``flag_repeats``: the novelty check. A candidate whose best match among the published posts'
  memories (kind ``published_post``) scores a cosine similarity at or above the threshold is
  flagged with the post it repeats.
- ``ContentAgent``: writes the title, a summary and a Markdown body (the template provider by
  default, the model tiers when configured). Every claim it writes cites the memory it comes
  from as ``[mem:<id>]``.
- ``fact_check``: the rule below, deterministic.

Fact-check rule. The body is split into claims: Markdown headings, code blocks and images are
left out; each remaining line is split into sentences (a ``.``, ``!`` or ``?`` followed by a
space, unless a citation follows it, which then belongs to that sentence). A sentence is a
*claim* when it has a factual marker: a number (``40``, ``5,600.00``, ``12%``), or an outcome
word (accepted, declined, paid, signed, won, lost, onboarded, launched, delivered, cancelled,
expired, increased, reduced, grew, saved, doubled, halved). A claim with no ``[mem:<id>]`` is
*unsourced*. A cited claim is a *conflict* when a cited id is not in memory, when it states a
number that none of its cited memories contains (numbers compare as values: ``5,600.00`` equals
``5600``), or when it states an outcome whose opposite its cited memories state and they do
not state it (accepted/declined, won/lost, paid/unpaid, increased/decreased, grew/shrank).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aios.agents.base import FENCE_RULE, Agent, fence
from aios.agents.welcome import MemoryHint, memory_lines, unknown_memory_ids
from aios.kernel.text import Line, PastedText

__all__ = [
    "CLIENT_OUTCOME_KINDS",
    "PUBLISHED_POST_KIND",
    "Claim",
    "ContentAgent",
    "ContentDraft",
    "ContentRequest",
    "FactCheck",
    "TopicCandidate",
    "citations",
    "fact_check",
    "flag_repeats",
    "propose_topics",
]

PROMPT_VERSION = "content@1"
PUBLISHED_POST_KIND = "published_post"
CLIENT_OUTCOME_KINDS = ("onboarding_summary", "proposal_outcome", "billing_outcome", "decision")
MAX_TOPICS = 5
MAX_CITED = 4

CITATION = re.compile(r"\[mem:([0-9A-Za-z-]{1,64})\]")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?!\[mem:)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
OUTCOME_WORDS = frozenset(
    {
        "accepted",
        "declined",
        "paid",
        "unpaid",
        "signed",
        "won",
        "lost",
        "onboarded",
        "launched",
        "delivered",
        "cancelled",
        "expired",
        "increased",
        "decreased",
        "reduced",
        "grew",
        "shrank",
        "saved",
        "doubled",
        "halved",
    }
)
OPPOSITES = {
    "accepted": "declined",
    "declined": "accepted",
    "won": "lost",
    "lost": "won",
    "paid": "unpaid",
    "unpaid": "paid",
    "increased": "decreased",
    "decreased": "increased",
    "grew": "shrank",
    "shrank": "grew",
}
_WORD = re.compile(r"[a-z]+")

SYSTEM_PROMPT = f"""You write a short blog post for a one-person consultancy, from its notes.
Reply with JSON only: {{"confidence": 0..1, "output": {{...}}}}, where output has title (at most
120 characters), summary (one or two sentences, no claims), markdown (the body in Markdown) and
memory_ids_used (only ids you were given).
Every sentence with a number or a client outcome must end with the id of the note it comes
from, written [mem:<id>]; state numbers exactly as the note does; never invent a fact. Leave out
client names. {FENCE_RULE}"""
PROMPT = """Author: {operator}
Topic: {topic}
Notes from recent work (id: text):
{memories}"""


# --- topics ---------------------------------------------------------------------------------


class TopicCandidate(BaseModel):
    """A topic the planner proposes, where it came from, and whether it repeats a post."""

    topic: str
    origin: str  # question, outcome, earlier_post, operator
    sources: list[str] = Field(default_factory=list)  # memory ids
    repeats: str | None = None  # the post id it is too similar to
    similarity: float | None = None  # its best cosine score against published posts


def _first_sentence(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def _quote(text: str, limit: int = 400) -> str:
    """The first two sentences of a memory, whole (a cut could change a number)."""
    sentences = re.split(r"(?<=[.!?])\s", " ".join(text.split()))
    quoted = "; ".join(s.rstrip(".") for s in sentences[:2])
    while len(quoted) > limit and " " in quoted:
        quoted = quoted.rsplit(" ", 1)[0]
    return quoted


def _field(text: str, name: str) -> str | None:
    """The value of ``Name: value.`` in a memory text (``Request: ...``, ``Scope: ...``)."""
    found = re.search(rf"\b{name}:\s*(.+?)(?:\.\s|\.$|$)", text)
    return found.group(1).strip() if found and found.group(1).strip() else None


def propose_topics(memories: list[MemoryHint], *, limit: int = MAX_TOPICS) -> list[TopicCandidate]:
    """Up to ``limit`` distinct topics from ``memories`` (questions first, then client outcomes,
    then a follow-up of the latest earlier post), each with the memory ids it came from."""
    questions: list[TopicCandidate] = []
    outcomes: list[TopicCandidate] = []
    earlier: list[TopicCandidate] = []
    for memory in memories:
        kind = memory.entity.split(":", 1)[0]
        text = " ".join(memory.text.split())
        asked = [s for s in re.split(r"(?<=[.!?])\s", text) if s.endswith("?") and len(s) > 12]
        if asked:
            questions.append(
                TopicCandidate(
                    topic=f"Answering a client question: {asked[0][:160]}",
                    origin="question",
                    sources=[memory.id],
                )
            )
        elif kind == "post":
            earlier.append(
                TopicCandidate(
                    topic=f"Follow-up: {_first_sentence(text.split(': ', 1)[-1])}",
                    origin="earlier_post",
                    sources=[memory.id],
                )
            )
        else:
            subject = _field(text, "Scope") or _field(text, "Request") or _first_sentence(text)
            outcomes.append(
                TopicCandidate(
                    topic=f"What we learned: {subject[:160]}", origin="outcome", sources=[memory.id]
                )
            )
    seen: set[str] = set()
    picked: list[TopicCandidate] = []
    for candidate in [*questions, *outcomes, *earlier[:1]]:
        key = candidate.topic.lower()
        if key not in seen:
            seen.add(key)
            picked.append(candidate)
    return picked[:limit]


def flag_repeats(
    candidate: TopicCandidate, matches: list[tuple[str, float]], threshold: float
) -> TopicCandidate:
    """``candidate`` with its novelty: ``matches`` are (post id, cosine score) of published
    posts similar to it; the best one at or above ``threshold`` flags it as a repeat."""
    best = max(matches, key=lambda m: m[1], default=None)
    if best is None:
        return candidate.model_copy(update={"repeats": None, "similarity": None})
    post_id, score = best
    return candidate.model_copy(
        update={
            "repeats": post_id if score >= threshold else None,
            "similarity": round(score, 4),
        }
    )


# --- the draft ----------------------------------------------------------------------------


class ContentRequest(BaseModel):
    topic: str
    operator_name: str
    memories: list[MemoryHint] = Field(default_factory=list)


class ContentDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Line = Field(min_length=1, max_length=120)
    summary: PastedText = Field(min_length=1, max_length=600)
    markdown: PastedText = Field(min_length=1, max_length=40_000)
    memory_ids_used: list[Line] = Field(default_factory=list)


def citations(markdown: str) -> list[str]:
    """The memory ids ``markdown`` cites, in order of first appearance."""
    return list(dict.fromkeys(CITATION.findall(markdown)))


class ContentAgent(Agent[ContentRequest, ContentDraft]):
    """Drafts a post on a topic from memory; the template quotes its notes with citations."""

    name = "content"
    prompt_version = PROMPT_VERSION
    system_prompt = SYSTEM_PROMPT
    output_model = ContentDraft
    relevant_score = 0.2

    def render_prompt(self, request: ContentRequest) -> str:
        return PROMPT.format(
            operator=request.operator_name,
            topic=fence(request.topic, limit=500),
            memories=memory_lines(request.memories),
        )

    def check(self, output: ContentDraft, request: ContentRequest) -> str | None:
        """Every id cited or listed is one the agent was given, and every claim cites one
        (a model's reply that fails this gets a repair try, then the next tier)."""
        cited = citations(output.markdown)
        problem = unknown_memory_ids(cited, request.memories)
        if problem:
            return problem.replace("memory_ids_used", "markdown")
        unsourced = fact_check(output.markdown, {m.id: m.text for m in request.memories})
        if unsourced.unsourced:
            return f"markdown: a claim without [mem:<id>]: {unsourced.unsourced[0].text[:200]!r}"
        return unknown_memory_ids(output.memory_ids_used, request.memories)

    def memory_ids(self, request: ContentRequest) -> list[str]:
        return [m.id for m in request.memories]

    def template(self, request: ContentRequest) -> tuple[dict[str, Any], float]:
        topic = " ".join(request.topic.split())
        title = topic if len(topic) <= 120 else topic[:119].rstrip() + "…"
        used = [m for m in request.memories if m.score >= self.relevant_score][:MAX_CITED]
        lines = [
            f"# {title}",
            "",
            f"Some notes from {request.operator_name} on this topic, drawn from recent work.",
            "",
        ]
        if used:
            lines += ["## What the work showed", ""]
            lines += [f"- {_quote(m.text)} [mem:{m.id}]." for m in used]
            lines += [""]
        lines += [
            "## What to take from it",
            "",
            "Start from the question the work has to answer, keep the scope small, and "
            "check the result with the people who use it.",
        ]
        summary = f"Notes on {title[:80]}, from recent work." if used else f"Notes on {title[:80]}."
        raw = {
            "title": title,
            "summary": summary,
            "markdown": "\n".join(lines) + "\n",
            "memory_ids_used": [m.id for m in used],
        }
        return raw, 0.8 if used else 0.5


# --- the fact-check -----------------------------------------------------------------------


class Claim(BaseModel):
    text: str
    cites: list[str] = Field(default_factory=list)
    problem: str = ""


class FactCheck(BaseModel):
    """The claims of a body: those without a source, those that conflict with memory."""

    claims: int = 0
    unsourced: list[Claim] = Field(default_factory=list)
    conflicts: list[Claim] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.unsourced and not self.conflicts

    def line(self) -> str:
        if self.clean:
            return f"fact-check: {self.claims} claims, every one sourced, no conflict with memory"
        return (
            f"fact-check: {self.claims} claims, {len(self.unsourced)} without a source, "
            f"{len(self.conflicts)} in conflict with memory"
        )


def _numbers(text: str) -> set[Decimal]:
    found: set[Decimal] = set()
    for raw in _NUMBER.findall(CITATION.sub(" ", text)):
        try:
            found.add(Decimal(raw.replace(",", "")).normalize())
        except InvalidOperation:
            continue
    return found


def _outcomes(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w in OUTCOME_WORDS}


def claims_of(markdown: str) -> list[str]:
    """The sentences of ``markdown`` that carry a factual marker (see the module docstring)."""
    found: list[str] = []
    fenced = False
    for raw in markdown.splitlines():
        if raw.strip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or _HEADING.match(raw) or raw.strip().startswith("!["):
            continue
        line = _LIST_MARK.sub("", raw).strip()
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip()
            if sentence and (_numbers(sentence) or _outcomes(sentence)):
                found.append(sentence)
    return found


def fact_check(markdown: str, memories: dict[str, str]) -> FactCheck:
    """Check every claim of ``markdown`` against ``memories`` (id -> text, the cited memories
    that exist); see the module docstring for the rule."""
    result = FactCheck()
    for sentence in claims_of(markdown):
        result.claims += 1
        cited = citations(sentence)
        text = sentence[:500]
        if not cited:
            result.unsourced.append(Claim(text=text, problem="no [mem:<id>] citation"))
            continue
        missing = [c for c in cited if c not in memories]
        if missing:
            result.conflicts.append(
                Claim(text=text, cites=cited, problem=f"cites {missing[0]}, not in memory")
            )
            continue
        source = " ".join(memories[c] for c in cited)
        stated = _numbers(sentence) - _numbers(source)
        if stated:
            known = ", ".join(sorted(f"{n:f}" for n in _numbers(source))) or "no number"
            result.conflicts.append(
                Claim(
                    text=text,
                    cites=cited,
                    problem=f"says {min(stated):f}; the cited memory says {known}",
                )
            )
            continue
        said, remembered = _outcomes(sentence), _outcomes(source)
        clash = sorted(w for w in said if OPPOSITES.get(w) in remembered and w not in remembered)
        if clash:
            result.conflicts.append(
                Claim(
                    text=text,
                    cites=cited,
                    problem=f"says {clash[0]}; the cited memory says {OPPOSITES[clash[0]]}",
                )
            )
    return result
