"""The Gate page and everything that decides a gate: Approve, Edit (form, server-side checks,
diff, confirm), Reject (reason required), the PDF, and the signed links from emails.

A decision is signal ``decide`` sent by ``operations.gates.decide`` with the signed-in
operator as approver. The page then waits briefly for the run to confirm it (the gate
projection leaves ``waiting``) and shows the outcome, or says the decision was sent and waits
for a worker. A gate that is no longer waiting says how it ended ("already decided by X at
T"); nothing is sent twice. GET never changes anything.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

import structlog
from fastapi import APIRouter, HTTPException
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aios.converter import describe_validation
from aios.errors import InvalidInput
from aios.serve.context import ConsoleState, state_of
from aios.serve.links import LinkClaim, LinkProblem
from aios.serve.links import read as read_link
from aios.serve.session import Session, csrf_matches

if TYPE_CHECKING:
    from starlette.datastructures import FormData

    from aios.operations.console import GateState, GateView

__all__ = ["CONFIRM_WAIT", "answered", "checked_form", "router"]

router = APIRouter()
log = structlog.get_logger("aios.console")

# How long the page waits for the run to confirm a decision before it says "sent".
CONFIRM_WAIT = 5.0


@dataclass(frozen=True)
class Notice:
    kind: str  # ok | warn | problem
    text: str


def answered(gate: GateState) -> str:
    """How a gate that is no longer waiting ended, in one line."""
    when = f"{gate.decided_at:%Y-%m-%d %H:%M} UTC" if gate.decided_at else "an earlier time"
    if gate.status in ("approved", "rejected", "edited"):
        return f"already decided by {gate.approver or 'someone'} at {when} ({gate.status})"
    if gate.status == "expired":
        return f"expired at {when} without a decision"
    return f"closed: the run is {gate.run_status}"


async def _view(
    console: ConsoleState, workflow_id: str, run_id: str | None = None, gate_key: str | None = None
) -> GateView:
    from aios.operations.console import NotFound, gate_view

    store = await console.store()
    client = await console.client()
    try:
        return await gate_view(
            client, store, console.settings, workflow_id, run_id=run_id, gate_key=gate_key
        )
    except NotFound as exc:
        raise HTTPException(404, f"No such gate: {exc}") from None


async def checked_form(request: Request) -> tuple[ConsoleState, Session, FormData]:
    """A POST's console, session and form, after the session and CSRF checks."""
    console = state_of(request)
    session = await console.require(request)
    form = await request.form()
    if not csrf_matches(session.csrf, form.get("csrf")):
        log.warning("form refused: CSRF token missing or wrong", path=request.url.path)
        raise HTTPException(
            403, "Refused: this form's CSRF token is missing or wrong. Nothing was changed."
        )
    return console, session, form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else ""


def _client_key(view: GateView) -> str | None:
    doc = view.document
    key = getattr(doc, "client_key", None) if doc is not None else None
    if key:
        return str(key)
    if view.gate.process == "onboarding":
        return view.gate.workflow_id.split("/", 1)[-1]
    return None


def _gate_page(
    request: Request,
    console: ConsoleState,
    session: Session,
    view: GateView,
    *,
    notices: list[Notice] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    link: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return console.page(
        request,
        "gate.html",
        {
            "view": view,
            "client_key": _client_key(view),
            "notices": notices or [],
            "errors": errors or {},
            "values": values or {},
            "link": link,
            "nav": "inbox",
        },
        session=session,
        status_code=status_code,
    )


def _gate_url(workflow_id: str, **query: str) -> str:
    url = f"/gates/{quote(workflow_id, safe='/')}"
    if query:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return url


# --- reading ----------------------------------------------------------------------------------


@router.get("/gates/{workflow_id:path}/pdf")
async def gate_pdf(request: Request, workflow_id: str) -> Response:
    from aios.operations.console import render_gate_pdf

    console = state_of(request)
    await console.require(request)
    view = await _view(console, workflow_id)
    store = await console.store()
    pdf = await run_in_threadpool(render_gate_pdf, view, store, console.settings)
    if pdf is None:
        raise HTTPException(404, f"The {view.gate.gate} gate of {workflow_id} has no PDF.")
    name = workflow_id.replace("/", "-")
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
    )


@router.get("/gates/{workflow_id:path}/edit")
async def edit_form(request: Request, workflow_id: str) -> Response:
    console = state_of(request)
    session = await console.require(request)
    view = await _view(console, workflow_id)
    if view.gate.status != "waiting":
        return RedirectResponse(_gate_url(workflow_id), 303)
    if not view.gate.editable_fields:
        raise HTTPException(404, f"The {view.gate.gate} gate has nothing to edit.")
    return _edit_page(request, console, session, view, {}, {})


