"""The console's Review page: what the system cost your attention (``aios review``)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aios.errors import InvalidInput
from aios.serve.context import state_of

__all__ = ["router"]

router = APIRouter()
PERIODS = ("week", "month")


@router.get("/review")
async def review_page(request: Request, period: str = "week", since: str = "") -> Response:
    """``?period=week`` (default) or ``month``, or ``?since=YYYY-MM-DD``."""
    from aios.operations.review import compute_review, review_window

    console = state_of(request)
    session = await console.require(request)
    error = ""
    review = None
    try:
        if period not in PERIODS:
            raise InvalidInput(f"period: {period!r} is not one of {', '.join(PERIODS)}")
        window = review_window(month=period == "month", since=since.strip() or None)
        store = await console.store()
        review = await run_in_threadpool(compute_review, store, window)
    except InvalidInput as exc:
        error = str(exc)
    return console.page(
        request,
        "review.html",
        {"review": review, "error": error, "period": period, "since": since, "nav": "review"},
        session=session,
        status_code=400 if error else 200,
    )
