"""A test-only batch send: one activity emails many recipients through the connector runtime.

It models a newsletter (one step, many recipients, one outbox key per recipient), the kind of
multi-recipient effect a kill switch must stop between two messages.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.errors import translating_errors
    from aios.connectors.email import OPERATIONS as EMAIL
    from aios.connectors.email import OutgoingEmail, SmtpEmailConnector
    from aios.connectors.runtime import ConnectorRuntime
    from aios.kernel.store import OutboxResult
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT


class SendBatchInput(BaseModel):
    idempotency_key: str
    recipients: list[str]


class SendBatchResult(BaseModel):
    sent_now: int
    message_ids: list[str]


class BatchActivities:
    def __init__(self, runtime: ConnectorRuntime, email: SmtpEmailConnector) -> None:
        self._runtime = runtime
        self._email = email

    @activity.defn(name="test_send_batch")
    @translating_errors
    def send_batch(self, inp: SendBatchInput) -> SendBatchResult:
        sent, ids = 0, []
        for n, to in enumerate(inp.recipients):
            email = OutgoingEmail(
                to=to,
                subject=f"News {n}",
                body="This month's news.",
                idempotency_key=f"{inp.idempotency_key}/{n}",
            )

            def send(dry_run: bool, email: OutgoingEmail = email) -> OutboxResult:
                return dict(self._email.send(email, dry_run=dry_run))

            result, ran = self._runtime.effect(
                self._email.name, EMAIL["send"], email.idempotency_key, send, step="send_batch"
            )
            sent += ran
            ids.append(result["message_id"])
        return SendBatchResult(sent_now=sent, message_ids=ids)


@workflow.defn(name="TestSendBatch")
class SendBatchWorkflow:
    @workflow.run
    async def run(self, recipients: list[str]) -> SendBatchResult:
        return await step(
            BatchActivities.send_batch,
            SendBatchInput(idempotency_key=step_key("batch"), recipients=recipients),
            CONNECTOR_EFFECT,
        )
