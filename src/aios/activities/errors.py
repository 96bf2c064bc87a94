"""The one place where AiOs errors become Temporal application errors.

An ``AiosError`` raised inside an activity becomes ``ApplicationError(type=<class name>,
non_retryable=not error.retryable)`` with the same message; when the error carries
``retry_after`` (a 429's Retry-After), that becomes the next retry delay, so Temporal's retry
policy honours what the provider asked for. A pydantic ``ValidationError`` (a
record or reply that does not fit its model) is ``InvalidInput``: retrying cannot fix it.
Anything else (a dropped database connection, a Qdrant hiccup) stays an ordinary exception,
which Temporal retries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from aios.errors import AiosError, InvalidInput

__all__ = ["NON_RETRYABLE_TYPES", "as_application_error", "translating_errors"]

P = ParamSpec("P")
R = TypeVar("R")

NON_RETRYABLE_TYPES = [
    "InvalidInput",
    "PolicyRefusal",
    "PermanentConnectorError",
    "ConnectorAuthError",
    "ConnectorInvalidRequest",
    "SchemaDrift",
    "AgentError",
    "ModelRefused",
]


def as_application_error(error: AiosError) -> ApplicationError:
    delay = error.retry_after
    return ApplicationError(
        str(error),
        type=type(error).__name__,
        non_retryable=not error.retryable,
        next_retry_delay=timedelta(seconds=delay) if delay and error.retryable else None,
    )


def translating_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AiosError as exc:
            raise as_application_error(exc) from exc
        except ValidationError as exc:
            raise as_application_error(InvalidInput(describe(exc))) from exc

    return wrapper


def describe(exc: ValidationError) -> str:
    """``Model: field: problem; ...`` in one line."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return f"{exc.title}: " + "; ".join(parts)
