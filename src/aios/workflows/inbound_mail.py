"""Inbound email: the poller and the run that handles each message.

``MailPollWorkflow`` (started by the Temporal Schedule ``aios-mail-poll``, or once by ``aios mail
poll``) fetches the mailbox's unseen emails, keeps each in PostgreSQL, starts one
``InboundMailWorkflow`` per email with id ``inbound-mail/<sha256 of its Message-ID>`` (a
duplicate id is refused, so an email fetched twice is handled once) and only then marks the
emails seen. ``InboundMailWorkflow`` matches the email to what AiOs sent and:

- a client's answer to a proposal email is read by the reply agent; a confident reading the
  proposal policy allows is signalled to the proposal as ``client_response``; anything else
  waits at gate ``reply`` showing the email and the proposed reading (approve signals it, edit
  changes it first, reject drops it); a question waits at gate ``reply`` with a drafted answer
  (approve or edit sends it to the client);
- the operator's reply "approve" or "reject: reason" to a gate email, from
  ``AIOS_OPERATOR_EMAIL`` and carrying that gate's reply token, is signalled as ``decide``; any
  other reply to a gate email becomes a ``suspicious_email`` notice and decides nothing;
- anything else becomes an ``unmatched_email`` notice.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from aios.activities.inbound import (
        ClassifyReplyInput,
        ClassifyReplyResult,
        FetchInboundInput,
        InboundActivities,
        InboundHandledInput,
        InboundMatch,
        MarkSeenInput,
        MatchInboundInput,
        SendAnswerInput,
    )
    from aios.activities.kernel import KernelActivities
    from aios.agents.reply import ReplyReading
    from aios.converter import ProcessInput
    from aios.kernel.policy import GatePolicy, ProposalPolicy
    from aios.kernel.stores.notices import NoticeDraft
    from aios.workflows.attributes import CLIENT
    from aios.workflows.contract import DECIDE_SIGNAL, GateDecision
    from aios.workflows.process import Process
    from aios.workflows.progress import RunProgress
    from aios.workflows.proposal import CLIENT_RESPONSE_SIGNAL, ClientResponse
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT, KERNEL_WRITE, MAILBOX, MODEL_CALL

__all__ = [
    "INBOUND_PROCESS",
    "POLL_PROCESS",
    "InboundMailInput",
    "InboundMailResult",
    "InboundMailWorkflow",
    "MailPollInput",
    "MailPollResult",
    "MailPollWorkflow",
    "inbound_workflow_id",
]

INBOUND_PROCESS = "inbound-mail"
POLL_PROCESS = "mail-poll"
REPLY_GATE = "reply"
READING_FIELDS = ["response", "total", "note"]
ANSWER_FIELDS = ["answer"]


def inbound_workflow_id(message_key: str) -> str:
    return f"{INBOUND_PROCESS}/{message_key}"


class InboundMailInput(ProcessInput):
    message_key: str = Field(min_length=1, max_length=64)
    proposal_policy: ProposalPolicy = Field(default_factory=ProposalPolicy)
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)
    min_confidence: float = Field(default=0.8, ge=0, le=1)


Outcome = Literal[
    "signalled",
    "decided",
    "answered",
    "dismissed",
    "unmatched",
    "suspicious",
    "duplicate",
    "expired",
    "undelivered",
]


class InboundMailResult(BaseModel):
    message_key: str
    outcome: Outcome
    kind: str
    target_workflow_id: str | None = None
    signal: str | None = None
    detail: str = ""


class MailPollInput(ProcessInput):
    limit: int = Field(default=50, ge=1, le=500)
    proposal_policy: ProposalPolicy = Field(default_factory=ProposalPolicy)
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)
    min_confidence: float = Field(default=0.8, ge=0, le=1)


class MailPollResult(BaseModel):
    fetched: int = 0
    started: list[str] = Field(default_factory=list)
    already_started: list[str] = Field(default_factory=list)
    marked_seen: int = 0
    unreadable: int = 0
    skipped: str | None = None


def _response(reading: ReplyReading, version: int | None) -> ClientResponse:
    return ClientResponse(
        response="counter" if reading.intent == "counter" else reading.intent,
        note=reading.note,
        proposed_total=reading.proposed_total if reading.intent == "counter" else None,
        version=version,
    )


def _edited_reading(
    reading: ReplyReading, edits: dict[str, str]
) -> tuple[ReplyReading, str | None]:
    """The reading with the operator's edits (``response``, ``total``, ``note``)."""
    intent = edits.get("response", reading.intent).strip().lower()
    if intent not in ("accept", "decline", "counter"):
        return reading, "edits.response: must be accept, decline or counter"
    total: Decimal | None = None
    if intent == "counter":
        raw = edits.get("total", str(reading.proposed_total or "")).strip()
        try:
            total = Decimal(raw.replace(",", ""))
        except InvalidOperation:
            return reading, f"edits.total: {raw!r} is not an amount"
        if not total.is_finite() or total <= 0:
            return reading, "edits.total: must be more than zero"
    elif "total" in edits:
        return reading, "edits.total: only with response counter"
    note = edits.get("note", reading.note)[:300]
    try:
        edited = ReplyReading.model_validate(
            {"intent": intent, "proposed_total": total, "note": note}
        )
    except ValidationError as exc:  # more decimals than a price has, too many digits
        first = exc.errors()[0]
        where = {"proposed_total": "total"}.get(str(first["loc"][0]), str(first["loc"][0]))
        return reading, f"edits.{where}: {first['msg']}"
    return edited, None


