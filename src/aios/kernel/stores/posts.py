"""Posts of the content process and their immutable versions (migration ``0017_posts``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from aios.errors import InvalidInput
from aios.kernel.events import EventDraft
from aios.kernel.stores.database import Store

__all__ = ["Post", "PostStatus", "PostStore", "PostVersion"]

PostStatus = Literal["drafting", "approved", "scheduled", "published", "cancelled", "rejected"]


class Post(BaseModel):
    post_id: str
    workflow_id: str
    topic: str
    status: PostStatus
    scheduled_at: datetime | None = None
    published_version: int | None = None
    published_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PostVersion(BaseModel):
    """One immutable version of a post; ``findings`` is its fact-check once it ran."""

    post_id: str
    version: int = Field(ge=1)
    step_key: str
    title: str
    summary: str
    markdown: str
    memory_ids: list[str] = Field(default_factory=list)
    author: str
    source: Literal["agent", "operator"]
    findings: dict[str, Any] | None = None
    created_at: datetime | None = None


class PostStore(Store):
    """Posts and their versions; every write is idempotent and appends its event."""

    def open(self, post_id: str, workflow_id: str, topic: str, *, event: EventDraft) -> Post:
        """Record a new post; a repeat with the same id returns the stored one."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO posts (post_id, workflow_id, topic) VALUES (%s, %s, %s)
                ON CONFLICT (post_id) DO NOTHING
                """,
                (post_id, workflow_id, topic),
            )
            row = conn.execute("SELECT * FROM posts WHERE post_id = %s", (post_id,)).fetchone()
            assert row is not None
            if row["workflow_id"] != workflow_id:
                raise InvalidInput(
                    f"post_id: {post_id!r} belongs to run {row['workflow_id']!r}; pick another id"
                )
            self._append(conn, event)
        return Post.model_validate(row)

    def get(self, post_id: str) -> Post | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM posts WHERE post_id = %s", (post_id,)).fetchone()
        return Post.model_validate(row) if row else None

    def save_version(self, version: PostVersion, *, event: EventDraft) -> PostVersion:
        """Store a new immutable version; a repeat of its ``step_key`` returns the stored one."""
        with self.transaction() as conn:
            conn.execute(
                """
                INSERT INTO post_versions (post_id, version, step_key, title, summary, markdown,
                                           memory_ids, author, source, findings)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING
                """,
                (
                    version.post_id,
                    version.version,
                    version.step_key,
                    version.title,
                    version.summary,
                    version.markdown,
                    Jsonb(version.memory_ids),
                    version.author,
                    version.source,
                    Jsonb(version.findings) if version.findings is not None else None,
                ),
            )
            row = conn.execute(
                "SELECT * FROM post_versions WHERE step_key = %s", (version.step_key,)
            ).fetchone()
            if row is None:
                raise InvalidInput(
                    f"post {version.post_id!r} already has a version {version.version}"
                )
            self._append(conn, event)
        return PostVersion.model_validate(row)

    def set_findings(
        self, post_id: str, version: int, findings: dict[str, Any], *, event: EventDraft
    ) -> None:
        """Attach the fact-check of a version (the same check gives the same findings)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE post_versions SET findings = %s WHERE post_id = %s AND version = %s",
                (Jsonb(findings), post_id, version),
            )
            self._append(conn, event)

    def version(self, post_id: str, version: int) -> PostVersion | None:
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM post_versions WHERE post_id = %s AND version = %s",
                (post_id, version),
            ).fetchone()
        return PostVersion.model_validate(row) if row else None

    def versions(self, post_id: str) -> list[PostVersion]:
        """Every version of the post, oldest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM post_versions WHERE post_id = %s ORDER BY version", (post_id,)
            ).fetchall()
        return [PostVersion.model_validate(r) for r in rows]

    def set_status(
        self,
        post_id: str,
        status: PostStatus,
        *,
        event: EventDraft,
        scheduled_at: datetime | None = None,
        published_version: int | None = None,
        published_at: datetime | None = None,
    ) -> Post:
        """Move the post to ``status`` (with its time or version where it has one)."""
        with self.transaction() as conn:
            row = conn.execute(
                """
                UPDATE posts SET status = %s,
                    scheduled_at = COALESCE(%s, scheduled_at),
                    published_version = COALESCE(%s, published_version),
                    published_at = COALESCE(%s, published_at),
                    updated_at = now()
                WHERE post_id = %s RETURNING *
                """,
                (status, scheduled_at, published_version, published_at, post_id),
            ).fetchone()
            if row is None:
                raise InvalidInput(f"post: no post with id {post_id!r}")
            self._append(conn, event)
        return Post.model_validate(row)

    def published(self, limit: int = 50) -> list[tuple[Post, PostVersion]]:
        """Published posts with their published version, newest first."""
        with self.transaction() as conn:
            rows = conn.execute(
                """
                SELECT p.post_id FROM posts p
                WHERE p.status = 'published' AND p.published_version IS NOT NULL
                ORDER BY p.published_at DESC, p.post_id LIMIT %s
                """,
                (limit,),
            ).fetchall()
        out: list[tuple[Post, PostVersion]] = []
        for r in rows:
            post = self.get(r["post_id"])
            if post is None or post.published_version is None:
                continue
            version = self.version(post.post_id, post.published_version)
            if version is not None:
                out.append((post, version))
        return out
