"""The one place where AiOs errors become Temporal application errors.

An ``AiosError`` raised inside an activity becomes ``ApplicationError(type=<class name>,
non_retryable=not error.retryable)`` with the same message. Anything else (a dropped database
connection, a Qdrant hiccup) stays an ordinary exception, which Temporal retries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from aios.errors import AiosError

__all__ = ["NON_RETRYABLE_TYPES", "as_application_error", "translating_errors"]

P = ParamSpec("P")
R = TypeVar("R")

NON_RETRYABLE_TYPES = ["InvalidInput", "PolicyRefusal", "PermanentConnectorError", "AgentError"]


def as_application_error(error: AiosError) -> ApplicationError:
    return ApplicationError(
        str(error), type=type(error).__name__, non_retryable=not error.retryable
    )


def translating_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AiosError as exc:
            raise as_application_error(exc) from exc

    return wrapper
