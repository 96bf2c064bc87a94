-- Subscribers and the newsletter: the list (double opt-in, unsubscribe, bounce), the issues the
-- content process stages for sending (the text travels by id, never in workflow history), and
-- one delivery row per issue and subscriber, so no subscriber ever gets an issue twice.
-- depends: 0009_notices

CREATE TABLE subscribers (
    id               bigserial PRIMARY KEY,
    email            text NOT NULL UNIQUE,          -- lower-cased address
    name             text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'confirmed', 'unsubscribed', 'bounced',
                                       'removed')),
    source           text NOT NULL DEFAULT '',      -- cli, import:<file>, ...
    created_at       timestamptz NOT NULL DEFAULT now(),
    confirm_sent_at  timestamptz,
    confirmed_at     timestamptz,
    unsubscribed_at  timestamptz,
    bounced_at       timestamptz,
    bounce_reason    text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscribers_confirmed ON subscribers (id) WHERE status = 'confirmed';

CREATE TABLE newsletter_issues (
    post_id    text NOT NULL,
    version    integer NOT NULL,
    subject    text NOT NULL,
    markdown   text NOT NULL,
    staged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, version)
);

-- One row per post and subscriber, whatever the version: an issue reaches a subscriber once.
CREATE TABLE newsletter_deliveries (
    post_id        text NOT NULL,
    subscriber_id  bigint NOT NULL REFERENCES subscribers (id),
    version        integer NOT NULL,
    status         text NOT NULL CHECK (status IN ('sent', 'bounced', 'skipped', 'failed')),
    message_id     text,
    detail         text NOT NULL DEFAULT '',
    workflow_id    text NOT NULL DEFAULT '',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, subscriber_id)
);
