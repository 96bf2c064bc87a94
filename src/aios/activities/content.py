"""Content activities: plan topics, open a post, draft and revise versions, fact-check them,
schedule, stage the newsletter issue, and write the public page and feed.

Thin over ``agents.content`` (topics, novelty, the draft agent, the fact-check),
``kernel.stores.posts`` (posts and versions) and ``documents.feed`` (page and feed). The
workflow carries post ids and version numbers; texts stay in PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import activity

from aios.activities.agents import run_agent
from aios.activities.context import event_for_step
from aios.activities.errors import translating_errors
from aios.activities.models import AgentCall, AgentControls, AgentHold
from aios.agents.content import (
    ContentAgent,
    ContentRequest,
    FactCheck,
    TopicCandidate,
    citations,
    fact_check,
    flag_repeats,
    propose_topics,
)
from aios.agents.runner import AgentRunner
from aios.agents.welcome import MemoryHint
from aios.documents.feed import PublicPost, SiteInfo, public_markdown, write_site
from aios.errors import InvalidInput
from aios.kernel.store import KernelStore
from aios.kernel.stores.posts import PostStatus, PostVersion
from aios.memory.store import RecalledMemory

__all__ = [
    "EDITABLE_POST_FIELDS",
    "AudienceInput",
    "ContentActivities",
    "DraftPostInput",
    "DraftPostResult",
    "FactCheckPostInput",
    "FactCheckResult",
    "NoveltyInput",
    "OpenPostInput",
    "PlanTopicsInput",
    "PlanTopicsResult",
    "PostVersionRef",
    "PublishPostInput",
    "PublishPostResult",
    "RevisePostInput",
    "SetPostStatusInput",
    "StageIssueInput",
]

EDITABLE_POST_FIELDS = ("title", "body")
MAX_FINDINGS_SHOWN = 5


def _hints(memories: list[RecalledMemory]) -> list[MemoryHint]:
    return [
        MemoryHint(id=m.id, text=m.text, entity=m.provenance.entity, score=m.score)
        for m in memories
    ]


class PlanTopicsInput(BaseModel):
    memories: list[RecalledMemory] = Field(default_factory=list)


class PlanTopicsResult(BaseModel):
    candidates: list[TopicCandidate] = Field(default_factory=list)


class NoveltyInput(BaseModel):
    idempotency_key: str
    candidates: list[TopicCandidate]
    # Per candidate, the published posts most similar to it: (post id, cosine score).
    matches: list[list[tuple[str, float]]]
    threshold: float = Field(ge=0, le=1)


class OpenPostInput(BaseModel):
    idempotency_key: str
    post_id: str
    topic: str = Field(min_length=1, max_length=300)


class PostVersionRef(BaseModel):
    """A stored version as the workflow carries it: ids and short texts, never the body."""

    post_id: str
    version: int
    title: str
    summary: str
    memory_ids: list[str] = Field(default_factory=list)
    author: str
    source: Literal["agent", "operator"]
    call: AgentCall | None = None


class DraftPostInput(BaseModel):
    idempotency_key: str
    post_id: str
    topic: str
    memories: list[RecalledMemory] = Field(default_factory=list)
    controls: AgentControls = Field(default_factory=AgentControls)


class DraftPostResult(BaseModel):
    version: PostVersionRef | None = None
    hold: AgentHold | None = None
    run_cost_usd: float = 0.0


class RevisePostInput(BaseModel):
    idempotency_key: str
    post_id: str
    base_version: int
    edits: dict[str, str]
    author: str
    comment: str = ""


class FactCheckPostInput(BaseModel):
    idempotency_key: str
    post_id: str
    version: int
    # The cited memories that exist: id -> text (a cited id missing here is not in memory).
    memories: dict[str, str] = Field(default_factory=dict)


class FactCheckResult(BaseModel):
    claims: int
    unsourced: int
    conflicts: int
    # The first findings, one line each, for the gate's summary.
    findings: list[str] = Field(default_factory=list)


class SetPostStatusInput(BaseModel):
    idempotency_key: str
    post_id: str
    status: PostStatus
    scheduled_at: datetime | None = None
    reason: str = ""


class StageIssueInput(BaseModel):
    idempotency_key: str
    post_id: str
    version: int


class AudienceInput(BaseModel):
    post_id: str
    version: int


class PublishPostInput(BaseModel):
    idempotency_key: str
    post_id: str
    version: int
    published_at: datetime


class PublishPostResult(BaseModel):
    page: str
    feed: str


def version_ref(version: PostVersion, call: AgentCall | None = None) -> PostVersionRef:
    return PostVersionRef(
        post_id=version.post_id,
        version=version.version,
        title=version.title,
        summary=version.summary,
        memory_ids=version.memory_ids,
        author=version.author,
        source=version.source,
        call=call,
    )


def findings_lines(check: FactCheck) -> list[str]:
    """One line per finding: what is wrong, then the start of the claim."""
    lines = [f"unsourced: {c.text[:160]}" for c in check.unsourced]
    lines += [f"conflict ({c.problem}): {c.text[:160]}" for c in check.conflicts]
    return lines


def site_folder(state_dir: Path, site_dir: Path | None) -> Path:
    """Where published pages go: ``content_site_dir``, else ``<state_dir>/site``."""
    return (site_dir or state_dir / "site").expanduser().resolve()


class ContentActivities:
    def __init__(
        self,
        store: KernelStore,
        runner: AgentRunner,
        *,
        operator_name: str,
        site_dir: Path,
        site: SiteInfo,
        agent: ContentAgent | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._operator_name = operator_name
        self._site_dir = site_dir
        self._site = site
        self._agent = agent or ContentAgent()

    @activity.defn(name="plan_topics")
    @translating_errors
    def plan_topics(self, inp: PlanTopicsInput) -> PlanTopicsResult:
        return PlanTopicsResult(candidates=propose_topics(_hints(inp.memories)))

    @activity.defn(name="check_topic_novelty")
    @translating_errors
    def check_topic_novelty(self, inp: NoveltyInput) -> PlanTopicsResult:
        if len(inp.matches) != len(inp.candidates):
            raise InvalidInput("matches: one list per candidate")
        flagged = [
            flag_repeats(c, m, inp.threshold)
            for c, m in zip(inp.candidates, inp.matches, strict=True)
        ]
        self._store.events.append(
            event_for_step(
                inp.idempotency_key,
                "content.planned",
                payload={
                    "threshold": inp.threshold,
                    "topics": [c.model_dump() for c in flagged],
                },
            )
        )
        return PlanTopicsResult(candidates=flagged)

    @activity.defn(name="open_post")
    @translating_errors
    def open_post(self, inp: OpenPostInput) -> None:
        info = activity.info()
        self._store.posts.open(
            inp.post_id,
            info.workflow_id or "",
            inp.topic,
            event=event_for_step(
                inp.idempotency_key,
                "post.opened",
                entity=f"post:{inp.post_id}",
                payload={"topic": inp.topic},
            ),
        )

    @activity.defn(name="draft_post")
    @translating_errors
    def draft_post(self, inp: DraftPostInput) -> DraftPostResult:
        if self._store.posts.get(inp.post_id) is None:
            raise InvalidInput(f"draft_post: post {inp.post_id!r} is not open")
        result, done = run_agent(
            self._runner,
            self._store,
            self._agent,
            ContentRequest(
                topic=inp.topic, operator_name=self._operator_name, memories=_hints(inp.memories)
            ),
            key=inp.idempotency_key,
            controls=inp.controls,
            entity=f"post:{inp.post_id}",
        )
        if result is None or done.call is None:
            return DraftPostResult(hold=done.hold, run_cost_usd=done.run_cost_usd)
        draft = result.output
        stored = self._store.posts.save_version(
            PostVersion(
                post_id=inp.post_id,
                version=1,
                step_key=inp.idempotency_key,
                title=draft.title,
                summary=draft.summary,
                markdown=draft.markdown,
                memory_ids=citations(draft.markdown),
                author=f"agent:{self._agent.name}",
                source="agent",
            ),
            event=event_for_step(
                inp.idempotency_key,
                "agent.called",
                entity=f"post:{inp.post_id}",
                payload={
                    "agent": self._agent.name,
                    "version": 1,
                    "memory_ids_given": result.memory_ids,
                    "memory_ids_used": draft.memory_ids_used,
                    **done.call.model_dump(),
                },
            ),
        )
        return DraftPostResult(
            version=version_ref(stored, done.call), run_cost_usd=done.run_cost_usd
        )

    @activity.defn(name="revise_post")
    @translating_errors
    def revise_post(self, inp: RevisePostInput) -> PostVersionRef:
        base = self._store.posts.version(inp.post_id, inp.base_version)
        if base is None:
            raise InvalidInput(f"revise_post: post {inp.post_id!r} has no v{inp.base_version}")
        problem = check_post_edits(inp.edits)
        if problem:
            raise InvalidInput(problem)
        title = inp.edits.get("title", base.title).strip()
        markdown = inp.edits.get("body", base.markdown)
        number = base.version + 1
        stored = self._store.posts.save_version(
            base.model_copy(
                update={
                    "version": number,
                    "step_key": inp.idempotency_key,
                    "title": title,
                    "markdown": markdown,
                    "memory_ids": citations(markdown),
                    "author": inp.author,
                    "source": "operator",
                    "findings": None,
                }
            ),
            event=event_for_step(
                inp.idempotency_key,
                "post.edited",
                entity=f"post:{inp.post_id}",
                payload={
                    "version": number,
                    "based_on": base.version,
                    "author": inp.author,
                    "edited_fields": sorted(inp.edits),
                    "comment": inp.comment,
                },
            ),
        )
        return version_ref(stored)

    @activity.defn(name="fact_check_post")
    @translating_errors
    def fact_check_post(self, inp: FactCheckPostInput) -> FactCheckResult:
        version = self._store.posts.version(inp.post_id, inp.version)
        if version is None:
            raise InvalidInput(f"fact_check_post: post {inp.post_id!r} has no v{inp.version}")
        check = fact_check(version.markdown, inp.memories)
        self._store.posts.set_findings(
            inp.post_id,
            inp.version,
            check.model_dump(),
            event=event_for_step(
                inp.idempotency_key,
                "post.fact_checked",
                entity=f"post:{inp.post_id}",
                payload={
                    "version": inp.version,
                    "claims": check.claims,
                    "unsourced": len(check.unsourced),
                    "conflicts": len(check.conflicts),
                },
            ),
        )
        return FactCheckResult(
            claims=check.claims,
            unsourced=len(check.unsourced),
            conflicts=len(check.conflicts),
            findings=findings_lines(check)[:MAX_FINDINGS_SHOWN],
        )

    @activity.defn(name="set_post_status")
    @translating_errors
    def set_post_status(self, inp: SetPostStatusInput) -> None:
        self._store.posts.set_status(
            inp.post_id,
            inp.status,
            scheduled_at=inp.scheduled_at,
            event=event_for_step(
                inp.idempotency_key,
                f"post.{inp.status}",
                entity=f"post:{inp.post_id}",
                payload={
                    "scheduled_at": inp.scheduled_at.isoformat() if inp.scheduled_at else None,
                    "reason": inp.reason,
                },
            ),
        )

    @activity.defn(name="publish_post")
    @translating_errors
    def publish_post(self, inp: PublishPostInput) -> PublishPostResult:
        """Write the page and the feed, then mark the post published (a repeat rewrites the
        same files)."""
        version = self._store.posts.version(inp.post_id, inp.version)
        if version is None:
            raise InvalidInput(f"publish_post: post {inp.post_id!r} has no v{inp.version}")
        post = PublicPost(
            post_id=inp.post_id,
            version=inp.version,
            title=version.title,
            summary=version.summary,
            markdown=version.markdown,
            published_at=inp.published_at,
        )
        earlier = [
            PublicPost(
                post_id=p.post_id,
                version=v.version,
                title=v.title,
                summary=v.summary,
                markdown=v.markdown,
                published_at=p.published_at or inp.published_at,
            )
            for p, v in self._store.posts.published()
        ]
        try:
            page, feed = write_site(self._site_dir, post, earlier, self._site)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        self._store.posts.set_status(
            inp.post_id,
            "published",
            published_version=inp.version,
            published_at=inp.published_at,
            event=event_for_step(
                inp.idempotency_key,
                "post.published",
                entity=f"post:{inp.post_id}",
                payload={"version": inp.version, "page": str(page), "feed": str(feed)},
            ),
        )
        return PublishPostResult(page=str(page), feed=str(feed))

    @activity.defn(name="stage_newsletter_issue")
    @translating_errors
    def stage_newsletter_issue(self, inp: StageIssueInput) -> None:
        """Hand the approved version to the newsletter engine (its text stays in PostgreSQL)."""
        version = self._store.posts.version(inp.post_id, inp.version)
        if version is None:
            raise InvalidInput(
                f"stage_newsletter_issue: post {inp.post_id!r} has no v{inp.version}"
            )
        self._store.newsletter.stage_issue(
            inp.post_id, inp.version, version.title, public_markdown(version.markdown)
        )

    @activity.defn(name="audience_size")
    @translating_errors
    def audience_size(self, inp: AudienceInput) -> int:
        """How many confirmed subscribers the newsletter would go to now."""
        return int(self._store.subscribers.confirmed_count())


def check_post_edits(edits: dict[str, str]) -> str | None:
    """What is wrong with an edit at gate ``content``, naming the field; None if it fits."""
    if "title" in edits:
        title = edits["title"].strip()
        if not title:
            return "edits.title: must not be empty"
        if len(title) > 120 or "\n" in title:
            return "edits.title: one line of at most 120 characters"
    if "body" in edits:
        body = edits["body"]
        if not body.strip():
            return "edits.body: must not be empty"
        if len(body) > 40_000:
            return f"edits.body: {len(body)} characters, the limit is 40000"
    return None
