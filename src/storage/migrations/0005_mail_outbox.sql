-- The mail outbox (issue 16): every message kt sends to an organization's
-- contacts is first a row here, inserted in the same transaction as the
-- change that causes it (a contact added, a client registered or held for
-- approval), so a mail is queued exactly when its change commits and a
-- server restart loses none. The active `kt serve` delivers queued rows in
-- the background (claimed with FOR UPDATE SKIP LOCKED, so two servers never
-- send one twice), retrying with exponential backoff until it gives up.
--
-- `body` is the plain text of the message. A registration message carries
-- its link token, a secret: the body is blanked (NULL) as soon as the
-- message is sent or given up. Signing with the server key and encrypting
-- to the contact's registered key (contact_keys) happen at delivery.
CREATE TABLE mail_outbox (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text NOT NULL CHECK (kind IN ('contact-registration', 'client-registered', 'client-pending')),
    organization uuid REFERENCES organizations (uuid) ON DELETE CASCADE,
    recipient    text NOT NULL,
    subject      text NOT NULL,
    body         text,
    -- The client a notification is about: repeated pending requests of one
    -- client are mailed at most once an hour.
    about_client text,
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    created      timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    next_attempt timestamptz NOT NULL DEFAULT now(),
    last_error   text,
    -- When it was sent, and the MTA's answer.
    sent         timestamptz,
    mta_reply    text,
    CHECK (state = 'queued' OR body IS NULL)
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt) WHERE state = 'queued';
CREATE INDEX mail_outbox_client ON mail_outbox (about_client, created) WHERE about_client IS NOT NULL;
