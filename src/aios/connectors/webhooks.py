"""Outgoing webhooks: signed JSON events POSTed to a URL the operator configures, for any
outside system no dedicated connector covers.

Wire format (what a receiver implements)
----------------------------------------

Each delivery is one ``POST`` to the configured URL. Redirects are never followed.

Headers::

    Content-Type:     application/json
    User-Agent:       aios-webhooks/1
    X-Aios-Delivery:  whd_<32 hex>                 the delivery id (same as the body's "id")
    X-Aios-Event:     <event type>                  for example invoice.paid
    X-Aios-Signature: t=<unix seconds>,v1=<64 hex>

Body: one UTF-8 JSON object, compact (no insignificant whitespace), at most 256 KiB::

    {"id": "whd_...", "type": "invoice.paid", "created": "2025-05-01T09:30:00.000Z",
     "data": {...}}

``created`` is when the event happened, in UTC with milliseconds and a ``Z`` suffix. The
delivery id derives from the sender's idempotency key alone: a retried delivery carries the
same id and byte-for-byte the same body, so a receiver de-duplicates by ``id`` (store the ids
it has processed; a repeat is acknowledged with a 2xx and otherwise ignored).

Signature: ``v1`` is the lowercase hex HMAC-SHA256, keyed with the shared secret (its UTF-8
bytes), of the ASCII timestamp ``t``, a full stop, and the raw body bytes exactly as received::

    v1 = hex(HMAC_SHA256(secret, t + "." + body))

``t`` is the time of this attempt (it changes on a retry; the body does not). A receiver
recomputes ``v1`` over the raw body before parsing it, compares in constant time, and rejects
a ``t`` further than a few minutes from its own clock (replay protection). Unknown ``k=v``
pairs in the header are ignored, so schemes can be added later. ``verify_signature`` in this
module does all of that.

Answers: any 2xx means delivered. 429 (with ``Retry-After``), 408 and 5xx are retried later
by the workflow's retry policy; 401/403 mean the receiver refuses our credentials; any other
answer, a 3xx included, is a refusal of this delivery. Timeouts and connection failures are
retried. The connector itself never retries: Temporal does.

A delivery cannot be unsent; its compensation is another delivery that retracts it: the same
``data`` under type ``<type>.retracted``, with ``data.retracts`` naming the retracted delivery
id (``retraction_of``). A receiver that acted on the first undoes what it did.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar

import httpx
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
)

from aios.connectors.contract import CheckResult, Operation, classify_http, classify_transport
from aios.errors import InvalidInput

__all__ = [
    "MAX_BODY_BYTES",
    "CheckResult",
    "Delivery",
    "WebhookConfig",
    "WebhookConnector",
    "WebhookEvent",
    "delivery_id_for",
    "retraction_of",
    "sign",
    "verify_signature",
]

NAME = "webhook"
USER_AGENT = "aios-webhooks/1"
MAX_BODY_BYTES = 256 * 1024
MIN_SECRET_CHARS = 16
EVENT_TYPE_PATTERN = r"^[a-z0-9_.-]{1,64}$"

_EVENT_TYPE_MAX = 64
_SNIPPET_BYTES = 512  # how much of an error reply we read for the message
_MAX_SIGNATURE_HEADER = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REMEMBERED_KEYS = 4096  # keys whose first ``created`` we keep for in-process retries


class WebhookConfig(BaseModel):
    """Where deliveries go and the secret they are signed with."""

    # Inputs are left out of validation messages: a too-short secret must not show up in one.
    model_config = ConfigDict(hide_input_in_errors=True, frozen=True)

    url: HttpUrl
    secret: SecretStr
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value


class WebhookEvent(BaseModel):
    """One event to deliver. ``created`` should be passed by the caller (a workflow passes
    ``workflow.now()``) so that every retry, in any worker, sends the same body."""

    model_config = ConfigDict(frozen=True)

    type: str = Field(pattern=EVENT_TYPE_PATTERN)
    data: dict[str, Any]
    created: AwareDatetime | None = None

    @field_validator("data")
    @classmethod
    def _data_fits(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Render with the largest envelope possible, so any valid type fits as well.
        size = len(_render(delivery_id_for("-"), "x" * _EVENT_TYPE_MAX, _EPOCH, value))
        if size > MAX_BODY_BYTES:
            raise ValueError(
                f"makes a request body of {size} bytes, above the limit of {MAX_BODY_BYTES}"
            )
        return value


class Delivery(BaseModel):
    """What a delivery did: ``status_code`` is the receiver's answer (0 on a dry run)."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    status_code: int
    dry_run: bool


