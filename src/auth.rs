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
//! | `X-KT-Request-Id` | optional, on writes: 16 to 64 characters of `[A-Za-z0-9_-]`, the same on every retry of one operation |
//!
//! The signature is made with the client's registered key over the
//! canonical text built by [`canonical`]: a version line, the method, the
//! path with its query, the timestamp, the nonce and the SHA-256 of the body,
//! one per line. Binding the body hash and the path means a signature
//! authorizes exactly one request; the timestamp window and the nonce stop
//! replays.
//!
//! A request that carries a request id is signed over [`canonical_with_id`]:
//! version line `KT-AUTH-2` and the id as a last line, so that nobody can
//! move a signed write under another id. Requests without one keep the
//! `KT-AUTH-1` text, so older clients work unchanged against this server
//! (a client that sends an id needs a server that knows it: upgrade the
//! servers first). The server keeps the answer to a write with an id for a
//! day; a retry (new timestamp, nonce and signature, same id) gets that
//! answer instead of a second write. The replay guard is untouched: the
//! same signed request sent twice is still refused.

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
pub const HEADER_REQUEST_ID: &str = "x-kt-request-id";

const VERSION_LINE: &str = "KT-AUTH-1";
const VERSION_LINE_WITH_ID: &str = "KT-AUTH-2";

/// The text a client signs for one request.
pub fn canonical(method: &str, path_and_query: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{VERSION_LINE}\n{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body_hash}\n")
}

/// The text a client signs for a request: [`canonical`] without a request
/// id, the `KT-AUTH-2` text (the id on a last line) with one.
pub fn canonical_with_id(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
    request_id: Option<&str>,
) -> String {
    match request_id {
        None => canonical(method, path_and_query, timestamp, nonce, body),
        Some(id) => {
            let body_hash = hex::encode(Sha256::digest(body));
            format!("{VERSION_LINE_WITH_ID}\n{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body_hash}\n{id}\n")
        }
    }
}

/// What a retried request must repeat exactly: method, path with query
/// and body (SHA-256 over them). A request id that comes back with another
/// digest is refused rather than answered from the first request's record.
pub fn request_digest(method: &str, path_and_query: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path_and_query.as_bytes());
    h.update(b"\n");
    h.update(Sha256::digest(body));
    h.finalize().to_vec()
}

/// The four header values of a signed request.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    pub client: String,
    pub timestamp: i64,
    pub nonce: String,
    pub signature: String,
    /// `X-KT-Request-Id`, when the request carries one (it is signed).
    pub request_id: Option<String>,
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

/// Signs one request that carries a request id (a write the client may
/// retry: every retry is signed afresh with the same id).
pub fn sign_request_with_id(
    key: &SignedSecretKey,
    fingerprint: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    request_id: &str,
) -> Result<SignedHeaders> {
    sign(key, fingerprint, method, path_and_query, body, crate::clock::unix_now(), &random_nonce(), Some(request_id))
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
    sign(key, fingerprint, method, path_and_query, body, timestamp, nonce, None)
}

#[allow(clippy::too_many_arguments)]
fn sign(
    key: &SignedSecretKey,
    fingerprint: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
    request_id: Option<&str>,
) -> Result<SignedHeaders> {
    let nonce = nonce.to_string();
    let text = canonical_with_id(method, path_and_query, timestamp, &nonce, body, request_id);
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
        request_id: request_id.map(str::to_string),
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

/// Whether a request id has the allowed shape (the nonce's).
pub fn valid_request_id(id: &str) -> bool {
    valid_nonce(id)
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

    #[test]
    fn a_request_id_is_signed_and_changes_nothing_without_one() {
        let key = generate_key(KeySpec::Ed25519, "Test <t@example.com>").unwrap();
        let secret = SignedSecretKey::from_bytes(&key.secret[..]).unwrap();
        let public = SignedPublicKey::from_bytes(&key.public[..]).unwrap();
        let fpr = key.fingerprint_hex();
        let id = random_nonce();
        let h = sign_request_with_id(&secret, &fpr, "POST", "/deposits?name=a", b"x", &id).unwrap();
        assert_eq!(h.request_id.as_deref(), Some(id.as_str()));
        let with = |id: Option<&str>| canonical_with_id("POST", "/deposits?name=a", h.timestamp, &h.nonce, b"x", id);
        assert!(verify(&public, &with(Some(&id)), &h.signature));
        // Not under another id, nor as a request without one.
        assert!(!verify(&public, &with(Some("0123456789abcdef0123")), &h.signature));
        assert!(!verify(&public, &with(None), &h.signature));
        assert_eq!(with(None), canonical("POST", "/deposits?name=a", h.timestamp, &h.nonce, b"x"));
        assert!(valid_request_id(&id) && !valid_request_id("short") && !valid_request_id(&"a/".repeat(10)));
        assert_ne!(request_digest("POST", "/a", b"x"), request_digest("POST", "/a", b"y"));
        assert_ne!(request_digest("POST", "/a", b"x"), request_digest("PUT", "/a", b"x"));
    }
}
