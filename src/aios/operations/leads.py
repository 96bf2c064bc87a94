"""Leads that come in by themselves: check them as ``aios onboard`` does, then start onboarding,
or add them to the client they belong to.

- ``parse_lead(fields)`` validates a lead's fields with ``ClientIntake`` (the model of ``aios
  onboard``) and returns it and the lead's source label, or ``LeadRejected`` naming each bad
  field;
- ``receive_lead(...)`` acts on a valid lead: for a client already known (by key, by email, or
  by an earlier lead from the same address) or in onboarding, a note on that client and a
  ``lead.received`` event, never a second run; otherwise a new onboarding run
  (``start_onboarding``, idempotent by client key, so two leads at once still give one run);
- ``record_honeypot(...)``: a bot that filled the form's hidden field starts nothing and is
  recorded as a ``lead.honeypot`` event;
- ``retry_after(...)``: the per-address rate limit, counted over recorded leads in the kernel,
  so every replica of ``aios serve`` shares it;
- ``signed_digest`` and ``check_signature``: the hook's HMAC-SHA256 scheme (the same
  ``X-Aios-Signature: t=<unix seconds>,v1=<hex>`` as the project's outgoing webhooks).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.models import ClientIntake, client_key_for
from aios.kernel.store import KernelStore
from aios.kernel.stores.leads import LeadChannel, LeadDraft
from aios.kernel.text import clean_pasted, refuse_unsafe
from aios.operations.onboarding import earlier_onboarding, start_onboarding
from aios.workflows.onboarding import onboarding_workflow_id

__all__ = [
    "SIGNATURE_HEADER",
    "LeadReceipt",
    "LeadRejected",
    "SignatureProblem",
    "check_signature",
    "parse_lead",
    "receive_lead",
    "record_honeypot",
    "retry_after",
    "signed_digest",
]

SIGNATURE_HEADER = "X-Aios-Signature"
INTAKE_FIELDS = ("name", "email", "notes", "key")
SOURCE_MAX = 64
_MAX_SIGNATURE_HEADER = 1024


class LeadRejected(InvalidInput):
    """A lead with bad fields: ``fields`` maps each bad field to what is wrong with it."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))


class LeadReceipt(BaseModel):
    """What became of a lead: a new run (``started``) or a note on a known client
    (``noted``); ``message`` says which in a sentence."""

    lead_id: int
    outcome: Literal["started", "noted"]
    client_key: str
    workflow_id: str
    note_id: int | None = None
    message: str


def parse_lead(fields: Mapping[str, object], *, hook: bool) -> tuple[ClientIntake, str]:
    """The intake and the source label of a lead's ``fields``, validated as ``aios onboard``
    validates its options: name, email and notes; a hook's lead may also give key and source
    (default "hook"; a form lead's source is "form"). Any other field, or a bad one, raises
    ``LeadRejected`` naming each."""
    problems: dict[str, str] = {}
    allowed = {*INTAKE_FIELDS, "source"} if hook else {"name", "email", "notes"}
    for name in fields:
        if name not in allowed:
            shown = clean_pasted(str(name))[:64] or "?"
            problems[shown] = "unknown field; a lead has " + ", ".join(sorted(allowed))
    source = "hook" if hook else "form"
    if hook and "source" in fields:
        try:
            source = _source(fields["source"])
        except ValueError as exc:
            problems["source"] = str(exc)
    intake_fields = {k: v for k, v in fields.items() if k in allowed and k != "source"}
    if not hook:
        intake_fields.setdefault("key", _form_key(fields))
    try:
        intake = ClientIntake.model_validate(intake_fields)
    except ValidationError as exc:
        problems.update(_field_problems(exc))
    if problems:
        raise LeadRejected(problems)
    return intake, source


def _form_key(fields: Mapping[str, object]) -> str:
    """A form lead's client key: from the name as ``aios onboard`` derives it; for a name
    without Latin letters or digits (the form has no key field), from the email address."""
    name, email = fields.get("name"), fields.get("email")
    if not isinstance(name, str) or client_key_for(name) or not isinstance(email, str):
        return ""
    return client_key_for(email.replace("@", " at "))


