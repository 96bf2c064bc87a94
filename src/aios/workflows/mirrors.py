"""Steps that tell outside systems what a process did: webhooks, the CRM, the calendar.

Each is one activity call when its connector is configured. Whether it is comes from the run's
connector plan (``Process.connector_configured``: one local activity per run); a step whose
connector is not configured is not scheduled and gives ``skipped`` with the reason. Runs started
before the plan existed schedule every step and the activity answers ``skipped`` itself. These
steps came after the first processes were running, so every workflow takes them only behind
``versions.patched(CONNECTOR_FABRIC)``: a run started before them replays without them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.crm import CONTACT, DEAL, CrmActivities
    from aios.activities.models import (
        NOT_CONFIGURED,
        DeliverWebhookInput,
        DeliverWebhookResult,
        KickoffEventInput,
        KickoffEventResult,
        MirrorClientInput,
        MirrorDealInput,
        MirrorResult,
    )
    from aios.workflows.process import Process
    from aios.workflows.saga import Saga
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT

__all__ = [
    "CONNECTOR_FABRIC",
    "kickoff_event",
    "mirror_client",
    "mirror_deal",
    "notify",
    "shown",
]

CONNECTOR_FABRIC = "connector-fabric"


async def _configured(connector: str) -> bool:
    """Whether the run's connector plan has ``connector`` (see ``Process``)."""
    host = workflow.instance()
    if not isinstance(host, Process):  # pragma: no cover - every business workflow is one
        return True
    return await host.connector_configured(connector)


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
    if not await _configured("webhook"):
        return DeliverWebhookResult(skipped=NOT_CONFIGURED["webhook"])
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

    if not await _configured("caldav"):
        return KickoffEventResult(skipped=NOT_CONFIGURED["caldav"])
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
    if not await _configured("hubspot"):
        return MirrorResult(system=DEAL, skipped=NOT_CONFIGURED["hubspot"])
    return await step(
        CrmActivities.mirror_deal,
        MirrorDealInput(
            idempotency_key=step_key(f"crm-deal/{action}"),
            proposal_id=proposal_id,
            action=action,
        ),
        CONNECTOR_EFFECT,
    )


async def mirror_client(client_key: str, approval: str | None) -> MirrorResult:
    """Create or update the client's CRM contact (once per run); ``approval`` names the
    operator's decision that allows it."""
    if not await _configured("hubspot"):
        return MirrorResult(system=CONTACT, skipped=NOT_CONFIGURED["hubspot"])
    return await step(
        CrmActivities.mirror_client,
        MirrorClientInput(
            idempotency_key=step_key("crm-contact"), client_key=client_key, approval=approval
        ),
        CONNECTOR_EFFECT,
    )
