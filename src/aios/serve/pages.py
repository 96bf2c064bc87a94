"""The console's reading pages: Inbox, Runs, Client and Attention. Nothing here changes state."""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from aios.operations.gates import inbox as operations_inbox
from aios.serve.context import state_of

__all__ = ["router"]

router = APIRouter()
log = structlog.get_logger("aios.console")


@router.get("/inbox")
async def inbox(request: Request) -> Response:
    console = state_of(request)
    session = await console.require(request)
    items = await operations_inbox(await console.client(), await console.store())
    return console.page(request, "inbox.html", {"items": items, "nav": "inbox"}, session=session)
