//! The server's OpenPGP key: generation with rpgp, storage as binary
//! OpenPGP (`secring.gpg`, `pubring.gpg`, readable by GnuPG 2.2), and the
//! fingerprint in the documented `<bits><algo-letter>/<FINGERPRINT>` form.

use std::path::Path;

use pgp::composed::{
    Deserializable, EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
    SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{CompressionAlgorithm, KeyDetails, PublicParams};
use rsa::traits::PublicKeyParts;

use crate::error::{Error, Result};

/// The kinds of server key `kt init` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKeyType {
    /// RSA 4096 primary (certify, sign) with an RSA 4096 encryption subkey:
    /// the documented default.
    Rsa4096,
    /// Ed25519 primary with a Curve25519 encryption subkey, in the v4
    /// "legacy" encodings GnuPG 2.2 understands.
    Ed25519,
}

/// A freshly generated server key pair, serialized.
pub struct ServerKey {
    pub secret: Vec<u8>,
    pub public: Vec<u8>,
    pub fingerprint: String,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey").field("secret", &"***").field("fingerprint", &self.fingerprint).finish()
    }
}

/// Generates the server key pair with the user ID
/// `Key Trustee Server <keytrustee@HOSTNAME>`.
pub fn generate_server_key(kind: ServerKeyType, hostname: &str) -> Result<ServerKey> {
    let (primary, subkey) = match kind {
        ServerKeyType::Rsa4096 => (KeyType::Rsa(4096), KeyType::Rsa(4096)),
        ServerKeyType::Ed25519 => (KeyType::Ed25519Legacy, KeyType::ECDH(ECCCurve::Curve25519Legacy)),
    };
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot generate the server OpenPGP key").because(e);
    let sub = SubkeyParamsBuilder::default()
        .key_type(subkey)
        .can_encrypt(EncryptionCaps::All)
        .build()
        .map_err(|e| failed(&e))?;
    let params = SecretKeyParamsBuilder::default()
        .key_type(primary)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(format!("Key Trustee Server <keytrustee@{hostname}>"))
        .preferred_symmetric_algorithms(
            [SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES192, SymmetricKeyAlgorithm::AES128]
                .into_iter()
                .collect(),
        )
        .preferred_hash_algorithms(
            [HashAlgorithm::Sha256, HashAlgorithm::Sha384, HashAlgorithm::Sha512].into_iter().collect(),
        )
        .preferred_compression_algorithms(
            [CompressionAlgorithm::ZLIB, CompressionAlgorithm::ZIP].into_iter().collect(),
        )
        .subkey(sub)
        .build()
        .map_err(|e| failed(&e))?;
    let secret_key = params.generate(rand::thread_rng()).map_err(|e| failed(&e))?;
    let public_key = secret_key.to_public_key();
    Ok(ServerKey {
        secret: secret_key.to_bytes().map_err(|e| failed(&e))?,
        public: public_key.to_bytes().map_err(|e| failed(&e))?,
        fingerprint: wire_fingerprint(&public_key),
    })
}

/// Reads a binary public key (`pubring.gpg`).
pub fn load_public_key(path: &Path) -> Result<SignedPublicKey> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::env(format!("cannot read the server key {}", path.display())).because_err(&e))?;
    SignedPublicKey::from_bytes(&bytes[..])
        .map_err(|e| Error::env(format!("{} is not an OpenPGP public key", path.display())).because(e))
}

/// Reads a binary secret key (`secring.gpg`).
pub fn load_secret_key(path: &Path) -> Result<SignedSecretKey> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::env(format!("cannot read the server key {}", path.display())).because_err(&e))?;
    SignedSecretKey::from_bytes(&bytes[..])
        .map_err(|e| Error::env(format!("{} is not an OpenPGP secret key", path.display())).because(e))
}

/// The key's armored form, as served at `/?a=pubkey`.
pub fn armored(key: &SignedPublicKey) -> Result<String> {
    key.to_armored_string(Default::default())
        .map_err(|e| Error::env("cannot armor the server key").because(e))
}

/// `<bits><algo-letter>/<40-hex fingerprint>`, e.g. `4096R/4EDC...`: the
/// format of `/?a=fingerprint`, after GnuPG 1's key listing letters.
pub fn wire_fingerprint(key: &impl KeyDetails) -> String {
    let (bits, letter) = match key.public_params() {
        PublicParams::RSA(p) => (p.key.n().bits(), 'R'),
        PublicParams::DSA(_) => (0, 'D'),
        PublicParams::EdDSALegacy(_) | PublicParams::Ed25519(_) => (255, 'E'),
        PublicParams::Ed448(_) => (448, 'E'),
        PublicParams::ECDSA(_) => (256, 'E'),
        PublicParams::ECDH(_) | PublicParams::X25519(_) => (255, 'e'),
        _ => (0, '?'),
    };
    format!("{bits}{letter}/{:X}", key.fingerprint())
}
