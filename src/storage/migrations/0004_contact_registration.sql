-- Contact registration (the documented "Notification Email and GPG Keys"):
-- when a contact is added to an organization the server mails them a
-- single-use link `https://<host>:11371/?q=<token>` that expires after 12
-- hours; following it they upload their OpenPGP public key.
--
-- The token itself (base64url, no padding, of 32 bytes from the OS random
-- source: 43 characters) is never stored: only the SHA-256 of its ASCII
-- text, so a copy of the database (a backup) cannot be used to register a
-- key. A row is used at most once (`used`), and a new token for the same
-- contact does not revoke an older one that is still valid.
CREATE TABLE contact_tokens (
    token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    organization uuid NOT NULL REFERENCES organizations (uuid) ON DELETE CASCADE,
    contact      text NOT NULL,
    created      timestamptz NOT NULL DEFAULT now(),
    expires      timestamptz NOT NULL,
    used         timestamptz
);
CREATE INDEX contact_tokens_expires ON contact_tokens (expires);

-- A contact's registered OpenPGP public key: one per contact of an
-- organization (a new upload replaces the old one). `fingerprint` is the
-- primary key's, upper-case hex; `user_ids` are the key's user IDs as
-- listed back to the contact; `armored` is the whole key as uploaded
-- after it was checked.
CREATE TABLE contact_keys (
    organization uuid NOT NULL REFERENCES organizations (uuid) ON DELETE CASCADE,
    contact      text NOT NULL,
    fingerprint  text NOT NULL CHECK (fingerprint ~ '^[0-9A-F]{40}([0-9A-F]{24})?$'),
    armored      text NOT NULL,
    user_ids     text[] NOT NULL DEFAULT '{}',
    registered   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization, contact)
);
