"""Signed one-click links in the operator's gate emails: ``{console_url}/l/{token}``.

A token carries a ``LinkClaim`` (the run's workflow id and run id, the gate's step key, the
action: ``approve``, ``reject`` or ``open``, and when the gate expires), signed with
itsdangerous under the console's key (``signing_key``: ``AIOS_SERVE_SECRET_KEY``, else a random
key created once in ``state_dir/serve.key``, mode 0600, that every worker and console of one
stack shares). ``read`` checks the signature and the expiry and returns the claim, or raises
``LinkProblem`` of kind ``tampered`` or ``expired`` with a one-line message. Whether a link was
already used is not in the token: the console asks the gate projection (a gate no longer
waiting was decided, "already decided by X at T").

Pure: no I/O besides reading (once, creating) the key file. A link decides nothing by itself;
the console shows the gate with the action pre-selected and a confirm button (POST).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from itsdangerous import BadData, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aios.errors import InvalidInput

if TYPE_CHECKING:
    from aios.config import Settings

__all__ = [
    "KEY_FILE",
    "LINK_ACTIONS",
    "GateLinks",
    "LinkAction",
    "LinkClaim",
    "LinkProblem",
    "link_url",
    "read",
    "read_with_key",
    "sign",
    "signing_key",
]

KEY_FILE = "serve.key"
LINK_SALT = "aios.gate-link"
LinkAction = Literal["approve", "reject", "open"]
LINK_ACTIONS: tuple[LinkAction, ...] = ("approve", "reject", "open")


class LinkClaim(BaseModel):
    """What a signed link says: act on this run's gate until it expires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    gate_key: str = Field(min_length=1)  # "gate/welcome", "gate/budget#2"
    action: LinkAction
    expires_at: datetime


class LinkProblem(InvalidInput):
    """A link that cannot be used: ``kind`` is ``tampered`` or ``expired``."""

    def __init__(self, kind: Literal["tampered", "expired"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def signing_key(settings: Settings) -> bytes:
    """The key that signs email links and console sessions.

    ``AIOS_SERVE_SECRET_KEY`` when set; otherwise ``state_dir/serve.key``, created once with a
    random key (mode 0600) by whichever process needs it first. Two processes creating it at
    the same moment end up with the same key: the file is written aside and linked into place.
    """
    if settings.serve_secret_key is not None:
        return settings.serve_secret_key.get_secret_value().encode()
    path = Path(settings.state_dir) / KEY_FILE
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        key = b""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_urlsafe(48).encode() + b"\n")
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
    key = path.read_bytes().strip()
    if not key:
        raise InvalidInput(f"{path}: the console's signing key file is empty; delete it")
    return key


def _serializer(key: bytes) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=LINK_SALT)


def sign(claim: LinkClaim, key: bytes) -> str:
    """The URL-safe token for ``claim``."""
    payload = {
        "w": claim.workflow_id,
        "r": claim.run_id,
        "g": claim.gate_key,
        "a": claim.action,
        "x": int(claim.expires_at.timestamp()),
    }
    return str(_serializer(key).dumps(payload))


TAMPERED = "This link is not valid (altered, cut short or not ours); it decides nothing."


def read_with_key(token: str, key: bytes, now: datetime) -> LinkClaim:
    """The claim ``token`` carries, checked against ``key`` and ``now``."""
    try:
        payload = _serializer(key).loads(token.strip())
    except BadData:
        raise LinkProblem("tampered", TAMPERED) from None
    try:
        if not isinstance(payload, dict) or not isinstance(payload.get("x"), int):
            raise ValueError("malformed")
        claim = LinkClaim(
            workflow_id=payload["w"],
            run_id=payload["r"],
            gate_key=payload["g"],
            action=payload["a"],
            expires_at=datetime.fromtimestamp(payload["x"], UTC),
        )
    except (KeyError, TypeError, ValueError, ValidationError, OverflowError, OSError):
        raise LinkProblem("tampered", TAMPERED) from None
    if now >= claim.expires_at:
        raise LinkProblem(
            "expired",
            f"This link expired with its gate at {claim.expires_at:%Y-%m-%d %H:%M} UTC; "
            "it decides nothing.",
        )
    return claim


def read(token: str, settings: Settings, now: datetime) -> LinkClaim:
    """The claim ``token`` carries; ``LinkProblem`` when it is tampered with or expired."""
    return read_with_key(token, signing_key(settings), now)


def link_url(base_url: str, token: str) -> str:
    """``{console base}/l/{token}``."""
    return f"{base_url.rstrip('/')}/l/{token}"


@dataclass(frozen=True)
class GateLinks:
    """Makes the links of one gate email: the console's base URL and the signing key."""

    base_url: str
    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> GateLinks:
        return cls(settings.console_url, signing_key(settings))

    def for_gate(
        self, workflow_id: str, run_id: str, gate_key: str, expires_at: datetime
    ) -> dict[LinkAction, str]:
        """One link per action (``approve``, ``reject``, ``open``), expiring with the gate."""
        return {
            action: link_url(
                self.base_url,
                sign(
                    LinkClaim(
                        workflow_id=workflow_id,
                        run_id=run_id,
                        gate_key=gate_key,
                        action=action,
                        expires_at=expires_at,
                    ),
                    self.key,
                ),
            )
            for action in LINK_ACTIONS
        }

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"GateLinks(base_url={self.base_url!r})"
