"""A test-only workflow that runs many connector effects at once, to fill a worker's slots."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from aios.activities.connectors import ConnectorActivities
    from aios.activities.models import DeliverWebhookInput, DeliverWebhookResult
    from aios.workflows.steps import step, step_key
    from aios.workflows.timeouts import CONNECTOR_EFFECT


class FanOutInput(BaseModel):
    deliveries: int


@workflow.defn(name="FanOutWebhooks")
class FanOutWebhooks:
    """Delivers ``deliveries`` webhooks concurrently, one activity each."""

    @workflow.run
    async def run(self, inp: FanOutInput) -> list[DeliverWebhookResult]:
        return list(
            await asyncio.gather(
                *(
                    step(
                        ConnectorActivities.deliver_webhook,
                        DeliverWebhookInput(
                            idempotency_key=step_key(f"fan-out/{n}"),
                            event_type="test.fan_out",
                            data={"n": n},
                            created=workflow.now(),
                        ),
                        CONNECTOR_EFFECT,
                    )
                    for n in range(inp.deliveries)
                )
            )
        )
