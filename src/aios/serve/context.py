"""What every request of the console shares: settings, the kernel store, the Temporal client,
the session cookies and the templates; and the check that a request is signed in.

The Temporal client and the store are opened on first use, so the console starts (and says
what is wrong on its pages) while Temporal or PostgreSQL are still coming up.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aios.config import Settings
from aios.serve import auth
from aios.serve.links import signing_key
from aios.serve.session import Session, SessionCookies

if TYPE_CHECKING:
    from temporalio.client import Client

    from aios.kernel.store import KernelStore

__all__ = ["ConsoleState", "SignInRequired", "state_of"]

HERE = Path(__file__).parent
STORE_CONNECTIONS = 4


class SignInRequired(Exception):
    """The request needs a signed-in operator (a GET goes to the sign-in page, then back)."""

    def __init__(self, back_to: str) -> None:
        super().__init__("sign in first")
        self.back_to = back_to


class ConsoleState:
    """The console's shared parts; one per application."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: KernelStore | None = None,
        client: Client | None = None,
    ) -> None:
        self.settings = settings
        self.cookies = SessionCookies(settings, signing_key(settings))
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals["settings"] = settings
        self.templates.env.filters["ago"] = ago
        self.templates.env.filters["until"] = until
        self.templates.env.filters["when"] = when
        self.templates.env.filters["pathq"] = lambda v: quote(str(v), safe="/")
        self._store = store
        self._own_store = store is None
        self._client = client
        self._client_lock = asyncio.Lock()

    async def store(self) -> KernelStore:
        if self._store is None:
            store = await run_in_threadpool(self._open_store)
            if self._store is None:
                self._store = store
            else:  # another request opened it meanwhile
                store.close()
        return self._store

    def _open_store(self) -> KernelStore:
        from psycopg_pool import PoolTimeout

        from aios.devstack import database_url
        from aios.errors import StackError
        from aios.kernel.store import KernelStore

        url = database_url(self.settings)
        try:
            return KernelStore(url, max_size=STORE_CONNECTIONS)
        except PoolTimeout:
            raise StackError(
                "cannot reach the database; start it with `aios dev up` or check AIOS_DATABASE_URL"
            ) from None

    async def client(self) -> Client:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    from aios.temporal import connect

                    self._client = await connect(self.settings)
        return self._client

    def close(self) -> None:
        if self._store is not None and self._own_store:
            self._store.close()
            self._store = None

    # --- sessions ----------------------------------------------------------------------------

    async def session(self, request: Request) -> Session | None:
        """The signed-in operator, if the cookie is good and its credential unchanged."""
        session = self.cookies.read(request)
        if session is None:
            return None
        store = await self.store()
        valid = await run_in_threadpool(
            auth.still_valid, store.operators, self.settings, session.signed_in
        )
        return session if valid else None

    async def require(self, request: Request) -> Session:
        session = await self.session(request)
        if session is None:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(back if request.method == "GET" else "/inbox")
        return session

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        session: Session | None = None,
        status_code: int = 200,
    ) -> Response:
        return self.templates.TemplateResponse(
            request,
            name,
            {"session": session, "csrf": session.csrf if session else "", **context},
            status_code=status_code,
        )


def state_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


# --- time, as the pages word it ------------------------------------------------------------------


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return _span((datetime.now(UTC) - moment).total_seconds())


def until(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    delta = (moment - datetime.now(UTC)).total_seconds()
    return f"in {_span(delta)}" if delta >= 0 else f"{_span(delta)} ago"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
