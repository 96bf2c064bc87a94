"""Dismissing a notice from the console's inbox (POST, signed in, CSRF-checked).

A notice needs a look, not a decision (``kernel.stores.notices``); once the operator has
handled it, Dismiss resolves it with the signed-in operator's name and an optional reason, and
the inbox then says how it was resolved and by whom (read from the record, so a second
Dismiss changes nothing and shows the first).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aios.errors import InvalidInput
from aios.operations.notices import dismiss
from aios.serve.decisions import checked_form

__all__ = ["router"]

router = APIRouter()


@router.post("/notices/dismiss")
async def dismiss_notice(request: Request) -> Response:
    console, session, form = await checked_form(request)
    key = form.get("key")
    reason = form.get("reason")
    store = await console.store()
    try:
        done = await run_in_threadpool(
            dismiss,
            store.notices,
            key if isinstance(key, str) else "",
            by=session.operator,
            reason=reason if isinstance(reason, str) else "",
        )
    except InvalidInput as exc:
        return console.page(
            request,
            "message.html",
            {"title": "Not dismissed", "message": f"Refused: {exc}. Nothing was changed."},
            session=session,
            status_code=400,
        )
    return RedirectResponse(f"/inbox?dismissed={quote(done.notice.key, safe='')}", 303)
