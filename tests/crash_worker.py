"""A worker whose ``send_welcome`` dies hard (SIGKILL) right after the real activity finished
its work: the email is with the SMTP server and recorded in the outbox, but Temporal never
hears that the activity completed. Used by ``test_crash.py``; configured by AIOS_* variables.
"""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio import activity

from aios.activities.models import SendResult, SendWelcomeInput
from aios.config import get_settings
from aios.temporal import connect
from aios.workers.main import build_worker
from aios.workers.services import Services


async def main() -> None:
    settings = get_settings()
    services = Services.from_settings(settings)
    activities = services.activities()
    real = next(a for a in activities if a.__name__ == "send_welcome")

    @activity.defn(name="send_welcome")
    def send_welcome_then_die(inp: SendWelcomeInput) -> SendResult:
        result = real(inp)
        os.kill(os.getpid(), signal.SIGKILL)
        return result  # never reached

    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=4) as executor:
        worker = build_worker(
            client,
            settings.task_queue,
            [a for a in activities if a is not real] + [send_welcome_then_die],
            executor,
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
