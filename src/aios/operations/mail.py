"""Inbound mail from the operator's side: the poll schedule and a one-off poll.

``ensure_mail_schedule`` creates (or brings up to date) the Temporal Schedule
``aios-mail-poll`` that starts ``MailPollWorkflow`` every ``AIOS_IMAP_POLL_EVERY``, skipping a
round while the previous one still runs; ``aios dev up`` calls it when ``AIOS_IMAP_HOST`` is
set. ``poll_mail`` runs one poll now and waits for it (``aios mail poll``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
)

from aios.config import Settings
from aios.errors import InvalidInput

if TYPE_CHECKING:
    from aios.workflows.inbound_mail import MailPollInput, MailPollResult

__all__ = ["MAIL_SCHEDULE_ID", "ensure_mail_schedule", "mail_schedule", "poll_mail", "require_imap"]

MAIL_SCHEDULE_ID = "aios-mail-poll"


def _poll_input(settings: Settings) -> MailPollInput:
    from aios.workflows.inbound_mail import MailPollInput

    return MailPollInput(
        limit=settings.imap_batch,
        proposal_policy=settings.proposal_policy,
        gate_policy=settings.gate_policy,
        min_confidence=settings.reply_min_confidence,
    )


def require_imap(settings: Settings) -> None:
    if settings.imap_host is None:
        raise InvalidInput(
            "inbound mail: no mailbox configured (set AIOS_IMAP_HOST, AIOS_IMAP_USERNAME and "
            "AIOS_IMAP_PASSWORD)"
        )


def mail_schedule(settings: Settings) -> Schedule:
    from aios.workflows.inbound_mail import POLL_PROCESS, MailPollWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(
            MailPollWorkflow.run,
            _poll_input(settings),
            # Temporal appends the scheduled time ("mail-poll/scheduled-2026-..."): the first
            # part of the id stays the process, which the kill switches go by.
            id=f"{POLL_PROCESS}/scheduled",
            task_queue=settings.task_queue,
            execution_timeout=max(settings.imap_poll_every * 5, settings.imap_poll_every),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.imap_poll_every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="AiOs inbound mail poller"),
    )


async def ensure_mail_schedule(client: Client, settings: Settings) -> str:
    """Create the poll schedule, or bring it up to date; returns what it did."""
    require_imap(settings)
    schedule = mail_schedule(settings)
    try:
        await client.create_schedule(MAIL_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(MAIL_SCHEDULE_ID)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
        return "updated"


async def poll_mail(client: Client, settings: Settings) -> MailPollResult:
    """Poll the mailbox once now and wait for that poll (not for the emails' own runs)."""
    from aios.workflows.inbound_mail import POLL_PROCESS, MailPollWorkflow

    require_imap(settings)
    handle = await client.start_workflow(
        MailPollWorkflow.run,
        _poll_input(settings),
        id=f"{POLL_PROCESS}/{uuid.uuid4().hex[:12]}",
        task_queue=settings.task_queue,
    )
    return await handle.result()
