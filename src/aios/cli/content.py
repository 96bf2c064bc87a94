"""``aios content``: plan, start, schedule, move and show posts of the content process.

Registered by ``cli.app``; like the other commands, everything past Typer loads inside them.
The gates (``topic``, ``content``) are answered like every gate: ``aios approve``, ``aios
reject``, the console, or the ``decide`` signal with edits.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from aios.cli.base import JsonOpt, command

if TYPE_CHECKING:
    from aios.cli.render import Cell

__all__ = ["content_app"]

P = ParamSpec("P")
R = TypeVar("R")

content_app = typer.Typer(
    help="Content: plan a topic, draft, fact-check, approve, schedule and publish a post."
)

AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="Publish at this time, ISO 8601 with a zone (2026-12-01T09:00:00Z)"),
]


def _when(value: str | None) -> datetime | None:
    from aios.errors import InvalidInput

    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"at: {value!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise InvalidInput(f"at: {value!r} has no time zone (end it with Z or +01:00)")
    return at


def _start(topic: str, post_id: str | None, at: str | None, as_json: bool) -> None:
    from aios.cli.app import _started, run, settings
    from aios.cli.render import emit_json, line
    from aios.operations.content import NewPost, start

    new = NewPost.model_validate({"topic": topic, "post_id": post_id, "publish_at": _when(at)})
    s = settings()
    started = run(start(s, new))
    if as_json:
        emit_json({"workflow_id": started.workflow_id, "run_id": started.run_id})
        return
    _started("Post", s, started)
    line("It waits in `aios inbox` at gate `topic` (when it has no topic, or it repeats a post)")
    line(f"and at gate `content`; see the drafts with aios content show {started.workflow_id}")


@content_app.command("start")
@command
def start_post(
    topic: Annotated[str, typer.Option(help="What the post is about (one line)")],
    post_id: Annotated[str | None, typer.Option("--id", help="Post id (a-z, 0-9, -)")] = None,
    at: AtOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a post on TOPIC: novelty check, draft, fact-check, gate `content`, publish."""
    if not topic.strip():
        from aios.errors import InvalidInput

        raise InvalidInput("topic: must not be empty (or use `aios content plan`)")
    _start(topic, post_id, at, as_json)


@content_app.command("plan")
@command
def plan(
    post_id: Annotated[str | None, typer.Option("--id", help="Post id (a-z, 0-9, -)")] = None,
    at: AtOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan a post now: topics from memory, each checked against published posts, at gate
    `topic` (what the weekly schedule does)."""
    _start("", post_id, at, as_json)


@content_app.command("schedule")
@command
def schedule() -> None:
    """Create or update the weekly planning schedule `aios-content-planning`."""
    from aios.cli.app import run, settings
    from aios.cli.render import line
    from aios.operations.content import PLANNING_SCHEDULE_ID, ensure_content_schedule
    from aios.temporal import connect

    s = settings()

    async def go() -> str:
        return await ensure_content_schedule(await connect(s), s)

    done = run(go())
    line(f"Schedule {PLANNING_SCHEDULE_ID} {done}: plans a post at `{s.content_planning_cron}`")


@content_app.command("move")
@command
def move(
    post: Annotated[str, typer.Argument(help="Post id or workflow id (content/<post-id>)")],
    at: Annotated[str, typer.Option("--at", help="New time, ISO 8601 with a zone")],
    approver: Annotated[str | None, typer.Option("--by", help="Who moves it")] = None,
) -> None:
    """Move the publication time of a post (before it is published)."""
    from aios.cli.app import _who, run, settings
    from aios.cli.render import line
    from aios.operations.content import move_post
    from aios.temporal import connect

    when = _when(at)
    assert when is not None
    s = settings()

    async def go() -> str:
        return await move_post(await connect(s), post, when, _who(approver, s))

    workflow_id = run(go())
    line(f"Sent: {workflow_id} publishes at {when:%Y-%m-%d %H:%M %Z}")


@content_app.command("show")
@command
def show(
    post: Annotated[str, typer.Argument(help="Post id or workflow id (content/<post-id>)")],
    version: Annotated[
        int | None, typer.Option(help="Print this version's Markdown in full")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A post: status, schedule, every version with its author and fact-check findings."""
    from aios.cli.app import settings
    from aios.cli.render import Col, emit_json, line, records
    from aios.operations.common import kernel_store
    from aios.operations.content import post_view

    with kernel_store(settings()) as store:
        view = post_view(store, post)
    if as_json:
        emit_json(view.model_dump(mode="json"))
        return
    p = view.post
    line(f"Post {p.post_id}: {p.status}; topic: {p.topic}")
    if p.scheduled_at:
        line(f"Publication: {p.scheduled_at:%Y-%m-%d %H:%M %Z}")
    rows: list[list[Cell]] = []
    for v in view.versions:
        f = v.findings or {}
        found = (
            f"{f.get('claims', 0)} claims, {len(f.get('unsourced', []))} unsourced, "
            f"{len(f.get('conflicts', []))} conflicts"
            if f
            else "not checked"
        )
        rows.append([f"v{v.version}", v.author, v.title, found])
    records([Col("version"), Col("author"), Col("title"), Col("fact-check")], rows)
    for v in view.versions:
        for claim in (v.findings or {}).get("unsourced", []):
            line(f"v{v.version} unsourced: {claim['text']}")
        for claim in (v.findings or {}).get("conflicts", []):
            line(f"v{v.version} conflict ({claim['problem']}): {claim['text']}")
    chosen = [v for v in view.versions if v.version == version] if version else []
    if version and not chosen:
        from aios.errors import InvalidInput

        raise InvalidInput(f"version: post {p.post_id} has no v{version}")
    for v in chosen:
        line(f"--- v{v.version}: {v.title}")
        line(v.summary)
        line(v.markdown)
