-- Inbound mail: every email the IMAP poller fetched, once per Message-ID, with what became of
-- it, and its attachments (each kept up to a size limit). Replies are matched to what AiOs
-- sent through the outbox's Message-IDs, so that lookup gets an index.
-- depends: 0009_notices

CREATE TABLE inbound_messages (
    message_key  text PRIMARY KEY,                -- sha256 of the Message-ID, 32 hex
    message_id   text NOT NULL,
    mailbox      text NOT NULL DEFAULT '',
    sender       text NOT NULL,
    sender_name  text NOT NULL DEFAULT '',
    recipients   jsonb NOT NULL DEFAULT '[]',
    subject      text NOT NULL DEFAULT '',
    in_reply_to  jsonb NOT NULL DEFAULT '[]',
    refs         jsonb NOT NULL DEFAULT '[]',
    body         text NOT NULL DEFAULT '',
    attachments  jsonb NOT NULL DEFAULT '[]',     -- [{filename, content_type, size, kept}]
    received_at  timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'handled')),
    outcome      text,
    workflow_id  text,
    handled_at   timestamptz
);

CREATE TABLE inbound_attachments (
    message_key   text NOT NULL REFERENCES inbound_messages (message_key),
    n             integer NOT NULL,
    filename      text NOT NULL,
    content_type  text NOT NULL,
    content       bytea NOT NULL,
    PRIMARY KEY (message_key, n)
);

CREATE INDEX outbox_email_message_id ON outbox ((result ->> 'message_id'))
    WHERE connector = 'email';
