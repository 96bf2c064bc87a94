"""Content: plan a topic, draft a post, fact-check it, approve, schedule and publish it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from aios.activities.content import (
        EDITABLE_POST_FIELDS,
        AudienceInput,
        ContentActivities,
        DraftPostInput,
        FactCheckPostInput,
        FactCheckResult,
        NoveltyInput,
        OpenPostInput,
        PlanTopicsInput,
        PostVersionRef,
        PublishPostInput,
        RevisePostInput,
        SetPostStatusInput,
        StageIssueInput,
        check_post_edits,
    )
    from aios.activities.memory import MemoryActivities
    from aios.activities.models import RecallMemoryInput, RememberInput
    from aios.agents.content import CLIENT_OUTCOME_KINDS, PUBLISHED_POST_KIND, TopicCandidate
    from aios.converter import ProcessInput
    from aios.kernel.policy import GatePolicy
    from aios.memory.records import MemoryQuery, MemoryView
    from aios.memory.store import RecalledMemory
    from aios.workflows.agent_steps import AgentStepStopped, run_agent_step
    from aios.workflows.mirrors import notify, shown
    from aios.workflows.newsletter_contract import (
        NEWSLETTER_WORKFLOW,
        NewsletterReport,
        NewsletterSend,
    )
    from aios.workflows.process import Process
    from aios.workflows.progress import ContentProgress
    from aios.workflows.steps import record, step, step_key
    from aios.workflows.timeouts import KERNEL_WRITE, MEMORY

__all__ = [
    "RESCHEDULE_SIGNAL",
    "ContentInput",
    "ContentResult",
    "ContentWorkflow",
    "Reschedule",
    "content_workflow_id",
]

PROCESS_NAME = "content"
RESCHEDULE_SIGNAL = "reschedule"
TOPIC_GATE = "topic"
CONTENT_GATE = "content"
PLAN_QUERY = (
    "Questions clients asked, client outcomes, lessons from recent projects and earlier posts"
)
MAX_VERSIONS = 20


def content_workflow_id(post_id: str) -> str:
    return f"{PROCESS_NAME}/{post_id}"


class ContentInput(ProcessInput):
    """``post_id`` empty: taken from the workflow id (a scheduled planning run's id ends in its
    start time). ``topic`` empty: plan topics from memory and ask at gate ``topic``."""

    # Names the page file too: lowercase letters, digits and hyphens.
    post_id: str = Field(default="", pattern=r"^(?:[a-z0-9][a-z0-9-]{0,99})?$")
    topic: str = Field(default="", max_length=300)
    publish_at: AwareDatetime | None = None
    novelty_threshold: float = Field(default=0.85, ge=0, le=1)
    gate_policy: GatePolicy = Field(default_factory=GatePolicy)


class Reschedule(BaseModel):
    """The payload of signal ``reschedule``: ``{"publish_at": "2026-12-01T09:00:00Z"}``.

    A time in the past publishes as soon as the post is approved."""

    model_config = ConfigDict(extra="forbid")

    publish_at: AwareDatetime
    by: str = Field(default="", max_length=100)


class ContentResult(BaseModel):
    status: Literal["published", "rejected", "expired"]
    post_id: str
    version: int = 0
    reason: str = ""
    page: str | None = None
    memory_id: str | None = None
    sent: int = 0
    bounced: int = 0
    unsubscribed: int = 0


def post_id_from(workflow_id: str) -> str:
    """``content/weekly-2026-11-30T08:00:00Z`` -> ``weekly-2026-11-30t08-00-00z``."""
    raw = workflow_id.split("/", 1)[-1].lower()
    return "".join(ch if ch.isalnum() else "-" for ch in raw).strip("-")[:100] or "post"


def _is_point_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@workflow.defn(name="ContentWorkflow")
class ContentWorkflow(Process):
    """One post, from topic to publication.

    Id: ``content/<post-id>``. Input ``ContentInput``, result ``ContentResult``.

    Steps: plan (topics from memory, each with a novelty check against published posts; gate
    ``topic``, where ``edit`` with ``{"topic": "..."}`` sets the topic or picks candidate ``n``
    with ``{"topic": "2"}``, and ``approve`` takes the first candidate not flagged as a repeat);
    draft (the content agent, with the agent gates ``budget`` and ``agent``); fact-check; gate
    ``content`` (``edit`` of ``title`` and ``body`` makes a new version, fact-checked and shown
    at the gate again; ``approve`` schedules the version shown); wait until ``publish_at``;
    publish (write the page and the Atom feed, stage the newsletter issue and run child
    ``NewsletterSendWorkflow`` as ``content/<post-id>/send``, remember the post as
    ``published_post``, record the send's counts, webhook ``content.published``).

    Signals: ``decide`` (``GateDecision``) for the gates; ``reschedule`` (``Reschedule``) moves
    the publication time until publishing starts.
    Queries: ``pending_gates``; ``progress`` -> ``ContentProgress``.
    Search attributes: ``AiosProcess=content``, ``AiosAwaitingApproval``, ``AiosCostUsd``.

    End states: ``published``; ``rejected`` (the operator said no at a gate; nothing sent);
    ``expired`` (no decision in time; nothing sent); cancelled (before publication starts: the
    post is marked cancelled, nothing is sent or written; during the newsletter send: the child
    is cancelled, stops its remaining batches and reports what went out, which is recorded; the
    page stays published and the post is remembered).
    """

    NAME = PROCESS_NAME

    def __init__(self) -> None:
        super().__init__()
        self._post_id = ""
        self._stage = "planning"
        self._version = 0
        self._publish_at: datetime | None = None
        self._publishing = False
        self._moves = 0
        self._on_timer = False  # waiting on the publication timer (and for ``reschedule``)
        self.accept(RESCHEDULE_SIGNAL, Reschedule, self._reschedule)

    def _reschedule(self, move: Reschedule) -> str | None:
        if self._publishing:
            return "the post is already being published"
        if self._stage == "ended":
            return "the post is no longer going to be published"
        self._publish_at = move.publish_at
        self._moves += 1
        return None

    @workflow.query(name="progress")
    def progress(self) -> ContentProgress:
        return ContentProgress(
            process=PROCESS_NAME,
            post_id=self._post_id,
            stage=self._stage,
            version=self._version,
            publish_at=self._publish_at,
            steps_done=list(self._steps),
            pending_gates=self.pending_gates(),
            compensations_pending=self._saga.pending,
            waiting_for=RESCHEDULE_SIGNAL if self._on_timer else None,
            rejected_signals=self.signal_log.total,
            last_rejection=self.signal_log.last,
        )

    @workflow.run
    async def run(self, inp: ContentInput) -> ContentResult:
        self._post_id = inp.post_id or post_id_from(workflow.info().workflow_id)
        self._publish_at = inp.publish_at
        self.begin("", tracks_cost=True)
        return await self.guard(lambda: self._content(inp), entity=f"post:{self._post_id}")

    # --- the process ---------------------------------------------------------------------

    async def _content(self, inp: ContentInput) -> ContentResult:
        post_id = self._post_id
        entity = f"post:{post_id}"
        topic = " ".join(inp.topic.split())
        candidates = await self._plan(topic, inp.novelty_threshold)
        self._done("plan")
        if not topic or any(c.repeats for c in candidates):
            chosen = await self._pick_topic(candidates, inp)
            if isinstance(chosen, ContentResult):
                return chosen
            topic = chosen

        await step(
            ContentActivities.open_post,
            OpenPostInput(idempotency_key=step_key("open"), post_id=post_id, topic=topic),
            KERNEL_WRITE,
        )
        self._done("open")
        # Until publication starts, a run that ends by cancel or failure withdraws the post.
        self._saga.add(
            "withdraw-post",
            lambda: step(
                ContentActivities.set_post_status,
                SetPostStatusInput(
                    idempotency_key=step_key("withdrawn"),
                    post_id=post_id,
                    status="cancelled",
                    reason="the run ended before publication",
                ),
                KERNEL_WRITE,
            ),
        )
        self._stage = "drafting"
        recalled = await step(
            MemoryActivities.recall_memory,
            RecallMemoryInput(query=topic, kinds=list(CLIENT_OUTCOME_KINDS), limit=8),
            MEMORY,
        )
        known: dict[str, RecalledMemory] = {m.id: m for m in recalled.memories}
        self._done("recall")
        try:
            drafted = await run_agent_step(
                self,
                ContentActivities.draft_post,
                lambda controls: DraftPostInput(
                    idempotency_key=step_key("draft"),
                    post_id=post_id,
                    topic=topic,
                    memories=recalled.memories,
                    controls=controls,
                ),
                title=f"Post: {topic[:80]}",
                gate_policy=inp.gate_policy,
                entity=entity,
                on_cost=self.set_cost,
            )
        except AgentStepStopped as stopped:
            return await self._stop(
                "expired" if stopped.status == "expired" else "rejected", stopped.reason, entity
            )
        assert drafted.version is not None
        version = drafted.version
        self._version = version.version
        self._done("draft")

        while True:
            checked = await self._fact_check(version, known)
            summary, audience = await self._review_summary(version, checked)
            outcome = await self.wait_for_decision(
                gate=CONTENT_GATE,
                title=f"Post v{version.version}: {version.title}",
                summary=summary,
                drafted_by=version.call.label if version.call else version.author,
                policy=inp.gate_policy,
                editable_fields=list(EDITABLE_POST_FIELDS),
                entity=entity,
                check_edits=check_post_edits,
                details={
                    "post_id": post_id,
                    "version": version.version,
                    "claims": checked.claims,
                    "unsourced": checked.unsourced,
                    "conflicts": checked.conflicts,
                    "findings": checked.findings,
                    "audience": audience,
                },
            )
            if outcome.status in ("rejected", "expired"):
                reason = (
                    (outcome.decision.comment if outcome.decision else "") or "(no reason given)"
                    if outcome.status == "rejected"
                    else f"no decision within {inp.gate_policy.expire_after}"
                )
                return await self._stop(outcome.status, reason, entity)
            if outcome.status == "approved" or outcome.decision is None:
                break
            if version.version >= MAX_VERSIONS:
                raise ApplicationError(
                    f"post {post_id}: {MAX_VERSIONS} versions; start a new post",
                    type="InvalidInput",
                    non_retryable=True,
                )
            version = await step(
                ContentActivities.revise_post,
                RevisePostInput(
                    idempotency_key=step_key(f"edit/v{version.version + 1}"),
                    post_id=post_id,
                    base_version=version.version,
                    edits=outcome.decision.edits,
                    author=outcome.decision.approver,
                    comment=outcome.decision.comment,
                ),
                KERNEL_WRITE,
            )
            self._version = version.version
            self._done(f"edit/v{version.version}")

        await self._wait_for_publish_time(post_id)
        return await self._publish(version, entity)

    # --- planning ------------------------------------------------------------------------

    async def _plan(self, topic: str, threshold: float) -> list[TopicCandidate]:
        """The candidate topics (only ``topic`` when given), each checked for novelty."""
        if topic:
            candidates = [TopicCandidate(topic=topic, origin="operator")]
        else:
            sources = await step(
                MemoryActivities.recall_memory,
                RecallMemoryInput(
                    query=PLAN_QUERY,
                    kinds=[*CLIENT_OUTCOME_KINDS, PUBLISHED_POST_KIND],
                    limit=12,
                ),
                MEMORY,
            )
            planned = await step(
                ContentActivities.plan_topics,
                PlanTopicsInput(memories=sources.memories),
                KERNEL_WRITE,
            )
            candidates = planned.candidates
        matches: list[list[tuple[str, float]]] = []
        for candidate in candidates:
            similar = await step(
                MemoryActivities.recall_memory,
                RecallMemoryInput(query=candidate.topic, kinds=[PUBLISHED_POST_KIND], limit=3),
                MEMORY,
            )
            matches.append(
                [(m.provenance.entity.removeprefix("post:"), m.score) for m in similar.memories]
            )
        checked = await step(
            ContentActivities.check_topic_novelty,
            NoveltyInput(
                idempotency_key=step_key("novelty"),
                candidates=candidates,
                matches=matches,
                threshold=threshold,
            ),
            KERNEL_WRITE,
        )
        return checked.candidates

    async def _pick_topic(
        self, candidates: list[TopicCandidate], inp: ContentInput
    ) -> str | ContentResult:
        """Gate ``topic``: the operator picks or edits one; returns it, or the end result."""
        entity = f"post:{self._post_id}"

        def shown_candidate(n: int, c: TopicCandidate) -> str:
            flag = (
                f" [repeats post {c.repeats}, similarity {c.similarity:.2f}]" if c.repeats else ""
            )
            return f"{n}. {c.topic}{flag}"

        def check(edits: dict[str, str]) -> str | None:
            value = " ".join(edits.get("topic", "").split())
            if not value:
                return "edits.topic: give a topic, or the number of a candidate"
            if value.isdigit() and not 1 <= int(value) <= len(candidates):
                return f"edits.topic: {value} is not a candidate (1 to {len(candidates)})"
            if len(value) > 300:
                return "edits.topic: at most 300 characters"
            return None

        lines = [shown_candidate(n, c) for n, c in enumerate(candidates, 1)]
        outcome = await self.wait_for_decision(
            gate=TOPIC_GATE,
            title=f"Topic for post {self._post_id}",
            summary=("; ".join(lines) or "No topic found in memory: edit with a topic.")[:1500],
            policy=inp.gate_policy,
            editable_fields=["topic"],
            entity=entity,
            check_edits=check,
            details={"candidates": [c.model_dump() for c in candidates]},
        )
        self._done(f"topic:{outcome.status}")
        if outcome.status in ("rejected", "expired"):
            reason = (
                (outcome.decision.comment if outcome.decision else "") or "(no reason given)"
                if outcome.status == "rejected"
                else f"no decision within {inp.gate_policy.expire_after}"
            )
            return await self._stop(outcome.status, reason, entity)
        if outcome.status == "edited" and outcome.decision is not None:
            value = " ".join(outcome.decision.edits["topic"].split())
            return candidates[int(value) - 1].topic if value.isdigit() else value
        fresh = [c for c in candidates if not c.repeats] or candidates
        if not fresh:
            return await self._stop("rejected", "approved with no topic to write on", entity)
        return fresh[0].topic

    # --- review --------------------------------------------------------------------------

    async def _fact_check(
        self, version: PostVersionRef, known: dict[str, RecalledMemory]
    ) -> FactCheckResult:
        """Fact-check ``version`` against the memories it cites (looked up when not known)."""
        texts: dict[str, str] = {}
        for memory_id in version.memory_ids:
            if memory_id in known:
                texts[memory_id] = known[memory_id].text
            elif _is_point_id(memory_id):
                view: MemoryView = await step(
                    MemoryActivities.lookup_memory, MemoryQuery(point_id=memory_id), MEMORY
                )
                if view.record is not None:
                    texts[memory_id] = view.record.text
        checked = await step(
            ContentActivities.fact_check_post,
            FactCheckPostInput(
                idempotency_key=step_key(f"fact-check/v{version.version}"),
                post_id=version.post_id,
                version=version.version,
                memories=texts,
            ),
            KERNEL_WRITE,
        )
        self._done(f"fact-check/v{version.version}")
        return checked

    async def _review_summary(
        self, version: PostVersionRef, checked: FactCheckResult
    ) -> tuple[str, int]:
        """The gate's summary line, and the audience: confirmed subscribers now."""
        audience = await step(
            ContentActivities.audience_size,
            AudienceInput(post_id=version.post_id, version=version.version),
            KERNEL_WRITE,
            summary=f"audience size: v{version.version}",
        )
        found = (
            f"{checked.claims} claims, {checked.unsourced} without a source, "
            f"{checked.conflicts} in conflict with memory"
        )
        first = f" First: {checked.findings[0]}" if checked.findings else ""
        return (
            f"{version.summary} Fact-check: {found}.{first} Audience: {audience} confirmed "
            f"subscriber{'s' if audience != 1 else ''}. Show it: aios content show "
            f"{version.post_id}"
        ), audience

    # --- scheduling and publication ------------------------------------------------------

    async def _wait_for_publish_time(self, post_id: str) -> None:
        """Wait until ``publish_at`` (moved by ``reschedule``); a cancel here sends nothing."""
        self._stage = "scheduled"
        recorded = -1
        while True:
            at = self._publish_at
            now = workflow.now()
            if recorded != self._moves:
                recorded = self._moves
                await step(
                    ContentActivities.set_post_status,
                    SetPostStatusInput(
                        idempotency_key=step_key(f"scheduled/{recorded}"),
                        post_id=post_id,
                        status="scheduled",
                        scheduled_at=at or now,
                    ),
                    KERNEL_WRITE,
                )
                self._done(f"scheduled/{recorded}")
            if at is None or at <= now:
                break
            self.set_details(
                f"Scheduled: publishes at **{at:%Y-%m-%d %H:%M} UTC**. Move it: "
                f"`aios content move {post_id} --at <time>`; cancel: `aios cancel "
                f"{workflow.info().workflow_id}`."
            )
            moves = self._moves

            def moved_or_signalled(moves: int = moves) -> bool:
                return self._moves != moves or bool(self.signal_log.pending)

            self._on_timer = True
            try:
                await workflow.wait_condition(
                    moved_or_signalled,
                    timeout=max(at - now, timedelta(milliseconds=1)),
                    timeout_summary=f"publish post {post_id}",
                )
            except TimeoutError:
                if recorded == self._moves:
                    break
            finally:
                self._on_timer = False
            await self.signal_log.flush()
        self._publishing = True
        self._saga.discard("withdraw-post")

    async def _publish(self, version: PostVersionRef, entity: str) -> ContentResult:
        post_id = version.post_id
        self._stage = "publishing"
        self.set_details(f"Publishing post {post_id} v{version.version}.")
        published = await step(
            ContentActivities.publish_post,
            PublishPostInput(
                idempotency_key=step_key("publish"),
                post_id=post_id,
                version=version.version,
                published_at=workflow.now(),
            ),
            KERNEL_WRITE,
        )
        self._done("publish")
        await step(
            ContentActivities.stage_newsletter_issue,
            StageIssueInput(
                idempotency_key=step_key("stage-issue"), post_id=post_id, version=version.version
            ),
            KERNEL_WRITE,
        )
        report: NewsletterReport = await workflow.execute_child_workflow(
            NEWSLETTER_WORKFLOW,
            NewsletterSend(post_id=post_id, version=version.version),
            # ``<workflow id>/send`` for a run started with its post id (``content/<post-id>``);
            # from the post id, never the run's own id, so a stored history replays under any id.
            id=f"{content_workflow_id(post_id)}/send",
            result_type=NewsletterReport,
            static_summary=f"Newsletter: {version.title[:100]}",
        )
        self._done("newsletter")
        memory = await step(
            MemoryActivities.remember,
            RememberInput(
                idempotency_key=step_key("remember-post"),
                entity=entity,
                kind=PUBLISHED_POST_KIND,
                text=f"Post {post_id} v{version.version}: {version.title}. {version.summary}",
            ),
            MEMORY,
        )
        self._done("remember")
        counts = {
            "version": version.version,
            "sent": report.sent,
            "bounced": report.bounced,
            "unsubscribed": report.skipped_unsubscribed,
            "failed": report.failed,
            "cancelled": report.cancelled,
        }
        await record("post.newsletter_counts", entity, counts)
        if report.cancelled and workflow.cancellation_reason() is not None:
            # This run was cancelled during the send: the child stopped its remaining batches
            # and reported what went out (recorded above); the page stays published.
            self._stage = "ended"
            raise asyncio.CancelledError("cancelled during the newsletter send")
        notified = await notify(
            "content.published",
            {
                "post_id": post_id,
                "version": version.version,
                "title": version.title,
                "page": published.page,
                **counts,
            },
        )
        self._done(shown("webhook", notified))
        self._stage = "published"
        await self.end(
            "published",
            entity,
            {"version": version.version, "memory_id": memory.id, "page": published.page},
        )
        return await self.close(
            ContentResult(
                status="published",
                post_id=post_id,
                version=version.version,
                page=published.page,
                memory_id=memory.id,
                sent=report.sent,
                bounced=report.bounced,
                unsubscribed=report.skipped_unsubscribed,
            )
        )

    async def _stop(
        self, status: Literal["rejected", "expired"], reason: str, entity: str
    ) -> ContentResult:
        """End before publication: nothing was sent."""
        if "open" in self._steps:
            await step(
                ContentActivities.set_post_status,
                SetPostStatusInput(
                    idempotency_key=step_key("stopped"),
                    post_id=self._post_id,
                    status="rejected",
                    reason=reason,
                ),
                KERNEL_WRITE,
            )
        self._stage = "ended"
        await self.end(status, entity, {"reason": reason})
        return await self.close(
            ContentResult(
                status=status, post_id=self._post_id, version=self._version, reason=reason
            )
        )
