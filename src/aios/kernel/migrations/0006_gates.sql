-- The gate projection: one row per gate a run opened, kept by the gate events
-- (gate.requested opens it, a reminder counts, gate.decided / gate.expired close it) in the same
-- transaction as the event, so the inbox reads every waiting gate in one query instead of
-- asking each run. A run that ends while its gate waits (terminated, cancelled, reset) is
-- marked closed when the inbox sees Temporal report it closed.
-- depends: 0005_external_refs

CREATE TABLE gates (
    workflow_id       text NOT NULL,
    run_id            text NOT NULL,
    gate_key          text NOT NULL,            -- gate/welcome, gate/budget#2
    gate              text NOT NULL,            -- welcome, proposal, invoice, budget...
    process           text NOT NULL,            -- onboarding, proposal, billing...
    workflow_type     text NOT NULL DEFAULT '',
    entity            text,                     -- client:<key>, proposal:<id>, invoice:<id>
    client_key        text,
    title             text NOT NULL,
    summary           text NOT NULL DEFAULT '',
    amount            text,                     -- as shown: USD 4,500.00
    amount_minor      bigint,                   -- sortable, with currency; null when unknown
    currency          text,
    drafted_by        text,
    editable_fields   jsonb NOT NULL DEFAULT '[]',
    details           jsonb NOT NULL DEFAULT '{}',
    requested_at      timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    next_reminder_at  timestamptz,
    reminders_sent    integer NOT NULL DEFAULT 0,
    status            text NOT NULL DEFAULT 'waiting'
                      CHECK (status IN ('waiting', 'decided', 'expired', 'closed')),
    decision          text,                     -- approve, reject, edit
    approver          text,
    comment           text,
    edited_fields     jsonb NOT NULL DEFAULT '[]',
    decided_at        timestamptz,              -- decided, expired or closed
    closed_reason     text,                     -- terminated, canceled... (status closed)
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, run_id, gate_key)
);

-- The inbox: most urgent first (expiry, then the larger amount).
CREATE INDEX gates_waiting ON gates (expires_at, amount_minor DESC NULLS LAST)
    WHERE status = 'waiting';
CREATE INDEX gates_run ON gates (workflow_id, requested_at DESC);
CREATE INDEX gates_client ON gates (client_key, requested_at DESC);
CREATE INDEX gates_entity ON gates (entity, requested_at DESC);
