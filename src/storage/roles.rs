//! Database roles' passwords, set as SCRAM verifiers: `ALTER ROLE ...
//! PASSWORD 'SCRAM-SHA-256$4096:...'` stores a verifier computed here, so
//! the plaintext never travels in SQL text, where `log_statement` (or an
//! error message quoting the statement) would write it to the server log.

use crate::error::{Error, Result};
use crate::storage::pgpass::Password;

/// A SCRAM-SHA-256 verifier of `password` (fresh random salt, 4096
/// iterations), in the form PostgreSQL stores in `pg_authid.rolpassword`.
pub fn scram_verifier(password: &Password) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// The verifier `role` has now (`None`: no password). Needs a superuser
/// connection (`pg_authid` is not readable otherwise).
pub fn current_verifier(admin: &mut postgres::Client, role: &str) -> Result<Option<String>> {
    let row = admin
        .query_opt("SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1", &[&role])
        .map_err(|e| Error::env(format!("cannot read the password of the database role {role}")).because_err(&e))?
        .ok_or_else(|| Error::env(format!("the database role {role} does not exist")))?;
    Ok(row.get(0))
}

/// Sets `role`'s password to `verifier` (from [`scram_verifier`] or
/// [`current_verifier`]). Anything that is not a SCRAM verifier is refused:
/// PostgreSQL would take it as a plaintext password and hash it.
pub fn set_verifier(admin: &mut postgres::Client, role: &str, verifier: &str) -> Result<()> {
    if !is_scram_verifier(verifier) {
        return Err(Error::env(format!("refusing to set the password of {role}: not a SCRAM-SHA-256 verifier")));
    }
    if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::env(format!("refusing to alter the database role {role:?}: not a plain name")));
    }
    admin
        .batch_execute(&format!("ALTER ROLE \"{role}\" PASSWORD '{verifier}'"))
        .map_err(|e| Error::env(format!("cannot set the password of the database role {role}")).because(crate::storage::db_error_text(&e)))
}

/// Whether `verifier` (a SCRAM-SHA-256 verifier) was made from `password`:
/// its StoredKey recomputed with its salt and iteration count (RFC 5802:
/// SHA-256(HMAC(PBKDF2(password, salt, i), "Client Key"))). Lets `kt ha
/// enable` tell a role left by an interrupted run that matches the password
/// file from one that does not, without logging in.
pub fn verifier_matches(verifier: &str, password: &Password) -> bool {
    use base64::Engine;
    if !is_scram_verifier(verifier) {
        return false;
    }
    let rest = &verifier["SCRAM-SHA-256$".len()..];
    let (head, keys) = rest.split_once('$').unwrap_or_default();
    let (iterations, salt) = head.split_once(':').unwrap_or_default();
    let (stored, _) = keys.split_once(':').unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(iterations), Ok(salt), Ok(stored)) = (iterations.parse::<u32>(), b64.decode(salt), b64.decode(stored)) else {
        return false;
    };
    if iterations == 0 || iterations > 10_000_000 {
        return false;
    }
    let key = password.expose().as_bytes();
    let mut block = salt;
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha256(key, &block);
    let mut salted = u;
    for _ in 1..iterations {
        u = hmac_sha256(key, &u);
        for (s, x) in salted.iter_mut().zip(u.iter()) {
            *s ^= x;
        }
    }
    let client_key = hmac_sha256(&salted, b"Client Key");
    use sha2::Digest;
    sha2::Sha256::digest(client_key).as_slice() == stored.as_slice()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64
/// parts: nothing that needs quoting in a SQL literal.
fn is_scram_verifier(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("SCRAM-SHA-256$") else { return false };
    let Some((head, keys)) = rest.split_once('$') else { return false };
    let Some((iterations, salt)) = head.split_once(':') else { return false };
    let Some((stored, server)) = keys.split_once(':') else { return false };
    let b64 = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    !iterations.is_empty() && iterations.chars().all(|c| c.is_ascii_digit()) && b64(salt) && b64(stored) && b64(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_hides_the_password_and_is_salted() {
        let pw = Password::new("Secret123".into());
        let a = scram_verifier(&pw);
        let b = scram_verifier(&pw);
        assert!(a.starts_with("SCRAM-SHA-256$4096:"), "{a}");
        assert!(is_scram_verifier(&a), "{a}");
        assert!(!a.contains("Secret123"));
        assert_ne!(a, b, "a fresh salt each time");
    }

    #[test]
    fn a_verifier_is_checked_against_a_password() {
        let pw = Password::new("Secret123".into());
        let v = scram_verifier(&pw);
        assert!(verifier_matches(&v, &pw));
        assert!(!verifier_matches(&v, &Password::new("Secret124".into())));
        assert!(!verifier_matches("md5abc", &pw));
    }

    #[test]
    fn only_verifiers_are_accepted() {
        for bad in ["Secret123", "md5abc", "SCRAM-SHA-256$4096:abc$def", "SCRAM-SHA-256$4096:a'b$c:d", "SCRAM-SHA-256$x:ab$c:d"] {
            assert!(!is_scram_verifier(bad), "{bad}");
        }
    }
}
