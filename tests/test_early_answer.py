"""A client's answer that arrives while the proposal is still being sent is kept.

The email is out the moment the SMTP server accepts it, but the run hears that the send step
finished only when the activity completes: later still when the worker is slow or killed
after sending (Temporal retries the step after its timeout). A client who answers in between
must not be turned away."""

from __future__ import annotations

import asyncio
import threading
import typing
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio import activity
from temporalio.client import Client

from aios import operations
from aios.config import Settings
from aios.workers.main import build_worker
from aios.workers.services import Services
from aios.workflows.billing import BillingResult
from aios.workflows.proposal import ClientResponse
from tests.conftest import RecordingSmtp
from tests.helpers import RUNS
from tests.money_helpers import (
    ends_cancelled,
    fast,
    known_client,
    progress_until,
    propose,
)

WORKSHOP = "A strategy workshop for the leadership team."  # USD 2,200 list: auto-approved


async def test_an_answer_while_the_proposal_is_being_sent_is_kept(
    client: Client,
    settings: Settings,
    services: Services,
    executor: ThreadPoolExecutor,
    smtp: RecordingSmtp,
) -> None:
    sent, release = threading.Event(), threading.Event()
    activities = services.activities()
    real: Any = next(a for a in activities if a.__name__ == "send_proposal")

    def held(inp: Any) -> Any:
        result = real(inp)  # the email is out ...
        sent.set()
        release.wait(60)  # ... and the run does not know yet
        return result

    held.__annotations__ = typing.get_type_hints(real)
    held_activity = activity.defn(name="send_proposal")(held)
    store = services.store
    _, key, email = known_client(store, segment="consulting")
    async with build_worker(
        client,
        settings.task_queue,
        [a for a in activities if a is not real] + [held_activity],
        executor,
    ):
        handle = await propose(client, fast(settings), store, key, WORKSHOP)
        assert await asyncio.to_thread(sent.wait, 60)
        assert len(smtp.to(email)) == 1
        # The client has the email and accepts at once; `aios respond` takes the answer.
        progress = await progress_until(client, handle.id, lambda p: p.takes_answer)
        assert progress.waiting_for is None  # still sending, as far as the run knows
        await operations.respond(client, handle.id, ClientResponse(response="accept", note="yes"))
        release.set()
        result = await asyncio.wait_for(handle.result(), 60)
        assert (result.status, result.reason) == ("accepted", "yes")
        events = [e.kind for e in store.events.for_run(handle.id)]
        assert "signal.rejected" not in events
        assert events.count("proposal.client_responded") == 1
        assert result.billing_workflow_id is not None
        billing = client.get_workflow_handle(result.billing_workflow_id, result_type=BillingResult)
        RUNS.append(billing.id)
        await billing.cancel()
        await ends_cancelled(billing)
