"""Leads that come in by themselves: the public lead form and the signed JSON hook.

- ``GET /lead``: the form (name, email, what they need), no sign-in. ``POST /lead`` takes it
  (``application/x-www-form-urlencoded``): a bad field shows the form again naming it (422);
  a good lead, or a bot that filled the hidden ``website`` field, is answered with the same
  redirect to ``/lead/thanks``, whatever became of it (the public page never tells whether
  someone is a client already).
- ``POST /hooks/lead``: a JSON object (name, email, notes, key, source) signed with
  ``AIOS_LEAD_WEBHOOK_SECRET`` in ``X-Aios-Signature: t=<unix seconds>,v1=<hex>``, where
  ``v1`` is HMAC-SHA256 over ``"<t>." + raw body``. Answers JSON: 201 a run started, 200 a note
  on a known client (``outcome`` says which), 401/400 a missing, stale or wrong signature, 409
  the same signed request again, 422 a bad field (``fields`` names each); then nothing is
  recorded.

Both refuse a body over ``lead_max_body_bytes`` (413) and a sender address over its rate
(``lead_form_rate_limit``, ``lead_hook_rate_limit``: 429 with ``Retry-After``).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from temporalio.service import RPCError

from aios.errors import StackError
from aios.kernel.models import MAX_NOTES
from aios.kernel.stores.leads import LeadChannel
from aios.kernel.text import clean_pasted
from aios.operations import leads as operations
from aios.operations.leads import LeadRejected
from aios.serve.context import ConsoleState, state_of

__all__ = ["HONEYPOT", "router"]

router = APIRouter()
log = structlog.get_logger("aios.console")

HONEYPOT = "website"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 16


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, or ``BodyTooLarge`` as soon as it passes ``limit`` bytes (the
    declared length is checked first, so a large upload is refused before it is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _wait(console: ConsoleState, channel: LeadChannel, address: str) -> int | None:
    settings = console.settings
    rate = settings.lead_form_rate_limit if channel == "form" else settings.lead_hook_rate_limit
    store = await console.store()
    return await run_in_threadpool(operations.retry_after, store, channel, address, rate)


# --- the form -------------------------------------------------------------------------------


def _form_page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    message: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    console = state_of(request)
    response = console.page(
        request,
        "lead.html",
        {
            "values": values or {},
            "errors": errors or {},
            "message": message,
            "honeypot": HONEYPOT,
            "company": console.settings.business_name or console.settings.operator_name,
        },
        status_code=status_code,
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@router.get("/lead")
async def lead_form(request: Request) -> Response:
    return _form_page(request)


@router.get("/lead/thanks")
async def lead_thanks(request: Request) -> Response:
    console = state_of(request)
    return console.page(
        request,
        "lead_thanks.html",
        {"company": console.settings.business_name or console.settings.operator_name},
    )


STACK_DOWN = "Sorry, we could not take your message just now; please send it again in a moment."


@router.post("/lead")
async def submit_lead(request: Request) -> Response:
    try:
        return await _take_lead(request)
    except (RPCError, StackError) as exc:  # the public is not told where the stack lives
        log.warning("lead form: the stack did not answer", error=str(exc))
        return _form_page(request, status_code=503, message=STACK_DOWN)


async def _take_lead(request: Request) -> Response:
    console = state_of(request)
    settings = console.settings
    address = _address(request)
    wait = await _wait(console, "form", address)
    if wait is not None:
        log.warning("lead refused: rate limit", channel="form", address=address)
        minutes = max(1, round(wait / 60))
        return _form_page(
            request,
            status_code=429,
            message=f"Too many requests from your address: please try again in about "
            f"{minutes} min.",
            headers={"Retry-After": str(wait)},
        )
    try:
        body = await read_body(request, settings.lead_max_body_bytes)
    except BodyTooLarge:
        return _form_page(
            request,
            status_code=413,
            message=f"That was too long to send (over {settings.lead_max_body_bytes // 1024} "
            "KB); please shorten what you wrote.",
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        return _form_page(
            request, status_code=415, message=f"The form must be sent as {FORM_TYPE}."
        )
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        return _form_page(
            request, status_code=400, message="The form could not be read; please send it again."
        )
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    thanks = RedirectResponse("/lead/thanks", 303)
    if fields.pop(HONEYPOT, "").strip():
        store = await console.store()
        lead_id = await run_in_threadpool(
            operations.record_honeypot, store, channel="form", source="form", address=address
        )
        log.info("lead discarded: honeypot filled", lead_id=lead_id, address=address)
        return thanks
    # Shown again in the form: what was sent, less the characters no page should carry.
    values = {k: clean_pasted(fields.get(k, ""))[:MAX_NOTES] for k in ("name", "email", "notes")}
    try:
        intake, source = operations.parse_lead(fields, hook=False)
    except LeadRejected as exc:
        return _form_page(request, values=values, errors=exc.fields, status_code=422)
    try:
        receipt = await operations.receive_lead(
            await console.client(),
            await console.store(),
            settings,
            intake,
            channel="form",
            source=source,
            address=address,
        )
    except (RPCError, StackError) as exc:  # shown again with what they wrote
        log.warning("lead form: the stack did not answer", address=address, error=str(exc))
        return _form_page(request, values=values, status_code=503, message=STACK_DOWN)
    assert receipt is not None  # a form lead has no signed digest
    log.info(
        "lead received",
        channel="form",
        lead_id=receipt.lead_id,
        outcome=receipt.outcome,
        client_key=receipt.client_key,
    )
    return thanks


# --- the signed JSON hook -------------------------------------------------------------------


def _answer(status: int, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, **extra}, status_code=status)


@router.post("/hooks/lead")
async def lead_hook(request: Request) -> Response:
    console = state_of(request)
    settings = console.settings
    address = _address(request)
    if settings.lead_webhook_secret is None:
        return _answer(503, "the lead hook is off: set AIOS_LEAD_WEBHOOK_SECRET to turn it on")
    try:
        body = await read_body(request, settings.lead_max_body_bytes)
    except BodyTooLarge:
        return _answer(413, f"body over {settings.lead_max_body_bytes} bytes")
    header = request.headers.get(operations.SIGNATURE_HEADER)
    problem = operations.check_signature(
        settings.lead_webhook_secret.get_secret_value(),
        header,
        body,
        tolerance_seconds=settings.lead_signature_tolerance_seconds,
        now=time.time(),
    )
    if problem is not None:
        log.warning("lead hook refused", address=address, reason=problem.message)
        return _answer(problem.status, problem.message)
    assert header is not None
    signed = operations.signed_digest(header, body)
    store = await console.store()
    if await run_in_threadpool(store.leads.seen, signed):
        return _answer(409, "this signed request was received before; nothing was done")
    wait = await _wait(console, "hook", address)
    if wait is not None:
        log.warning("lead refused: rate limit", channel="hook", address=address)
        return JSONResponse(
            {"error": f"too many leads from {address}; try again in {wait} s"},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _answer(400, "the body is not JSON")
    if not isinstance(payload, dict):
        return _answer(422, "the body must be a JSON object", fields={})
    try:
        intake, source = operations.parse_lead(payload, hook=True)
    except LeadRejected as exc:
        return _answer(422, str(exc), fields=exc.fields)
    try:
        receipt = await operations.receive_lead(
            await console.client(),
            store,
            settings,
            intake,
            channel="hook",
            source=source,
            address=address,
            signed=signed,
        )
    except (RPCError, StackError) as exc:
        log.warning("lead hook: the stack did not answer", address=address, error=str(exc))
        return _answer(503, "Temporal or the database did not answer; send the lead again")
    if receipt is None:
        return _answer(409, "this signed request was received before; nothing was done")
    log.info(
        "lead received",
        channel="hook",
        lead_id=receipt.lead_id,
        outcome=receipt.outcome,
        client_key=receipt.client_key,
    )
    return JSONResponse(
        receipt.model_dump(mode="json"), status_code=201 if receipt.outcome == "started" else 200
    )
