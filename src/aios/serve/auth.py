"""Who may use the console: operators with a password, or the holder of the operator token.

A password is set with ``aios operator set-password`` (read from a prompt or stdin, never from
the command line) and stored as an argon2id hash (``argon2-cffi``) in the kernel's
``operators`` table; ``AIOS_OPERATOR_TOKEN`` signs in without one. Failed sign-ins are counted
per address in the kernel (``signin_failures``), so every replica of the console shares the
limit: ``MAX_FAILURES`` within ``FAILURE_WINDOW`` and the address is refused until the oldest
of them leaves the window. Neither a password nor a token is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.stores.operators import OperatorStore

__all__ = [
    "FAILURE_WINDOW",
    "MAX_FAILURES",
    "MIN_PASSWORD_LENGTH",
    "SignedIn",
    "check_password",
    "credential_fingerprint",
    "retry_after",
    "set_password",
    "sign_in",
]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=10)

_hasher = PasswordHasher()
# Verified against when the operator is unknown, so a wrong name costs as long as a wrong
# password and the answer time does not tell which names exist.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: the operator's name, how, and the fingerprint of the credential
    (a session stays valid only while the password or token it was made with is unchanged)."""

    operator: str
    via: str  # "password" | "token"
    fingerprint: str


def check_password(password: str) -> str:
    """The password if it is acceptable, else ``InvalidInput`` saying why (never echoing it)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password: too short ({len(password)} characters); use at least {MIN_PASSWORD_LENGTH}"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password: longer than {MAX_PASSWORD_LENGTH} characters")
    if password != password.strip():
        raise InvalidInput("password: must not start or end with spaces")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        raise InvalidInput("password: must not contain control characters")
    return password


def check_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("name: an operator name is required")
    if len(name) > 200:
        raise InvalidInput("name: longer than 200 characters")
    return name


def set_password(store: OperatorStore, name: str, password: str) -> bool:
    """Hash and store ``name``'s password; ``True`` when the operator is new."""
    name = check_name(name)
    return store.set_password_hash(name, _hasher.hash(check_password(password)))


def credential_fingerprint(secret: str) -> str:
    """A short digest of a stored hash or a token, kept in the session to notice a change."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def sign_in(store: OperatorStore, settings: Settings, name: str, secret: str) -> SignedIn | None:
    """Check ``secret`` (a password, or the operator token) for ``name``; ``None`` if wrong.

    Slow on purpose (argon2): call it from a thread."""
    name = " ".join(name.split()) or settings.operator_name
    if len(secret) > MAX_PASSWORD_LENGTH:
        return None
    token = settings.operator_token.get_secret_value() if settings.operator_token else None
    if token is not None and hmac.compare_digest(secret.encode(), token.encode()):
        return SignedIn(name[:200], "token", credential_fingerprint(token))
    stored = store.password_hash(name)
    try:
        _hasher.verify(stored or _DUMMY_HASH, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        store.set_password_hash(name, stored := _hasher.hash(secret))
    return SignedIn(name, "password", credential_fingerprint(stored))


def still_valid(store: OperatorStore, settings: Settings, session: SignedIn) -> bool:
    """Whether the credential a session was made with still holds (not changed since)."""
    if session.via == "token":
        token = settings.operator_token.get_secret_value() if settings.operator_token else None
        return token is not None and hmac.compare_digest(
            credential_fingerprint(token), session.fingerprint
        )
    stored = store.password_hash(session.operator)
    return stored is not None and hmac.compare_digest(
        credential_fingerprint(stored), session.fingerprint
    )


def retry_after(store: OperatorStore, address: str, now: datetime | None = None) -> int | None:
    """Seconds until ``address`` may try again, or ``None`` while it is under the limit."""
    failures = store.failures(address, FAILURE_WINDOW)
    if failures.count < MAX_FAILURES or failures.oldest is None:
        return None
    now = now or datetime.now(UTC)
    return max(1, math.ceil((failures.oldest + FAILURE_WINDOW - now).total_seconds()))
