//! Private keys of TLS certificates: every form an operator brings (PEM
//! PKCS#8, PKCS#1 or SEC1, the same in DER, encrypted PKCS#8 with a
//! password from a file or script), held as PKCS#8 in memory that is wiped
//! when dropped, and new keys made with the TLS provider (aws-lc-rs).
//!
//! The legacy encrypted PEM form (`Proc-Type: 4,ENCRYPTED`, what OpenSSL
//! 1.0 writes) is read by no maintained crate: it is refused with the exact
//! openssl command that converts it.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::PasswordSource;

/// The kinds of key `kt cert generate --new-key` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcP256,
    EcP384,
}

impl KeyAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa2048",
            KeyAlgorithm::Rsa3072 => "rsa3072",
            KeyAlgorithm::Rsa4096 => "rsa4096",
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::EcP384 => "ec-p384",
        }
    }
}

/// A private key, as PKCS#8 DER. Debug shows only its kind.
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    /// The file as read when it was an encrypted PKCS#8 PEM: installed as
    /// it is, so the key stays encrypted at rest.
    encrypted_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({}, ***)", self.describe())
    }
}

impl PrivateKey {
    /// Reads a key file. `password` is asked for only when the key is
    /// encrypted; `password_what` names where it comes from (the setting
    /// or option) in errors and in the hint when it is missing.
    pub fn read(path: &Path, password: Option<&PasswordSource>, password_what: &str) -> Result<PrivateKey> {
        let bytes = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| Error::usage(format!("cannot read the private key {}", path.display())).because_err(&e))?,
        );
        PrivateKey::parse(&bytes, &path.display().to_string(), password, password_what)
    }

    /// Reads the instance's configured key (`SSL_PRIVATE_KEY`) with the
    /// configured script: a file that cannot be read is the environment's
    /// fault (exit 3), unlike a key file named on the command line.
    pub fn read_configured(path: &Path, script: Option<&PasswordSource>) -> Result<PrivateKey> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            Error::env(format!("cannot read the TLS key {}", path.display()))
                .because_err(&e)
                .with_hint("SSL_PRIVATE_KEY in keytrustee.conf names it")
        })?);
        PrivateKey::parse(&bytes, &path.display().to_string(), script, "SSL_PRIVATE_KEY_PASSWORD_SCRIPT")
    }

    /// Parses a key from `bytes` (PEM or DER); `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &str, password: Option<&PasswordSource>, password_what: &str) -> Result<PrivateKey> {
        let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
        if !is_pem {
            let der = PrivateKeyDer::try_from(bytes.to_vec())
                .map_err(|e| Error::usage(format!("{origin} is neither a PEM nor a DER private key")).because(e))?;
            return PrivateKey::from_der(&der, origin);
        }
        let text = String::from_utf8_lossy(bytes);
        if text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(Error::usage(format!("{origin} is a legacy encrypted PEM key"))
                .because("the OpenSSL 1.0 \"Proc-Type: 4,ENCRYPTED\" form is not supported: kt reads encrypted keys as PKCS#8")
                .with_hint(format!(
                    "convert it to encrypted PKCS#8 (asks for the old and a new password): openssl pkcs8 -topk8 -v2 aes-256-cbc -in {} -out {}.pk8",
                    shell_word(origin),
                    shell_word(origin)
                )));
        }
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            let Some(source) = password else {
                return Err(Error::usage(format!("{origin} is encrypted")).with_hint(format!("give its password with {password_what}")));
            };
            let password = source.read(password_what)?;
            let (label, der) = pkcs8::der::pem::decode_vec(bytes)
                .map_err(|e| Error::usage(format!("{origin} is not valid PEM")).because(e))?;
            if label != "ENCRYPTED PRIVATE KEY" {
                return Err(Error::usage(format!("{origin} holds a {label}, not a private key")));
            }
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
                .map_err(|e| Error::usage(format!("{origin} is not an encrypted PKCS#8 key")).because(e))?;
            let doc = info.decrypt(password.as_bytes()).map_err(|_| {
                Error::usage(format!("cannot decrypt {origin}"))
                    .because(format!("wrong password from {password_what}, or a cipher kt does not read"))
            })?;
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec()));
            let mut key = PrivateKey::from_der(&der, origin)?;
            key.encrypted_pem = Some(bytes.to_vec());
            return Ok(key);
        }
        let der = PrivateKeyDer::from_pem_slice(bytes)
            .map_err(|e| Error::usage(format!("{origin} holds no usable private key")).because(e))?;
        PrivateKey::from_der(&der, origin)
    }

    /// A key in any of rustls' DER forms, converted to PKCS#8 and checked
    /// to be a key kt can sign with.
    pub fn from_der(der: &PrivateKeyDer<'_>, origin: &str) -> Result<PrivateKey> {
        let unusable = |why: String| Error::usage(format!("{origin} is not a usable private key")).because(why);
        let pkcs8: Vec<u8> = match der {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            PrivateKeyDer::Pkcs1(k) => {
                let pair = aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der()).map_err(|e| unusable(e.to_string()))?;
                pair.as_der().map_err(|e| unusable(e.to_string()))?.as_ref().to_vec()
            }
            PrivateKeyDer::Sec1(k) => {
                use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING};
                let pair = [&ECDSA_P256_SHA256_ASN1_SIGNING, &ECDSA_P384_SHA384_ASN1_SIGNING, &ECDSA_P521_SHA512_ASN1_SIGNING]
                    .into_iter()
                    .find_map(|alg| EcdsaKeyPair::from_private_key_der(alg, k.secret_sec1_der()).ok())
                    .ok_or_else(|| unusable("not an EC key on P-256, P-384 or P-521".into()))?;
                pair.to_pkcs8v1().map_err(|e| unusable(e.to_string()))?.as_ref().to_vec()
            }
            _ => return Err(unusable("an unknown key form".into())),
        };
        let key = PrivateKey { pkcs8: Zeroizing::new(pkcs8), encrypted_pem: None };
        key.key_pair().map_err(|e| unusable(e.to_string()))?;
        Ok(key)
    }

    /// Makes a new key.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<PrivateKey> {
        use rcgen::{KeyPair, RsaKeySize};
        let failed = |e: rcgen::Error| Error::env(format!("cannot generate a {} key", algorithm.name())).because(e);
        let pair = match algorithm {
            KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
            KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
            KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
            KeyAlgorithm::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyAlgorithm::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        }
        .map_err(failed)?;
        Ok(PrivateKey { pkcs8: Zeroizing::new(pair.serialize_der()), encrypted_pem: None })
    }

    /// The key for rcgen (signing certificates and requests), with the
    /// signature algorithm rcgen picks for its kind (SHA-256 for RSA and
    /// P-256, SHA-384 for P-384).
    pub fn key_pair(&self) -> std::result::Result<rcgen::KeyPair, rcgen::Error> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.as_slice()));
        rcgen::KeyPair::try_from(&der)
    }

    /// The key for rustls.
    pub fn rustls_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.to_vec()))
    }

    /// Whether the key was read encrypted (and is installed that way).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted_pem.is_some()
    }

    /// The file contents to install: the encrypted PEM as it was read, else
    /// an unencrypted PKCS#8 PEM.
    pub fn to_file_pem(&self) -> Zeroizing<Vec<u8>> {
        match &self.encrypted_pem {
            Some(pem) => Zeroizing::new(pem.clone()),
            None => Zeroizing::new(self.to_pkcs8_pem().as_bytes().to_vec()),
        }
    }

    /// The unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(super::chain::pem("PRIVATE KEY", &self.pkcs8))
    }

    /// The DER SubjectPublicKeyInfo of the key's public half.
    pub fn public_key_info(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.key_pair().map(|k| k.subject_public_key_info()).unwrap_or_default()
    }

    /// "RSA 2048", "EC P-256", ...
    pub fn describe(&self) -> String {
        super::info::describe_public_key(&self.public_key_info())
    }
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem() {
        for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::EcP384, KeyAlgorithm::Rsa2048] {
            let key = PrivateKey::generate(alg).unwrap();
            let pem = key.to_file_pem();
            let again = PrivateKey::parse(&pem, "mem", None, "x").unwrap();
            assert_eq!(again.public_key_info(), key.public_key_info());
            assert!(!format!("{key:?}").contains("BEGIN"));
        }
        assert_eq!(PrivateKey::generate(KeyAlgorithm::EcP256).unwrap().describe(), "EC P-256");
        assert_eq!(PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap().describe(), "RSA 2048");
    }

    #[test]
    fn legacy_and_encrypted_keys_say_what_to_do() {
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = PrivateKey::parse(legacy.as_bytes(), "/x/old key.pem", None, "x").unwrap_err();
        assert!(err.hint().unwrap().contains("openssl pkcs8 -topk8 -v2 aes-256-cbc -in '/x/old key.pem'"), "{err:?}");
        let enc = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = PrivateKey::parse(enc.as_bytes(), "k", None, "x").unwrap_err();
        assert!(err.message().contains("encrypted"), "{err}");
        assert!(PrivateKey::parse(b"garbage", "k", None, "x").is_err());
    }
}
