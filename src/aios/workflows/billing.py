"""Billing: issue a numbered invoice, make it payable, send it, remind, record the payment."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.billing import BillingActivities
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.kernel import KernelActivities
    from aios.activities.memory import MemoryActivities
    from aios.activities.models import (
        CancelEffectInput,
        CheckInvoicePolicyInput,
        CreateInvoiceInput,
        InvoiceRef,
        InvoiceStepInput,
        IssueCreditNoteInput,
        IssueInvoiceInput,
        ProviderCreateInvoiceInput,
        ProviderMarkPaidInput,
        RecordPaymentInput,
        RecordRefundInput,
        RememberInput,
        SendInvoiceInput,
    )
    from aios.converter import ProcessInput
    from aios.errors import InvalidInput
    from aios.kernel.money import LineItem, format_amount, parse_amount
    from aios.kernel.policy import BillingPolicy, GatePolicy
    from aios.kernel.stores.notices import NoticeDraft
    from aios.kernel.text import Line
    from aios.workflows import versions
    from aios.workflows.mirrors import CONNECTOR_FABRIC, notify, shown
    from aios.workflows.process import Process
    from aios.workflows.progress import BillingProgress
    from aios.workflows.steps import record, step, step_key
    from aios.workflows.timeouts import (
        CONNECTOR_EFFECT,
        KERNEL_WRITE,
        LOCAL_WRITE,
        MEMORY,
        StepOptions,
    )
    from aios.workflows.waiting import Schedule, wait_until

__all__ = [
    "PAYMENT_RECEIVED_SIGNAL",
    "REFUND_RECEIVED_SIGNAL",
    "BillingInput",
    "BillingResult",
    "BillingWorkflow",
    "PaymentReceived",
    "RefundReceived",
    "billing_workflow_id",
]

PROCESS_NAME = "billing"
ResultT = TypeVar("ResultT")
PAYMENT_RECEIVED_SIGNAL = "payment_received"
REFUND_RECEIVED_SIGNAL = "refund_received"
# Runs started before refunds existed take no ``refund_received`` (their histories replay).
REFUNDS = "billing-refunds"
# Runs started before this do not open notices for refused payments that came in by themselves.
INBOUND_NOTICES = "billing-inbound-notices"


def billing_workflow_id(invoice_id: str) -> str:
    return f"{PROCESS_NAME}/{invoice_id}"


class BillingInput(ProcessInput):
    invoice_id: str
    client_key: str
    currency: str
    line_items: list[LineItem] = Field(min_length=1)
    proposal_id: str | None = None
    provider: str = "bank_transfer"
    policy: BillingPolicy = Field(default_factory=BillingPolicy)
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)


class PaymentReceived(BaseModel):
    """The payload of signal ``payment_received``.

    ``{"amount": "4500.00", "currency": "USD", "reference": "bank ref", "recorded_by": "you",
    "paid_at": "2026-11-21T10:00:00Z"}``; ``amount`` is in major units of the invoice's
    currency; ``currency``, when given, must be the invoice's; ``paid_at`` defaults to when
    the workflow records it. ``payment_id``, when given, names the payment where it came from
    (``stripe:in_...``, ``bank:<line id>``): a second payment with the same id is refused, so
    a payment that comes in by itself and is signalled twice is recorded once.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    amount: Decimal
    recorded_by: Line = Field(min_length=1, max_length=200)
    currency: Line | None = Field(default=None, max_length=3)
    reference: Line = Field(default="", max_length=200)
    paid_at: datetime | None = None
    payment_id: Line | None = Field(default=None, min_length=1, max_length=200)


