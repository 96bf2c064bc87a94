"""The one place where activity errors become Temporal application errors, scrubbed.

An ``AiosError`` raised inside an activity becomes ``ApplicationError(type=<class name>,
non_retryable=not error.retryable)`` with the same message; when the error carries
``retry_after`` (a 429's Retry-After), that becomes the next retry delay, so Temporal's retry
policy honours what the provider asked for. A pydantic ``ValidationError`` (a
record or reply that does not fit its model) is ``InvalidInput``: retrying cannot fix it; so is
a ``psycopg.DataError`` (a value PostgreSQL refuses, such as NUL in text, should the text
boundary of ``kernel.text`` ever be bypassed).
Anything else (a dropped database connection, a Qdrant hiccup) stays retryable, as Temporal
treats an ordinary exception: ``ApplicationError(type=<its class name>)``.

Everything an activity lets escape ends up in workflow history as the failure's message, and
so does its ``__cause__`` chain. So every message, and every message of the chain, goes
through the process-wide scrubber (``aios.secrets.installed``) here: the chain is rebuilt as
scrubbed ``ApplicationError`` copies (type = the original class name) instead of the original
exceptions, and nothing an outside system echoed (a key in a 401, a password in a connection
error) reaches history, whichever path raised it. Cancellation and other Temporal control
exceptions pass through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

import psycopg
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError, TemporalError

from aios.converter import describe_validation
from aios.errors import AiosError, InvalidInput
from aios.secrets import Scrubber, installed

__all__ = [
    "NON_RETRYABLE_TYPES",
    "as_application_error",
    "scrubbed_application_error",
    "translating_errors",
]

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
_MAX_CHAIN = 5  # causes kept in history below the error itself


def as_application_error(error: AiosError, scrubber: Scrubber | None = None) -> ApplicationError:
    scrub = scrubber or installed()
    delay = error.retry_after
    return ApplicationError(
        scrub.scrub(str(error)) or type(error).__name__,
        type=type(error).__name__,
        non_retryable=not error.retryable,
        next_retry_delay=timedelta(seconds=delay) if delay and error.retryable else None,
    )


def scrubbed_application_error(
    exc: BaseException, scrubber: Scrubber | None = None
) -> BaseException:
    """What may leave an activity in place of ``exc``: its classified, scrubbed form.

    ``AiosError`` and ``ValidationError`` as described above; an ``ApplicationError`` with
    its message and details scrubbed; a Temporal control exception (cancellation) unchanged;
    anything else a retryable ``ApplicationError`` named after its class. The result's
    ``__cause__`` is the scrubbed copy of ``exc``'s cause chain."""
    scrub = scrubber or installed()
    out: BaseException
    if isinstance(exc, AiosError):
        out = as_application_error(exc, scrub)
    elif isinstance(exc, ValidationError):
        out = as_application_error(InvalidInput(describe(exc)), scrub)
    elif isinstance(exc, psycopg.DataError):  # a value PostgreSQL cannot take: retrying won't help
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        out = as_application_error(InvalidInput(f"the database refused a value: {problem}"), scrub)
    elif isinstance(exc, ApplicationError):
        out = ApplicationError(
            scrub.scrub(exc.message),
            *scrub.scrub_value(list(exc.details)),
            type=exc.type,
            non_retryable=exc.non_retryable,
            next_retry_delay=exc.next_retry_delay,
            category=exc.category,
        )
    elif isinstance(exc, TemporalError) or not isinstance(exc, Exception):
        return exc  # cancellation, async completion, interpreter exits: Temporal's own
    else:
        out = ApplicationError(scrub.scrub(str(exc)) or type(exc).__name__, type=type(exc).__name__)
    out.__cause__ = _scrubbed_chain(exc.__cause__, scrub, _MAX_CHAIN)
    out.__suppress_context__ = True
    return out


def _scrubbed_chain(
    exc: BaseException | None, scrub: Scrubber, depth: int
) -> ApplicationError | None:
    if exc is None or depth <= 0:
        return None
    copy = ApplicationError(scrub.scrub(str(exc)) or type(exc).__name__, type=type(exc).__name__)
    copy.__cause__ = _scrubbed_chain(exc.__cause__, scrub, depth - 1)
    return copy


def translating_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap an activity so nothing it raises reaches history unclassified or unscrubbed."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            out = scrubbed_application_error(exc)
            if out is exc:
                raise
            raise out from out.__cause__

    return wrapper


def describe(exc: ValidationError) -> str:
    """``Model: field: problem; ...`` in one line, without the values given."""
    return f"{exc.title}: {describe_validation(exc)}"
