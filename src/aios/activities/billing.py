"""Billing activities: invoices in the kernel, the payment provider, the ledger.

Kernel steps are idempotent by key in PostgreSQL. Provider calls run through the connector
runtime (``ConnectorRuntime.effect``) under the connector name ``payments:<provider>``, with
the operations of ``aios.connectors.payments.base.OPERATIONS``: the worker's rate limit and
circuit breaker guard them, the outbox makes a retried or crashed attempt never repeat a call
that completed, and every provider call also carries the idempotency key to the provider itself.

``mark_paid`` cannot be undone, so the runtime runs it only with an approval: the latest
``payment.recorded`` event of the same workflow run for the invoice (the workflow records the
payment before it tells the provider). Without one the step is a ``PolicyRefusal``.

In a dry-run worker no provider is called: each step returns a receipt with ``dry_run=True``,
and ``provider_create_invoice`` attaches nothing to the invoice (there is nothing at the
provider to point to); later provider steps of such an invoice are rehearsed too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    CheckInvoicePolicyInput,
    CreateInvoiceInput,
    CreditNoteRef,
    InvoiceRef,
    InvoiceStepInput,
    IssueCreditNoteInput,
    IssueInvoiceInput,
    ProviderCreateInvoiceInput,
    ProviderMarkPaidInput,
    RecordPaymentInput,
    RecordPaymentResult,
    RecordRefundInput,
)
from aios.connectors.payments.base import (
    OPERATIONS,
    PaymentProvider,
    ProviderInvoice,
    ProviderReceipt,
)
from aios.connectors.runtime import ConnectorRuntime
from aios.errors import InvalidInput
from aios.kernel.commerce import Invoice
from aios.kernel.money import format_amount, line_items_total
from aios.kernel.policy import PolicyVerdict, evaluate_invoice
from aios.kernel.store import KernelStore, OutboxResult

__all__ = ["BillingActivities"]


class BillingActivities:
    def __init__(
        self,
        store: KernelStore,
        providers: dict[str, PaymentProvider],
        runtime: ConnectorRuntime,
    ) -> None:
        self._store = store
        self._providers = providers
        self._runtime = runtime

    def _invoice(self, invoice_id: str) -> Invoice:
        invoice = self._store.invoices.get(invoice_id)
        if invoice is None:
            raise InvalidInput(f"invoice: no invoice with id {invoice_id!r}")
        return invoice

    def _ref(self, invoice: Invoice) -> InvoiceRef:
        client = self._store.clients.get(invoice.client_key)
        if client is None:
            raise InvalidInput(f"client: no client with key {invoice.client_key!r}")
        return InvoiceRef(
            invoice_id=invoice.invoice_id,
            number=invoice.display_number if invoice.number is not None else None,
            status=invoice.status,
            currency=invoice.currency,
            total_minor=invoice.total_minor,
            client_name=client.name,
            client_email=client.email,
        )

    def _provider(self, name: str | None) -> PaymentProvider:
        provider = self._providers.get(name or "")
        if provider is None:
            configured = ", ".join(sorted(self._providers)) or "none"
            raise InvalidInput(
                f"payment provider {name!r} is not configured on this worker ({configured})"
            )
        return provider

    @activity.defn(name="create_invoice")
    @translating_errors
    def create_invoice(self, inp: CreateInvoiceInput) -> InvoiceRef:
        info = activity.info()
        total = line_items_total(inp.line_items)
        invoice = self._store.invoices.create(
            Invoice(
                invoice_id=inp.invoice_id,
                client_key=inp.client_key,
                proposal_id=inp.proposal_id,
                workflow_id=info.workflow_id or "",
                currency=inp.currency,
                line_items=inp.line_items,
                total_minor=total,
                status="draft",
            ),
            event=event_for_step(
                inp.idempotency_key,
                "invoice.drafted",
                entity=f"invoice:{inp.invoice_id}",
                payload={"total": format_amount(total, inp.currency), "lines": len(inp.line_items)},
            ),
        )
        return self._ref(invoice)

    @activity.defn(name="check_invoice_policy")
    @translating_errors
    def check_invoice_policy(self, inp: CheckInvoicePolicyInput) -> PolicyVerdict:
        invoice = self._invoice(inp.invoice_id)
        verdict = evaluate_invoice(
            total_minor=invoice.total_minor, currency=invoice.currency, policy=inp.policy
        )
        self._store.events.append(
            event_for_step(
                inp.idempotency_key,
                "invoice.needs_approval" if verdict.needs_approval else "invoice.auto_approved",
                entity=f"invoice:{inp.invoice_id}",
                payload=verdict.model_dump(),
            )
        )
        return verdict

    @activity.defn(name="issue_invoice")
    @translating_errors
    def issue_invoice(self, inp: IssueInvoiceInput) -> InvoiceRef:
        invoice = self._store.invoices.issue(
            inp.invoice_id,
            issued_at=inp.issued_at,
            due_at=inp.due_at,
            event=event_for_step(
                inp.idempotency_key,
                "invoice.issued",
                entity=f"invoice:{inp.invoice_id}",
                payload={"due_at": inp.due_at.isoformat()},
            ),
        )
        return self._ref(invoice)

    @activity.defn(name="void_invoice")
    @translating_errors
    def void_invoice(self, inp: InvoiceStepInput) -> InvoiceRef:
        invoice = self._store.invoices.void(
            inp.invoice_id,
            event=event_for_step(
                inp.idempotency_key,
                "compensation.invoice_voided",
                entity=f"invoice:{inp.invoice_id}",
                payload={"reason": inp.reason},
            ),
        )
        return self._ref(invoice)

    @activity.defn(name="record_payment")
    @translating_errors
    def record_payment(self, inp: RecordPaymentInput) -> RecordPaymentResult:
        invoice, balance = self._store.invoices.record_payment(
            inp.invoice_id,
            entry_key=inp.idempotency_key,
            amount_minor=inp.amount_minor,
            currency=inp.currency,
            reference=inp.reference,
            paid_at=inp.paid_at,
            event=event_for_step(
                inp.idempotency_key,
                "payment.recorded",
                entity=f"invoice:{inp.invoice_id}",
                payload={
                    "amount": format_amount(inp.amount_minor, inp.currency),
                    "reference": inp.reference,
                    "recorded_by": inp.recorded_by,
                },
            ),
        )
        return RecordPaymentResult(balance_minor=balance, status=invoice.status)

    @activity.defn(name="record_refund")
    @translating_errors
    def record_refund(self, inp: RecordRefundInput) -> RecordPaymentResult:
        invoice, balance = self._store.invoices.record_refund(
            inp.invoice_id,
            entry_key=inp.idempotency_key,
            amount_minor=inp.amount_minor,
            currency=inp.currency,
            reference=inp.reference,
            refunded_at=inp.refunded_at,
            event=event_for_step(
                inp.idempotency_key,
                "payment.refunded",
                entity=f"invoice:{inp.invoice_id}",
                payload={
                    "amount": format_amount(inp.amount_minor, inp.currency),
                    "reference": inp.reference,
                    "recorded_by": inp.recorded_by,
                },
            ),
        )
        return RecordPaymentResult(balance_minor=balance, status=invoice.status)

    @activity.defn(name="issue_credit_note")
    @translating_errors
    def issue_credit_note(self, inp: IssueCreditNoteInput) -> CreditNoteRef:
        note = self._store.invoices.issue_credit_note(
            inp.idempotency_key,
            inp.invoice_id,
            amount_minor=inp.amount_minor,
            reason=inp.reason,
            event=event_for_step(
                inp.idempotency_key,
                "compensation.credit_note_issued",
                entity=f"invoice:{inp.invoice_id}",
                payload={"amount_minor": inp.amount_minor, "reason": inp.reason},
            ),
        )
        return CreditNoteRef(number=note.display_number, amount_minor=note.amount_minor)

    # --- the payment provider -----------------------------------------------------------

    def _provider_call(
        self,
        key: str,
        invoice: Invoice,
        provider: str,
        operation: str,
        call: Callable[[], ProviderReceipt],
        event_kind: str,
        *,
        rehearsal: tuple[str, Literal["open", "paid", "void"]],
        approval: str | None = None,
    ) -> ProviderReceipt:
        """``call`` through the runtime as ``payments:<provider>``; ``rehearsal`` is the
        reference and status a dry run reports (the provider is not called then)."""
        reference, status = rehearsal

        def run(dry_run: bool) -> OutboxResult:
            if dry_run:
                receipt = ProviderReceipt(
                    provider=provider,
                    reference=reference,
                    status=status,
                    payment_instructions=(
                        f"Dry run: {operation} was not sent to {provider}; nothing changed there."
                    ),
                    dry_run=True,
                )
            else:
                receipt = call()
            return receipt.model_dump(mode="json")

        result, ran = self._runtime.effect(
            f"payments:{provider}",
            OPERATIONS[operation],
            key,
            run,
            event=event_for_step(
                key,
                event_kind,
                entity=f"invoice:{invoice.invoice_id}",
                payload={"provider": provider, "operation": operation},
            ),
            step=operation,
            approval=approval,
        )
        receipt = ProviderReceipt.model_validate(result)
        activity.logger.info(
            "provider %s %s",
            operation,
            "rehearsed (dry run), not sent"
            if receipt.dry_run
            else ("done" if ran else "already done, not repeated"),
            extra={"idempotency_key": key, "provider": provider},
        )
        return receipt

    @activity.defn(name="provider_create_invoice")
    @translating_errors
    def provider_create_invoice(self, inp: ProviderCreateInvoiceInput) -> ProviderReceipt:
        invoice = self._invoice(inp.invoice_id)
        if invoice.number is None or invoice.issued_at is None or invoice.due_at is None:
            raise InvalidInput(f"invoice {inp.invoice_id!r} is not issued yet")
        client = self._store.clients.get(invoice.client_key)
        if client is None:
            raise InvalidInput(f"client: no client with key {invoice.client_key!r}")
        provider = self._provider(inp.provider)
        payload = ProviderInvoice(
            invoice_id=invoice.invoice_id,
            number=invoice.display_number,
            client_key=client.key,
            client_name=client.name,
            client_email=client.email,
            currency=invoice.currency,
            line_items=invoice.line_items,
            total_minor=invoice.total_minor,
            issued_at=invoice.issued_at,
            due_at=invoice.due_at,
        )
        receipt = self._provider_call(
            inp.idempotency_key,
            invoice,
            provider.name,
            "create_invoice",
            lambda: provider.create_invoice(payload, idempotency_key=inp.idempotency_key),
            "provider.invoice_created",
            rehearsal=(invoice.display_number, "open"),
        )
        if receipt.dry_run:
            return receipt  # nothing exists at the provider: the invoice keeps pointing nowhere
        self._store.invoices.attach_provider(
            invoice.invoice_id,
            provider=receipt.provider,
            reference=receipt.reference,
            payment_instructions=receipt.payment_instructions,
            hosted_url=receipt.hosted_url,
            event=event_for_step(
                f"{inp.idempotency_key}/attached",
                "invoice.payable",
                entity=f"invoice:{invoice.invoice_id}",
                payload={"provider": receipt.provider, "reference": receipt.reference},
            ),
        )
        return receipt

    def _existing_provider(self, invoice: Invoice) -> tuple[str, str]:
        """The provider (configured on this worker) and reference the invoice is payable with.

        In a dry run an invoice may have none (a dry-run create attaches nothing): the step is
        rehearsed against the invoice number then."""
        if invoice.provider and invoice.provider_reference:
            return self._provider(invoice.provider).name, invoice.provider_reference
        if self._runtime.dry_run:
            return invoice.provider or "none", invoice.display_number
        raise InvalidInput(f"invoice {invoice.invoice_id!r} was never sent to a provider")

    def _payment_approval(self, invoice_id: str) -> str | None:
        """The event key of this run's latest ``payment.recorded`` for the invoice, if any."""
        info = activity.info()
        if not info.workflow_id or not info.workflow_run_id:
            return None
        recorded = [
            e
            for e in self._store.events.for_run(info.workflow_id, info.workflow_run_id)
            if e.kind == "payment.recorded" and e.entity == f"invoice:{invoice_id}"
        ]
        return recorded[-1].event_key if recorded else None

    @activity.defn(name="provider_void_invoice")
    @translating_errors
    def provider_void_invoice(self, inp: InvoiceStepInput) -> ProviderReceipt:
        invoice = self._invoice(inp.invoice_id)
        name, reference = self._existing_provider(invoice)
        return self._provider_call(
            inp.idempotency_key,
            invoice,
            name,
            "void_invoice",
            lambda: self._provider(name).void_invoice(
                reference, idempotency_key=inp.idempotency_key
            ),
            "compensation.provider_voided",
            rehearsal=(reference, "void"),
        )

    @activity.defn(name="provider_mark_paid")
    @translating_errors
    def provider_mark_paid(self, inp: ProviderMarkPaidInput) -> ProviderReceipt:
        invoice = self._invoice(inp.invoice_id)
        name, reference = self._existing_provider(invoice)
        return self._provider_call(
            inp.idempotency_key,
            invoice,
            name,
            "mark_paid",
            lambda: self._provider(name).mark_paid(
                reference, inp.amount_minor, idempotency_key=inp.idempotency_key
            ),
            "provider.marked_paid",
            rehearsal=(reference, "paid"),
            approval=self._payment_approval(inp.invoice_id),
        )
