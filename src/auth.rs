//! The request-signing protocol between clients and the server.
//!
//! Every deposit request (and the registration) carries four headers:
//!
//! | header | value |
//! | --- | --- |
//! | `X-KT-Client` | the client key's fingerprint (40 hex digits) |
//! | `X-KT-Timestamp` | Unix time in seconds when the request was signed |
//! | `X-KT-Nonce` | 16 to 64 characters of `[A-Za-z0-9_-]`, never reused |
//! | `X-KT-Signature` | base64 of a binary OpenPGP detached signature |
//!
//! The signature is made with the client's registered key over the
//! canonical text built by [`canonical`]: a version line, the method, the
//! path with its query, the timestamp, the nonce and the SHA-256 of the body,
//! one per line. Binding the body hash and the path means a signature
//! authorizes exactly one request; the timestamp window and the nonce stop
//! replays.

use base64::Engine;
use pgp::composed::{DetachedSignature, Deserializable, SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize;
use pgp::types::Password;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const HEADER_CLIENT: &str = "x-kt-client";
pub const HEADER_TIMESTAMP: &str = "x-kt-timestamp";
pub const HEADER_NONCE: &str = "x-kt-nonce";
pub const HEADER_SIGNATURE: &str = "x-kt-signature";

const VERSION_LINE: &str = "KT-AUTH-1";

/// The text a client signs for one request.
pub fn canonical(method: &str, path_and_query: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{VERSION_LINE}\n{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body_hash}\n")
}

/// The four header values of a signed request.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    pub client: String,
    pub timestamp: i64,
    pub nonce: String,
    pub signature: String,
}

/// Signs one request with the client's secret key.
pub fn sign_request(
    key: &SignedSecretKey,
    fingerprint: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<SignedHeaders> {
    sign_request_at(key, fingerprint, method, path_and_query, body, crate::clock::unix_now(), &random_nonce())
}

/// Signs one request with an explicit timestamp and nonce (tests of the
/// freshness and replay checks use it to make stale and repeated requests).
pub fn sign_request_at(
    key: &SignedSecretKey,
    fingerprint: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> Result<SignedHeaders> {
    let nonce = nonce.to_string();
    let text = canonical(method, path_and_query, timestamp, &nonce, body);
    let signature = DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        text.as_bytes(),
    )
    .map_err(|e| Error::env("cannot sign the request").because(e))?;
    let bytes = signature.to_bytes().map_err(|e| Error::env("cannot encode the signature").because(e))?;
    Ok(SignedHeaders {
        client: fingerprint.to_string(),
        timestamp,
        nonce,
        signature: base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

/// Checks `signature` (base64) over `text` with `key`.
pub fn verify(key: &SignedPublicKey, text: &str, signature_b64: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    // Bound the work an attacker can cause: a real signature is small.
    if bytes.len() > 4096 {
        return false;
    }
    let Ok(signature) = DetachedSignature::from_bytes(&bytes[..]) else { return false };
    signature.verify(&key.primary_key, text.as_bytes()).is_ok()
}

/// Whether a nonce has the allowed shape.
pub fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a fingerprint is 40 upper-case hex digits (v4 keys).
pub fn valid_fingerprint(fpr: &str) -> bool {
    fpr.len() == 40 && fpr.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// 32 random hex digits.
pub fn random_nonce() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgp::{generate_key, KeySpec};

    #[test]
    fn a_signature_binds_every_part_of_the_request() {
        let key = generate_key(KeySpec::Ed25519, "Test <t@example.com>").unwrap();
        let secret = SignedSecretKey::from_bytes(&key.secret[..]).unwrap();
        let public = SignedPublicKey::from_bytes(&key.public[..]).unwrap();
        let fpr = key.fingerprint_hex();
        let h = sign_request(&secret, &fpr, "PUT", "/deposits?name=a", b"body").unwrap();
        let text = canonical("PUT", "/deposits?name=a", h.timestamp, &h.nonce, b"body");
        assert!(verify(&public, &text, &h.signature));
        for (m, p, t, n, b) in [
            ("GET", "/deposits?name=a", h.timestamp, h.nonce.as_str(), &b"body"[..]),
            ("PUT", "/deposits?name=b", h.timestamp, &h.nonce, b"body"),
            ("PUT", "/deposits?name=a", h.timestamp + 1, &h.nonce, b"body"),
            ("PUT", "/deposits?name=a", h.timestamp, "0000000000000000", b"body"),
            ("PUT", "/deposits?name=a", h.timestamp, &h.nonce, b"bodY"),
        ] {
            assert!(!verify(&public, &canonical(m, p, t, n, b), &h.signature));
        }
        assert!(!verify(&public, &text, "not base64!"));
    }
}
