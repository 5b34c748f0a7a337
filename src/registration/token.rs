//! Registration tokens: their making, their form, their hash, their
//! lookup and their single use (migration 4, `contact_tokens`). The mail
//! side (`mail::outbox`) makes a [`LinkToken`] and stores its hash; the
//! page (`server::contact_page`) checks a token's form and looks it up by
//! the same [`hash`]: one module owns both ends, so they cannot drift.
//!
//! A token is base64url without padding of 32 random bytes from the
//! operating system (43 characters); the database holds only the SHA-256
//! of its ASCII text, so a copy of the database (a backup) cannot register
//! a key. A lookup goes by that hash through the primary key's index: its
//! timing depends on the hash, which an attacker cannot steer towards a
//! stored one, so it tells nothing useful about stored tokens.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::key::CheckedKey;

/// A registration link's token. It is a secret until used: only its text
/// goes into the mail body ([`LinkToken::expose`]); it is never logged,
/// never in Debug output, and never stored (the database keeps [`hash`]).
pub struct LinkToken(Zeroizing<String>);

impl LinkToken {
    /// A fresh token: the same generator as organization ids
    /// ([`crate::org::new_token`], the OS random source).
    pub fn new() -> LinkToken {
        LinkToken(Zeroizing::new(crate::org::new_token()))
    }

    /// The token's text, for the message body only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores for this token ([`hash`]).
    pub fn hash(&self) -> [u8; 32] {
        hash(self.expose())
    }
}

impl Default for LinkToken {
    fn default() -> Self {
        LinkToken::new()
    }
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

/// The length of a token: base64url without padding of 32 bytes.
pub const TOKEN_LEN: usize = 43;

/// Whether `token` has the form of a token (43 characters of the
/// base64url alphabet). Anything else is refused before any lookup.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the database stores for a token: the SHA-256 of its ASCII text.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whose token it is, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The organization's name.
    pub organization: String,
    pub contact: String,
    /// When the token expires (or expired), UTC, `YYYY-MM-DD HH:MM:SS UTC`.
    pub expires: String,
}

/// Where a token stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No such token (never issued, or its organization was removed).
    Unknown,
    Expired(Holder),
    Used(Holder),
    Valid(Holder),
}

/// The columns of a token row as [`Lookup`] and [`Consumed`] need them.
const HOLDER_COLUMNS: &str = "o.name, t.contact, \
     to_char(t.expires AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'), \
     t.used IS NOT NULL, t.expires <= now()";

/// Reads where the token with this hash stands. A token of an
/// organization that is not active (disabled) reads as unknown: its
/// contacts register no keys while it is disabled.
pub async fn lookup(client: &tokio_postgres::Client, token_hash: &[u8; 32]) -> Result<Lookup, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {HOLDER_COLUMNS} FROM contact_tokens t JOIN organizations o ON o.uuid = t.organization \
         WHERE t.token_sha256 = $1 AND o.state = 'active'"
    );
    let row = client.query_opt(&sql, &[&&token_hash[..]]).await?;
    Ok(match row {
        None => Lookup::Unknown,
        Some(r) => {
            let holder = Holder { organization: r.get(0), contact: r.get(1), expires: r.get(2) };
            match (r.get::<_, bool>(3), r.get::<_, bool>(4)) {
                (true, _) => Lookup::Used(holder),
                (false, true) => Lookup::Expired(holder),
                (false, false) => Lookup::Valid(holder),
            }
        }
    })
}

/// What [`consume`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// The token was valid: it is now used and the key is the contact's.
    Stored(Holder),
    /// Nothing changed: the token is unknown, expired or already used.
    Refused(Lookup),
}

/// The single statement of [`consume`]. One statement is one transaction:
/// the token row is locked (`FOR UPDATE`), checked (not used, not
/// expired), marked used and the key stored (replacing the contact's
/// earlier key) together, or nothing happens. A concurrent post with the
/// same token waits for the row lock and then finds the token used (the
/// update re-reads the row's newest version), so only one can succeed.
pub const CONSUME_SQL: &str = "\
WITH t AS (
    SELECT token_sha256, organization, contact, used, expires
    FROM contact_tokens WHERE token_sha256 = $1
        AND organization IN (SELECT uuid FROM organizations WHERE state = 'active')
    FOR UPDATE
), consumed AS (
    UPDATE contact_tokens c SET used = now() FROM t
    WHERE c.token_sha256 = t.token_sha256 AND c.used IS NULL AND c.expires > now()
    RETURNING c.organization, c.contact
), stored AS (
    INSERT INTO contact_keys (organization, contact, fingerprint, armored, user_ids)
    SELECT organization, contact, $2, $3, $4 FROM consumed
    ON CONFLICT (organization, contact) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, armored = EXCLUDED.armored,
        user_ids = EXCLUDED.user_ids, registered = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM stored) = 1, o.name, t.contact,
    to_char(t.expires AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'),
    t.used IS NOT NULL, t.expires <= now()
FROM t JOIN organizations o ON o.uuid = t.organization";

/// Uses the token and stores `key` as its contact's key, in one
/// transaction ([`CONSUME_SQL`]); a token that is not valid changes nothing.
pub async fn consume(
    client: &tokio_postgres::Client,
    token_hash: &[u8; 32],
    key: &CheckedKey,
) -> Result<Consumed, tokio_postgres::Error> {
    let row = client
        .query_opt(CONSUME_SQL, &[&&token_hash[..], &key.fingerprint, &key.armored, &key.user_ids])
        .await?;
    Ok(match row {
        None => Consumed::Refused(Lookup::Unknown),
        Some(r) => {
            let holder = Holder { organization: r.get(1), contact: r.get(2), expires: r.get(3) };
            match (r.get::<_, bool>(0), r.get::<_, bool>(4), r.get::<_, bool>(5)) {
                (true, _, _) => Consumed::Stored(holder),
                (false, true, _) => Consumed::Refused(Lookup::Used(holder)),
                (false, false, true) => Consumed::Refused(Lookup::Expired(holder)),
                // Not stored, yet neither used nor expired when read: the
                // statement's snapshot predates a concurrent use.
                (false, false, false) => Consumed::Refused(Lookup::Used(holder)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_well_formed_distinct_hidden_and_hashed_for_storage() {
        let t = LinkToken::new();
        assert!(well_formed(t.expose()), "{}", t.expose());
        assert_ne!(t.expose(), LinkToken::new().expose());
        assert_eq!(t.hash(), hash(t.expose()));
        assert_eq!(format!("{t:?}"), "LinkToken(***)");
    }

    #[test]
    fn token_form() {
        let token = crate::org::new_token();
        assert!(well_formed(&token), "{token}");
        assert!(!well_formed(&token[1..]));
        assert!(!well_formed(&format!("{}=", &token[1..])));
        assert!(!well_formed(&format!("{}/", &token[1..])));
        assert!(!well_formed(""));
        assert!(!well_formed(&format!("{}é", "a".repeat(41))), "43 bytes, not all base64url");
        // The stored form: SHA-256 of the ASCII text (what psql's
        // sha256(convert_to(token, 'UTF8')) gives).
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
