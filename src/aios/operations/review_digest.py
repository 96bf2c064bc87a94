"""The weekly review digest's Temporal Schedule ``aios-weekly-review``: make it, trigger it."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
)

from aios.config import Settings

__all__ = ["REVIEW_SCHEDULE_ID", "ensure_review_schedule", "review_schedule", "send_digest_now"]

REVIEW_SCHEDULE_ID = "aios-weekly-review"


def review_schedule(settings: Settings) -> Schedule:
    """Mondays at 07:00 in the business's time zone; a round still running is not doubled."""
    from aios.workflows.review import REVIEW_WORKFLOW_ID, ReviewDigestInput, ReviewDigestWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReviewDigestWorkflow.run,
            ReviewDigestInput(),
            id=REVIEW_WORKFLOW_ID,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_week=[ScheduleRange(1)],
                    hour=[ScheduleRange(7)],
                    minute=[ScheduleRange(0)],
                    second=[ScheduleRange(0)],
                )
            ],
            time_zone_name=settings.business_timezone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="AiOs weekly review digest to the operator"),
    )


async def ensure_review_schedule(client: Client, settings: Settings) -> str:
    """Create the weekly review schedule, or bring it up to date; returns what it did."""
    schedule = review_schedule(settings)
    try:
        await client.create_schedule(REVIEW_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(REVIEW_SCHEDULE_ID)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
        return "updated"


async def send_digest_now(client: Client, settings: Settings) -> None:
    """Trigger the schedule now (creating it first if missing): last ISO week's digest."""
    await ensure_review_schedule(client, settings)
    await client.get_schedule_handle(REVIEW_SCHEDULE_ID).trigger()