def _edit_page(
    request: Request,
    console: ConsoleState,
    session: Session,
    view: GateView,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return console.page(
        request,
        "edit.html",
        {"view": view, "values": values, "errors": errors, "nav": "inbox"},
        session=session,
        status_code=status_code,
    )


@router.get("/gates/{workflow_id:path}")
async def gate_page(request: Request, workflow_id: str, sent: str = "") -> Response:
    console = state_of(request)
    session = await console.require(request)
    view = await _view(console, workflow_id)
    notices = []
    if sent:
        if view.gate.status == "waiting" and view.gate.gate_key == sent:
            notices.append(
                Notice(
                    "warn",
                    "Sent, waiting for a worker: the run has not confirmed your decision yet "
                    "(reload to check).",
                )
            )
        elif view.gate.approver:
            notices.append(
                Notice(
                    "ok",
                    f"Done: {view.gate.status} by {view.gate.approver}; the run confirmed it "
                    "and goes on.",
                )
            )
    elif view.gate.status != "waiting":
        notices.append(Notice("ok" if view.gate.approver else "warn", answered(view.gate)))
    return _gate_page(request, console, session, view, notices=notices)


# --- editing ----------------------------------------------------------------------------------


@router.post("/gates/{workflow_id:path}/edit")
async def edit_check(request: Request, workflow_id: str) -> Response:
    """Check the edit form on the server: errors next to the fields, or the diff to confirm."""
    from aios.operations.console import check_edits, edit_diff, form_edits

    console, session, form = await checked_form(request)
    view = await _view(console, workflow_id)
    stale = await _stale(console, view, form)
    if stale:
        return _gate_page(request, console, session, view, notices=[stale], status_code=409)
    values = {f.name: _text(form, f.name) for f in view.fields if f.name in form}
    values["comment"] = _text(form, "comment").strip()
    if form.get("stage") == "form":
        return _edit_page(request, console, session, view, values, {})
    edits = form_edits(view, {k: v for k, v in values.items() if k != "comment"})
    errors = check_edits(view, edits) if edits else {"edits": "Nothing changed: edit a field."}
    if errors:
        return _edit_page(request, console, session, view, values, errors, status_code=400)
    return console.page(
        request,
        "diff.html",
        {
            "view": view,
            "edits": edits,
            "diffs": edit_diff(view, edits),
            "comment": values["comment"],
            "nav": "inbox",
        },
        session=session,
    )


# --- deciding ----------------------------------------------------------------------------------


async def _stale(console: ConsoleState, view: GateView, form: FormData) -> Notice | None:
    """A notice when the form was for a gate that no longer waits (a second click or tab)."""
    gate = view.gate
    key, run = form.get("gate_key"), form.get("run_id")
    if (isinstance(key, str) and key and key != gate.gate_key) or (
        isinstance(run, str) and run and run != gate.run_id
    ):
        try:
            decided = await _view(
                console,
                gate.workflow_id,
                run if isinstance(run, str) and run else None,
                key if isinstance(key, str) and key else None,
            )
        except HTTPException:
            decided = None
        if decided is not None and decided.gate.status != "waiting":
            return Notice("problem", f"Not sent: {answered(decided.gate)}.")
        return Notice(
            "problem", "Not sent: the gate you decided on no longer waits; this one waits now."
        )
    if gate.status != "waiting":
        return Notice("problem", f"Not sent: {answered(gate)}.")
    return None


@router.post("/gates/{workflow_id:path}/decide")
async def decide(request: Request, workflow_id: str) -> Response:
    from aios.operations.console import check_edits

    console, session, form = await checked_form(request)
    view = await _view(console, workflow_id)
    stale = await _stale(console, view, form)
    if stale:
        return _gate_page(request, console, session, view, notices=[stale], status_code=409)
    decision = str(form.get("decision") or "")
    comment = _text(form, "comment").strip()
    edits: dict[str, str] = {}
    if decision == "reject" and not comment:
        return _gate_page(
            request,
            console,
            session,
            view,
            errors={"reason": "A reason is required to reject."},
            status_code=400,
        )
    if decision == "edit":
        edits = {
            key.removeprefix("edit."): _text(form, key) for key in form if key.startswith("edit.")
        }
        errors = check_edits(view, edits) if edits else {"edits": "Nothing changed."}
        if errors:
            values = {f.name: edits.get(f.name, f.value) for f in view.fields}
            return _edit_page(
                request, console, session, view, {**values, "comment": comment}, errors, 400
            )
    elif decision not in ("approve", "reject"):
        raise HTTPException(400, "decision: must be approve, reject or edit")
    return await _send(request, console, session, view, decision, comment, edits)


async def _send(
    request: Request,
    console: ConsoleState,
    session: Session,
    view: GateView,
    decision: str,
    comment: str,
    edits: dict[str, str],
) -> Response:
    from aios.operations.gates import decide as send_decision
    from aios.operations.messages import Decision

    gate = view.gate
    try:
        payload = Decision(
            decision=decision,
            approver=session.operator,
            comment=comment,
            edits=edits,
            gate=gate.gate,
        )
    except ValidationError as exc:  # say which field, never echo the values
        return _gate_page(
            request,
            console,
            session,
            view,
            notices=[Notice("problem", f"Not sent: {describe_validation(exc)}")],
            status_code=400,
        )
    client = await console.client()
    try:
        await send_decision(client, gate.workflow_id, payload, await console.store())
    except InvalidInput as exc:
        fresh = await _view(console, gate.workflow_id)
        text = (
            f"Not sent: {answered(fresh.gate)}."
            if fresh.gate.status != "waiting"
            else f"Not sent: {exc}"
        )
        return _gate_page(
            request, console, session, fresh, notices=[Notice("problem", text)], status_code=409
        )
    log.info(
        "gate decided in the console",
        workflow_id=gate.workflow_id,
        run_id=gate.run_id,
        gate=gate.gate,
        decision=decision,
        approver=session.operator,
        edited_fields=sorted(edits),
    )
    await _await_confirmation(console, gate)
    return RedirectResponse(_gate_url(gate.workflow_id, sent=gate.gate_key), 303)


async def _await_confirmation(console: ConsoleState, gate: GateState) -> bool:
    """Wait up to ``CONFIRM_WAIT`` seconds for the run to record the decision."""
    store = await console.store()
    deadline = time.monotonic() + CONFIRM_WAIT
    while time.monotonic() < deadline:
        record = await run_in_threadpool(
            store.gates.get, gate.workflow_id, gate.run_id, gate.gate_key
        )
        if record is not None and record.status != "waiting":
            return True
        await asyncio.sleep(0.15)
    return False


# --- signed links ---------------------------------------------------------------------------------


def _claim(console: ConsoleState, token: str) -> LinkClaim:
    try:
        return read_link(token, console.settings, datetime.now(UTC))
    except LinkProblem as exc:
        raise HTTPException(410 if exc.kind == "expired" else 400, exc.message) from None


async def _link_view(console: ConsoleState, claim: LinkClaim) -> tuple[GateView, str | None]:
    """The gate a link points to, and why it can no longer be used (``None``: it can)."""
    view = await _view(console, claim.workflow_id, claim.run_id, claim.gate_key)
    gate = view.gate
    if gate.status in ("approved", "rejected", "edited"):
        return view, f"This link was already used: {answered(gate)}; it decides nothing."
    if gate.status != "waiting" or gate.gate_key != claim.gate_key:
        return (
            view,
            f"This link's gate is no longer waiting ({answered(gate)}); it decides nothing.",
        )
    return view, None


@router.get("/l/{token}")
async def link_page(request: Request, token: str, again: str = "") -> Response:
    console = state_of(request)
    claim = _claim(console, token)
    session = await console.session(request)
    if session is None:
        if not again:
            # Opened from a mail program, a SameSite=Strict cookie is not sent; one hop
            # within the console sends it.
            return console.page(
                request, "hop.html", {"target": f"/l/{token}?again=1"}, status_code=200
            )
        return RedirectResponse(f"/signin?next={quote(f'/l/{token}', safe='/')}", 303)
    if claim.action == "open":
        return RedirectResponse(_gate_url(claim.workflow_id), 303)
    view, used = await _link_view(console, claim)
    if used:
        return _gate_page(
            request, console, session, view, notices=[Notice("problem", used)], status_code=409
        )
    return _gate_page(
        request, console, session, view, link={"action": claim.action, "token": token}
    )


@router.post("/l/{token}")
async def link_confirm(request: Request, token: str) -> Response:
    console, session, form = await checked_form(request)
    claim = _claim(console, token)
    if claim.action == "open":
        return RedirectResponse(_gate_url(claim.workflow_id), 303)
    view, used = await _link_view(console, claim)
    if used:
        return _gate_page(
            request, console, session, view, notices=[Notice("problem", used)], status_code=409
        )
    comment = _text(form, "comment").strip()
    if claim.action == "reject" and not comment:
        return _gate_page(
            request,
            console,
            session,
            view,
            link={"action": claim.action, "token": token},
            errors={"comment": "A reason is required to reject."},
            status_code=400,
        )
    return await _send(request, console, session, view, claim.action, comment, {})
