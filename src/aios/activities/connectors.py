"""Connector activities: every outside effect runs through the outbox, at most once per key.

The wording of every email comes from the email templates (``aios.templates``): the package's
defaults or the operator's own (``AIOS_TEMPLATES_DIR``). Documents and emails carry the
business identity (``aios.identity``), and show dates and times in the business's time zone.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parseaddr

from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    NOT_CONFIGURED,
    CancelKickoffInput,
    DeliverWebhookInput,
    DeliverWebhookResult,
    KickoffEventInput,
    KickoffEventResult,
    RetractProposalInput,
    SendGateReminderInput,
    SendInvoiceInput,
    SendProposalInput,
    SendResult,
    SendWelcomeInput,
)
from aios.connectors.caldav import CalDavConnector, CalendarEvent
from aios.connectors.calendar import Invite, invite_attachment, kickoff_uid
from aios.connectors.email import OPERATIONS as EMAIL
from aios.connectors.email import Attachment, OutgoingEmail, SmtpEmailConnector, message_id_for
from aios.connectors.imap import reply_address
from aios.connectors.runtime import ConnectorRuntime
from aios.connectors.webhooks import WebhookConnector, WebhookEvent, retraction_of
from aios.documents import (
    CreditNoteDocument,
    InvoiceDocument,
    ProposalDocument,
    render_credit_note,
    render_invoice,
    render_proposal,
)
from aios.errors import InvalidInput
from aios.identity import BusinessIdentity, format_date, format_when
from aios.kernel.commerce import Invoice, Proposal, ProposalVersion
from aios.kernel.inbound import gate_reply_secret, reply_token
from aios.kernel.models import Client
from aios.kernel.money import format_amount
from aios.kernel.store import KernelStore, OutboxResult
from aios.serve.links import GateLinks
from aios.templates import (
    EmailTemplates,
    GateReminderEmail,
    InvoiceCancelledEmail,
    InvoiceEmail,
    InvoiceReminderEmail,
    KickoffCancelledEmail,
    ProposalEmail,
    ProposalWithdrawnEmail,
    WelcomeEmail,
)

__all__ = ["KICKOFF_DURATION", "ConnectorActivities"]

KICKOFF_DURATION = timedelta(minutes=45)


def _pdf(filename: str, content: bytes) -> Attachment:
    return Attachment(filename=filename, content=content, maintype="application", subtype="pdf")


def _headline(scope: str) -> str:
    first = " ".join(scope.split())
    return first[:60] + ("..." if len(first) > 60 else "")


class ConnectorActivities:
    def __init__(
        self,
        store: KernelStore,
        email: SmtpEmailConnector,
        runtime: ConnectorRuntime,
        *,
        operator_name: str,
        operator_email: str,
        identity: BusinessIdentity | None = None,
        templates: EmailTemplates | None = None,
        webhook: WebhookConnector | None = None,
        calendar: CalDavConnector | None = None,
        gate_links: GateLinks | None = None,
        reply_address: str | None = None,
    ) -> None:
        self._store = store
        # The inbound mailbox (AIOS_IMAP_ADDRESS): answers come back to a plus-address of it.
        self._reply_address = reply_address
        self._gate_links = gate_links
        self._email = email
        self._runtime = runtime
        self._webhook = webhook
        self._calendar = calendar
        self._operator_name = operator_name
        self._operator_email = operator_email
        self._identity = identity or BusinessIdentity(name=operator_name, email=operator_email)
        self._templates = templates or EmailTemplates(self._identity, operator_name=operator_name)

    def _kickoff(self, inp: SendWelcomeInput | CancelKickoffInput | KickoffEventInput) -> Invite:
        info = activity.info()
        return Invite(
            uid=kickoff_uid(info.workflow_id or "", info.workflow_run_id or ""),
            summary=f"Kickoff: {inp.client_name} and {self._operator_name}",
            description="Kickoff call to agree on goals, scope and first steps.",
            start=inp.kickoff_at.astimezone(self._identity.zone),
            duration=KICKOFF_DURATION,
            organizer=self._email.sender,
            attendee=inp.to,
        )

    def _send(
        self,
        email: OutgoingEmail,
        operation: str,
        event_kind: str,
        entity: str | None,
        *,
        secret: str | None = None,
    ) -> SendResult:
        if self._reply_address and email.reply_to is None:
            token = reply_token(message_id_for(email.idempotency_key), secret)
            email = replace(email, reply_to=reply_address(self._reply_address, token))
        result, ran = self._runtime.committing_effect(
            self._email.name,
            EMAIL["send"],
            email.idempotency_key,
            lambda dry_run, commit: self._email.send(email, dry_run=dry_run, commit=commit),
            step=operation,
            event=event_for_step(
                email.idempotency_key,
                event_kind,
                entity=entity,
                payload={
                    "to": email.to,
                    "subject": email.subject,
                    "attachments": [a.filename for a in email.attachments],
                },
            ),
        )
        activity.logger.info(
            "email %s",
            "rehearsed (dry run), not sent"
            if result.get("dry_run")
            else ("sent" if ran else "already sent, not repeated"),
            extra={"idempotency_key": email.idempotency_key, "operation": operation},
        )
        return SendResult(message_id=result["message_id"], to=result["to"], sent_now=ran)

    @activity.defn(name="deliver_webhook")
    @translating_errors
    def deliver_webhook(self, inp: DeliverWebhookInput) -> DeliverWebhookResult:
        """POST a signed event to the configured webhook, at most once per key.

        With ``retracts`` it delivers the retraction of that earlier delivery instead. Without
        a configured webhook (``AIOS_WEBHOOK_URL``) nothing happens: the result says why.
        """
        hook = self._webhook
        if hook is None:
            return DeliverWebhookResult(skipped=NOT_CONFIGURED["webhook"])
        event = WebhookEvent(type=inp.event_type, data=inp.data, created=inp.created)
        operation = hook.operations["deliver"]
        if inp.retracts is not None:
            event = retraction_of(inp.retracts, event).model_copy(update={"created": inp.created})
        result, ran = self._runtime.effect(
            hook.name,
            operation,
            inp.idempotency_key,
            lambda dry_run: hook.deliver(inp.idempotency_key, event, dry_run=dry_run).model_dump(),
            step="retract_webhook" if inp.retracts is not None else "deliver_webhook",
            event=event_for_step(
                inp.idempotency_key,
                "compensation.webhook_retracted" if inp.retracts else "webhook.delivered",
                payload={"type": event.type, "url": hook.url},
            ),
        )
        return DeliverWebhookResult(
            delivery_id=result["delivery_id"],
            status_code=result["status_code"],
            delivered_now=ran,
            dry_run=result["dry_run"],
        )

    @activity.defn(name="kickoff_event")
    @translating_errors
    def kickoff_event(self, inp: KickoffEventInput) -> KickoffEventResult:
        """Create the kickoff in the operator's CalDAV calendar, or cancel it (``cancel``).

        The event has the UID of the invitation the welcome email carries, so the client's
        calendar and the operator's hold the same meeting. Without a configured calendar
        (``AIOS_CALDAV_URL``) nothing happens: the emailed invitation is the calendar entry.
        """
        calendar = self._calendar
        if calendar is None:
            return KickoffEventResult(skipped=NOT_CONFIGURED["caldav"])
        invite = self._kickoff(inp)
        uid = invite.uid
        if inp.cancel:
            operation = calendar.operations["cancel_event"]

            def effect(dry_run: bool) -> OutboxResult:
                if calendar.get_event(uid) is None:  # never created: nothing to cancel
                    return {"uid": uid, "status": "", "sequence": 0, "missing": True}
                ref = calendar.cancel_event(inp.idempotency_key, uid, dry_run=dry_run)
                return ref.model_dump(mode="json")

            kind = "compensation.kickoff_event_cancelled"
        else:
            operation = calendar.operations["create_event"]
            event = CalendarEvent(
                summary=invite.summary,
                description=invite.description,
                start=invite.start,
                end=invite.start + invite.duration,
                organizer=parseaddr(self._email.sender)[1] or None,
                attendees=[inp.to],
            )

            def effect(dry_run: bool) -> OutboxResult:
                ref = calendar.create_event(inp.idempotency_key, event, uid=uid, dry_run=dry_run)
                return ref.model_dump(mode="json")

            kind = "calendar.kickoff_event_created"
        result, ran = self._runtime.effect(
            calendar.name,
            operation,
            inp.idempotency_key,
            effect,
            step="cancel_kickoff_event" if inp.cancel else "create_kickoff_event",
            event=event_for_step(
                inp.idempotency_key,
                kind,
                payload={"uid": uid, "start": invite.start.isoformat()},
            ),
        )
        return KickoffEventResult.model_validate(
            {
                "uid": uid,
                "status": result.get("status") or "",
                "sequence": result.get("sequence") or 0,
                "changed_now": ran,
                "dry_run": self._runtime.dry_run,
            }
        )

    @activity.defn(name="send_welcome")
    @translating_errors
    def send_welcome(self, inp: SendWelcomeInput) -> SendResult:
        draft = self._store.drafts.get(inp.draft_id)
        if draft is None:
            raise InvalidInput(f"send_welcome: draft {inp.draft_id!r} does not exist")
        invite = self._kickoff(inp)
        text = self._templates.render(
            "welcome",
            WelcomeEmail(
                client_name=inp.client_name,
                subject=draft.subject,
                body=draft.body,
                kickoff=format_when(invite.start, self._identity.zone),
                kickoff_at=invite.start.astimezone(self._identity.zone),
            ),
        )
        email = OutgoingEmail(
            to=inp.to,
            subject=text.subject,
            body=text.body,
            idempotency_key=inp.idempotency_key,
            attachments=(invite_attachment(invite, "REQUEST", sequence=0),),
        )
        return self._send(email, "send_welcome", "email.sent", f"draft:{draft.id}")

    @activity.defn(name="cancel_kickoff")
    @translating_errors
    def cancel_kickoff(self, inp: CancelKickoffInput) -> SendResult:
        invite = self._kickoff(inp)
        text = self._templates.render(
            "kickoff_cancelled",
            KickoffCancelledEmail(
                client_name=inp.client_name,
                kickoff=format_when(invite.start, self._identity.zone),
                kickoff_at=invite.start.astimezone(self._identity.zone),
            ),
        )
        email = OutgoingEmail(
            to=inp.to,
            subject=text.subject,
            body=text.body,
            idempotency_key=inp.idempotency_key,
            attachments=(invite_attachment(invite, "CANCEL", sequence=1),),
        )
        return self._send(email, "cancel_kickoff", "compensation.kickoff_cancelled", None)

    @activity.defn(name="send_gate_reminder")
    @translating_errors
    def send_gate_reminder(self, inp: SendGateReminderInput) -> SendResult:
        """The operator's gate email: when the gate opens (``reminder`` 0) and at each reminder.

        It carries signed links to the console (approve, reject, open), made here and never
        returned or logged, so they stay out of the workflow's history and the logs.
        """
        info = activity.info()
        workflow_id, run_id = info.workflow_id or "", info.workflow_run_id or ""
        zone = self._identity.zone
        links: dict[str, str] = {}
        secret = None
        if self._gate_links is not None and inp.gate_key and run_id:
            made = self._gate_links.for_gate(workflow_id, run_id, inp.gate_key, inp.expires_at)
            links = {str(action): url for action, url in made.items()}
            if self._reply_address:
                key = self._gate_links.key
                secret = gate_reply_secret(key, workflow_id, run_id, inp.gate_key)
        text = self._templates.render(
            "gate_reminder",
            GateReminderEmail(
                reminder=inp.reminder,
                title=inp.title,
                summary=inp.summary,
                workflow_id=info.workflow_id,
                waiting_since=format_when(inp.requested_at, zone),
                expires=format_when(inp.expires_at, zone),
                approve_command=f"aios approve {info.workflow_id}",
                reject_command=f'aios reject {info.workflow_id} --comment "why"',
                gate=inp.gate,
                amount=inp.amount or "",
                drafted_by=inp.drafted_by or "",
                open_url=links.get("open", ""),
                approve_url=links.get("approve", ""),
                reject_url=links.get("reject", ""),
                reply_token=secret or "",
            ),
        )
        email = OutgoingEmail(
            to=self._operator_email,
            subject=text.subject,
            body=text.body,
            idempotency_key=inp.idempotency_key,
        )
        kind = "gate.emailed" if inp.reminder == 0 else "gate.reminded"
        result = self._send(email, "send_gate_reminder", kind, None, secret=secret)
        if inp.reminder > 0 and inp.gate_key:
            self._store.gates.reminded(
                workflow_id,
                run_id,
                inp.gate_key,
                inp.reminder,
                inp.next_reminder_at,
            )
        return result

    # --- proposals and invoices: emails with rendered documents ----------------------------

    def _client(self, key: str) -> Client:
        client = self._store.clients.get(key)
        if client is None:
            raise InvalidInput(f"client: no client with key {key!r}")
        return client

    def _proposal(self, version_id: str) -> tuple[Proposal, ProposalVersion, Client]:
        version = self._store.proposals.get_version(version_id)
        proposal = self._store.proposals.get(version.proposal_id) if version else None
        if version is None or proposal is None:
            raise InvalidInput(f"proposal version {version_id!r} does not exist")
        return proposal, version, self._client(proposal.client_key)

    def _proposal_pdf(
        self, proposal: Proposal, version: ProposalVersion, client: Client, valid_until: datetime
    ) -> Attachment:
        document = ProposalDocument(
            proposal_id=proposal.proposal_id,
            version=version.version,
            client_name=client.name,
            operator_name=self._operator_name,
            business=self._identity,
            issued_at=version.created_at or valid_until,
            valid_until=valid_until,
            currency=version.currency,
            scope=proposal.scope,
            line_items=version.line_items,
            subtotal_minor=version.subtotal_minor,
            discount_pct=version.discount_pct,
            discount_minor=version.discount_minor,
            total_minor=version.total_minor,
            terms=version.terms,
        )
        name = f"proposal-{proposal.proposal_id}-v{version.version}.pdf"
        return _pdf(name, render_proposal(document))

    @activity.defn(name="send_proposal")
    @translating_errors
    def send_proposal(self, inp: SendProposalInput) -> SendResult:
        proposal, version, client = self._proposal(inp.version_id)
        discounted = version.discount_minor > 0
        text = self._templates.render(
            "proposal_follow_up" if inp.follow_up else "proposal",
            ProposalEmail(
                client_name=inp.client_name,
                proposal_id=proposal.proposal_id,
                version=version.version,
                what=_headline(proposal.scope),
                total=format_amount(version.total_minor, version.currency),
                discount_pct=f"{version.discount_pct.normalize():f}" if discounted else "",
                discount=(
                    format_amount(version.discount_minor, version.currency) if discounted else ""
                ),
                valid_until=format_date(inp.valid_until, self._identity.zone),
            ),
        )
        kind = "proposal.followed_up" if inp.follow_up else "proposal.sent"
        email = OutgoingEmail(
            to=inp.to,
            subject=text.subject,
            body=text.body,
            idempotency_key=inp.idempotency_key,
            attachments=(self._proposal_pdf(proposal, version, client, inp.valid_until),),
        )
        return self._send(email, "send_proposal", kind, f"proposal:{proposal.proposal_id}")

    @activity.defn(name="retract_proposal")
    @translating_errors
    def retract_proposal(self, inp: RetractProposalInput) -> SendResult:
        proposal, version, _ = self._proposal(inp.version_id)
        text = self._templates.render(
            "proposal_withdrawn",
            ProposalWithdrawnEmail(
                client_name=inp.client_name,
                proposal_id=proposal.proposal_id,
                version=version.version,
                what=_headline(proposal.scope),
            ),
        )
        email = OutgoingEmail(
            to=inp.to,
            subject=text.subject,
            body=text.body,
            idempotency_key=inp.idempotency_key,
        )
        return self._send(
            email,
            "retract_proposal",
            "compensation.proposal_retracted",
            f"proposal:{proposal.proposal_id}",
        )

    def _invoice_pdf(self, invoice: Invoice, client: Client) -> Attachment:
        if invoice.number is None or invoice.issued_at is None or invoice.due_at is None:
            raise InvalidInput(f"invoice {invoice.invoice_id!r} is not issued yet")
        document = InvoiceDocument(
            invoice_id=invoice.invoice_id,
            number=invoice.display_number,
            client_name=client.name,
            client_email=client.email,
            operator_name=self._operator_name,
            business=self._identity,
            issued_at=invoice.issued_at,
            due_at=invoice.due_at,
            currency=invoice.currency,
            line_items=invoice.line_items,
            total_minor=invoice.total_minor,
            payment_instructions=invoice.payment_instructions or "",
            reference=f"Proposal {invoice.proposal_id}" if invoice.proposal_id else None,
        )
        return _pdf(f"invoice-{invoice.display_number}.pdf", render_invoice(document))

    def _credit_note_pdfs(self, invoice: Invoice, client: Client) -> list[Attachment]:
        return [
            _pdf(
                f"credit-note-{note.display_number}.pdf",
                render_credit_note(
                    CreditNoteDocument(
                        number=note.display_number,
                        invoice_number=invoice.display_number,
                        client_name=client.name,
                        operator_name=self._operator_name,
                        business=self._identity,
                        issued_at=note.created_at or invoice.issued_at or invoice.due_at,
                        currency=note.currency,
                        amount_minor=note.amount_minor,
                        reason=note.reason,
                    )
                ),
            )
            for note in self._store.invoices.credit_notes(invoice.invoice_id)
        ]

    @activity.defn(name="send_invoice_email")
    @translating_errors
    def send_invoice_email(self, inp: SendInvoiceInput) -> SendResult:
        invoice = self._store.invoices.get(inp.invoice_id)
        if invoice is None:
            raise InvalidInput(f"invoice: no invoice with id {inp.invoice_id!r}")
        client = self._client(invoice.client_key)
        number = invoice.display_number
        total = format_amount(invoice.total_minor, invoice.currency)
        due = format_date(invoice.due_at, self._identity.zone) if invoice.due_at else "on receipt"
        instructions = invoice.payment_instructions or ""
        if inp.kind == "invoice":
            text = self._templates.render(
                "invoice",
                InvoiceEmail(
                    client_name=client.name,
                    number=number,
                    total=total,
                    due=due,
                    payment_instructions=instructions,
                ),
            )
            attachments = [self._invoice_pdf(invoice, client)]
            kind = "invoice.sent"
        elif inp.kind == "reminder":
            balance = inp.balance_minor if inp.balance_minor is not None else invoice.total_minor
            text = self._templates.render(
                "invoice_reminder",
                InvoiceReminderEmail(
                    client_name=client.name,
                    number=number,
                    total=total,
                    balance=format_amount(balance, invoice.currency),
                    due=due,
                    reminder=inp.reminder,
                    payment_instructions=instructions,
                ),
            )
            attachments = [self._invoice_pdf(invoice, client)]
            kind = "invoice.reminded"
        else:
            credit = self._credit_note_pdfs(invoice, client)
            text = self._templates.render(
                "invoice_cancelled",
                InvoiceCancelledEmail(
                    client_name=client.name,
                    number=number,
                    total=total,
                    reason=inp.reason or "",
                    credit_note=bool(credit),
                ),
            )
            attachments = credit
            kind = "compensation.invoice_cancelled"
        email = OutgoingEmail(
            to=client.email,
            subject=text.subject,
            body=text.body,
            idempotency_key=inp.idempotency_key,
            attachments=tuple(attachments),
        )
        return self._send(email, f"send_invoice_{inp.kind}", kind, f"invoice:{invoice.invoice_id}")