def _source(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    text = refuse_unsafe(value, multiline=False)
    if not text:
        raise ValueError("must not be empty")
    if len(text) > SOURCE_MAX:
        raise ValueError(f"at most {SOURCE_MAX} characters")
    return text


def _field_problems(exc: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        field = str(error["loc"][0]) if error["loc"] else ""
        if not field:  # the model's own check names the field at the start of its message
            head, sep, rest = message.partition(": ")
            if sep and head in INTAKE_FIELDS:
                field, message = head, rest
            else:
                field = "name"
        problems.setdefault(field, message)
    return problems


async def receive_lead(
    client: Client,
    store: KernelStore,
    settings: Settings,
    intake: ClientIntake,
    *,
    channel: LeadChannel,
    source: str,
    address: str,
    signed: str | None = None,
) -> LeadReceipt | None:
    """Start onboarding for ``intake``, or add it as a note to the client it belongs to.

    ``None`` when ``signed`` (a hook request's digest) was recorded before: nothing is done."""
    known = await asyncio.to_thread(_known_client, store, intake)
    started_run = ""
    earlier = ""
    outcome: Literal["started", "noted"]
    if known is None:
        earlier = await earlier_onboarding(client, onboarding_workflow_id(intake.key)) or ""
        if earlier:  # onboarded before, ended: a note on that client
            known = intake.key
    if known is None:
        # ``again``: the check for an earlier run was made just above.
        started = await start_onboarding(client, settings, intake, again=True)
        if started.existing:
            known = intake.key  # another lead (or the operator) started it meanwhile
        else:
            started_run = started.run_id
    if known is None:
        key = intake.key
        outcome = "started"
        workflow_id = onboarding_workflow_id(key)
        draft = LeadDraft(
            channel=channel,
            source=source,
            address=address,
            outcome=outcome,
            client_key=key,
            email=intake.email,
            workflow_id=workflow_id,
            run_id=started_run,
            signed=signed,
        )
        message = f"Onboarding started for {key} ({workflow_id})."
    else:
        key = known
        outcome = "noted"
        workflow_id = onboarding_workflow_id(key)
        draft = LeadDraft(
            channel=channel,
            source=source,
            address=address,
            outcome=outcome,
            client_key=key,
            email=intake.email,
            workflow_id=workflow_id,
            note=note_text(intake, source),
            signed=signed,
        )
        message = (
            f"{key} is already a client or in onboarding: the lead was added to it as a note; "
            "no new run." + (f" Its onboarding ended: {earlier}." if earlier else "")
        )
    recorded = await asyncio.to_thread(store.leads.record, draft)
    if recorded is None:
        return None
    return LeadReceipt(
        lead_id=recorded.id,
        outcome=outcome,
        client_key=key,
        workflow_id=workflow_id,
        note_id=recorded.note_id,
        message=message,
    )


def _known_client(store: KernelStore, intake: ClientIntake) -> str | None:
    """The client ``intake`` belongs to, if the kernel knows one: by key, else by email
    (a client record, or an earlier lead from the same address)."""
    if store.clients.get(intake.key) is not None:
        return intake.key
    return store.clients.key_for_email(intake.email) or store.leads.client_for_email(intake.email)


def note_text(intake: ClientIntake, source: str) -> str:
    """The note a lead adds to a client it belongs to."""
    head = f"Lead from {source}: {intake.name} <{intake.email}>"
    return f"{head}\n\n{intake.notes}" if intake.notes else head


def record_honeypot(store: KernelStore, *, channel: LeadChannel, source: str, address: str) -> int:
    """Record a lead a bot sent (its hidden field filled): an event, nothing else. What the
    bot wrote is not kept. Returns the lead's id."""
    recorded = store.leads.record(
        LeadDraft(channel=channel, source=source, address=address, outcome="honeypot")
    )
    assert recorded is not None  # no signed digest: never a duplicate
    return recorded.id


def retry_after(
    store: KernelStore,
    channel: LeadChannel,
    address: str,
    rate: str,
    now: datetime | None = None,
) -> int | None:
    """Seconds until ``address`` may send another lead through ``channel`` under ``rate``
    ("5/hour"), or ``None`` while it is under the limit."""
    from limits import parse as parse_rate

    item = parse_rate(rate)
    window = timedelta(seconds=item.get_expiry())
    recent = store.leads.recent(channel, address, window)
    if recent.count < item.amount or recent.oldest is None:
        return None
    now = now or datetime.now(UTC)
    return max(1, math.ceil((recent.oldest + window - now).total_seconds()))


# --- the hook's signature --------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureProblem:
    """Why a hook request's signature was refused, and the HTTP status that says so."""

    status: int
    message: str


def check_signature(
    secret: str, header: str | None, body: bytes, *, tolerance_seconds: int, now: float
) -> SignatureProblem | None:
    """``None`` when ``header`` signs ``body`` with ``secret`` within ``tolerance_seconds`` of
    ``now``; otherwise what is wrong (401 missing, stale or mismatched; 400 malformed)."""
    from aios.connectors.webhooks import verify_signature

    if header is None or not header.strip():
        return SignatureProblem(401, f"missing {SIGNATURE_HEADER} header")
    timestamp = _timestamp(header)
    if timestamp is None:
        return SignatureProblem(
            400, f"malformed {SIGNATURE_HEADER} header; expected t=<unix seconds>,v1=<64 hex>"
        )
    if abs(now - timestamp) > tolerance_seconds:
        return SignatureProblem(
            401,
            f"{SIGNATURE_HEADER} timestamp is {round(abs(now - timestamp))} s away from now; "
            f"at most {tolerance_seconds} s is accepted (a replay, or a wrong clock)",
        )
    if not verify_signature(secret, header, body, tolerance_seconds=tolerance_seconds, now=now):
        return SignatureProblem(401, f"{SIGNATURE_HEADER} does not match the body")
    return None


def _timestamp(header: str) -> int | None:
    if len(header) > _MAX_SIGNATURE_HEADER:
        return None
    timestamp: int | None = None
    has_v1 = False
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return None
            timestamp = int(value)
        elif name == "v1":
            has_v1 = True
    return timestamp if has_v1 else None


def signed_digest(header: str, body: bytes) -> str:
    """The digest of what a (verified) header signed: its timestamp and the body. A replay of
    the request, however its header is rewritten, has the same digest."""
    timestamp = _timestamp(header)
    return hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest()
