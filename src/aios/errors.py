"""The one exception tree of AiOs.

    AiosError
    ├── InvalidInput        bad input from a person, a signal, a connector or a model; never retried
    ├── PolicyRefusal       a policy forbids the step; never retried
    │   └── EffectCancelled     the run cancelled this effect (outbox row cancelled)
    ├── ConnectorError      an outside system failed
    │   ├── TransientConnectorError   retried with backoff by Temporal (5xx, timeouts)
    │   │   └── RateLimited             retried after the Retry-After the system gave
    │   └── PermanentConnectorError   not retried: rejected address...
    │       ├── ConnectorAuthError      credentials missing, wrong or not allowed
    │       ├── ConnectorInvalidRequest the system refused what we sent (4xx)
    │       └── SchemaDrift             the reply no longer has the shape we rely on
    ├── AgentError          an agent's output was unusable
    ├── ModelError          a hosted model provider (OpenAI, Azure OpenAI) failed
    │   ├── ModelUnavailable  429, 5xx, timeouts: retried by Temporal, honouring Retry-After
    │   ├── ModelRefused      content filter, invalid request, auth: a person must look
    │   └── UnusableReply     a 200 whose body is not UTF-8, not JSON or not a completion:
    │                         the runner treats it as invalid output (repair, escalate, hold)
    └── StackError          the embedded stack cannot start, stop or be reached

Activities translate these into ``ApplicationError(type=<class name>, non_retryable=...)`` in
exactly one place (``aios.activities.errors``); a ``retry_after`` on the error becomes the
next retry delay. Messages name what is wrong and never carry
secrets: what an outside system said is scrubbed (``aios.secrets``) before it becomes one.
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AiosError",
    "ConnectorAuthError",
    "ConnectorError",
    "ConnectorInvalidRequest",
    "EffectCancelled",
    "InvalidInput",
    "ModelError",
    "ModelRefused",
    "ModelUnavailable",
    "PermanentConnectorError",
    "PolicyRefusal",
    "RateLimited",
    "SchemaDrift",
    "StackError",
    "TransientConnectorError",
    "UnusableReply",
]


class AiosError(Exception):
    """Base of every error AiOs raises on purpose."""

    retryable: bool = False
    retry_after: float | None = None  # seconds the other side asked us to wait, if it said


class InvalidInput(AiosError):
    """Input failed validation; the message names the field."""


class PolicyRefusal(AiosError):
    """A policy does not allow this step."""


class EffectCancelled(PolicyRefusal):
    """The run that asked for this effect cancelled it; an attempt after that runs nothing."""


class ConnectorError(AiosError):
    """An outside system (SMTP, calendar, CRM, payments) failed."""

    kind = "error"  # transient, rate_limited, auth, invalid_request, permanent, schema_drift

    def __init__(self, connector: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{connector}: {message}")
        self.connector = connector
        if retry_after is not None:
            self.retry_after = retry_after


class TransientConnectorError(ConnectorError):
    retryable = True
    kind = "transient"


class RateLimited(TransientConnectorError):
    """Too many requests; ``retry_after`` says how long the system asked us to wait."""

    kind = "rate_limited"


class PermanentConnectorError(ConnectorError):
    retryable = False
    kind = "permanent"


class ConnectorAuthError(PermanentConnectorError):
    kind = "auth"


class ConnectorInvalidRequest(PermanentConnectorError):
    kind = "invalid_request"


class SchemaDrift(PermanentConnectorError):
    """A reply is missing a field we rely on, or it changed type; the message names it."""

    kind = "schema_drift"


class AgentError(AiosError):
    """An agent produced output that does not fit its schema."""


class ModelError(AiosError):
    """A model provider call failed (not the output: that is ``AgentError``)."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        reason: str = "error",
        retry_after: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.reason = reason
        self.retry_after = retry_after
        self.input_tokens = input_tokens  # billed even though the call failed (output filter)
        self.output_tokens = output_tokens


class ModelUnavailable(ModelError):
    """Rate limited, overloaded or unreachable: try again later."""

    retryable = True


class ModelRefused(ModelError):
    """The provider will not answer this request as it stands (``reason``: content_filter,
    refusal, invalid_request, auth); retrying cannot help, a person must decide."""


class UnusableReply(ModelError):
    """The provider answered 200 with a body that is not a chat completion: not UTF-8, not
    JSON, or without the fields we read (``reason="unusable_reply"``). Retrying the same
    request is not expected to help; the agent runner handles it like invalid output."""


class StackError(AiosError):
    """The embedded stack (dev server, PostgreSQL, SMTP sink) has a problem."""
