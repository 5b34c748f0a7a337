-- The documented organization id (keytrustee-orgtool's "uuid"): a
-- 43-character token, base64url of 32 random bytes, given to every new
-- organization by kt. Organizations made before have none: they are listed
-- with their RFC 4122 uuid, as scripts may have recorded it.
ALTER TABLE organizations ADD COLUMN token text UNIQUE CHECK (token ~ '^[A-Za-z0-9_-]{43}$');

-- The host name a client gave when it registered, shown to the
-- administrator who approves or denies a pending client.
ALTER TABLE clients ADD COLUMN host text CHECK (length(host) <= 255);
