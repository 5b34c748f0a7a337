-- The answers to writes that carried a request id (X-KT-Request-Id), kept
-- for a day (the server prunes older rows). A client that did not hear an
-- answer sends the same request again, newly signed with the same id, and
-- gets the recorded answer instead of a second write. A row is written in
-- the same transaction as the write it answers: both exist or neither.
-- No foreign key to clients: the rows are short-lived bookkeeping and must
-- never stand in the way of removing a client.
CREATE TABLE write_requests (
    client     text NOT NULL,
    request_id text NOT NULL,
    digest     bytea NOT NULL,
    answer     text NOT NULL,
    created    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, request_id)
);
CREATE INDEX write_requests_created ON write_requests (created);
