-- Where a canonical record is mirrored outside: a client's HubSpot contact, a proposal's
-- HubSpot deal. The kernel stays the record of truth; a row says where the copy lives, so a
-- later process (a proposal for a client onboarded earlier) finds it without a search.
-- depends: 0004_connectors

CREATE TABLE external_refs (
    entity       text NOT NULL,   -- client:<key>, proposal:<id>
    system       text NOT NULL,   -- hubspot.contact, hubspot.deal
    external_id  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, system)
);
