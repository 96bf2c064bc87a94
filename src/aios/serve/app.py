"""The console's application: ``create_app(settings)``, and ``run_console`` for ``aios serve``.

Pages (all need a signed-in operator; see ``serve.pages`` and ``serve.decisions``):

- ``GET /inbox``: every waiting gate, most urgent first;
- ``GET /gates/<workflow id>``: the full document of a gate, with Approve, Edit and Reject;
  ``/gates/<id>/pdf`` the proposal or invoice PDF; ``/gates/<id>/edit`` the edit form;
- ``GET /runs``, ``/clients/<key>``, ``/attention``;
- ``GET /l/<token>``: a signed link from an email, the gate with its decision pre-selected.

Every state change is a POST with the session's CSRF token: ``/signin``, ``/signout``,
``/gates/<id>/edit`` (check and show the diff), ``/gates/<id>/decide``, ``/l/<token>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote

import structlog
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from temporalio.service import RPCError

from aios.config import Settings
from aios.errors import AiosError, StackError
from aios.serve import auth
from aios.serve.context import HERE, ConsoleState, SignInRequired, state_of
from aios.serve.security import SecurityHeaders, loggable_path, safe_next

if TYPE_CHECKING:
    from temporalio.client import Client

    from aios.kernel.store import KernelStore

__all__ = ["create_app", "run_console"]

log = structlog.get_logger("aios.console")


def allowed_hosts(settings: Settings) -> list[str]:
    """Host headers the console answers (a page reached under another name, as by DNS
    rebinding, is refused); any when it serves beyond this machine without a fixed URL."""
    from urllib.parse import urlsplit

    if settings.serve_allow_remote and not settings.serve_url:
        return ["*"]
    hosts = {"localhost", "127.0.0.1", "::1", "[::1]", settings.serve_host}
    if settings.serve_url:
        hosts.add(urlsplit(settings.serve_url).hostname or "localhost")
    return sorted(hosts)


def create_app(
    settings: Settings, *, store: KernelStore | None = None, client: Client | None = None
) -> FastAPI:
    """The console for ``settings``. ``store`` and ``client`` are opened on first use unless
    given (a given store is left open)."""
    from aios.serve.decisions import router as decisions_router
    from aios.serve.pages import router as pages_router
    from aios.serve.subscribers import router as subscribers_router

    console = ConsoleState(settings, store=store, client=client)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(console.close)

    app = FastAPI(
        title="AiOs console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.console = console
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(signin_router())
    app.include_router(pages_router)
    app.include_router(decisions_router)
    app.include_router(subscribers_router)  # public: the signed token is the authority

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if request.method == "GET":
            return RedirectResponse(f"/signin?next={quote(exc.back_to, safe='/')}", 303)
        return state_of(request).page(
            request,
            "message.html",
            {
                "title": "Sign in first",
                "message": "Refused: you are not signed in (or your session ended). "
                "Nothing was changed.",
            },
            status_code=403,
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        console = state_of(request)
        session = console.cookies.read(request)
        titles = {404: "Not found", 403: "Refused", 409: "Already decided", 429: "Slow down"}
        return console.page(
            request,
            "message.html",
            {"title": titles.get(exc.status_code, "Error"), "message": str(exc.detail)},
            session=session,
            status_code=exc.status_code,
        )

    @app.exception_handler(AiosError)
    async def _aios(request: Request, exc: AiosError) -> Response:
        console = state_of(request)
        return console.page(
            request,
            "message.html",
            {"title": "Cannot do that", "message": str(exc)},
            session=console.cookies.read(request),
            status_code=503 if isinstance(exc, StackError) else 400,
        )

    @app.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> Response:
        console = state_of(request)
        log.warning(
            "Temporal did not answer", path=loggable_path(request.url.path), error=exc.message
        )
        return console.page(
            request,
            "message.html",
            {
                "title": "Temporal did not answer",
                "message": f"Temporal at {settings.temporal_address} did not answer "
                f"({exc.message}); nothing was changed. Try again in a moment.",
            },
            session=console.cookies.read(request),
            status_code=503,
        )

    return app


# --- sign-in ---------------------------------------------------------------------------------


def signin_router() -> APIRouter:
    router = APIRouter()

    @router.get("/")
    async def root() -> Response:
        return RedirectResponse("/inbox", 303)

    @router.get("/signin")
    async def signin_page(request: Request, next: str = "/inbox") -> Response:
        console = state_of(request)
        if await console.session(request) is not None:
            return RedirectResponse(safe_next(next), 303)
        return await _signin_form(request, next)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        console = state_of(request)
        form = await request.form()
        target = safe_next(str(form.get("next") or ""))
        expected = console.cookies.signin_token(request)
        from aios.serve.session import csrf_matches

        if not csrf_matches(expected, form.get("csrf")):
            log.warning("sign-in refused: CSRF token missing or wrong", address=_address(request))
            return await _signin_form(
                request,
                target,
                error="This sign-in form expired or was not ours; try again.",
                status_code=403,
            )
        store = await console.store()
        address = _address(request)
        wait = await run_in_threadpool(auth.retry_after, store.operators, address)
        if wait is not None:
            log.warning("sign-in refused: too many failures", address=address)
            minutes = max(1, round(wait / 60))
            return await _signin_form(
                request,
                target,
                error=f"Too many failed sign-ins from your address: try again in about "
                f"{minutes} min.",
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        name = str(form.get("name") or "")
        secret = str(form.get("password") or "")
        signed_in = await run_in_threadpool(
            auth.sign_in, store.operators, console.settings, name, secret
        )
        if signed_in is None:
            await run_in_threadpool(store.operators.record_failure, address)
            log.warning("sign-in refused: wrong name or password", address=address, name=name)
            return await _signin_form(
                request,
                target,
                error="Wrong name or password.",
                status_code=401,
                name=name,
            )
        await run_in_threadpool(store.operators.clear_failures, address)
        log.info("signed in", address=address, operator=signed_in.operator, via=signed_in.via)
        response = RedirectResponse(target, 303)
        console.cookies.start(response, request, signed_in)
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        console = state_of(request)
        session = await console.require(request)
        form = await request.form()
        from aios.serve.session import csrf_matches

        if not csrf_matches(session.csrf, form.get("csrf")):
            raise HTTPException(403, "Refused: the form's CSRF token is missing or wrong.")
        response = RedirectResponse("/signin", 303)
        console.cookies.end(response)
        return response

    return router


async def _signin_form(
    request: Request,
    target: str,
    *,
    error: str = "",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    name: str = "",
) -> Response:
    console = state_of(request)
    token = console.cookies.signin_token(request)
    fresh = token is None
    if token is None:
        token = console.cookies.mint_token()
    response = console.page(
        request,
        "signin.html",
        {
            "next": safe_next(target),
            "error": error,
            "name": name or console.settings.operator_name,
            "token_enabled": console.settings.operator_token is not None,
            "signin_csrf": token,
        },
        status_code=status_code,
    )
    if fresh:
        console.cookies.set_signin_token(response, request, token)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- aios serve ----------------------------------------------------------------------------


def run_console(settings: Settings) -> None:
    """Serve the console on ``serve_host:serve_port`` until interrupted (uvicorn)."""
    import uvicorn

    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.serve_host,
        port=settings.serve_port,
        access_log=False,  # one line per request comes from SecurityHeaders, without tokens
        log_config=None,  # the process's JSON logging (aios.logs) stays in charge
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
    )
