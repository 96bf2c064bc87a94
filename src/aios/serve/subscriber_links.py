"""Signed links for subscribers: confirm a subscription (double opt-in) and unsubscribe.

``{console_url}/subscribers/confirm/{token}`` and ``{console_url}/subscribers/unsubscribe/
{token}``; a token carries the subscriber's id and address, signed with itsdangerous under the
console's key (``links.signing_key``) with a salt per purpose, so a confirm token never works as
an unsubscribe token or as a gate link, and the reverse. A confirm link expires after
``CONFIRM_DAYS``; an unsubscribe link works as long as the address is on the list (RFC 8058
asks for links that keep working). ``read`` returns the claim or raises ``LinkProblem``.

Pure: no I/O besides reading the key file once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from itsdangerous import BadData, URLSafeSerializer

from aios.serve.links import LinkProblem, signing_key

if TYPE_CHECKING:
    from aios.config import Settings

__all__ = [
    "CONFIRM_DAYS",
    "SubscriberClaim",
    "SubscriberLinks",
    "SubscriberPurpose",
    "token_from",
]

SubscriberPurpose = Literal["confirm", "unsubscribe"]
CONFIRM_DAYS = 30
_SALTS: dict[SubscriberPurpose, str] = {
    "confirm": "aios.subscriber-confirm",
    "unsubscribe": "aios.subscriber-unsubscribe",
}
TAMPERED = "This link is not valid (altered, cut short or not ours); it changes nothing."


@dataclass(frozen=True)
class SubscriberClaim:
    subscriber_id: int
    email: str
    purpose: SubscriberPurpose


def token_from(value: str) -> str:
    """The token of a pasted link (``.../confirm/<token>``) or of a bare token."""
    value = value.strip()
    return value.rstrip("/").rsplit("/", 1)[-1] if "/" in value else value


@dataclass(frozen=True)
class SubscriberLinks:
    """Makes and reads subscriber links: the console's base URL and the signing key."""

    base_url: str
    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> SubscriberLinks:
        return cls(settings.console_url, signing_key(settings))

    def _serializer(self, purpose: SubscriberPurpose) -> URLSafeSerializer:
        return URLSafeSerializer(self.key, salt=_SALTS[purpose])

    def token(
        self, purpose: SubscriberPurpose, subscriber_id: int, email: str, now: datetime
    ) -> str:
        payload: dict[str, object] = {"s": subscriber_id, "e": email}
        if purpose == "confirm":
            payload["x"] = int((now + timedelta(days=CONFIRM_DAYS)).timestamp())
        return str(self._serializer(purpose).dumps(payload))

    def url(self, purpose: SubscriberPurpose, subscriber_id: int, email: str, now: datetime) -> str:
        token = self.token(purpose, subscriber_id, email, now)
        return f"{self.base_url.rstrip('/')}/subscribers/{purpose}/{token}"

    def read(self, purpose: SubscriberPurpose, token: str, now: datetime) -> SubscriberClaim:
        """The claim of ``token``; ``LinkProblem`` when it was altered or has expired."""
        try:
            payload = self._serializer(purpose).loads(token_from(token))
        except BadData:
            raise LinkProblem("tampered", TAMPERED) from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("s"), int)
            or not isinstance(payload.get("e"), str)
        ):
            raise LinkProblem("tampered", TAMPERED)
        expires = payload.get("x")
        if purpose == "confirm":
            if not isinstance(expires, int):
                raise LinkProblem("tampered", TAMPERED)
            if now.timestamp() >= expires:
                when = datetime.fromtimestamp(expires, UTC)
                raise LinkProblem(
                    "expired",
                    f"This confirmation link expired at {when:%Y-%m-%d %H:%M} UTC; "
                    "ask to be added again.",
                )
        return SubscriberClaim(payload["s"], payload["e"], purpose)

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"SubscriberLinks(base_url={self.base_url!r})"
