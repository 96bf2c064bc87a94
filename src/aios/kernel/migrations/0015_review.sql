-- What `aios review` reads: events of some kinds in a time window (gates decided, policy
-- verdicts, proposals sent...) and every event in a window (end events of any process). With
-- 200,000 events over a year they take `aios review --week` from 0.93 s to 0.06 s and
-- `--month` from 0.88 s to 0.19 s (benchmarks/review_export.py, 2 cores at load 7).
-- depends: 0009_notices

CREATE INDEX events_kind_time ON events (kind, occurred_at);
CREATE INDEX events_time ON events (occurred_at);
