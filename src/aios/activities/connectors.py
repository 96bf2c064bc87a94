"""Connector activities: every outside effect runs through the outbox, at most once per key."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity

from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import (
    CancelKickoffInput,
    SendGateReminderInput,
    SendResult,
    SendWelcomeInput,
)
from aios.connectors.calendar import Invite, invite_attachment, kickoff_uid
from aios.connectors.email import OutgoingEmail, SmtpEmailConnector
from aios.errors import InvalidInput
from aios.kernel.store import KernelStore

__all__ = ["KICKOFF_DURATION", "ConnectorActivities"]

KICKOFF_DURATION = timedelta(minutes=45)


class ConnectorActivities:
    def __init__(
        self,
        store: KernelStore,
        email: SmtpEmailConnector,
        *,
        operator_name: str,
        operator_email: str,
    ) -> None:
        self._store = store
        self._email = email
        self._operator_name = operator_name
        self._operator_email = operator_email

    def _kickoff(self, inp: SendWelcomeInput | CancelKickoffInput) -> Invite:
        info = activity.info()
        return Invite(
            uid=kickoff_uid(info.workflow_id or "", info.workflow_run_id or ""),
            summary=f"Kickoff: {inp.client_name} and {self._operator_name}",
            description="Kickoff call to agree on goals, scope and first steps.",
            start=inp.kickoff_at,
            duration=KICKOFF_DURATION,
            organizer=self._email.sender,
            attendee=inp.to,
        )

    def _send(
        self, email: OutgoingEmail, operation: str, event_kind: str, entity: str | None
    ) -> SendResult:
        result, ran = self._store.run_once(
            email.idempotency_key,
            connector="email",
            operation=operation,
            effect=lambda: self._email.send(email),
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
            "sent" if ran else "already sent, not repeated",
            extra={"idempotency_key": email.idempotency_key, "operation": operation},
        )
        return SendResult(message_id=result["message_id"], to=result["to"], sent_now=ran)

    @activity.defn(name="send_welcome")
    @translating_errors
    def send_welcome(self, inp: SendWelcomeInput) -> SendResult:
        draft = self._store.get_draft(inp.draft_id)
        if draft is None:
            raise InvalidInput(f"send_welcome: draft {inp.draft_id!r} does not exist")
        invite = self._kickoff(inp)
        email = OutgoingEmail(
            to=inp.to,
            subject=draft.subject,
            body=draft.body,
            idempotency_key=inp.idempotency_key,
            attachments=(invite_attachment(invite, "REQUEST", sequence=0),),
        )
        return self._send(email, "send_welcome", "email.sent", f"draft:{draft.id}")

    @activity.defn(name="cancel_kickoff")
    @translating_errors
    def cancel_kickoff(self, inp: CancelKickoffInput) -> SendResult:
        invite = self._kickoff(inp)
        email = OutgoingEmail(
            to=inp.to,
            subject=f"Cancelled: kickoff with {self._operator_name}",
            body=(
                f"Hello {inp.client_name},\n\nthe kickoff call planned for "
                f"{inp.kickoff_at:%A %d %B %Y at %H:%M} UTC is cancelled. The attached update "
                f"removes it from your calendar. I will be in touch about next steps.\n\n"
                f"Best regards,\n{self._operator_name}\n"
            ),
            idempotency_key=inp.idempotency_key,
            attachments=(invite_attachment(invite, "CANCEL", sequence=1),),
        )
        return self._send(email, "cancel_kickoff", "compensation.kickoff_cancelled", None)

    @activity.defn(name="send_gate_reminder")
    @translating_errors
    def send_gate_reminder(self, inp: SendGateReminderInput) -> SendResult:
        info = activity.info()
        email = OutgoingEmail(
            to=self._operator_email,
            subject=f"Reminder {inp.reminder}: approval waiting - {inp.title}",
            body=(
                f"{inp.title}\n\n{inp.summary}\n\n"
                f"Workflow: {info.workflow_id}\n"
                f"Waiting since: {inp.requested_at:%Y-%m-%d %H:%M} UTC\n"
                f"Expires at: {inp.expires_at:%Y-%m-%d %H:%M} UTC\n\n"
                f"Approve:  aios approve {info.workflow_id}\n"
                f'Reject:   aios reject {info.workflow_id} --comment "why"\n'
            ),
            idempotency_key=inp.idempotency_key,
        )
        return self._send(email, "send_gate_reminder", "gate.reminded", None)
