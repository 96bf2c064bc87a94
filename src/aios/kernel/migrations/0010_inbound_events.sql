-- Inbound events: every payment event that comes in by itself (a Stripe webhook, a credit
-- line of an imported bank statement), once per (source, external id), with what became of
-- it. A redelivery finds its row and changes nothing; a row still 'received' was interrupted
-- before its outcome was written and is processed again (the billing run ignores a payment id
-- it already has). Refunds are ledger entries of their own kind.
-- depends: 0009_notices

CREATE TABLE inbound_events (
    id           bigserial PRIMARY KEY,
    source       text NOT NULL,                 -- stripe, bank
    external_id  text NOT NULL,                 -- evt_..., the statement line's own id
    kind         text NOT NULL,                 -- invoice.paid, refund.created, credit...
    refs         text[] NOT NULL DEFAULT '{}',  -- other ids of the same money (in_, pi_, ch_)
    details      jsonb NOT NULL DEFAULT '{}',   -- amount, currency, reference (never secrets)
    received_at  timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL DEFAULT 'received'
                 CHECK (outcome IN ('received', 'signalled', 'ignored', 'notice', 'refused')),
    workflow_id  text,                          -- the run signalled
    note         text NOT NULL DEFAULT '',      -- why ignored, refused or noticed
    finished_at  timestamptz,
    UNIQUE (source, external_id)
);

CREATE INDEX inbound_events_refs ON inbound_events USING gin (refs);

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('payment', 'credit_note', 'refund'));
