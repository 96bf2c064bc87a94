"""The agent contract.

An agent has a name, a versioned prompt template, an input model and an output model. ``run``
returns the validated output together with the model used, token usage, cost in USD, a
confidence in [0, 1] and the memory ids it was given. Client-supplied text is always fenced in
the prompt as data (see ``fence``), so it can inform a draft but never instruct the agent.

The agents in this package use the deterministic template provider: they compute their output
with rules, report ``model = "template:<agent>@<version>"`` and cost 0, and estimate tokens
from the rendered prompt. Hosted model providers implement the same ``run``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from aios.errors import AgentError

__all__ = ["AgentResult", "Usage", "estimate_tokens", "fence", "validate_output"]

OutT = TypeVar("OutT", bound=BaseModel)

FENCE_OPEN = "<client_text>"
FENCE_CLOSE = "</client_text>"


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class AgentResult(Generic[OutT]):
    """What every agent call returns."""

    output: OutT
    model: str
    usage: Usage
    cost_usd: float
    confidence: float
    memory_ids: list[str] = field(default_factory=list)
    prompt_version: str = ""


def fence(text: str) -> str:
    """Wrap untrusted text so a prompt treats it as data, never as instructions."""
    neutral = text.replace(FENCE_OPEN, "<client-text>").replace(FENCE_CLOSE, "</client-text>")
    return f"{FENCE_OPEN}\n{neutral}\n{FENCE_CLOSE}"


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate: about four characters per token."""
    return math.ceil(len(text) / 4) if text else 0


def validate_output(model: type[OutT], data: object, *, agent: str) -> OutT:
    """Validate model output against the agent's schema; a mismatch names the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "output"
        raise AgentError(f"{agent}: output field {where!r}: {first['msg']}") from exc
