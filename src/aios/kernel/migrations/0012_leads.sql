-- Leads that came in by themselves (the public form at /lead, the signed JSON hook at
-- /hooks/lead): what became of each (a new onboarding run, a note on a client already known
-- or in onboarding, or nothing: a bot that filled the honeypot), and the notes leads added to
-- clients. The rows also count an address's leads for the rate limit, and a hook request's
-- signed message digest is kept so one signed request is taken once.
-- depends: 0009_notices

CREATE TABLE leads (
    id           bigserial PRIMARY KEY,
    channel      text NOT NULL CHECK (channel IN ('form', 'hook')),
    source       text NOT NULL,
    address      text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('started', 'noted', 'honeypot')),
    client_key   text,
    email        text,
    workflow_id  text,
    signed       text UNIQUE,                   -- sha256 of "<timestamp>.<body>" (hook only)
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_address ON leads (channel, address, received_at);
CREATE INDEX leads_email ON leads (lower(email), received_at DESC);

CREATE TABLE client_notes (
    id          bigserial PRIMARY KEY,
    client_key  text NOT NULL,
    source      text NOT NULL,
    body        text NOT NULL,
    lead_id     bigint REFERENCES leads (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_notes_client ON client_notes (client_key, created_at);
