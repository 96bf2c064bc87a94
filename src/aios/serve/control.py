"""The console's kill switches: ``/control`` lists them, with pause and resume forms.

Signed in, CSRF-checked like every other console form; the same ``operations.control`` as
``aios pause`` / ``aios resume``. A bad switch name is a 400 page naming the valid ones, and
nothing is written.
"""

from __future__ import annotations

from urllib.parse import quote

import structlog
from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aios.errors import InvalidInput
from aios.operations.control import KNOWN, change_switch, list_switches
from aios.serve.context import state_of
from aios.serve.session import Session, csrf_matches

__all__ = ["router"]

router = APIRouter()
log = structlog.get_logger("aios.console")


async def _page(
    request: Request,
    session: Session,
    *,
    error: str = "",
    changed: str = "",
    status_code: int = 200,
) -> Response:
    console = state_of(request)
    store = await console.store()
    switches = await run_in_threadpool(list_switches, store)
    # What the last form changed, said from the row itself (the query names a switch only).
    done = next(
        (
            f"{s.switch}: {'paused' if s.paused else 'running'}"
            for s in switches
            if s.switch == changed
        ),
        "",
    )
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
async def control_page(request: Request, changed: str = "") -> Response:
    session = await state_of(request).require(request)
    return await _page(request, session, changed=changed)


@router.post("/control/{action}")
async def change(request: Request, action: str) -> Response:
    console = state_of(request)
    session = await console.require(request)
    form = await request.form()
    if not csrf_matches(session.csrf, form.get("csrf")):
        log.warning("form refused: CSRF token missing or wrong", path=request.url.path)
        raise HTTPException(
            403, "Refused: this form's CSRF token is missing or wrong. Nothing was changed."
        )
    if action not in ("pause", "resume"):
        return await _page(request, session, error=f"unknown action {action!r}", status_code=404)
    target, reason = form.get("switch"), form.get("reason")
    target = target.strip() if isinstance(target, str) else ""  # "all" or "<scope>:<name>"
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
                reason=reason if isinstance(reason, str) else "",
            )
        )
    except InvalidInput as exc:
        return await _page(request, session, error=str(exc), status_code=400)
    return RedirectResponse(f"/control?changed={quote(outcome.switch)}", 303)
