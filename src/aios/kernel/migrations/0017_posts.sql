-- Posts of the content process: one row per post (its topic, status and publication time) and
-- its immutable versions (title, summary, Markdown body, the memory ids it cites, the
-- fact-check findings, who wrote it: the content agent or the operator). The workflow carries
-- ids and version numbers; the texts live here.
-- depends: 0009_notices

CREATE TABLE posts (
    post_id       text PRIMARY KEY,
    workflow_id   text NOT NULL,
    topic         text NOT NULL,
    status        text NOT NULL DEFAULT 'drafting'
                  CHECK (status IN ('drafting', 'approved', 'scheduled', 'published',
                                    'cancelled', 'rejected')),
    scheduled_at  timestamptz,
    published_version int,
    published_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE post_versions (
    post_id     text NOT NULL REFERENCES posts (post_id),
    version     int NOT NULL CHECK (version >= 1),
    step_key    text NOT NULL UNIQUE,              -- the idempotency key of the step that wrote it
    title       text NOT NULL,
    summary     text NOT NULL,
    markdown    text NOT NULL,
    memory_ids  jsonb NOT NULL DEFAULT '[]',       -- the memory ids the body cites
    author      text NOT NULL,                     -- agent:content, or the operator's name
    source      text NOT NULL CHECK (source IN ('agent', 'operator')),
    findings    jsonb,                             -- the fact-check of this version
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, version)
);

CREATE INDEX posts_published ON posts (published_at DESC) WHERE status = 'published';