class RefundReceived(BaseModel):
    """The payload of signal ``refund_received``: money paid for the invoice went back.

    ``{"amount": "100.00", "currency": "USD", "reference": "Stripe re_...", "recorded_by":
    "stripe", "refund_id": "stripe:re_..."}``; ``amount`` in major units, at most what was paid
    and recorded; ``refund_id`` (optional) refuses the same refund twice. The refund is a
    ledger entry of its own kind; the open balance grows by it and the run waits for payment.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    amount: Decimal
    recorded_by: Line = Field(min_length=1, max_length=200)
    currency: Line | None = Field(default=None, max_length=3)
    reference: Line = Field(default="", max_length=200)
    refunded_at: datetime | None = None
    refund_id: Line | None = Field(default=None, min_length=1, max_length=200)


class BillingResult(BaseModel):
    status: Literal["paid", "rejected", "expired"]
    invoice_id: str
    number: str | None = None
    total: str
    paid: str = ""
    reason: str = ""
    memory_id: str | None = None


@workflow.defn(name="BillingWorkflow")
class BillingWorkflow(Process):
    """One invoice, from draft to paid.

    Id: ``billing/<invoice-id>``. Input ``BillingInput``, result ``BillingResult``.

    Signals: ``decide`` (``GateDecision``) answers the ``invoice`` gate (invoices above the
    policy threshold; approve or reject); ``payment_received`` (``PaymentReceived``) records a
    payment, partial payments included (once per ``payment_id``); ``refund_received``
    (``RefundReceived``) records a refund of money already recorded while the run waits for
    payment (ledger entry ``refund``, event ``payment.refunded``; the balance grows again).
    A payment or refund that came in by itself (it carries an id) and is refused opens a
    notice (``refused_payment``, ``unmatched_refund``) besides the ``signal.rejected`` event.
    Queries: ``pending_gates``; ``progress`` -> ``BillingProgress``.
    Search attributes: ``AiosProcess=billing``, ``AiosClient``, ``AiosAwaitingApproval``.

    A configured webhook gets ``invoice.paid`` once the invoice is paid in full.

    End states: ``paid``; ``rejected`` or ``expired`` at the gate (the draft is voided; no
    number is used). Failed or cancelled after issue (``aios cancel``, ``temporal workflow
    cancel``): compensations run in reverse — a credit note for anything paid, a cancellation
    email, void at the provider, void in the kernel — each once, each an event.
    """

    NAME = PROCESS_NAME

    def __init__(self) -> None:
        super().__init__()
        self._invoice_id = ""
        self._client_key = ""
        self._ref: InvoiceRef | None = None
        self._payments: list[PaymentReceived] = []
        self._processed = 0
        self._paid_minor = 0
        self._balance_minor: int | None = None
        self._awaiting_payment = False
        self._schedule: Schedule | None = None
        self._refunds: list[RefundReceived] = []
        self._refunded = 0
        self._refunds_taken = False  # set when collecting starts, behind workflow.patched
        # Refused payments and refunds that came in by themselves (they carry an id): each
        # becomes a notice, so money the run cannot take is never only a rejected signal.
        self._inbound_notices = False  # set at the start, behind workflow.patched
        self._unplaced: list[NoticeDraft] = []
        self._noticed = 0
        self.accept(PAYMENT_RECEIVED_SIGNAL, PaymentReceived, self._payment_received)
        self.accept(REFUND_RECEIVED_SIGNAL, RefundReceived, self._refund_received)

    def _payment_received(self, payment: PaymentReceived) -> str | None:
        problem = self._check_payment(payment)
        if problem is None:
            self._payments.append(payment)
        elif payment.payment_id is not None and not problem.startswith("payment_id:"):
            self._unplace("payment", payment.payment_id, payment.amount, payment.reference, problem)
        return problem

    def _refund_received(self, refund: RefundReceived) -> str | None:
        problem = self._check_refund(refund)
        if problem is None:
            self._refunds.append(refund)
        elif refund.refund_id is not None and not problem.startswith("refund_id:"):
            self._unplace("refund", refund.refund_id, refund.amount, refund.reference, problem)
        return problem

    def _unplace(
        self, what: str, money_id: str, amount: Decimal, reference: str, problem: str
    ) -> None:
        if not self._inbound_notices:
            return
        ref = self._ref
        source = money_id.split(":", 1)[0]
        shown = f"{ref.currency} {amount}" if ref else str(amount)
        invoice = ref.number if ref and ref.number else self._invoice_id
        self._unplaced.append(
            NoticeDraft(
                key=f"{what}/refused/{money_id}",
                kind="refused_payment" if what == "payment" else "unmatched_refund",
                title=f"{what.title()} of {shown} from {source} refused by {invoice}",
                summary=problem,
                details={"id": money_id, "amount": str(amount), "reference": reference},
                client_key=self._client_key or None,
                source=source,
            )
        )

    async def _notice_unplaced(self) -> None:
        while self._noticed < len(self._unplaced):
            draft = self._unplaced[self._noticed]
            await step(KernelActivities.open_notice, draft, LOCAL_WRITE)
            self._noticed += 1

    async def close(self, result: ResultT) -> ResultT:
        """Open the notices of refused payments first (also those refused while closing)."""
        if self._inbound_notices:
            while self._noticed < len(self._unplaced) or self.signal_log.pending:
                await self._notice_unplaced()
                await self.signal_log.flush()
        return await super().close(result)

    def _check_refund(self, refund: RefundReceived) -> str | None:
        ref = self._ref
        if not self._refunds_taken or ref is None:
            return "this run is not waiting for payment: no refund can be recorded now"
        if refund.refund_id is not None and any(
            r.refund_id == refund.refund_id for r in self._refunds
        ):
            return "refund_id: this refund was already received"
        if refund.currency is not None and refund.currency.strip().upper() != ref.currency:
            return f"currency: {refund.currency} is not the invoice's currency {ref.currency}"
        try:
            amount = parse_amount(refund.amount, ref.currency)
        except InvalidInput as exc:
            return str(exc)
        if amount <= 0:
            return "amount: must be more than zero"
        queued = sum(parse_amount(r.amount, ref.currency) for r in self._refunds[self._refunded :])
        refundable = self._paid_minor - queued
        if amount > refundable:
            return (
                f"amount: {format_amount(amount, ref.currency)} is more than the payments "
                f"recorded and not refunded, {format_amount(max(refundable, 0), ref.currency)}"
            )
        return None

    def _check_payment(self, payment: PaymentReceived) -> str | None:
        ref = self._ref
        if ref is None:
            return "the invoice is not created yet"
        if self._balance_minor is not None and self._balance_minor <= 0:
            return "the invoice is already paid"
        if payment.payment_id is not None and any(
            p.payment_id == payment.payment_id for p in self._payments
        ):
            return "payment_id: this payment was already received"
        if payment.currency is not None and payment.currency.strip().upper() != ref.currency:
            return f"currency: {payment.currency} is not the invoice's currency {ref.currency}"
        try:
            amount = parse_amount(payment.amount, ref.currency)
        except InvalidInput as exc:
            return str(exc)
        if amount <= 0:
            return "amount: must be more than zero"
        open_minor = self._open_balance_minor()
        if amount > open_minor:
            return (
                f"amount: {format_amount(amount, ref.currency)} is more than the open balance "
                f"{format_amount(open_minor, ref.currency)}"
            )
        return None

    def _open_balance_minor(self) -> int:
        """What is still to pay, less the payments received but not yet recorded."""
        ref = self._ref
        assert ref is not None
        balance = self._balance_minor if self._balance_minor is not None else ref.total_minor
        queued = self._payments[self._processed :]
        return balance - sum(parse_amount(p.amount, ref.currency) for p in queued)

    @workflow.query(name="progress")
    def progress(self) -> BillingProgress:
        ref = self._ref
        # What is left to pay once the payments already received are recorded: what `aios
        # paid` without --amount pays, and what a new payment is checked against.
        balance = self._open_balance_minor() if self._balance_minor is not None else None
        return BillingProgress(
            process=PROCESS_NAME,
            invoice_id=self._invoice_id,
            steps_done=list(self._steps),
            pending_gates=self.pending_gates(),
            compensations_pending=self._saga.pending,
            waiting_for=PAYMENT_RECEIVED_SIGNAL if self._awaiting_payment else None,
            number=ref.number if ref else None,
            total=format_amount(ref.total_minor, ref.currency) if ref else "",
            balance=format_amount(balance, ref.currency) if ref and balance is not None else "",
            balance_minor=balance,
            currency=ref.currency if ref else "",
            reminders_sent=self._schedule.sent if self._schedule else 0,
            rejected_signals=self.signal_log.total,
            last_rejection=self.signal_log.last,
        )

    @workflow.run
    async def run(self, inp: BillingInput) -> BillingResult:
        self._invoice_id = inp.invoice_id
        self._client_key = inp.client_key
        self._inbound_notices = versions.patched(INBOUND_NOTICES)
        self.begin(inp.client_key)
        return await self.guard(lambda: self._bill(inp), entity=f"invoice:{inp.invoice_id}")

    async def _bill(self, inp: BillingInput) -> BillingResult:
        entity = f"invoice:{inp.invoice_id}"
        ref = await step(
            BillingActivities.create_invoice,
            CreateInvoiceInput(
                idempotency_key=step_key("create"),
                invoice_id=inp.invoice_id,
                client_key=inp.client_key,
                proposal_id=inp.proposal_id,
                currency=inp.currency,
                line_items=inp.line_items,
            ),
            KERNEL_WRITE,
        )
        self._ref = ref
        self._saga.add(
            "void-draft",
            lambda: self._void_draft(
                "the billing process was stopped before the invoice was issued"
            ),
        )
        self._done("create")
        total = format_amount(ref.total_minor, ref.currency)

        verdict = await step(
            BillingActivities.check_invoice_policy,
            CheckInvoicePolicyInput(
                idempotency_key=step_key("policy"), invoice_id=inp.invoice_id, policy=inp.policy
            ),
            KERNEL_WRITE,
        )
        self._done(f"policy:{verdict.rule}")
        if verdict.needs_approval:
            outcome = await self.wait_for_decision(
                gate="invoice",
                title=f"Invoice for {ref.client_name}",
                summary=f"{total}: {'; '.join(verdict.reasons)}",
                policy=inp.gate_policy,
                editable_fields=[],
                entity=entity,
                amount=total,
            )
            if outcome.status in ("rejected", "expired"):
                reason = (
                    (outcome.decision.comment if outcome.decision else "") or "(no reason given)"
                    if outcome.status == "rejected"
                    else f"no decision within {inp.gate_policy.expire_after}"
                )
                self._saga.discard("void-draft")
                await self._void_draft(f"draft {outcome.status}: {reason}")
                await self.end(outcome.status, entity, {"reason": reason})
                return await self.close(
                    BillingResult(
                        status=outcome.status, invoice_id=inp.invoice_id, total=total, reason=reason
                    )
                )

        issued_at = workflow.now()
        ref = await step(
            BillingActivities.issue_invoice,
            IssueInvoiceInput(
                idempotency_key=step_key("issue"),
                invoice_id=inp.invoice_id,
                issued_at=issued_at,
                due_at=issued_at + inp.policy.payment_terms,
            ),
            KERNEL_WRITE,
        )
        self._ref = ref
        self._balance_minor = ref.total_minor
        self._saga.discard("void-draft")  # voiding the issued invoice covers the draft
        self._saga.add("void-invoice", lambda: self._compensate(BillingActivities.void_invoice))
        self._done("issue")

        await step(
            BillingActivities.provider_create_invoice,
            ProviderCreateInvoiceInput(
                idempotency_key=step_key("provider-create"),
                invoice_id=inp.invoice_id,
                provider=inp.provider,
            ),
            CONNECTOR_EFFECT,
        )
        self._saga.add(
            "void-at-provider",
            lambda: self._compensate(BillingActivities.provider_void_invoice, CONNECTOR_EFFECT),
        )
        self._done("provider-create")

        await self._send("invoice", step_key("send-invoice"))
        self._saga.add("send-cancellation", self._send_cancellation)
        self._done("send-invoice")

        await self._collect(inp, issued_at, entity)

        await step(
            BillingActivities.provider_mark_paid,
            ProviderMarkPaidInput(
                idempotency_key=step_key("provider-paid"),
                invoice_id=inp.invoice_id,
                amount_minor=self._paid_minor,
            ),
            CONNECTOR_EFFECT,
        )
        self._done("provider-paid")

        paid = format_amount(self._paid_minor, ref.currency)
        memory = await step(
            MemoryActivities.remember,
            RememberInput(
                idempotency_key=step_key("remember-paid"),
                entity=f"client:{inp.client_key}",
                kind="payment",
                text=(
                    f"Invoice {ref.number} ({total}) for {ref.client_name} paid in full: "
                    f"{paid} in {self._processed} payment(s), "
                    f"{workflow.now() - issued_at} after issue"
                    + (f"; proposal {inp.proposal_id}" if inp.proposal_id else "")
                    + "."
                ),
            ),
            MEMORY,
        )
        self._done("remember")
        await self.end("paid", entity, {"number": ref.number, "paid": paid, "memory_id": memory.id})
        if versions.patched(CONNECTOR_FABRIC):
            notified = await notify(
                "invoice.paid",
                {
                    "invoice_id": inp.invoice_id,
                    "number": ref.number,
                    "client_key": inp.client_key,
                    "total": total,
                    "paid": paid,
                    "payments": self._processed,
                    "proposal_id": inp.proposal_id,
                },
            )
            self._done(shown("webhook", notified))
        return await self.close(
            BillingResult(
                status="paid",
                invoice_id=inp.invoice_id,
                number=ref.number,
                total=total,
                paid=format_amount(self._paid_minor, ref.currency),
                memory_id=memory.id,
            )
        )

    async def _collect(self, inp: BillingInput, issued_at: datetime, entity: str) -> None:
        """Record payments as they arrive, reminding the client on schedule, until paid."""
        assert self._ref is not None
        ref = self._ref
        schedule = Schedule(reminders=inp.policy.reminder_times(issued_at), deadline=None)
        self._schedule = schedule
        self._awaiting_payment = True
        self._refunds_taken = versions.patched(REFUNDS)

        # A reminder overtaken by a payment (held at a paused switch when it came) is
        # cancelled unsent; once the payment is recorded, the reminder goes out again under a
        # key of its own ("reminder/<n>#2"), with the balance as it is then.
        started: dict[int, int] = {}

        def reminder_key(n: int) -> str:
            tries = started.get(n, 1)
            return step_key(f"reminder/{n}" if tries == 1 else f"reminder/{n}#{tries}")

        async def remind(n: int) -> None:
            started[n] = started.get(n, 0) + 1
            await self._send("reminder", reminder_key(n), reminder=n)
            self._done(f"reminder/{n}")
            if n == len(schedule.reminders):
                await record("invoice.overdue", entity, {"reminders_sent": n})

        def unsent(n: int) -> CancelEffectInput:
            return CancelEffectInput(
                idempotency_key=reminder_key(n),
                connector="email",
                operation="send_invoice_reminder",
                reason="a payment or refund came in before this reminder was sent",
            )

        while self._balance_minor is not None and self._balance_minor > 0:
            self.set_details(self._payment_details(ref))
            await wait_until(
                lambda: (
                    self._processed < len(self._payments)
                    or self._refunded < len(self._refunds)
                    or self._noticed < len(self._unplaced)
                ),
                schedule,
                remind=remind,
                signals=self.signal_log,
                summary=f"payment of {ref.number}",
                unsent=unsent,
            )
            if self._noticed < len(self._unplaced):
                await self._notice_unplaced()
                continue
            if self._refunded < len(self._refunds):
                await self._record_refund(inp, ref)
                continue
            payment = self._payments[self._processed]
            n = self._processed + 1
            amount = parse_amount(payment.amount, ref.currency)
            result = await step(
                BillingActivities.record_payment,
                RecordPaymentInput(
                    idempotency_key=step_key(f"payment/{n}"),
                    invoice_id=inp.invoice_id,
                    amount_minor=amount,
                    currency=ref.currency,
                    reference=payment.reference,
                    paid_at=payment.paid_at or workflow.now(),
                    recorded_by=payment.recorded_by,
                ),
                KERNEL_WRITE,
            )
            if self._paid_minor == 0:
                self._saga.add("credit-note", self._credit_note)
            self._paid_minor += amount
            self._balance_minor = result.balance_minor
            # Out of the queue only now: while it is being recorded it still counts against
            # the open balance a new payment signal is checked against.
            self._processed = n
            self._done(f"payment/{n}")
        self._awaiting_payment = False
        await self.signal_log.flush()

    async def _record_refund(self, inp: BillingInput, ref: InvoiceRef) -> None:
        refund = self._refunds[self._refunded]
        n = self._refunded + 1
        amount = parse_amount(refund.amount, ref.currency)
        result = await step(
            BillingActivities.record_refund,
            RecordRefundInput(
                idempotency_key=step_key(f"refund/{n}"),
                invoice_id=inp.invoice_id,
                amount_minor=amount,
                currency=ref.currency,
                reference=refund.reference,
                refunded_at=refund.refunded_at or workflow.now(),
                recorded_by=refund.recorded_by,
            ),
            KERNEL_WRITE,
        )
        self._paid_minor -= amount
        self._balance_minor = result.balance_minor
        self._refunded = n
        self._done(f"refund/{n}")

    def _payment_details(self, ref: InvoiceRef) -> str:
        balance = format_amount(self._balance_minor or 0, ref.currency)
        info = workflow.info()
        payload = json.dumps({"amount": "...", "recorded_by": "you", "reference": "bank ref"})
        return "\n".join(
            [
                f"**Waiting for payment** of {ref.number}: {balance} open "
                f"(total {format_amount(ref.total_minor, ref.currency)}).",
                "",
                f'- record it: `aios paid {ref.number} --reference "bank ref"` (the open '
                "balance; add `--amount` for a part payment)",
                f"- or: `temporal workflow signal --namespace {info.namespace} --workflow-id "
                f"{info.workflow_id} --name {PAYMENT_RECEIVED_SIGNAL} --input '{payload}'`",
            ]
        )

    async def _send(
        self,
        kind: Literal["invoice", "reminder", "cancellation"],
        key: str,
        *,
        reminder: int = 0,
        reason: str = "",
    ) -> None:
        await step(
            ConnectorActivities.send_invoice_email,
            SendInvoiceInput(
                idempotency_key=key,
                invoice_id=self._invoice_id,
                kind=kind,
                reminder=reminder,
                balance_minor=self._balance_minor,
                reason=reason,
            ),
            CONNECTOR_EFFECT,
        )

    async def _void_draft(self, reason: str) -> None:
        await step(
            BillingActivities.void_invoice,
            InvoiceStepInput(
                idempotency_key=step_key("void-draft"), invoice_id=self._invoice_id, reason=reason
            ),
            KERNEL_WRITE,
        )

    async def _send_cancellation(self) -> None:
        await self._send(
            "cancellation", step_key("send-cancellation"), reason="the billing process was stopped"
        )

    async def _credit_note(self) -> None:
        if self._paid_minor <= 0:  # everything paid was refunded: nothing to credit
            return
        await step(
            BillingActivities.issue_credit_note,
            IssueCreditNoteInput(
                idempotency_key=step_key("credit-note"),
                invoice_id=self._invoice_id,
                amount_minor=self._paid_minor,
                reason="credit for payments received on a cancelled invoice",
            ),
            KERNEL_WRITE,
        )

    async def _compensate(
        self, fn: Callable[[Any, InvoiceStepInput], Any], options: StepOptions = KERNEL_WRITE
    ) -> None:
        await step(
            fn,
            InvoiceStepInput(
                idempotency_key=step_key(f"compensate/{fn.__name__}"),
                invoice_id=self._invoice_id,
                reason="the billing process was stopped",
            ),
            options,
        )
