"""Typed agents: prompts, output schemas, providers, cost."""

from aios.agents.base import AgentResult, Usage, fence
from aios.agents.intake import IntakeAgent, IntakeFacts, IntakeRequest
from aios.agents.reply import ReplyAgent, ReplyReading, ReplyRequest
from aios.agents.welcome import MemoryHint, WelcomeAgent, WelcomeDraft, WelcomeRequest

__all__ = [
    "AgentResult",
    "IntakeAgent",
    "IntakeFacts",
    "IntakeRequest",
    "MemoryHint",
    "ReplyAgent",
    "ReplyReading",
    "ReplyRequest",
    "Usage",
    "WelcomeAgent",
    "WelcomeDraft",
    "WelcomeRequest",
    "fence",
]
