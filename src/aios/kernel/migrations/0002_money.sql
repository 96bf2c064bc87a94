-- The money side: proposals with immutable versions, invoices with gap-free numbers, credit
-- notes, and the ledger of payments and credits. Amounts are integer minor units.
-- depends: 0001_init

CREATE FUNCTION aios_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TABLE proposals (
    proposal_id        text PRIMARY KEY,
    client_key         text NOT NULL REFERENCES clients (client_key),
    workflow_id        text NOT NULL,
    scope              text NOT NULL,
    currency           text NOT NULL,
    budget_hint_minor  bigint CHECK (budget_hint_minor >= 0),
    deadline           date,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE proposal_versions (
    id              text PRIMARY KEY,
    proposal_id     text NOT NULL REFERENCES proposals (proposal_id),
    version         integer NOT NULL CHECK (version >= 1),
    source          text NOT NULL CHECK (source IN ('agent', 'edit', 'counter')),
    author          text NOT NULL,
    currency        text NOT NULL,
    line_items      jsonb NOT NULL,
    subtotal_minor  bigint NOT NULL CHECK (subtotal_minor >= 0),
    discount_pct    numeric(5, 2) NOT NULL CHECK (discount_pct >= 0 AND discount_pct <= 100),
    total_minor     bigint NOT NULL CHECK (total_minor >= 0 AND total_minor <= subtotal_minor),
    terms           text NOT NULL,
    rationale       text NOT NULL DEFAULT '',
    note            text NOT NULL DEFAULT '',
    memory_ids      jsonb NOT NULL DEFAULT '[]'::jsonb,
    based_on        text REFERENCES proposal_versions (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (proposal_id, version)
);

CREATE TRIGGER proposal_versions_append_only
    BEFORE UPDATE OR DELETE ON proposal_versions
    FOR EACH ROW EXECUTE FUNCTION aios_append_only();

-- One row per numbered series; the row lock serialises number allocation, and a number is
-- only taken by a transaction that also commits the document carrying it: no gaps.
CREATE TABLE document_counters (
    series       text PRIMARY KEY,
    last_number  bigint NOT NULL CHECK (last_number >= 0)
);
INSERT INTO document_counters (series, last_number) VALUES ('INV', 0), ('CN', 0);

CREATE TABLE invoices (
    invoice_id            text PRIMARY KEY,
    number                bigint UNIQUE,
    client_key            text NOT NULL REFERENCES clients (client_key),
    proposal_id           text REFERENCES proposals (proposal_id),
    workflow_id           text NOT NULL,
    currency              text NOT NULL,
    line_items            jsonb NOT NULL,
    total_minor           bigint NOT NULL CHECK (total_minor >= 0),
    status                text NOT NULL CHECK (status IN ('draft', 'issued', 'paid', 'void')),
    provider              text,
    provider_reference    text,
    payment_instructions  text,
    hosted_url            text,
    issued_at             timestamptz,
    due_at                timestamptz,
    paid_at               timestamptz,
    voided_at             timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'draft' OR number IS NULL),
    CHECK (status NOT IN ('issued', 'paid') OR number IS NOT NULL)
);
CREATE INDEX invoices_client ON invoices (client_key);

CREATE TABLE credit_notes (
    credit_note_id  text PRIMARY KEY,
    number          bigint NOT NULL UNIQUE,
    invoice_id      text NOT NULL REFERENCES invoices (invoice_id),
    currency        text NOT NULL,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER credit_notes_append_only
    BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION aios_append_only();

-- Payments are positive, credit notes negative; an invoice's balance is its total minus the sum.
CREATE TABLE ledger_entries (
    id            bigserial PRIMARY KEY,
    entry_key     text NOT NULL UNIQUE,
    invoice_id    text NOT NULL REFERENCES invoices (invoice_id),
    kind          text NOT NULL CHECK (kind IN ('payment', 'credit_note')),
    amount_minor  bigint NOT NULL CHECK (amount_minor <> 0),
    currency      text NOT NULL,
    reference     text NOT NULL DEFAULT '',
    occurred_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_invoice ON ledger_entries (invoice_id, id);

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION aios_append_only();

CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION aios_append_only();
