"""A worker whose activity ``AIOS_CRASH_ACTIVITY`` (default ``send_welcome``) dies hard
(SIGKILL) right after the real activity finished its work, when its input's JSON contains
``AIOS_CRASH_MATCH`` (default: always): the effect happened and is recorded in the outbox, but
Temporal never hears that the activity completed. Used by the crash tests; configured by
AIOS_* variables.
"""

from __future__ import annotations

import asyncio
import os
import signal
import typing
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio import activity

from aios.config import get_settings
from aios.temporal import connect
from aios.workers.main import build_worker
from aios.workers.services import Services


async def main() -> None:
    settings = get_settings()
    services = Services.from_settings(settings)
    activities = services.activities()
    name = os.environ.get("AIOS_CRASH_ACTIVITY", "send_welcome")
    match = os.environ.get("AIOS_CRASH_MATCH", "")
    real: Any = next(a for a in activities if a.__name__ == name)

    def then_die(inp: Any) -> Any:
        result = real(inp)
        if match in inp.model_dump_json():
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    then_die.__annotations__ = typing.get_type_hints(real)
    then_die = activity.defn(name=name)(then_die)

    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=4) as executor:
        worker = build_worker(
            client,
            settings.task_queue,
            [a for a in activities if a is not real] + [then_die],
            executor,
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
