-- Organizations group clients; a client registers with its organization's
-- auth secret (an empty secret means automatic approval).
CREATE TABLE organizations (
    uuid        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    auth_secret text NOT NULL DEFAULT '',
    contacts    text[] NOT NULL DEFAULT '{}',
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
    creation    timestamptz NOT NULL DEFAULT now(),
    expiration  timestamptz
);

-- A client is an OpenPGP key registered with one organization.
CREATE TABLE clients (
    fingerprint  text PRIMARY KEY CHECK (fingerprint ~ '^[0-9A-F]{40}([0-9A-F]{24})?$'),
    organization uuid NOT NULL REFERENCES organizations (uuid),
    public_key   bytea NOT NULL,
    state        text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled', 'pending')),
    creation     timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz
);
CREATE INDEX clients_organization ON clients (organization);

-- Deposits are opaque to the server and owned by exactly one client.
CREATE TABLE deposits (
    uuid     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner    text NOT NULL REFERENCES clients (fingerprint),
    name     text NOT NULL,
    content  bytea NOT NULL,
    created  timestamptz NOT NULL DEFAULT now(),
    updated  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deposits_owner ON deposits (owner, created);
