"""The newsletter send: one issue to every confirmed subscriber, exactly once each."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import CancelledError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from aios.activities.newsletter import (
        NewsletterActivities,
        NextBatchInput,
        TallyInput,
    )
    from aios.workflows.attributes import PROCESS
    from aios.workflows.newsletter_batch import (
        PROCESS_NAME,
        NewsletterBatch,
        NewsletterBatchWorkflow,
    )
    from aios.workflows.newsletter_contract import (
        NEWSLETTER_WORKFLOW,
        NewsletterReport,
        NewsletterSend,
    )
    from aios.workflows.process import Process
    from aios.workflows.steps import step
    from aios.workflows.timeouts import KERNEL_WRITE

__all__ = [
    "BATCHES_AT_ONCE",
    "BATCHES_PER_RUN",
    "REPORT_QUERY",
    "NewsletterSendWorkflow",
    "batch_workflow_id",
]

REPORT_QUERY = "newsletter_report"
# A run continues as new after this many batches, so a list of any size keeps its history
# small (each batch is a handful of events in the parent).
BATCHES_PER_RUN = 20
# Batches sent side by side (child workflows at once); the email rate limit of each worker
# still holds across them.
BATCHES_AT_ONCE = 4


def batch_workflow_id(post_id: str, first_subscriber: int) -> str:
    return f"{PROCESS_NAME}/{post_id}/batch/{first_subscriber}"


@workflow.defn(name=NEWSLETTER_WORKFLOW)
class NewsletterSendWorkflow(Process):
    """Send the staged issue ``post_id`` at ``version`` to every confirmed subscriber.

    Id: ``<content run id>/send`` when the content process starts it (any id otherwise).
    Input ``NewsletterSend``, result ``NewsletterReport``. The issue must be staged first
    (``KernelStore.newsletter.stage_issue``); an unknown issue fails the run at once.

    The list is read in batches (``newsletter_next_batch``: confirmed subscribers by id who do
    not have the post yet); each batch is a child ``NewsletterBatchWorkflow``,
    ``BATCHES_AT_ONCE`` at a time, each message under the email connector's rate limit. A
    batch's id, ``newsletter/<post>/batch/<first subscriber id>``, comes from the input, so a
    history replays under any id and a second send of the same post cannot run the same
    batch at once. After ``BATCHES_PER_RUN`` batches the run continues as new with where it stands.

    Query ``newsletter_report`` -> ``NewsletterReport`` so far.
    Search attributes: ``AiosProcess=newsletter``, ``AiosOutcome``.

    End states: ``completed``; ``failed`` (the issue is not staged, or a batch failed for
    good: SMTP authentication refused, a policy refusal); ``cancelled`` (``temporal workflow
    cancel`` or the parent's cancel): the batch in flight stops between two messages, no
    further batch starts, and the run returns its report with ``cancelled=True``. Starting
    the send again later sends only to those who do not have the post. The report's
    ``sent``, ``bounced`` and ``failed`` count the post's deliveries as the kernel records
    them (every send of the post); ``skipped_unsubscribed`` counts those this send passed
    over because they had left.
    """

    NAME = PROCESS_NAME

    def __init__(self) -> None:
        super().__init__()
        self._report = NewsletterReport()
        self._after = 0

    @workflow.query(name=REPORT_QUERY)
    def report(self) -> NewsletterReport:
        return self._report

    @workflow.run
    async def run(self, inp: NewsletterSend) -> NewsletterReport:
        workflow.upsert_search_attributes([PROCESS.value_set(self.NAME)])
        self._report = inp.so_far.model_copy() if inp.so_far else NewsletterReport()
        self._after = inp.after_subscriber
        self.set_details(f"Sending **{inp.post_id}** (version {inp.version}).")
        # A failure that ends the run (an issue never staged, SMTP refusing our credentials)
        # records newsletter.failed; nothing to compensate: what was sent is recorded.
        return await self.guard(lambda: self._run(inp), entity=f"post:{inp.post_id}")

    async def _run(self, inp: NewsletterSend) -> NewsletterReport:
        try:
            finished = await self._send(inp)
        except (asyncio.CancelledError, ChildWorkflowError) as exc:
            if not _is_cancel(exc):
                raise
            report = await asyncio.shield(asyncio.ensure_future(self._finish(inp, True)))
            return await self.close(report)
        if not finished:
            workflow.continue_as_new(
                NewsletterSend(
                    post_id=inp.post_id,
                    version=inp.version,
                    after_subscriber=self._after,
                    so_far=self._report,
                )
            )
        return await self.close(await self._finish(inp, False))

    async def _send(self, inp: NewsletterSend) -> bool:
        """Rounds of batches until the list is done (True) or this run has done its share
        (False)."""
        for _ in range(BATCHES_PER_RUN // BATCHES_AT_ONCE):
            # A batch that finished before the cancel reached it returns normally, and the
            # cancel with it: the request itself is what stops the next round.
            if workflow.cancellation_reason() is not None:
                raise asyncio.CancelledError("the send was cancelled")
            found = await step(
                NewsletterActivities.next_batch,
                NextBatchInput(
                    post_id=inp.post_id,
                    version=inp.version,
                    after=self._after,
                    batches=BATCHES_AT_ONCE,
                ),
                KERNEL_WRITE,
                summary=f"next batches of {inp.post_id} after subscriber {self._after}",
            )
            ids, size = found.subscriber_ids, max(found.batch_size, 1)
            if not ids:
                return True
            chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
            results = await asyncio.gather(
                *(
                    workflow.execute_child_workflow(
                        NewsletterBatchWorkflow.run,
                        NewsletterBatch(
                            post_id=inp.post_id, version=inp.version, subscriber_ids=chunk
                        ),
                        id=batch_workflow_id(inp.post_id, chunk[0]),
                    )
                    for chunk in chunks
                )
            )
            self._after = ids[-1]
            r = self._report
            for result in results:
                r.sent += result.sent
                r.bounced += result.bounced
                r.failed += result.failed
                r.skipped_unsubscribed += result.skipped_unsubscribed
            self._done(f"batches {ids[0]}-{ids[-1]}")
        return False

    async def _finish(self, inp: NewsletterSend, cancelled: bool) -> NewsletterReport:
        """The report from the kernel's record, and the end event."""
        tally = await step(
            NewsletterActivities.tally, TallyInput(post_id=inp.post_id), KERNEL_WRITE
        )
        self._report = NewsletterReport(
            sent=tally.sent,
            bounced=tally.bounced,
            failed=tally.failed,
            skipped_unsubscribed=self._report.skipped_unsubscribed,
            cancelled=cancelled,
        )
        payload = {"post_id": inp.post_id, "version": inp.version, **self._report.model_dump()}
        if cancelled:
            payload["reason"] = "the send was cancelled; the remaining batches were not sent"
        await self.end("cancelled" if cancelled else "completed", f"post:{inp.post_id}", payload)
        return self._report


def _is_cancel(exc: BaseException) -> bool:
    """A cancel of this run, or of the batch in flight (which stops the send the same way)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    return isinstance(exc, ChildWorkflowError) and isinstance(exc.cause, CancelledError)
