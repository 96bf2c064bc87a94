"""The subscriber's pages: confirm a subscription, unsubscribe (RFC 8058 one-click).

No sign-in: the signed token in the address is the authority (``serve.subscriber_links``).
GET never changes anything; it shows what the link does and a button.

- ``GET /subscribers/confirm/<token>``: the address and a Confirm button;
  ``POST`` the same path confirms it (double opt-in; a confirmed address stays confirmed).
- ``GET /subscribers/unsubscribe/<token>``: the address and an Unsubscribe button;
  ``POST`` the same path with body ``List-Unsubscribe=One-Click`` (RFC 8058, what mail
  programs send from the ``List-Unsubscribe-Post`` header, and what the button sends)
  unsubscribes it. A repeat is answered the same way and changes nothing.

A tampered or expired link is refused (400) and changes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aios.errors import InvalidInput
from aios.operations.subscribers import confirm_link, unsubscribe_link
from aios.serve.context import state_of
from aios.serve.links import LinkProblem
from aios.serve.subscriber_links import SubscriberLinks

__all__ = ["router"]

router = APIRouter()
ONE_CLICK = "One-Click"
BODY_LIMIT = 4096


def _page(request: Request, context: dict[str, object], status_code: int = 200) -> Response:
    return state_of(request).templates.TemplateResponse(
        request, "subscriber.html", context, status_code=status_code
    )


def _refused(request: Request, exc: InvalidInput) -> Response:
    return _page(
        request, {"title": "This link does not work", "message": str(exc), "kind": "problem"}, 400
    )


def _links(request: Request) -> SubscriberLinks:
    return SubscriberLinks.from_settings(state_of(request).settings)


def _claim_email(request: Request, purpose: str, token: str) -> str:
    from datetime import UTC, datetime

    claim = _links(request).read(
        "confirm" if purpose == "confirm" else "unsubscribe", token, datetime.now(UTC)
    )
    return claim.email


@router.get("/subscribers/confirm/{token}")
async def confirm_page(request: Request, token: str) -> Response:
    try:
        email = _claim_email(request, "confirm", token)
    except LinkProblem as exc:
        return _refused(request, exc)
    return _page(
        request,
        {
            "title": "Confirm your subscription",
            "message": f"Press Confirm to receive the newsletter at {email}.",
            "action": request.url.path,
            "button": "Confirm",
        },
    )


@router.post("/subscribers/confirm/{token}")
async def confirm(request: Request, token: str) -> Response:
    store = await state_of(request).store()
    try:
        subscriber, changed = await run_in_threadpool(
            confirm_link, store, _links(request), token, via="link"
        )
    except InvalidInput as exc:
        return _refused(request, exc)
    return _page(
        request,
        {
            "title": "Subscribed",
            "message": f"{subscriber.email} is confirmed"
            + ("." if changed else " (it already was)."),
        },
    )


@router.get("/subscribers/unsubscribe/{token}")
async def unsubscribe_page(request: Request, token: str) -> Response:
    try:
        email = _claim_email(request, "unsubscribe", token)
    except LinkProblem as exc:
        return _refused(request, exc)
    return _page(
        request,
        {
            "title": "Unsubscribe",
            "message": f"Press Unsubscribe and {email} receives no more issues.",
            "action": request.url.path,
            "button": "Unsubscribe",
            "one_click": True,
        },
    )


@router.post("/subscribers/unsubscribe/{token}")
async def unsubscribe(request: Request, token: str) -> Response:
    body = await request.body()
    if len(body) > BODY_LIMIT:
        return _page(request, {"title": "Refused", "message": "body too large"}, 413)
    form = await request.form()
    if form.get("List-Unsubscribe") != ONE_CLICK:
        return _page(
            request,
            {
                "title": "Refused",
                "message": "An unsubscribe POST carries List-Unsubscribe=One-Click "
                "(RFC 8058); nothing was changed.",
                "kind": "problem",
            },
            400,
        )
    store = await state_of(request).store()
    try:
        subscriber, changed = await run_in_threadpool(
            unsubscribe_link, store, _links(request), token, via="one-click"
        )
    except InvalidInput as exc:
        return _refused(request, exc)
    return _page(
        request,
        {
            "title": "Unsubscribed",
            "message": f"{subscriber.email} receives no more issues"
            + ("." if changed else " (it was already off the list)."),
        },
    )
