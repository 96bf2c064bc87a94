"""The one exception tree of AiOs.

    AiosError
    ├── InvalidInput        bad input from a person, a signal, a connector or a model; never retried
    ├── PolicyRefusal       a policy forbids the step; never retried
    ├── ConnectorError      an outside system failed
    │   ├── TransientConnectorError   retried with backoff by Temporal
    │   └── PermanentConnectorError   not retried: rejected address, auth failure...
    ├── AgentError          an agent's output was unusable
    └── StackError          the embedded stack cannot start, stop or be reached

Activities translate these into ``ApplicationError(type=<class name>, non_retryable=...)`` in
exactly one place (``aios.activities.errors``). Messages name what is wrong and never carry
secrets.
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AiosError",
    "ConnectorError",
    "InvalidInput",
    "PermanentConnectorError",
    "PolicyRefusal",
    "StackError",
    "TransientConnectorError",
]


class AiosError(Exception):
    """Base of every error AiOs raises on purpose."""

    retryable: bool = False


class InvalidInput(AiosError):
    """Input failed validation; the message names the field."""


class PolicyRefusal(AiosError):
    """A policy does not allow this step."""


class ConnectorError(AiosError):
    """An outside system (SMTP, calendar, CRM, payments) failed."""

    def __init__(self, connector: str, message: str) -> None:
        super().__init__(f"{connector}: {message}")
        self.connector = connector


class TransientConnectorError(ConnectorError):
    retryable = True


class PermanentConnectorError(ConnectorError):
    retryable = False


class AgentError(AiosError):
    """An agent produced output that does not fit its schema."""


class StackError(AiosError):
    """The embedded stack (dev server, PostgreSQL, SMTP sink) has a problem."""
