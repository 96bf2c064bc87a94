"""The console's kill switches: ``/control`` lists them, with pause and resume forms.

Signed in, CSRF-checked like every other console form; the same ``operations.control`` as
``aios pause`` / ``aios resume``. A bad switch name is a 400 page naming the valid ones, and
nothing is written.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aios.errors import InvalidInput
from aios.operations.control import KNOWN, change_switch, list_switches
from aios.serve.decisions import _checked, _text
from aios.serve.session import Session

__all__ = ["router"]

router = APIRouter()


async def _page(
    request: Request, session: Session, *, error: str = "", done: str = "", status_code: int = 200
) -> Response:
    from aios.serve.context import state_of

    console = state_of(request)
    store = await console.store()
    switches = await run_in_threadpool(list_switches, store)
    return console.page(
        request,
        "control.html",
        {
            "switches": switches,
            "known": KNOWN,
            "error": error,
            "done": done,
            "nav": "control",
        },
        session=session,
        status_code=status_code,
    )


@router.get("/control")
async def control_page(request: Request, done: str = "") -> Response:
    from aios.serve.context import state_of

    session = await state_of(request).require(request)
    return await _page(request, session, done=done[:200])


@router.post("/control/{action}")
async def change(request: Request, action: str) -> Response:
    console, session, form = await _checked(request)
    if action not in ("pause", "resume"):
        return await _page(request, session, error=f"unknown action {action!r}", status_code=404)
    target = _text(form, "switch").strip()  # "all" or "<scope>:<name>"
    scope, _, name = target.partition(":")
    store = await console.store()
    try:
        outcome = await run_in_threadpool(
            lambda: change_switch(
                store,
                pause=action == "pause",
                scope=scope,
                name=name,
                by=session.operator,
                reason=_text(form, "reason"),
            )
        )
    except InvalidInput as exc:
        return await _page(request, session, error=str(exc), status_code=400)
    state = "paused" if outcome.paused else "running"
    done = f"{outcome.switch}: {state}" + ("" if outcome.changed else " (unchanged)")
    return RedirectResponse(f"/control?done={quote(done)}", 303)
