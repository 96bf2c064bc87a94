"""The newsletter contract between the content process and the delivery engine.

``ContentWorkflow`` stages an issue (``KernelStore.newsletter.stage_issue``: the text lives in
PostgreSQL and travels by id) and starts ``NewsletterSendWorkflow`` as a child with id
``<parent-id>/send``, input ``NewsletterSend``; the child returns ``NewsletterReport``.

Light on purpose (pydantic only): the workflow sandbox passes it through, and the content
process imports it without loading the delivery engine.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["NEWSLETTER_WORKFLOW", "NewsletterReport", "NewsletterSend", "send_workflow_id"]

NEWSLETTER_WORKFLOW = "NewsletterSendWorkflow"


def send_workflow_id(parent_workflow_id: str) -> str:
    """The id of the send a content run starts as its child: ``<parent id>/send``."""
    return f"{parent_workflow_id}/send"


class NewsletterReport(BaseModel):
    """What one send did, over every batch (and every run of it, across continue-as-new)."""

    sent: int = 0
    bounced: int = 0
    skipped_unsubscribed: int = 0
    failed: int = 0
    cancelled: bool = False


class NewsletterSend(BaseModel):
    """Send the staged issue ``post_id`` (at ``version``) to every confirmed subscriber."""

    model_config = ConfigDict(extra="forbid")

    post_id: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    version: int = Field(ge=1)
    # Set by the workflow itself when it continues as new: where the list stands and what
    # earlier runs did. A caller leaves both at their defaults.
    after_subscriber: int = Field(default=0, ge=0)
    so_far: NewsletterReport | None = None
