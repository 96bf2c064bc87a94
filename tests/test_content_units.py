"""The content process's plain parts: the fact-check rule, topics and their novelty, the
public page and feed (written atomically), and the post store (real PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from aios.agents.content import (
    ContentAgent,
    ContentRequest,
    TopicCandidate,
    citations,
    claims_of,
    fact_check,
    flag_repeats,
    propose_topics,
)
from aios.agents.welcome import MemoryHint
from aios.documents.feed import PublicPost, SiteInfo, atomic_write, write_site
from aios.errors import InvalidInput
from aios.kernel.events import EventDraft
from aios.kernel.store import KernelStore
from aios.kernel.stores.posts import PostVersion

M1 = "0b6c1f4e-1d1a-4c43-9a0b-1f0e7f6b8a01"
M2 = "0b6c1f4e-1d1a-4c43-9a0b-1f0e7f6b8a02"
OUTCOME = (
    "Proposal bakery-7 v1. Outcome: accepted. Price: USD 5,600.00 (list USD 5,600.00, "
    "discount 0%). Reason: fits. Counters: none. Scope: A new website for a bakery chain."
)
ATOM = "{http://www.w3.org/2005/Atom}"


# --- the fact-check -----------------------------------------------------------------------


def test_a_claim_without_a_citation_is_unsourced_and_one_with_a_citation_is_not() -> None:
    body = (
        "# Lessons in 2026\n\n"
        "We like small scopes.\n"
        f"- The bakery proposal was accepted at USD 5,600 [mem:{M1}].\n"
        "- We cut delivery time by 40% for every client.\n"
    )
    check = fact_check(body, {M1: OUTCOME})
    # The heading's 2026 and the sentence without a marker are not claims.
    assert check.claims == 2
    assert [c.text for c in check.unsourced] == ["We cut delivery time by 40% for every client."]
    assert check.conflicts == []
    assert "1 without a source" in check.line()


def test_a_cited_claim_that_differs_from_its_memory_is_a_conflict() -> None:
    memories = {M1: OUTCOME}
    wrong_number = fact_check(f"The bakery site cost USD 4,000 [mem:{M1}].", memories)
    [conflict] = wrong_number.conflicts
    assert conflict.problem.startswith("says 4000; the cited memory says")
    assert "5600" in conflict.problem
    opposite = fact_check(f"The bakery proposal was declined [mem:{M1}].", memories)
    assert [c.problem for c in opposite.conflicts] == [
        "says declined; the cited memory says accepted"
    ]
    missing = fact_check(f"It was paid in 30 days [mem:{M2}].", memories)
    assert [c.problem for c in missing.conflicts] == [f"cites {M2}, not in memory"]
    # Numbers compare as values; a citation after the full stop belongs to its sentence.
    same = fact_check(f"The price was USD 5600. [mem:{M1}] Then we built it.", memories)
    assert same.clean and same.claims == 1


def test_code_blocks_and_images_are_not_claims() -> None:
    body = "```\nretry 3 times\n```\n![chart of 2025](x.png)\nNo claims here.\n"
    assert claims_of(body) == []
    assert citations(f"a [mem:{M1}] b [mem:{M2}] c [mem:{M1}]") == [M1, M2]


# --- topics and novelty --------------------------------------------------------------------


def test_topics_come_from_questions_outcomes_and_earlier_posts_with_their_sources() -> None:
    memories = [
        MemoryHint(id=M1, text=OUTCOME, entity="client:bakery", score=0.5),
        MemoryHint(
            id=M2,
            text="Onboarded Acme. Request: How long does a shop website take to build?",
            entity="client:acme",
            score=0.4,
        ),
        MemoryHint(
            id="p1", text="Post p1 v1: Pricing fixed scopes. Notes.", entity="post:p1", score=0.3
        ),
    ]
    topics = propose_topics(memories)
    assert [(t.origin, t.sources) for t in topics] == [
        ("question", [M2]),
        ("outcome", [M1]),
        ("earlier_post", ["p1"]),
    ]
    assert topics[0].topic.endswith("How long does a shop website take to build?")
    assert topics[1].topic == "What we learned: A new website for a bakery chain"


def test_a_topic_at_or_over_the_threshold_is_flagged_with_the_post_it_repeats() -> None:
    topic = TopicCandidate(topic="Pricing fixed scopes", origin="operator")
    flagged = flag_repeats(topic, [("old-1", 0.62), ("old-2", 0.91)], 0.85)
    assert (flagged.repeats, flagged.similarity) == ("old-2", 0.91)
    fresh = flag_repeats(topic, [("old-1", 0.84)], 0.85)
    assert (fresh.repeats, fresh.similarity) == (None, 0.84)
    assert flag_repeats(topic, [], 0.85).repeats is None


def test_the_template_draft_cites_every_claim_it_makes() -> None:
    memories = [MemoryHint(id=M1, text=OUTCOME, entity="client:bakery", score=0.6)]
    result = ContentAgent().run(
        ContentRequest(topic="Fixed prices for bakeries", operator_name="Pat", memories=memories)
    )
    draft = result.output
    assert draft.title == "Fixed prices for bakeries"
    assert citations(draft.markdown) == [M1] == draft.memory_ids_used
    check = fact_check(draft.markdown, {M1: OUTCOME})
    assert check.claims >= 1 and check.clean
    # A model's draft with a claim that cites nothing, or an id it was not given, is refused.
    request = ContentRequest(topic="t", operator_name="Pat", memories=memories)
    unsourced = draft.model_copy(update={"markdown": "We won 3 deals last month."})
    assert ContentAgent().check(unsourced, request) == (
        "markdown: a claim without [mem:<id>]: 'We won 3 deals last month.'"
    )
    invented = draft.model_copy(update={"markdown": f"It was accepted [mem:{M2}]."})
    assert ContentAgent().check(invented, request) == (
        f"markdown: {M2!r} is not one of the memories given"
    )


# --- page and feed ----------------------------------------------------------------------------


def _post(post_id: str, title: str, day: int) -> PublicPost:
    return PublicPost(
        post_id=post_id,
        version=1,
        title=title,
        summary="A summary & more",
        markdown=f"# {title}\n\nIt was accepted [mem:{M1}].\n\n<script>alert(1)</script>\n",
        published_at=datetime(2026, 11, day, 9, 0, tzinfo=UTC),
    )


def test_the_page_and_the_feed_hold_the_post_without_citations_or_raw_html(
    tmp_path: Path,
) -> None:
    site = SiteInfo(title="Notes", author="Pat", base_url="https://example.com/blog")
    older = _post("older", "Older post", 1)
    page, feed = write_site(tmp_path, _post("newer", "Newer <post>", 2), [older], site)
    html = page.read_text()
    assert page == tmp_path / "posts" / "newer.html"
    assert "<h1>Newer &lt;post&gt;</h1>" in html and "[mem:" not in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    root = ET.fromstring(feed.read_text())
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}id") for e in entries] == [
        "urn:aios:post:newer",
        "urn:aios:post:older",
    ]
    link = entries[0].find(f"{ATOM}link")
    assert link is not None and link.get("href") == "https://example.com/blog/posts/newer.html"
    assert "[mem:" not in (entries[0].findtext(f"{ATOM}content") or "")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["feed.xml", "newer.html", "posts"]


def test_a_write_that_fails_leaves_the_old_file_whole_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "feed.xml"
    atomic_write(target, "old feed")
    with pytest.raises(UnicodeEncodeError):
        atomic_write(target, "new feed \ud800 cut here")  # a lone surrogate cannot be written
    assert target.read_text() == "old feed"
    assert [p.name for p in tmp_path.iterdir()] == ["feed.xml"]
    with pytest.raises(ValueError, match="post_id"):
        write_site(tmp_path, _post("../escape", "x", 1), [], SiteInfo(title="t", author="a"))


# --- the post store ---------------------------------------------------------------------------


def _event(kind: str) -> EventDraft:
    key = f"test/{uuid.uuid4().hex}"
    return EventDraft(
        event_key=key, workflow_id="content/x", run_id="r", process="content", kind=kind
    )


def test_versions_are_kept_and_a_repeated_step_stores_one_version(database_url: str) -> None:
    store = KernelStore(database_url)
    try:
        post_id = f"units-{uuid.uuid4().hex[:8]}"
        store.posts.open(post_id, f"content/{post_id}", "Topic", event=_event("post.opened"))
        v1 = PostVersion(
            post_id=post_id,
            version=1,
            step_key=f"{post_id}/draft",
            title="T1",
            summary="S",
            markdown="Body",
            author="agent:content",
            source="agent",
        )
        assert store.posts.save_version(v1, event=_event("agent.called")).version == 1
        assert store.posts.save_version(v1, event=_event("agent.called")).title == "T1"
        v2 = v1.model_copy(update={"version": 2, "step_key": f"{post_id}/edit", "title": "T2"})
        store.posts.save_version(v2, event=_event("post.edited"))
        assert [(v.version, v.title) for v in store.posts.versions(post_id)] == [
            (1, "T1"),
            (2, "T2"),
        ]
        clash = v1.model_copy(update={"step_key": f"{post_id}/other"})
        with pytest.raises(InvalidInput, match="already has a version 1"):
            store.posts.save_version(clash, event=_event("post.edited"))
        with pytest.raises(InvalidInput, match="belongs to run"):
            store.posts.open(post_id, "content/other", "Topic", event=_event("post.opened"))
    finally:
        store.close()


def test_a_scheduled_run_takes_its_post_id_from_its_workflow_id() -> None:
    from aios.workflows.content import post_id_from

    assert post_id_from("content/planned-2026-11-30T08:00:00Z") == "planned-2026-11-30t08-00-00z"
    assert post_id_from("content/my-post") == "my-post"


def test_a_run_input_with_a_post_id_that_cannot_name_a_file_is_refused() -> None:
    from pydantic import ValidationError

    from aios.workflows.content import ContentInput

    with pytest.raises(ValidationError, match="post_id"):
        ContentInput(post_id="../Bad Id")
    assert ContentInput(post_id="good-1").post_id == "good-1"
