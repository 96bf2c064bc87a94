"""HTTP hardening for the console: security headers on every response, request log lines
without link tokens, and checks on where a redirect may go.

- ``Content-Security-Policy``: only this console's own scripts, styles, images and frames (no
  inline script at all), forms post only here, and no page may be framed by another site;
- ``X-Frame-Options: SAMEORIGIN`` (the proposal and invoice PDFs are framed by the gate page,
  nothing else), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (a signed
  link in the address bar never leaves in a ``Referer``), ``Cache-Control: no-store`` for pages;
- one JSON log line per request (logger ``aios.console``) with method, path, status and time;
  the token of ``/l/<token>`` is left out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

__all__ = ["SecurityHeaders", "loggable_path", "safe_next"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
# A PDF is rendered by the browser's own viewer: only who may frame it is restricted.
PDF_CSP = "frame-ancestors 'self'"

COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]

_LINK = re.compile(r"^(/l|/subscribers/confirm|/subscribers/unsubscribe)/[^/]+")

log = structlog.get_logger("aios.console")


def loggable_path(path: str) -> str:
    """``path`` as a log line may show it: a link's token is replaced by ``…``."""
    return _LINK.sub(lambda m: f"{m.group(1)}/…", path)


def safe_next(target: str | None, default: str = "/inbox") -> str:
    """A redirect target after sign-in: a path on this console, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ord(ch) < 33 for ch in target) or "\\" in target:
        return default
    return target


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response, and a log line for each."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {h for h, _ in COMMON_HEADERS}
                ]
                kinds = {k.lower(): v for k, v in headers}
                is_pdf = kinds.get(b"content-type", b"").startswith(b"application/pdf")
                headers += COMMON_HEADERS
                headers.append(
                    (b"content-security-policy", (PDF_CSP if is_pdf else PAGE_CSP).encode())
                )
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                path=loggable_path(scope["path"]),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
