"""The console's reading pages: Inbox, Runs, Client and Attention. Nothing here changes state."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aios.errors import InvalidInput
from aios.operations.gates import inbox as operations_inbox
from aios.serve.context import state_of

__all__ = ["router"]

router = APIRouter()
log = structlog.get_logger("aios.console")


@router.get("/inbox")
async def inbox(request: Request) -> Response:
    console = state_of(request)
    session = await console.require(request)
    store = await console.store()
    items = await operations_inbox(await console.client(), store)
    notices = await run_in_threadpool(store.notices.open_notices)
    said = ""
    dismissed = request.query_params.get("dismissed", "")
    if dismissed:  # after Dismiss: said from the record, never from the URL's text
        notice = await run_in_threadpool(store.notices.get, dismissed[:300])
        if notice is not None and notice.status == "resolved":
            said = f"{notice.key}: {notice.resolution} by {notice.resolved_by}."
    return console.page(
        request,
        "inbox.html",
        {"items": items, "notices": notices, "said": said, "nav": "inbox"},
        session=session,
    )


@router.get("/runs")
async def runs_page(
    request: Request, client: str = "", process: str = "", outcome: str = "", status: str = ""
) -> Response:
    from aios.operations.console_lists import OUTCOMES, PROCESSES, STATUSES, runs

    console = state_of(request)
    session = await console.require(request)
    filters = {
        "client": client.strip(),
        "process": process.strip(),
        "outcome": outcome.strip(),
        "status": status.strip(),
    }
    error = ""
    rows = []
    try:
        rows = await runs(
            await console.client(),
            console.settings,
            client_key=filters["client"] or None,
            process=filters["process"] or None,
            outcome=filters["outcome"] or None,
            status=filters["status"] or None,
        )
    except InvalidInput as exc:
        error = str(exc)
    return console.page(
        request,
        "runs.html",
        {
            "rows": rows,
            "filters": filters,
            "error": error,
            "processes": PROCESSES,
            "outcomes": OUTCOMES,
            "statuses": list(STATUSES),
            "nav": "runs",
        },
        session=session,
        status_code=400 if error else 200,
    )


@router.get("/clients/{client_key}")
async def client_page(request: Request, client_key: str) -> Response:
    from aios.operations.console_lists import client_view
    from aios.operations.console_models import NotFound

    console = state_of(request)
    session = await console.require(request)
    try:
        view = await client_view(
            await console.client(), await console.store(), console.settings, client_key
        )
    except NotFound as exc:
        raise HTTPException(404, f"No such client: {exc}") from None
    return console.page(request, "client.html", {"view": view, "nav": "runs"}, session=session)


ATTENTION_KINDS = {
    "failed_run": "failed run",
    "failed_compensation": "failed compensation",
    "effect_in_doubt": "effect in doubt",
    "overdue_invoice": "overdue invoice",
    "stuck_run": "stuck run",
    "connector_gate": "connector check",
}


@router.get("/attention")
async def attention_page(request: Request) -> Response:
    from aios.operations.console_lists import attention

    console = state_of(request)
    session = await console.require(request)
    report = await attention(await console.client(), await console.store(), console.settings)
    return console.page(
        request,
        "attention.html",
        {"report": report, "kinds": ATTENTION_KINDS, "nav": "attention"},
        session=session,
    )