def delivery_id_for(idempotency_key: str) -> str:
    """The delivery id for an idempotency key: stable, and nothing else goes into it."""
    return "whd_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def retraction_of(key: str, event: WebhookEvent) -> WebhookEvent:
    """The event that retracts the delivery made under ``key`` (its compensation)."""
    kind = f"{event.type}.retracted"
    if len(kind) > _EVENT_TYPE_MAX:
        raise InvalidInput(f"{NAME}: type: {event.type!r} is too long to retract")
    return WebhookEvent(type=kind, data={**event.data, "retracts": delivery_id_for(key)})


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Aios-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (an ``X-Aios-Signature`` value) signs ``body`` with ``secret`` and
    its timestamp lies within ``tolerance_seconds`` of ``now`` (default: the clock).

    False for a malformed header, a stale or future timestamp, or any mismatch; never raises
    for bad input. Several ``v1`` entries are allowed (any match counts).
    """
    if not secret or not isinstance(header, str) or len(header) > _MAX_SIGNATURE_HEADER:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2].encode()
    matched = False
    for candidate in candidates:
        if _HEX64.fullmatch(candidate):
            # Compare every candidate, so the time taken does not tell which one matched.
            matched |= hmac.compare_digest(expected, candidate.encode())
    return matched


class WebhookConnector:
    """Delivers ``WebhookEvent`` to one URL. Pass an ``httpx.Client`` to share a pool;
    otherwise the connector owns one (``close()`` it, or use ``with``)."""

    name: ClassVar[str] = NAME
    operations: ClassVar[dict[str, Operation]] = {
        "deliver": Operation("deliver", effect=True, compensation="deliver"),
    }

    def __init__(self, config: WebhookConfig, *, client: httpx.Client | None = None) -> None:
        self._config = config
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=config.timeout_seconds, follow_redirects=False
        )
        port = config.url.port
        self._where = f"{config.url.host}" + (f":{port}" if port else "")
        self._created: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookConnector(url={self.url!r})"

    @property
    def url(self) -> str:
        return str(self._config.url)

    def __enter__(self) -> WebhookConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def deliver(self, key: str, event: WebhookEvent, *, dry_run: bool = False) -> Delivery:
        """POST ``event`` once, signed; the same ``key`` always sends the same id and body.

        Raises ``InvalidInput`` (empty key), ``RateLimited``, ``TransientConnectorError``,
        ``ConnectorAuthError`` or ``ConnectorInvalidRequest`` (a 3xx included).
        """
        if not key or not key.strip():
            raise InvalidInput(f"{NAME}: key: the idempotency key must not be empty")
        delivery_id = delivery_id_for(key)
        created = event.created or self._first_created(key, remember=not dry_run)
        body = _render(delivery_id, event.type, created, event.data)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Aios-Delivery": delivery_id,
            "X-Aios-Event": event.type,
            "X-Aios-Signature": sign(
                self._config.secret.get_secret_value(), body, int(time.time())
            ),
        }
        if dry_run:
            return Delivery(delivery_id=delivery_id, status_code=0, dry_run=True)
        operation = f"deliver {event.type} to {self._where}"
        try:
            with self._client.stream(
                "POST",
                str(self._config.url),
                content=body,
                headers=headers,
                timeout=self._config.timeout_seconds,
                follow_redirects=False,
            ) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return Delivery(delivery_id=delivery_id, status_code=status, dry_run=False)
                if 300 <= status < 400:
                    location = response.headers.get("location") or "(no Location header)"
                    detail = f"redirect to {location} is not followed; configure the final URL"
                else:
                    detail = _snippet(response)
                raise classify_http(
                    NAME, operation, status, headers=response.headers, detail=detail
                )
        except httpx.TransportError as exc:
            raise classify_transport(NAME, operation, exc) from exc

    def check(self) -> CheckResult:
        """Probe the URL with ``HEAD`` (no event is delivered): any answer below 500 means
        the receiver is reachable."""
        timeout = self._config.timeout_seconds
        try:
            response = self._client.head(
                str(self._config.url),
                headers={"User-Agent": USER_AGENT},
                timeout=timeout,
                follow_redirects=False,
            )
        except httpx.TimeoutException as exc:
            return CheckResult(
                ok=False,
                detail=f"{self._where}: no answer within {timeout:g} s ({type(exc).__name__})",
            )
        except httpx.TransportError as exc:
            return CheckResult(
                ok=False, detail=f"{self._where}: cannot connect ({type(exc).__name__})"
            )
        status = response.status_code
        if status >= 500:
            return CheckResult(ok=False, detail=f"{self._where}: answered HTTP {status}")
        detail = f"{self._where}: reachable (HTTP {status} to HEAD)"
        if 300 <= status < 400:
            location = response.headers.get("location") or "(no Location header)"
            detail += f"; it redirects to {location}, which deliveries do not follow"
        return CheckResult(ok=True, detail=detail)

    def _first_created(self, key: str, *, remember: bool) -> datetime:
        # Without a caller-given ``created``, a retry in this process reuses the first one.
        with self._lock:
            created = self._created.get(key)
            if created is None:
                created = datetime.now(UTC)
                if remember:
                    self._created[key] = created
                    while len(self._created) > _REMEMBERED_KEYS:
                        self._created.popitem(last=False)
            return created


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _render(delivery_id: str, event_type: str, created: datetime, data: dict[str, Any]) -> bytes:
    stamp = created.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    envelope = {"id": delivery_id, "type": event_type, "created": stamp, "data": data}
    try:
        text = json.dumps(envelope, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise ValueError(f"must be JSON-serialisable ({exc})") from None


def _snippet(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _SNIPPET_BYTES:
                break
    except httpx.HTTPError:
        pass  # the status is what matters; the body is only a hint
    return b"".join(chunks)[:_SNIPPET_BYTES].decode("utf-8", errors="replace")
