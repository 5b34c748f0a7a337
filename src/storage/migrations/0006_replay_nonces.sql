-- The shared replay guard: every (client, nonce) of an authenticated
-- request, kept until its timestamp leaves the authentication window
-- (`expires`, Unix seconds; the servers delete older rows). Every `kt serve`
-- node over this database inserts here, so a request replayed to another
-- node is refused as it is on the node that first saw it. Each node inserts
-- the nonces of its requests in batches, before the requests act.
-- No foreign key to clients: short-lived bookkeeping, like write_requests.
CREATE TABLE replay_nonces (
    client  text NOT NULL,
    nonce   text NOT NULL,
    expires bigint NOT NULL,
    PRIMARY KEY (client, nonce)
);
CREATE INDEX replay_nonces_expires ON replay_nonces (expires);
