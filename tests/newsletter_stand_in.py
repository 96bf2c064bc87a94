"""A test-only ``NewsletterSendWorkflow``: the delivery engine's contract and nothing more.

The content tests register it under the engine's name: it takes ``NewsletterSend`` and returns
``STAND_IN_REPORT``, fixed counts the content process must record exactly as reported.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.workflows.newsletter_contract import (
        NEWSLETTER_WORKFLOW,
        NewsletterReport,
        NewsletterSend,
    )

STAND_IN_REPORT = NewsletterReport(sent=3, bounced=1, skipped_unsubscribed=2, failed=0)


@workflow.defn(name=NEWSLETTER_WORKFLOW)
class NewsletterStandIn:
    """Takes ``NewsletterSend``, returns ``NewsletterReport``."""

    @workflow.run
    async def run(self, send: NewsletterSend) -> NewsletterReport:
        return STAND_IN_REPORT
