"""A test-only workflow that delivers one webhook twice with the same key, with fast retries."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.errors import NON_RETRYABLE_TYPES
    from aios.activities.models import DeliverWebhookInput, DeliverWebhookResult


@workflow.defn(name="DeliverWebhookTwiceWorkflow")
class DeliverWebhookTwiceWorkflow:
    @workflow.run
    async def run(self, key: str) -> list[DeliverWebhookResult]:
        inp = DeliverWebhookInput(
            idempotency_key=key,
            event_type="invoice.paid",
            data={"invoice": "INV-000042", "amount": "4500.00"},
            created=workflow.now(),
        )
        results = []
        for _ in range(2):  # the second run of the step is what a retried step would do
            results.append(
                await workflow.execute_activity_method(
                    ConnectorActivities.deliver_webhook,
                    inp,
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(milliseconds=100),
                        backoff_coefficient=1.0,
                        maximum_attempts=10,
                        non_retryable_error_types=NON_RETRYABLE_TYPES,
                    ),
                )
            )
        return results
