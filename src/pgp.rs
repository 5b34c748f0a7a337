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

/// The kinds of key kt generates (the server's at `kt init`, a client's at
/// `kt client register`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA 4096 primary (certify, sign) with an RSA 4096 encryption subkey:
    /// the documented default.
    Rsa4096,
    /// Ed25519 primary with a Curve25519 encryption subkey, in the v4
    /// "legacy" encodings GnuPG 2.2 understands.
    Ed25519,
}

/// A freshly generated key pair, serialized as binary OpenPGP.
pub struct GeneratedKey {
    pub secret: Vec<u8>,
    pub public: Vec<u8>,
    /// `<bits><letter>/<FINGERPRINT>`
    pub fingerprint: String,
}

impl GeneratedKey {
    /// The bare 40-hex fingerprint.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint.split('/').nth(1).unwrap_or_default().to_string()
    }
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey").field("secret", &"***").field("fingerprint", &self.fingerprint).finish()
    }
}

/// Generates the server key pair with the user ID
/// `Key Trustee Server <keytrustee@HOSTNAME>`.
pub fn generate_server_key(kind: KeySpec, hostname: &str) -> Result<GeneratedKey> {
    generate_key(kind, &format!("Key Trustee Server <keytrustee@{hostname}>"))
}

/// Generates a key pair (certify+sign primary, encryption subkey), no
/// passphrase: the files holding it are 0600 in a 0700 directory.
pub fn generate_key(kind: KeySpec, user_id: &str) -> Result<GeneratedKey> {
    let (primary, subkey) = match kind {
        KeySpec::Rsa4096 => (KeyType::Rsa(4096), KeyType::Rsa(4096)),
        KeySpec::Ed25519 => (KeyType::Ed25519Legacy, KeyType::ECDH(ECCCurve::Curve25519Legacy)),
    };
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot generate an OpenPGP key").because(e);
    let sub = SubkeyParamsBuilder::default()
        .key_type(subkey)
        .can_encrypt(EncryptionCaps::All)
        .build()
        .map_err(|e| failed(&e))?;
    let params = SecretKeyParamsBuilder::default()
        .key_type(primary)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(user_id.to_string())
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
    Ok(GeneratedKey {
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

/// Parses a public key sent by a client: armored or binary. GnuPG exports
/// from a keyring may carry trust packets, on which rpgp's parser silently
/// drops user IDs and subkeys: they are filtered out first.
pub fn parse_public_key(data: &[u8]) -> Result<SignedPublicKey> {
    let bad = |e: &dyn std::fmt::Display| Error::usage("not a valid OpenPGP public key").because(e);
    let binary = if data.trim_ascii_start().starts_with(b"-----BEGIN PGP") {
        let text = std::str::from_utf8(data).map_err(|e| bad(&e))?;
        let (key, _) = SignedPublicKey::from_string(text).map_err(|e| bad(&e))?;
        return check_public(key);
    } else {
        data
    };
    let packets: Vec<pgp::packet::Packet> = pgp::packet::PacketParser::new(binary)
        .filter_map(|p| p.ok())
        .filter(|p| pgp::packet::PacketTrait::tag(p) != pgp::types::Tag::Trust)
        .collect();
    let key = SignedPublicKey::from_packets(packets.into_iter().map(Ok).peekable())
        .next()
        .ok_or_else(|| Error::usage("not a valid OpenPGP public key").because("no key found"))?
        .map_err(|e| bad(&e))?;
    check_public(key)
}

fn check_public(key: SignedPublicKey) -> Result<SignedPublicKey> {
    key.verify_bindings()
        .map_err(|e| Error::usage("the OpenPGP public key's self-signatures do not verify").because(e))?;
    Ok(key)
}

/// A public key as binary OpenPGP.
pub fn serialize_public(key: &SignedPublicKey) -> Result<Vec<u8>> {
    key.to_bytes().map_err(|e| Error::env("cannot encode an OpenPGP key").because(e))
}

/// The bare 40-hex fingerprint of a key.
pub fn fingerprint_hex(key: &impl KeyDetails) -> String {
    format!("{:X}", key.fingerprint())
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

/// A detached binary signature (a bare OpenPGP signature packet, what
/// `gpg --detach-sign` writes) of `data` by the key's primary key: kt signs
/// each backup's manifest with the server key this way, so `gpg --verify
/// SIG MANIFEST` checks it once the server's public key is imported, while
/// the encrypted message itself stays unsigned (GnuPG exits 2 on a signed
/// message whose signer it does not know, which breaks `gpg -d ... && tar`).
pub fn sign_detached(key: &SignedSecretKey, data: &[u8]) -> Result<Vec<u8>> {
    let signature = pgp::composed::DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &pgp::types::Password::empty(),
        HashAlgorithm::Sha256,
        data,
    )
    .map_err(|e| Error::env("cannot sign with the server key").because(e))?;
    signature.to_bytes().map_err(|e| Error::env("cannot encode a signature").because(e))
}

/// Checks a detached signature made by [`sign_detached`] (or by GnuPG) of
/// `data` against the primary key of `key`. Any failure is bad input.
pub fn verify_detached(key: &SignedPublicKey, data: &[u8], signature: &[u8]) -> Result<()> {
    let bad = |e: &dyn std::fmt::Display| Error::usage("the signature does not verify").because(e);
    let mut signatures = pgp::composed::DetachedSignature::from_bytes_many(signature).map_err(|e| bad(&e))?;
    let sig = match (signatures.next(), signatures.next()) {
        (Some(Ok(sig)), None) => sig,
        (Some(Err(e)), _) => return Err(bad(&e)),
        (None, _) => return Err(bad(&"no signature packet")),
        (Some(_), Some(_)) => return Err(bad(&"more than one signature")),
    };
    sig.verify(&key.primary_key, data).map_err(|e| bad(&e))
}
