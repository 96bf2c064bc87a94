-- Policies as versioned data: every version is a full snapshot of the policy values (the keys
-- of ``operations.policies.POLICY_KEYS``), who set it, when and why, and which keys changed.
-- Version 1 is seeded from the settings; ``aios policy set`` adds version N+1. A run pins the
-- version it started with. Rows are never updated or deleted.
-- Operator corrections: an edit at a gate, as field-level replacements an agent applies to its
-- next draft for a similar client; the searchable text lives in memory (same id).
-- depends: 0009_notices

CREATE TABLE policies (
    version     integer PRIMARY KEY CHECK (version >= 1),
    "values"    jsonb NOT NULL,
    changed     text[] NOT NULL DEFAULT '{}',
    set_by      text NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operator_corrections (
    id            text PRIMARY KEY,             -- the memory point id
    agent         text NOT NULL,                -- welcome, proposal...
    gate          text NOT NULL,
    client_key    text NOT NULL,
    client_name   text NOT NULL,
    workflow_id   text NOT NULL,
    run_id        text NOT NULL,
    draft_before  text NOT NULL,
    draft_after   text NOT NULL,
    replacements  jsonb NOT NULL,               -- [{"field", "before", "after"}...]
    approver      text NOT NULL,
    comment       text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX operator_corrections_agent ON operator_corrections (agent, created_at DESC);
