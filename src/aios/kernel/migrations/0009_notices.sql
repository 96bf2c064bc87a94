-- Notices: what the inbox shows beside the gates when something needs the operator's look but
-- is not a decision of a run (a payment that matches no invoice, an email from an unknown
-- sender, a forged operator reply, a run waiting on a paused switch). One row per key, so the
-- same outside event noticed twice opens one notice; opened and resolved are events too.
-- depends: 0008_gate_runs

CREATE TABLE notices (
    id           bigserial PRIMARY KEY,
    key          text NOT NULL UNIQUE,          -- payment/stripe/evt_1, email/<message-id>...
    kind         text NOT NULL,                 -- unmatched_payment, suspicious_email, paused...
    source       text NOT NULL DEFAULT '',      -- stripe, bank, imap, lead, pause...
    title        text NOT NULL,
    summary      text NOT NULL DEFAULT '',
    details      jsonb NOT NULL DEFAULT '{}',
    client_key   text,
    workflow_id  text,
    suspicious   boolean NOT NULL DEFAULT false,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    opened_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    resolved_by  text,
    resolution   text
);

CREATE INDEX notices_open ON notices (opened_at) WHERE status = 'open';
CREATE INDEX notices_client ON notices (client_key, opened_at DESC);
