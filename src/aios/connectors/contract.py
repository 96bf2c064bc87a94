"""The connector contract: typed operations, one error classification, schema-drift checks.

A connector is a plain class with a ``name`` and an ``operations`` table. Each ``Operation``
says whether it has an outside effect and, if so, which operation undoes it (``compensation``)
or which effect it undoes itself (``undoes``: a compensation the saga runs). Any other effect is
irreversible: ``ConnectorRuntime.effect`` refuses it unless the caller names a recorded human
approval of the same run (see ``aios.connectors.runtime``). Operations with an effect take an
idempotency key. Every operation honours ``dry_run``: it validates its input
and returns what it would have done, touching nothing outside.

Errors from HTTP-based connectors are classified here and nowhere else (``classify_http``):

=====================================  ===========================================
429 (and 503 with Retry-After)          ``RateLimited`` (retried after Retry-After)
408, 5xx, timeouts, connection errors   ``TransientConnectorError`` (retried)
401, 403                                ``ConnectorAuthError`` (not retried)
other 4xx                               ``ConnectorInvalidRequest`` (not retried)
=====================================  ===========================================

``detail`` (what the other side said) is scrubbed of secrets (``aios.secrets``, the process-wide
scrubber) before it is cut to length, so a cut cannot leave half a key; the connector runtime
scrubs every connector error again with the worker's own scrubber (``aios.connectors.runtime``).

Retries belong to Temporal's retry policy: connectors never loop. Replies are parsed into
pydantic models with ``parse_reply``; a missing or changed field is ``SchemaDrift`` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aios.errors import (
    ConnectorAuthError,
    ConnectorError,
    ConnectorInvalidRequest,
    RateLimited,
    SchemaDrift,
    TransientConnectorError,
)
from aios.secrets import installed

__all__ = [
    "CheckResult",
    "Operation",
    "classify_http",
    "classify_transport",
    "parse_reply",
    "retry_after_seconds",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
_MAX_DETAIL = 200


@dataclass(frozen=True)
class Operation:
    """One typed operation of a connector."""

    name: str
    effect: bool  # changes something outside (needs an idempotency key and the outbox)
    compensation: str | None = None  # the operation that undoes it
    undoes: str | None = None  # this operation is the compensation of that one

    @property
    def irreversible(self) -> bool:
        """An effect nothing can undo: a human approval is mandatory before it."""
        return self.effect and self.compensation is None and self.undoes is None


class CheckResult(BaseModel):
    """What a connector's ``check()`` probe found: reachable and usable, or why not."""

    ok: bool
    detail: str = ""


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), if any."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _clip(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."


def classify_http(
    connector: str,
    operation: str,
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    detail: str = "",
) -> ConnectorError:
    """The error for an HTTP reply with ``status`` (>= 400); ``detail`` is scrubbed, then cut."""
    detail = installed().scrub(detail)
    what = f"{operation} got HTTP {status}" + (f": {_clip(detail)}" if detail else "")
    wait = retry_after_seconds(headers)
    if status == 429 or (status == 503 and wait is not None):
        hint = f" (retry after {wait:g} s)" if wait is not None else ""
        return RateLimited(connector, f"rate limited: {what}{hint}", retry_after=wait)
    if status == 408 or status >= 500:
        return TransientConnectorError(connector, f"unavailable: {what}", retry_after=wait)
    if status in (401, 403):
        return ConnectorAuthError(connector, f"not authorised: {what}; check the credentials")
    return ConnectorInvalidRequest(connector, f"refused: {what}")


def classify_transport(connector: str, operation: str, exc: BaseException) -> ConnectorError:
    """A request that got no HTTP reply (timeout, refused connection, DNS): transient."""
    return TransientConnectorError(
        connector, f"{operation}: cannot reach the server ({type(exc).__name__})"
    )


def parse_reply(model: type[ModelT], data: Any, *, connector: str, operation: str) -> ModelT:
    """``data`` as ``model``; a reply that does not fit is schema drift, naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise SchemaDrift(
            connector, f"schema drift in the {operation} reply: {where}: {first['msg']}"
        ) from None
