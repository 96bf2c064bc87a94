-- The gate projection, continued: when each gate's run started (the inbox shows it from the
-- row alone), and when Temporal's listing last confirmed the run awaits approval (the inbox
-- lists every run awaiting approval again once a row is unconfirmed or confirmed long ago).
-- depends: 0006_gates

ALTER TABLE gates ADD COLUMN run_started_at timestamptz;
ALTER TABLE gates ADD COLUMN confirmed_at timestamptz;
