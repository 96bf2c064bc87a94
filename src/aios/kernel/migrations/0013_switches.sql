-- Kill switches: the operator pauses everything, one agent, one connector or one process, and
-- resumes it later. One row per switch (who changed it last, when and why); every change that
-- actually changes it is an event (switch.paused / switch.resumed), keyed by the row's version.
-- depends: 0009_notices

CREATE TABLE switches (
    scope       text NOT NULL CHECK (scope IN ('all', 'agent', 'connector', 'process')),
    name        text NOT NULL DEFAULT '',       -- '' for scope 'all'
    paused      boolean NOT NULL,
    reason      text NOT NULL DEFAULT '',
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    paused_at   timestamptz,                    -- when the current (or last) pause began
    version     integer NOT NULL DEFAULT 1,     -- bumped on every change
    PRIMARY KEY (scope, name),
    CHECK ((scope = 'all') = (name = ''))
);

CREATE INDEX switches_paused ON switches (scope, name) WHERE paused;
