"""Inbound hooks on ``aios serve``: ``POST /hooks/stripe``.

Stripe signs each webhook with the endpoint's secret (``AIOS_STRIPE_WEBHOOK_SECRET``). The
route answers:

- 400 when the signature is missing or wrong, the secret is not configured, or the signed
  body is not an event we can read; nothing is recorded;
- 200 ``{"outcome": ...}`` once the event is settled (``operations.inbound.settle``): a payment
  or refund signalled to its billing run, an unknown type ignored, an unmatched or refused
  payment opened as a notice; a redelivery answers 200 ``"duplicate": true`` and changes
  nothing;
- 503 when Temporal or the database cannot be reached: the event stays ``received`` and
  Stripe's retry settles it.

No sign-in and no CSRF token: the signature is the credential. Neither the body nor the
signature is logged.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aios.errors import AiosError, InvalidInput
from aios.serve.context import state_of

__all__ = ["router"]

MAX_BODY = 512 * 1024

log = structlog.get_logger("aios.hooks")
router = APIRouter()


def _refused(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


@router.post("/hooks/stripe")
async def stripe_hook(request: Request) -> Response:
    from temporalio.service import RPCError

    from aios.connectors.payments.stripe_events import read_event, verify_event
    from aios.operations.inbound import settle, stripe_item

    console = state_of(request)
    secret = console.settings.stripe_webhook_secret
    if secret is None:
        log.warning("stripe hook refused: AIOS_STRIPE_WEBHOOK_SECRET is not set")
        return _refused("this endpoint has no Stripe signing secret configured")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _refused(f"body larger than {MAX_BODY // 1024} KB")
    try:
        verify_event(body, request.headers.get("stripe-signature"), secret.get_secret_value())
        money = read_event(body)
    except InvalidInput as exc:
        log.warning("stripe hook refused", reason=str(exc))
        return _refused(str(exc))
    try:
        store = await console.store()
        item = await run_in_threadpool(stripe_item, store, money)
        settled = await settle(await console.client(), store, item)
    except RPCError as exc:
        log.warning(
            "stripe hook: Temporal did not answer", stripe_event=money.event_id, error=exc.message
        )
        return _refused("Temporal did not answer; retry later", 503)
    except AiosError as exc:
        log.warning("stripe hook: not settled", stripe_event=money.event_id, error=str(exc))
        return _refused(f"not settled: {exc}", 503)
    log.info(
        "stripe event settled",
        stripe_event=money.event_id,
        type=money.event_type,
        outcome=settled.outcome,
        duplicate=settled.duplicate,
        workflow_id=settled.workflow_id,
    )
    return JSONResponse(
        {
            "event": money.event_id,
            "outcome": settled.outcome,
            "duplicate": settled.duplicate,
            "workflow_id": settled.workflow_id,
            "message": settled.message,
        }
    )
