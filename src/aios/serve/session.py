"""The console's session cookie and CSRF tokens.

A signed-in browser holds one cookie, ``aios_session``: the operator's name, how they signed
in, the fingerprint of that credential and the session's CSRF token, signed with
``itsdangerous`` under the console's key (``serve.links.signing_key``: the same key as the
email links, under another salt) and valid for ``SESSION_MAX_AGE``. It is HttpOnly,
SameSite=Strict, Path=/ and Secure whenever the console is reached over https. Before sign-in
the sign-in form's CSRF token lives in a second signed cookie, ``aios_signin``.

Every form carries the CSRF token in field ``csrf``; every POST compares it with the cookie's.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from aios.config import Settings
from aios.serve.auth import SignedIn

__all__ = [
    "SESSION_COOKIE",
    "SESSION_MAX_AGE",
    "SIGNIN_COOKIE",
    "Session",
    "SessionCookies",
    "csrf_matches",
]

SESSION_COOKIE = "aios_session"
SIGNIN_COOKIE = "aios_signin"
SESSION_MAX_AGE = 12 * 3600  # seconds
SIGNIN_MAX_AGE = 3600


@dataclass(frozen=True)
class Session:
    """A signed-in operator, as the session cookie says."""

    signed_in: SignedIn
    csrf: str

    @property
    def operator(self) -> str:
        return self.signed_in.operator


def csrf_matches(expected: str | None, given: object) -> bool:
    return (
        isinstance(given, str)
        and bool(expected)
        and hmac.compare_digest(given.encode(), str(expected).encode())
    )


class SessionCookies:
    """Issues and reads the console's two signed cookies."""

    def __init__(self, settings: Settings, key: bytes) -> None:
        self._settings = settings
        self._session = URLSafeTimedSerializer(key, salt="aios.console.session")
        self._signin = URLSafeTimedSerializer(key, salt="aios.console.signin")

    def secure(self, request: Request) -> bool:
        """Secure cookies when the console is served over TLS (its URL, or this request)."""
        return self._settings.console_url.startswith("https://") or request.url.scheme == "https"

    def _set(self, response: Response, request: Request, name: str, value: str, age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )

    # --- the session ---------------------------------------------------------------------

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = self._session.loads(raw, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return None
        try:
            return Session(
                SignedIn(str(data["op"]), str(data["via"]), str(data["fp"])), str(data["csrf"])
            )
        except (KeyError, TypeError):
            return None

    def start(self, response: Response, request: Request, signed_in: SignedIn) -> None:
        """Sign the browser in: a new session with a fresh CSRF token."""
        value = self._session.dumps(
            {
                "op": signed_in.operator,
                "via": signed_in.via,
                "fp": signed_in.fingerprint,
                "csrf": self.mint_token(),
            }
        )
        self._set(response, request, SESSION_COOKIE, value, SESSION_MAX_AGE)
        response.delete_cookie(SIGNIN_COOKIE, path="/")

    def end(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")

    # --- the sign-in form's CSRF token -------------------------------------------------------

    def signin_token(self, request: Request) -> str | None:
        raw = request.cookies.get(SIGNIN_COOKIE)
        if not raw:
            return None
        try:
            return str(self._signin.loads(raw, max_age=SIGNIN_MAX_AGE))
        except BadSignature:
            return None

    @staticmethod
    def mint_token() -> str:
        return secrets.token_urlsafe(32)

    def set_signin_token(self, response: Response, request: Request, token: str) -> None:
        self._set(response, request, SIGNIN_COOKIE, self._signin.dumps(token), SIGNIN_MAX_AGE)