@workflow.defn(name="InboundMailWorkflow")
class InboundMailWorkflow(Process):
    """One inbound email, from the mailbox to the signal (or notice) it becomes.

    Id: ``inbound-mail/<sha256 of the Message-ID, 32 hex>``. Input ``InboundMailInput``,
    result ``InboundMailResult``.

    Signals: ``decide`` (``GateDecision``) answers gate ``reply``: approve sends the proposed
    reading (or the drafted answer to a question), ``edit`` changes it first (fields
    ``response``, ``total``, ``note``; for a question ``answer``), reject drops the email.
    Queries: ``pending_gates``; ``progress`` -> ``RunProgress``. Search attributes:
    ``AiosProcess=inbound-mail``, ``AiosClient``, ``AiosAwaitingApproval``, ``AiosOutcome``.

    End states: ``signalled`` (``client_response`` sent to the proposal), ``decided`` (the
    operator's emailed decision sent to a gate), ``answered`` (the approved answer emailed),
    ``dismissed``, ``unmatched`` and ``suspicious`` (a notice), ``duplicate`` (handled before),
    ``expired`` (nobody decided at the gate), ``undelivered`` (the target run had ended).
    """

    NAME = INBOUND_PROCESS

    @workflow.query(name="progress")
    def progress(self) -> RunProgress:
        return RunProgress(
            process=INBOUND_PROCESS,
            steps_done=list(self._steps),
            pending_gates=self.pending_gates(),
            compensations_pending=self._saga.pending,
            rejected_signals=self.signal_log.total,
            last_rejection=self.signal_log.last,
        )

    @workflow.run
    async def run(self, inp: InboundMailInput) -> InboundMailResult:
        self.begin("")
        return await self.guard(lambda: self._handle(inp), entity=f"email:{inp.message_key}")

    async def _handle(self, inp: InboundMailInput) -> InboundMailResult:
        match = await step(
            InboundActivities.match_inbound,
            MatchInboundInput(message_key=inp.message_key),
            KERNEL_WRITE,
        )
        self._done(f"match:{match.kind}")
        if match.client_key:
            workflow.upsert_search_attributes([CLIENT.value_set(match.client_key)])
        if match.kind == "handled":
            return await self._finish(match, "duplicate", detail=match.reason, record=False)
        if match.kind in ("unmatched", "suspicious"):
            await self._notice(match)
            return await self._finish(match, match.kind, detail=match.reason)
        if match.kind == "gate_reply":
            assert match.workflow_id
            assert match.decision
            decision = GateDecision(
                decision=match.decision,
                approver=match.sender,
                comment=match.comment or f"by email {match.message_id}"[:2000],
                gate=match.gate,
            )
            return await self._send_signal(match, DECIDE_SIGNAL, decision, "decided")
        return await self._reply(inp, match)

    async def _reply(self, inp: InboundMailInput, match: InboundMatch) -> InboundMailResult:
        assert match.proposal_id
        assert match.version
        assert match.workflow_id
        read = await step(
            InboundActivities.classify_reply,
            ClassifyReplyInput(
                idempotency_key=step_key("classify"),
                message_key=inp.message_key,
                proposal_id=match.proposal_id,
                version=match.version,
                from_client=match.from_client,
                policy=inp.proposal_policy,
                min_confidence=inp.min_confidence,
            ),
            MODEL_CALL,
        )
        reading = read.reading
        self._done(f"read:{reading.intent}")
        if read.auto and reading.intent != "question":
            return await self._send_signal(
                match, CLIENT_RESPONSE_SIGNAL, _response(reading, match.version), "signalled"
            )
        question = reading.intent == "question"
        outcome = await self.wait_for_decision(
            gate=REPLY_GATE,
            title=(
                f"{'Question' if question else 'Answer'} from {match.sender} on proposal "
                f"{match.proposal_id} v{match.version}: reads as {self._shown(reading)}"
            ),
            summary=self._summary(match, read),
            policy=inp.gate_policy,
            editable_fields=ANSWER_FIELDS if question else READING_FIELDS,
            entity=f"proposal:{match.proposal_id}",
            amount=read.total,
            drafted_by=read.call.model if read.call else None,
            check_edits=None if question else (lambda e: _edited_reading(reading, e)[1]),
            details={
                "message_id": match.message_id,
                "from": match.sender,
                "intent": reading.intent,
                "proposed_total": str(reading.proposed_total) if reading.proposed_total else None,
                "confidence": read.confidence,
                "reasons": read.reasons,
                "answer": reading.answer,
            },
        )
        if outcome.status == "expired":
            return await self._finish(match, "expired", detail="nobody decided at gate reply")
        if outcome.status == "rejected":
            comment = outcome.decision.comment if outcome.decision else ""
            return await self._finish(match, "dismissed", detail=comment)
        edits = outcome.decision.edits if outcome.decision else {}
        if question:
            answer = (edits.get("answer") or reading.answer or "").strip()
            await step(
                InboundActivities.send_reply_answer,
                SendAnswerInput(
                    idempotency_key=step_key("answer"),
                    message_key=inp.message_key,
                    answer=answer,
                ),
                CONNECTOR_EFFECT,
            )
            self._done("answer-sent")
            return await self._finish(match, "answered", detail=f"to {match.sender}")
        if edits:
            reading, _ = _edited_reading(reading, edits)
        return await self._send_signal(
            match, CLIENT_RESPONSE_SIGNAL, _response(reading, match.version), "signalled"
        )

    @staticmethod
    def _shown(reading: ReplyReading) -> str:
        if reading.intent == "counter":
            return f"counter at {reading.proposed_total}"
        return reading.intent

    @staticmethod
    def _summary(match: InboundMatch, read: ClassifyReplyResult) -> str:
        reasons = "; ".join(read.reasons) or "asked for"
        reading = read.reading
        proposed = f"Proposed reading: {reading.intent}"
        if reading.proposed_total is not None:
            proposed += f" at {reading.proposed_total} {read.currency}"
        if reading.intent == "question" and reading.answer:
            proposed = f"Drafted answer: {reading.answer}"
        # The client's words are quoted as data, never as instructions.
        return (
            f"Why you decide: {reasons}. {proposed}. "
            f'The email (client text, quoted): "{match.excerpt}"'
        )[:2000]

    async def _send_signal(
        self,
        match: InboundMatch,
        name: str,
        payload: BaseModel,
        outcome: Outcome,
    ) -> InboundMailResult:
        assert match.workflow_id
        target = workflow.get_external_workflow_handle(match.workflow_id)
        try:
            await target.signal(name, payload)
        except FailureError as exc:  # the run ended (or never existed): a notice says so
            await self._notice(
                match.model_copy(
                    update={"kind": "unmatched", "reason": f"{match.workflow_id} took no signal"}
                )
            )
            return await self._finish(match, "undelivered", detail=str(exc)[:300])
        self._done(f"signal:{name}")
        return await self._finish(match, outcome, signal=name)

    async def _notice(self, match: InboundMatch) -> None:
        suspicious = match.kind == "suspicious"
        await step(
            KernelActivities.open_notice,
            NoticeDraft(
                key=f"email/{match.message_key}",
                kind="suspicious_email" if suspicious else "unmatched_email",
                title=(
                    f"{'Suspicious' if suspicious else 'Unmatched'} email from {match.sender}: "
                    f"{match.subject or '(no subject)'}"
                )[:300],
                summary=f'{match.reason}. The email (quoted): "{match.excerpt}"'[:2000],
                details={
                    "message_id": match.message_id,
                    "from": match.sender,
                    "target_workflow_id": match.workflow_id,
                    "gate": match.gate,
                },
                client_key=match.client_key,
                source="imap",
                suspicious=suspicious,
            ),
            KERNEL_WRITE,
        )
        self._done("notice")

    async def _finish(
        self,
        match: InboundMatch,
        outcome: Outcome,
        *,
        signal: str | None = None,
        detail: str = "",
        record: bool = True,
    ) -> InboundMailResult:
        if record:
            await step(
                InboundActivities.inbound_handled,
                InboundHandledInput(message_key=match.message_key, outcome=outcome),
                KERNEL_WRITE,
            )
        await self.end(
            outcome,
            f"email:{match.message_key}",
            {"kind": match.kind, "target": match.workflow_id, "signal": signal, "reason": detail},
        )
        return await self.close(
            InboundMailResult(
                message_key=match.message_key,
                outcome=outcome,
                kind=match.kind,
                target_workflow_id=match.workflow_id,
                signal=signal,
                detail=detail,
            )
        )


