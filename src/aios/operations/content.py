"""The content process from the operator's side: start a post, plan one, the weekly planning
schedule, move a scheduled post, and show a post with its versions and fact-check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
)
from temporalio.service import RPCError, RPCStatusCode

from aios.config import Settings
from aios.errors import InvalidInput
from aios.kernel.store import KernelStore
from aios.kernel.stores.posts import Post, PostVersion
from aios.operations.common import NewId, Session, Started, require_running, start_new

if TYPE_CHECKING:
    from aios.operations.console_models import GateDocument, GateState
    from aios.workflows.content import ContentInput

__all__ = [
    "PLANNING_SCHEDULE_ID",
    "NewPost",
    "PostView",
    "content_schedule",
    "ensure_content_schedule",
    "move_post",
    "post_gate_document",
    "post_view",
    "start_post",
    "topic_gate_document",
]

PLANNING_SCHEDULE_ID = "aios-content-planning"
# The id of the runs the schedule starts; Temporal appends the start time to it.
PLANNED_WORKFLOW_ID = "content/planned"


class NewPost(BaseModel):
    """What ``aios content start`` and ``aios content plan`` take; validated before anything
    starts. No topic: the run plans topics from memory and asks at gate ``topic``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    post_id: NewId | None = None
    topic: str = Field(default="", max_length=300)
    publish_at: AwareDatetime | None = None


def _content_input(settings: Settings, new: NewPost, post_id: str) -> ContentInput:
    from aios.workflows.content import ContentInput

    return ContentInput(
        post_id=post_id,
        topic=new.topic,
        publish_at=new.publish_at,
        novelty_threshold=settings.content_novelty_threshold,
        gate_policy=settings.gate_policy,
    )


async def start_post(client: Client, settings: Settings, new: NewPost) -> Started:
    """Start ``ContentWorkflow`` for a new post; a taken id starts nothing."""
    from aios.workflows.content import ContentWorkflow, content_workflow_id

    if "\n" in new.topic:
        raise InvalidInput("topic: one line")
    post_id = new.post_id or f"post-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:4]}"
    return await start_new(
        client,
        ContentWorkflow.run,
        _content_input(settings, new, post_id),
        content_workflow_id(post_id),
        settings,
        f"Post: {new.topic[:80]}" if new.topic else f"Post {post_id}: plan a topic",
    )


def content_schedule(settings: Settings) -> Schedule:
    """The weekly planning schedule: a ``ContentWorkflow`` that plans topics from memory."""
    from aios.workflows.content import ContentWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(
            ContentWorkflow.run,
            _content_input(settings, NewPost(), ""),
            id=PLANNED_WORKFLOW_ID,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[settings.content_planning_cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL),
        state=ScheduleState(note="AiOs content planning: topics from memory, gate `topic`"),
    )


async def ensure_content_schedule(client: Client, settings: Settings) -> str:
    """Create schedule ``aios-content-planning`` or bring it up to date; returns what it did."""
    schedule = content_schedule(settings)
    try:
        try:
            await client.create_schedule(PLANNING_SCHEDULE_ID, schedule)
            return "created"
        except ScheduleAlreadyRunningError:
            handle = client.get_schedule_handle(PLANNING_SCHEDULE_ID)
            await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
            return "updated"
    except RPCError as exc:
        if exc.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        raise InvalidInput(
            f"content_planning_cron: {settings.content_planning_cron!r} is not a schedule "
            f"Temporal takes ({exc.message})"
        ) from None


async def move_post(client: Client, post_ref: str, publish_at: datetime, by: str) -> str:
    """Signal ``reschedule`` to the post's run; returns its workflow id."""
    from aios.workflows.content import RESCHEDULE_SIGNAL, Reschedule, content_workflow_id

    if publish_at.tzinfo is None:
        raise InvalidInput("at: give a time zone (2026-12-01T09:00:00Z)")
    workflow_id = post_ref if "/" in post_ref else content_workflow_id(post_ref)
    await require_running(client, workflow_id)
    move = Reschedule(publish_at=publish_at, by=by)
    await client.get_workflow_handle(workflow_id).signal(RESCHEDULE_SIGNAL, move)
    return workflow_id


class PostView(BaseModel):
    post: Post
    versions: list[PostVersion]


def post_view(store: KernelStore, post_id: str) -> PostView:
    """The post and every version (oldest first), with each version's fact-check."""
    post_id = post_id.removeprefix("content/")
    post = store.posts.get(post_id)
    if post is None:
        raise InvalidInput(f"post: no post with id {post_id!r}")
    return PostView(post=post, versions=store.posts.versions(post_id))


async def start(settings: Settings, new: NewPost) -> Started:
    """``start_post`` with its own connection (``aios content start|plan``)."""
    with Session(settings) as session:
        return await start_post(await session.client(), settings, new)


# --- the console's documents of the two gates ----------------------------------------------


def topic_gate_document(gate: GateState) -> GateDocument:
    """Gate ``topic``: the candidates from the gate's details, numbered as the edit takes them."""
    from aios.operations.console_models import TopicGateDocument, TopicRow

    raw = gate.details.get("candidates")
    rows = [
        TopicRow(number=n, **{k: c.get(k) for k in TopicRow.model_fields if k in c})
        for n, c in enumerate(raw if isinstance(raw, list) else [], 1)
        if isinstance(c, dict) and isinstance(c.get("topic"), str)
    ]
    return TopicGateDocument(post_id=gate.workflow_id.split("/", 1)[-1], candidates=rows)


def post_gate_document(store: KernelStore, gate: GateState) -> tuple[GateDocument | None, str]:
    """Gate ``content``: the version the gate shows, rendered, with findings and audience."""
    from aios.documents.feed import render_markdown
    from aios.operations.console_models import CitedMemory, Finding, PostGateDocument

    post_id = str(gate.details.get("post_id") or gate.workflow_id.split("/", 1)[-1])
    versions = store.posts.versions(post_id)
    wanted = gate.details.get("version")
    shown = [v for v in versions if v.version == wanted] or versions[-1:]
    if not shown:
        return None, f"post {post_id!r} has no version yet"
    v = shown[0]
    found = v.findings or {}
    findings = [
        Finding(what="unsourced", text=str(c.get("text", "")), problem=str(c.get("problem", "")))
        for c in found.get("unsourced", [])
    ] + [
        Finding(what="conflict", text=str(c.get("text", "")), problem=str(c.get("problem", "")))
        for c in found.get("conflicts", [])
    ]
    audience = gate.details.get("audience")
    return (
        PostGateDocument(
            post_id=post_id,
            version=v.version,
            versions=len(versions),
            title=v.title,
            summary=v.summary,
            markdown=v.markdown,
            html=render_markdown(v.markdown, public=False),
            author=v.author,
            claims=int(found.get("claims", 0)),
            findings=findings,
            audience=audience if isinstance(audience, int) else None,
            memories=[CitedMemory(id=i, used=True) for i in v.memory_ids],
        ),
        "",
    )
