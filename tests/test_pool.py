"""The connection pool is never smaller than what a worker's activities can hold at once.

Each activity slot may hold two connections: the outbox row it locks for the duration of its
effect, and a second one while that lock is held (the failure it records when the effect
fails). A worker whose every slot is busy with such effects must finish without one activity
waiting for a connection until the pool gives up.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio.client import Client

from aios.config import Settings
from aios.kernel.stores import pool_size_for
from aios.workers.main import build_worker
from aios.workers.services import Services
from tests.fanout_workflow import FanOutInput, FanOutWebhooks
from tests.flaky_http import FlakyHttpServer, Reply

SLOTS = 8


async def test_every_activity_slot_busy_with_a_failing_effect_never_starves_the_pool(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    with FlakyHttpServer() as server:
        # Every first delivery holds its outbox lock for 1 s, then fails (the effect records
        # the failure on a second connection while the lock is still held); the retry succeeds.
        server.script(*[Reply(500, delay=1.0) for _ in range(SLOTS)])
        s = settings.model_copy(
            update={
                "webhook_url": server.url,
                "webhook_secret": "s" * 32,
                "worker_activity_slots": SLOTS,
                "connector_breaker_fail_max": 10 * SLOTS,  # the failures here are on purpose
                "qdrant_path": tmp_path / "qdrant",
            }
        )
        services = Services.from_settings(s, migrate=False)
        try:
            assert services.store.db.max_size == pool_size_for(SLOTS) >= 2 * SLOTS
            with ThreadPoolExecutor(max_workers=SLOTS) as executor:
                async with build_worker(
                    client,
                    s.task_queue,
                    services.activities(),
                    executor,
                    workflows=[FanOutWebhooks],
                    activity_slots=SLOTS,
                ):
                    handle = await client.start_workflow(
                        FanOutWebhooks.run,
                        FanOutInput(deliveries=SLOTS),
                        id=f"test/fan-out/{uuid.uuid4().hex[:8]}",
                        task_queue=s.task_queue,
                    )
                    results = await handle.result()
        finally:
            services.close()
    assert len({r.delivery_id for r in results}) == SLOTS
    assert len(server.received) == 2 * SLOTS  # one failed and one good delivery each
    started = [
        e.activity_task_started_event_attributes
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert [a.attempt for a in started] == [2] * SLOTS
    for attempt in started:  # the one failure was the server's, never a pool timeout
        assert "500" in attempt.last_failure.message, attempt.last_failure.message
