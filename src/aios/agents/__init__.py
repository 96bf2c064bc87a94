"""Typed agents: prompts, output schemas, providers, cost."""

from aios.agents.base import AgentResult, Usage, fence
from aios.agents.intake import IntakeAgent, IntakeFacts, IntakeRequest
from aios.agents.welcome import MemoryHint, WelcomeAgent, WelcomeDraft, WelcomeRequest

__all__ = [
    "AgentResult",
    "IntakeAgent",
    "IntakeFacts",
    "IntakeRequest",
    "MemoryHint",
    "Usage",
    "WelcomeAgent",
    "WelcomeDraft",
    "WelcomeRequest",
    "fence",
]
