"""Steps that tell outside systems what a process did: webhooks, the CRM, the calendar.

Each is one activity call; the activity decides whether its connector is configured and, if
not, returns ``skipped`` without touching anything. These steps came after the first processes
were running, so every workflow takes them only behind ``workflow.patched(CONNECTOR_FABRIC)``:
a run started before them replays without them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.crm import CrmActivities
    from aios.activities.models import (
        DeliverWebhookInput,
        DeliverWebhookResult,
        KickoffEventInput,
        KickoffEventResult,
        MirrorDealInput,
        MirrorResult,
    )
    from aios.workflows.saga import Saga
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT

__all__ = ["CONNECTOR_FABRIC", "kickoff_event", "mirror_deal", "notify", "shown"]

CONNECTOR_FABRIC = "connector-fabric"


def shown(name: str, result: DeliverWebhookResult | KickoffEventResult | MirrorResult) -> str:
    """How ``progress`` lists the step: ``name``, or ``name:skipped`` when nothing was done."""
    return name if result.skipped is None else f"{name}:skipped"


async def notify(
    event_type: str, data: dict[str, Any], *, saga: Saga | None = None
) -> DeliverWebhookResult:
    """Deliver webhook event ``event_type`` once per run; with ``saga``, a failure later in
    the run delivers its retraction (``<event_type>.retracted``)."""
    key = step_key(f"webhook/{event_type}")
    created = workflow.now()
    result = await step(
        ConnectorActivities.deliver_webhook,
        DeliverWebhookInput(idempotency_key=key, event_type=event_type, data=data, created=created),
        CONNECTOR_EFFECT,
    )
    if saga is not None and result.skipped is None:
        saga.add(
            f"retract-{event_type}",
            lambda: step(
                ConnectorActivities.deliver_webhook,
                DeliverWebhookInput(
                    idempotency_key=step_key(f"webhook/{event_type}/retracted"),
                    event_type=event_type,
                    data=data,
                    created=workflow.now(),
                    retracts=key,
                ),
                CONNECTOR_EFFECT,
            ),
        )
    return result


async def kickoff_event(
    to: str, client_name: str, kickoff_at: datetime, *, saga: Saga
) -> KickoffEventResult:
    """Put the kickoff in the operator's calendar; the saga cancels it on a later failure."""

    def request(name: str, *, cancel: bool) -> KickoffEventInput:
        return KickoffEventInput(
            idempotency_key=step_key(name),
            to=to,
            client_name=client_name,
            kickoff_at=kickoff_at,
            cancel=cancel,
        )

    result = await step(
        ConnectorActivities.kickoff_event, request("kickoff-event", cancel=False), CONNECTOR_EFFECT
    )
    if result.skipped is None:
        saga.add(
            "cancel-kickoff-event",
            lambda: step(
                ConnectorActivities.kickoff_event,
                request("cancel-kickoff-event", cancel=True),
                CONNECTOR_EFFECT,
            ),
        )
    return result


async def mirror_deal(
    proposal_id: str, action: Literal["create", "won", "lost", "archive"]
) -> MirrorResult:
    """Create, win, lose or archive the proposal's CRM deal (once per run per action)."""
    return await step(
        CrmActivities.mirror_deal,
        MirrorDealInput(
            idempotency_key=step_key(f"crm-deal/{action}"),
            proposal_id=proposal_id,
            action=action,
        ),
        CONNECTOR_EFFECT,
    )
