//! The contact registration link's token: 32 bytes from the operating
//! system's random source, base64url without padding (43 characters).
//! It is a secret until used: never logged, never in Debug output, and
//! never stored; the database keeps only the SHA-256 of its ASCII text
//! (`contact_tokens.token_sha256`), so a copy of the database cannot be
//! used to register a key.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub struct LinkToken(Zeroizing<String>);

impl LinkToken {
    /// A fresh token from the OS random source (getrandom), not a
    /// user-space generator.
    pub fn new() -> LinkToken {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
        LinkToken(Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..])))
    }

    /// The token's text, for the message body only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores: SHA-256 of the token's ASCII text.
    pub fn sha256(&self) -> Vec<u8> {
        hash(self.expose())
    }
}

impl Default for LinkToken {
    fn default() -> Self {
        LinkToken::new()
    }
}

/// SHA-256 of a token's text, as stored in `contact_tokens`.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_hashed_for_storage() {
        let t = LinkToken::new();
        assert_eq!(t.expose().len(), 43);
        assert!(t.expose().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(t.expose(), LinkToken::new().expose());
        assert_eq!(t.sha256(), Sha256::digest(t.expose().as_bytes()).to_vec());
        assert_eq!(t.sha256().len(), 32);
        assert_eq!(format!("{t:?}"), "LinkToken(***)");
    }
}
