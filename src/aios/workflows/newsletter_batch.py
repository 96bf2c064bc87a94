"""One batch of a newsletter send: a child of ``NewsletterSendWorkflow``."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.newsletter import BatchResult, NewsletterActivities, SendBatchInput
    from aios.workflows.timeouts import NEWSLETTER_BATCH

__all__ = ["PROCESS_NAME", "NewsletterBatch", "NewsletterBatchWorkflow"]

# The process the sends and their batches belong to: a batch's id starts with it
# (``newsletter/<post>/batch/<n>``), so ``aios pause process newsletter`` holds its emails.
PROCESS_NAME = "newsletter"


class NewsletterBatch(BaseModel):
    post_id: str
    version: int
    subscriber_ids: list[int] = Field(min_length=1, max_length=1000)


@workflow.defn(name="NewsletterBatchWorkflow")
class NewsletterBatchWorkflow:
    """Send one issue to one batch of subscribers.

    Id: ``newsletter/<post>/batch/<first subscriber id>``. Input ``NewsletterBatch``, result
    ``BatchResult``. One activity, ``send_newsletter_batch``, which heartbeats after every
    message: a worker that dies mid-batch is replaced within the heartbeat timeout and the retry
    passes over everyone already served. A cancel (the parent's) reaches the activity between
    two messages; the run waits for it to stop, then ends cancelled.
    """

    @workflow.run
    async def run(self, batch: NewsletterBatch) -> BatchResult:
        first, last = batch.subscriber_ids[0], batch.subscriber_ids[-1]
        return await workflow.execute_activity_method(
            NewsletterActivities.send_batch,
            SendBatchInput(
                post_id=batch.post_id, version=batch.version, subscriber_ids=batch.subscriber_ids
            ),
            start_to_close_timeout=NEWSLETTER_BATCH.start_to_close,
            schedule_to_close_timeout=NEWSLETTER_BATCH.schedule_to_close,
            heartbeat_timeout=NEWSLETTER_BATCH.heartbeat,
            retry_policy=NEWSLETTER_BATCH.retry,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"send newsletter {batch.post_id}: subscribers {first}-{last} "
            f"({len(batch.subscriber_ids)})",
        )
