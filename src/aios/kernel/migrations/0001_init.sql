-- The first cut of the canonical records: clients, drafts, the append-only event log, and the
-- outbox that makes every outside effect happen at most once per idempotency key.

CREATE TABLE clients (
    client_key  text PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    notes       text NOT NULL DEFAULT '',
    segment     text NOT NULL DEFAULT 'general',
    facts       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE drafts (
    id           text PRIMARY KEY,
    workflow_id  text NOT NULL,
    run_id       text NOT NULL,
    kind         text NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    subject      text NOT NULL,
    body         text NOT NULL,
    plan         jsonb NOT NULL DEFAULT '[]'::jsonb,
    meta         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workflow_id, run_id, kind, version)
);

CREATE TABLE events (
    id           bigserial PRIMARY KEY,
    event_key    text NOT NULL UNIQUE,
    workflow_id  text NOT NULL,
    run_id       text NOT NULL,
    process      text NOT NULL,
    kind         text NOT NULL,
    entity       text,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_workflow ON events (workflow_id, run_id, id);
CREATE INDEX events_entity ON events (entity, id);

CREATE FUNCTION aios_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % is not allowed on events', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION aios_events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION aios_events_append_only();

CREATE TABLE outbox (
    idempotency_key  text PRIMARY KEY,
    connector        text NOT NULL,
    operation        text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'done')),
    attempts         integer NOT NULL DEFAULT 0,
    result           jsonb,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
