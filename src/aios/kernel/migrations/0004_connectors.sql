-- The connector fabric: the outbox marks an effect as started before it runs (so a crash in
-- the middle leaves an "in doubt" row to reconcile, never a silent gap); workers report their
-- circuit breakers and rate limits; synthetic checks keep their results.
-- depends: 0003_model_calls

ALTER TABLE outbox ADD COLUMN started_at timestamptz;
ALTER TABLE outbox ADD COLUMN finished_at timestamptz;

CREATE TABLE connector_health (
    worker          text NOT NULL,
    connector       text NOT NULL,
    breaker_state   text NOT NULL CHECK (breaker_state IN ('closed', 'open', 'half-open')),
    failures        integer NOT NULL DEFAULT 0,
    opened_at       timestamptz,
    rate_limit      text NOT NULL,
    rate_used       integer NOT NULL DEFAULT 0,
    rate_remaining  integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker, connector)
);

CREATE TABLE synthetic_checks (
    id           bigserial PRIMARY KEY,
    check_key    text NOT NULL,
    workflow_id  text NOT NULL,
    connector    text NOT NULL,
    ok           boolean NOT NULL,
    detail       text NOT NULL DEFAULT '',
    latency_ms   integer NOT NULL DEFAULT 0,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (check_key, connector)
);
CREATE INDEX synthetic_checks_connector ON synthetic_checks (connector, checked_at DESC);

CREATE TRIGGER synthetic_checks_append_only BEFORE UPDATE OR DELETE ON synthetic_checks
    FOR EACH ROW EXECUTE FUNCTION aios_append_only();
