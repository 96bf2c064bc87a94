"""Thin activity classes over the kernel, agents, connectors and memory packages."""

from aios.activities.agents import AgentActivities
from aios.activities.connectors import ConnectorActivities
from aios.activities.kernel import KernelActivities
from aios.activities.memory import MemoryActivities
from aios.activities.newsletter import NewsletterActivities

__all__ = [
    "AgentActivities",
    "ConnectorActivities",
    "KernelActivities",
    "MemoryActivities",
    "NewsletterActivities",
]