@workflow.defn(name="MailPollWorkflow")
class MailPollWorkflow(Process):
    """One poll of the inbound mailbox (see the module docstring).

    Id: ``mail-poll/scheduled-<time>`` (the schedule's runs) or ``mail-poll/<uuid>``
    (``aios mail poll``).
    Input ``MailPollInput``, result ``MailPollResult``. No signals, no gates.
    Search attributes: ``AiosProcess=mail-poll``, ``AiosOutcome`` (``completed``).
    """

    NAME = POLL_PROCESS

    @workflow.run
    async def run(self, inp: MailPollInput) -> MailPollResult:
        self.begin("")
        return await self.guard(lambda: self._poll(inp), entity="mailbox")

    async def _poll(self, inp: MailPollInput) -> MailPollResult:
        fetched = await step(
            InboundActivities.fetch_inbound, FetchInboundInput(limit=inp.limit), MAILBOX
        )
        result = MailPollResult(
            fetched=len(fetched.emails),
            unreadable=len(fetched.unreadable),
            skipped=fetched.skipped,
        )
        seen = list(fetched.unreadable) + [e.uid for e in fetched.emails]
        new = [e for e in fetched.emails if not e.handled]

        async def start(message_key: str) -> bool:
            try:
                await workflow.start_child_workflow(
                    InboundMailWorkflow.run,
                    InboundMailInput(
                        message_key=message_key,
                        proposal_policy=inp.proposal_policy,
                        gate_policy=inp.gate_policy,
                        min_confidence=inp.min_confidence,
                    ),
                    id=inbound_workflow_id(message_key),
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    static_summary=f"Inbound email {message_key[:12]}",
                )
            except WorkflowAlreadyStartedError:  # fetched before (or twice now): one run has it
                return False
            return True

        # All started at once; an email in the batch twice gets its run once.
        started = await asyncio.gather(*(start(e.message_key) for e in new))
        for email, fresh in zip(new, started, strict=True):
            wid = inbound_workflow_id(email.message_key)
            (result.started if fresh else result.already_started).append(wid)
        if seen:  # each email's run has it now: the mailbox may forget it
            result.marked_seen = await step(
                InboundActivities.mark_inbound_seen,
                MarkSeenInput(uids=seen, uid_validity=fetched.uid_validity),
                MAILBOX,
            )
        self._done("poll")
        await self.end(
            "completed",
            "mailbox",
            {"fetched": result.fetched, "started": len(result.started)},
        )
        return await self.close(result)
