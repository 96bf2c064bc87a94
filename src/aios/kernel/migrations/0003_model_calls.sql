-- The cost ledger of agent calls: one row per model call (and per template run, at zero cost),
-- keyed by the call's idempotency key, so a retried activity reuses a reply it already paid
-- for instead of calling the model again. Append-only, like the event log.
-- depends: 0002_money

CREATE TABLE model_calls (
    call_key        text PRIMARY KEY,
    agent           text NOT NULL,
    prompt_version  text NOT NULL,
    workflow_id     text NOT NULL,
    run_id          text NOT NULL,
    process         text NOT NULL,
    tier            text NOT NULL,
    provider        text NOT NULL,
    model           text NOT NULL,
    input_tokens    integer NOT NULL CHECK (input_tokens >= 0),
    output_tokens   integer NOT NULL CHECK (output_tokens >= 0),
    cost_usd        numeric(14, 6) NOT NULL CHECK (cost_usd >= 0),
    confidence      double precision CHECK (confidence >= 0 AND confidence <= 1),
    outcome         text NOT NULL CHECK (
        outcome IN ('accepted', 'invalid', 'low_confidence', 'refused', 'template')
    ),
    reason          text NOT NULL DEFAULT '',
    content         text,
    over_budget     boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX model_calls_created_at ON model_calls (created_at);
CREATE INDEX model_calls_run ON model_calls (workflow_id, run_id);

CREATE TRIGGER model_calls_append_only BEFORE UPDATE OR DELETE ON model_calls
    FOR EACH ROW EXECUTE FUNCTION aios_append_only();
