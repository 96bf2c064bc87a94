"""Inbound mail activities: fetch and keep emails, match them, read client replies, answer.

Thin over ``connectors.imap`` (the mailbox), ``kernel.stores.mail`` (the emails, the
outbox's Message-IDs), ``kernel.inbound`` (tokens, operator commands) and ``agents.reply``
(the reading). What they return is small: an email's body stays in PostgreSQL, the workflows
get its key, the reading and a short excerpt.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import activity

from aios.activities.agents import run_agent
from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import AgentCall, AgentControls, SendResult
from aios.agents.reply import ReplyAgent, ReplyReading, ReplyRequest, strip_quoted
from aios.agents.runner import AgentRunner
from aios.connectors.email import OPERATIONS as EMAIL
from aios.connectors.email import OutgoingEmail, SmtpEmailConnector
from aios.connectors.imap import NAME as IMAP
from aios.connectors.imap import ImapMailbox, parse_email, plus_tokens
from aios.connectors.runtime import ConnectorRuntime
from aios.errors import InvalidInput
from aios.kernel.inbound import (
    answered_ids,
    gate_reply_secret,
    hide_secrets,
    operator_command,
    secret_matches,
)
from aios.kernel.money import format_amount, parse_amount
from aios.kernel.pause import PauseGate
from aios.kernel.policy import ProposalPolicy, evaluate_proposal
from aios.kernel.store import KernelStore
from aios.kernel.stores.notices import NoticeDraft

__all__ = [
    "ClassifyReplyInput",
    "ClassifyReplyResult",
    "FetchInboundInput",
    "FetchInboundResult",
    "FetchedEmail",
    "InboundActivities",
    "InboundHandledInput",
    "InboundMatch",
    "MarkSeenInput",
    "MatchInboundInput",
    "SendAnswerInput",
]

EXCERPT_CHARS = 600
# Steps whose emails a client answers about a proposal: "send/v2", "follow-up/v2/1".
_PROPOSAL_STEP = re.compile(r"^(?:send|follow-up)/v(\d+)(?:/\d+)?$")
# "gate/proposal/reminder/0", "gate/budget#2/reminder/1" -> the gate's step key.
_GATE_STEP = re.compile(r"^(gate/[^/]+)/reminder/\d+$")


class FetchInboundInput(BaseModel):
    limit: int = Field(default=50, ge=1, le=500)


class FetchedEmail(BaseModel):
    uid: int
    message_key: str
    handled: bool  # already handled (fetched again): only to be marked seen


class FetchInboundResult(BaseModel):
    uid_validity: int = 0
    emails: list[FetchedEmail] = Field(default_factory=list)
    unreadable: list[int] = Field(default_factory=list)  # uids kept as notices, to mark seen
    skipped: str | None = None


class MarkSeenInput(BaseModel):
    uids: list[int]
    uid_validity: int


class MatchInboundInput(BaseModel):
    message_key: str


class InboundMatch(BaseModel):
    """What an inbound email is: an answer to a proposal, an operator's reply to a gate email,
    or neither (``unmatched``); ``suspicious`` when it claims a gate it may not decide."""

    kind: Literal["proposal_reply", "gate_reply", "unmatched", "suspicious", "handled"]
    message_key: str
    message_id: str = ""
    sender: str = ""
    subject: str = ""
    excerpt: str = ""  # the new part of the body, cut short; client text, shown fenced
    workflow_id: str | None = None
    proposal_id: str | None = None
    client_key: str | None = None
    version: int | None = None
    from_client: bool = False  # the sender is the client's address on record
    gate: str | None = None
    gate_key: str | None = None
    decision: Literal["approve", "reject"] | None = None
    comment: str = ""
    reason: str = ""  # why it is unmatched or suspicious


class ClassifyReplyInput(BaseModel):
    idempotency_key: str
    message_key: str
    proposal_id: str
    version: int
    from_client: bool = True
    controls: AgentControls = Field(default_factory=AgentControls)
    policy: ProposalPolicy = Field(default_factory=ProposalPolicy)
    min_confidence: float = 0.8


class ClassifyReplyResult(BaseModel):
    reading: ReplyReading
    confidence: float
    auto: bool  # confident, from the client, and the proposal policy allows it
    reasons: list[str]
    total: str  # the version's total, "USD 2,200.00"
    currency: str
    subtotal_minor: int
    call: AgentCall | None = None


class SendAnswerInput(BaseModel):
    idempotency_key: str
    message_key: str
    answer: str = Field(min_length=1, max_length=5000)


class InboundHandledInput(BaseModel):
    message_key: str
    outcome: str


def _excerpt(text: str) -> str:
    """The new part of the body, cut short, without any gate reply token."""
    text = hide_secrets(text)
    new = " ".join(strip_quoted(text).split()) or " ".join(text.split())
    return new[:EXCERPT_CHARS] + ("..." if len(new) > EXCERPT_CHARS else "")


class InboundActivities:
    def __init__(
        self,
        store: KernelStore,
        runner: AgentRunner,
        *,
        mailbox: ImapMailbox | None,
        email: SmtpEmailConnector,
        runtime: ConnectorRuntime,
        operator_email: str,
        signing_key: bytes,
        imap_address: str | None = None,
        max_attachment_bytes: int = 10_000_000,
        reply: ReplyAgent | None = None,
        pause: PauseGate | None = None,
    ) -> None:
        self._store = store
        self._pause = pause
        self._runner = runner
        self._mailbox = mailbox
        self._email = email
        self._runtime = runtime
        self._operator = operator_email.strip().lower()
        self._key = signing_key
        self._address = imap_address
        self._max_attachment = max_attachment_bytes
        self._reply = reply or ReplyAgent()

    def __repr__(self) -> str:  # the signing key never reaches a log line
        return "InboundActivities()"

    @activity.defn(name="fetch_inbound")
    @translating_errors
    def fetch_inbound(self, inp: FetchInboundInput) -> FetchInboundResult:
        """Fetch unseen emails (left unseen) and keep each once; returns their keys. Nothing
        is read while a switch covering the mailbox is paused (``aios.kernel.pause``)."""
        if self._mailbox is None:
            return FetchInboundResult(skipped="no inbound mailbox configured (AIOS_IMAP_HOST)")
        if self._pause is not None:
            switch = self._pause.paused([f"connector:{IMAP}"])
            if switch is not None:
                return FetchInboundResult(skipped=f"paused: {switch.label}")
        batch = self._mailbox.fetch_unseen(inp.limit)
        result = FetchInboundResult(uid_validity=batch.uid_validity)
        for raw in batch.messages:
            activity.heartbeat(raw.uid)
            try:
                email = parse_email(raw.data, max_attachment_bytes=self._max_attachment)
            except InvalidInput as exc:
                digest = hashlib.sha256(raw.data).hexdigest()[:32]
                self._store.notices.open(
                    NoticeDraft(
                        key=f"email/unreadable/{digest}",
                        kind="unmatched_email",
                        title="An email that cannot be read",
                        summary=str(exc)[:500],
                        source="imap",
                    )
                )
                result.unreadable.append(raw.uid)
                continue
            stored, _ = self._store.mail.save(email, mailbox=self._mailbox.folder)
            result.emails.append(
                FetchedEmail(
                    uid=raw.uid, message_key=stored.message_key, handled=stored.status == "handled"
                )
            )
        return result

    @activity.defn(name="mark_inbound_seen")
    @translating_errors
    def mark_inbound_seen(self, inp: MarkSeenInput) -> int:
        if self._mailbox is None:
            return 0
        return self._mailbox.mark_seen(inp.uids, inp.uid_validity)

    @activity.defn(name="match_inbound")
    @translating_errors
    def match_inbound(self, inp: MatchInboundInput) -> InboundMatch:
        """What the email is (see ``InboundMatch``)."""
        email = self._store.mail.get(inp.message_key)
        if email is None:
            raise InvalidInput(f"match_inbound: no email with key {inp.message_key!r}")
        base = InboundMatch(
            kind="unmatched",
            message_key=email.message_key,
            message_id=email.message_id,
            sender=email.sender,
            subject=email.subject,
            excerpt=_excerpt(email.body),
        )
        if email.status == "handled":
            return base.model_copy(update={"kind": "handled", "reason": email.outcome or ""})
        tokens = plus_tokens(email.recipients, self._address) if self._address else []
        sent = self._store.mail.sent_email(answered_ids(email.answers, tokens))
        if sent is None:
            return base.model_copy(update={"reason": "it answers no email AiOs sent"})
        gate = _GATE_STEP.match(sent.step)
        if sent.operation == "send_gate_reminder" and gate is not None:
            gate_key = gate.group(1)
            update = {
                "workflow_id": sent.workflow_id,
                "gate_key": gate_key,
                "gate": gate_key.removeprefix("gate/").split("#", 1)[0],
            }
            secret = gate_reply_secret(self._key, sent.workflow_id, sent.run_id, gate_key)
            if email.sender != self._operator:
                reason = f"a reply to a gate email from {email.sender}, not the operator"
            elif not secret_matches(secret, tokens, email.body):
                reason = "a reply to a gate email without that gate's reply token"
            elif (command := operator_command(strip_quoted(email.body))) is None:
                reason = 'the first line is neither "approve" nor "reject: reason"'
            else:
                return base.model_copy(
                    update={
                        **update,
                        "kind": "gate_reply",
                        "decision": command.decision,
                        "comment": command.comment,
                    }
                )
            return base.model_copy(update={**update, "kind": "suspicious", "reason": reason})
        step = _PROPOSAL_STEP.match(sent.step)
        if sent.operation == "send_proposal" and step is not None:
            proposal_id = sent.workflow_id.removeprefix("proposal/")
            proposal = self._store.proposals.get(proposal_id)
            client = self._store.clients.get(proposal.client_key) if proposal else None
            if proposal is not None:
                return base.model_copy(
                    update={
                        "kind": "proposal_reply",
                        "workflow_id": sent.workflow_id,
                        "proposal_id": proposal_id,
                        "client_key": proposal.client_key,
                        "version": int(step.group(1)),
                        "from_client": client is not None
                        and client.email.strip().lower() == email.sender,
                    }
                )
        return base.model_copy(
            update={
                "workflow_id": sent.workflow_id,
                "reason": f"it answers an email of step {sent.operation}, which takes no answer",
            }
        )

    @activity.defn(name="classify_reply")
    @translating_errors
    def classify_reply(self, inp: ClassifyReplyInput) -> ClassifyReplyResult:
        """Read the client's reply; ``auto`` when it may be signalled without the operator."""
        email = self._store.mail.get(inp.message_key)
        if email is None:
            raise InvalidInput(f"classify_reply: no email with key {inp.message_key!r}")
        version = next(
            (
                v
                for v in self._store.proposals.versions(inp.proposal_id)
                if v.version == inp.version
            ),
            None,
        )
        if version is None:
            raise InvalidInput(
                f"classify_reply: proposal {inp.proposal_id!r} has no version {inp.version}"
            )
        total = format_amount(version.total_minor, version.currency)
        request = ReplyRequest(
            proposal_id=inp.proposal_id,
            version=inp.version,
            total=total,
            subject=email.subject,
            text=email.body,
        )
        result, done = run_agent(
            self._runner,
            self._store,
            self._reply,
            request,
            key=inp.idempotency_key,
            controls=inp.controls,
            entity=f"proposal:{inp.proposal_id}",
        )
        reasons: list[str] = []
        if result is None:  # held (budget, no usable answer): the template reads it, unsure
            result = self._reply.run(request)
            reasons.append(f"the model could not read it ({done.hold.reason if done.hold else ''})")
            confidence = 0.0
        else:
            confidence = result.confidence
        reading = result.output
        if confidence < inp.min_confidence:
            reasons.append(f"confidence {confidence:.2f} is below {inp.min_confidence:.2f}")
        if not inp.from_client:
            reasons.append(f"the sender {email.sender} is not the client's address")
        if reading.intent == "question":
            reasons.append("a question: the answer goes out only when you approve it")
        if reading.intent == "counter" and reading.proposed_total is not None:
            problem = _counter_problem(reading.proposed_total, version.currency, version)
            if problem:
                reasons.append(problem)
            else:
                proposed = parse_amount(reading.proposed_total, version.currency)
                discount = (
                    Decimal(100) * (version.subtotal_minor - proposed) / version.subtotal_minor
                ).quantize(Decimal("0.01"))
                verdict = evaluate_proposal(
                    total_minor=proposed,
                    discount_pct=discount,
                    currency=version.currency,
                    policy=inp.policy,
                )
                if verdict.needs_approval:
                    reasons += verdict.reasons
        call = done.call
        self._store.events.append(
            event_for_step(
                inp.idempotency_key,
                "email.read",
                entity=f"proposal:{inp.proposal_id}",
                payload={
                    "agent": self._reply.name,
                    "message_key": inp.message_key,
                    "intent": reading.intent,
                    "proposed_total": str(reading.proposed_total)
                    if reading.proposed_total is not None
                    else None,
                    "confidence": confidence,
                    "auto": not reasons,
                    "reasons": reasons,
                    **(call.model_dump() if call else {}),
                },
            )
        )
        return ClassifyReplyResult(
            reading=reading,
            confidence=confidence,
            auto=not reasons,
            reasons=reasons,
            total=total,
            currency=version.currency,
            subtotal_minor=version.subtotal_minor,
            call=call,
        )

    @activity.defn(name="send_reply_answer")
    @translating_errors
    def send_reply_answer(self, inp: SendAnswerInput) -> SendResult:
        """Email the approved answer to the sender of the email, as a reply to it."""
        email = self._store.mail.get(inp.message_key)
        if email is None:
            raise InvalidInput(f"send_reply_answer: no email with key {inp.message_key!r}")
        subject = (
            email.subject
            if email.subject.lower().startswith("re:")
            else (f"Re: {email.subject}" if email.subject else "Re: your message")
        )
        outgoing = OutgoingEmail(
            to=email.sender,
            subject=subject,
            body=inp.answer,
            idempotency_key=inp.idempotency_key,
            in_reply_to=email.message_id,
        )
        result, ran = self._runtime.committing_effect(
            self._email.name,
            EMAIL["send"],
            inp.idempotency_key,
            lambda dry_run, commit: self._email.send(outgoing, dry_run=dry_run, commit=commit),
            step="send_reply_answer",
            event=event_for_step(
                inp.idempotency_key,
                "email.answered",
                entity=f"email:{email.message_key}",
                payload={"to": email.sender, "subject": subject},
            ),
        )
        return SendResult(message_id=result["message_id"], to=result["to"], sent_now=ran)

    @activity.defn(name="inbound_handled")
    @translating_errors
    def inbound_handled(self, inp: InboundHandledInput) -> None:
        info = activity.info()
        self._store.mail.handled(
            inp.message_key, outcome=inp.outcome, workflow_id=info.workflow_id or ""
        )


def _counter_problem(total: Decimal, currency: str, version: object) -> str | None:
    """Why ``total`` cannot be a counter to ``version`` (the proposal's own rule), or None."""
    try:
        proposed = parse_amount(total, currency)
    except InvalidInput as exc:
        return f"the counter total: {exc}"
    current = getattr(version, "total_minor", 0)
    if proposed <= 0 or proposed >= current:
        return (
            f"the counter total {format_amount(proposed, currency)} is not below the current "
            f"total {format_amount(current, currency)}"
        )
    return None
