//! The checks of a key a contact uploads, before anything is stored.
//!
//! The documented instruction is to paste "the entire key, including the
//! BEGIN and END strings": an armored public key block, whole. The key
//! must be exactly one primary key (a keyring export of several would
//! leave it open whose key this is), its self-signatures must verify, and
//! it must be neither expired nor revoked (mail encrypted to it would be
//! unreadable, or readable by whoever made it revoke). Third-party
//! certifications are kept and not checked: they are not the key owner's
//! statements.

use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};

/// The largest key accepted, armored: ample for a key with many
/// certifications, small enough that checking it costs little.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// A key that passed every check: what is stored and shown back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedKey {
    /// The primary key's fingerprint, upper-case hex (40 digits for v4).
    pub fingerprint: String,
    /// The user IDs with a valid self-certification, not revoked.
    pub user_ids: Vec<String>,
    /// The key as checked, armored again (text around the block dropped).
    pub armored: String,
}

/// Why a key was refused; the text is shown to the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    Empty,
    TooLarge,
    SecretKey,
    NotArmored,
    Incomplete,
    Several,
    Unreadable(String),
    BadSelfSignature(String),
    NoUserId,
    Expired(String),
    Revoked,
    /// No subkey mail can be encrypted to (the reason).
    NoEncryption(String),
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Empty => write!(f, "no key was pasted"),
            KeyProblem::TooLarge => write!(f, "the key is larger than {} KiB", MAX_KEY_BYTES / 1024),
            KeyProblem::SecretKey => write!(
                f,
                "this is a secret (private) key: never send it to anyone; export the public key with gpg --armor --export YOUR-ADDRESS"
            ),
            KeyProblem::NotArmored => write!(
                f,
                "this is not an armored OpenPGP public key: paste the output of gpg --armor --export YOUR-ADDRESS, from {BEGIN} to {END}"
            ),
            KeyProblem::Incomplete => write!(f, "the key is incomplete: paste the entire key, including the BEGIN and END lines"),
            KeyProblem::Several => write!(f, "this holds more than one key: paste your own key only (gpg --armor --export YOUR-ADDRESS)"),
            KeyProblem::Unreadable(why) => write!(f, "the key cannot be read ({why})"),
            KeyProblem::BadSelfSignature(why) => write!(f, "the key's self-signatures do not verify ({why})"),
            KeyProblem::NoUserId => write!(f, "the key has no user ID signed by the key itself"),
            KeyProblem::Expired(when) => write!(f, "the key expired on {when}: extend it (gpg --quick-set-expire) and export it again"),
            KeyProblem::Revoked => write!(f, "the key is revoked"),
            KeyProblem::NoEncryption(why) => write!(
                f,
                "mail to you is encrypted to your key, and this key cannot be encrypted to ({why}): add an encryption subkey (gpg --quick-add-key FINGERPRINT cv25519 encr) and export the key again"
            ),
        }
    }
}

/// Checks an uploaded key at the time `now`.
pub fn check(text: &str, now: SystemTime) -> Result<CheckedKey, KeyProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyProblem::Empty);
    }
    if text.len() > MAX_KEY_BYTES {
        return Err(KeyProblem::TooLarge);
    }
    if text.contains("PRIVATE KEY BLOCK") {
        return Err(KeyProblem::SecretKey);
    }
    if !text.contains(BEGIN) {
        return Err(if text.contains(END) { KeyProblem::Incomplete } else { KeyProblem::NotArmored });
    }
    if !text.contains(END) {
        return Err(KeyProblem::Incomplete);
    }
    if text.matches("-----BEGIN PGP").count() > 1 {
        return Err(KeyProblem::Several);
    }
    let (keys, _) = SignedPublicKey::from_string_many(text).map_err(|e| KeyProblem::Unreadable(e.to_string()))?;
    let mut keys = keys.collect::<Result<Vec<_>, _>>().map_err(|e| KeyProblem::Unreadable(e.to_string()))?;
    let key = match keys.len() {
        0 => return Err(KeyProblem::Unreadable("no key in the block".into())),
        1 => keys.remove(0),
        _ => return Err(KeyProblem::Several),
    };
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let primary = &key.primary_key;

    // Revocation: a key revocation by the key itself. (One by a designated
    // revoker is not checked: it names another key.)
    if key.details.revocation_signatures.iter().any(|sig| sig.verify_key(primary).is_ok()) {
        return Err(KeyProblem::Revoked);
    }
    let mut user_ids = Vec::new();
    // Self-signatures that verify; the newest carries the key's current expiration.
    let mut self_signatures: Vec<&Signature> =
        key.details.direct_signatures.iter().filter(|sig| sig.verify_key(primary).is_ok()).collect();
    for user in &key.details.users {
        let mut certified = false;
        let mut revoked = false;
        for sig in &user.signatures {
            if sig.verify_certification(primary, Tag::UserId, &user.id).is_err() {
                continue; // a third party's certification, or a broken one
            }
            if sig.typ() == Some(SignatureType::CertRevocation) {
                revoked = true;
            } else {
                certified = true;
                self_signatures.push(sig);
            }
        }
        if certified && !revoked {
            user_ids.push(String::from_utf8_lossy(user.id.id()).into_owned());
        }
    }
    let newest = self_signatures.into_iter().max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
    if user_ids.is_empty() {
        return Err(KeyProblem::NoUserId);
    }
    for subkey in &key.public_subkeys {
        subkey.verify_bindings(primary).map_err(|e| KeyProblem::BadSelfSignature(e.to_string()))?;
    }
    if let Some(validity) = newest.and_then(|s| s.key_expiration_time()).map(|d| d.as_secs() as u64) {
        let expires = primary.created_at().as_secs() as u64 + validity;
        if validity > 0 && expires <= now {
            return Err(KeyProblem::Expired(utc(expires)));
        }
    }
    // The page promises that mail will be encrypted to this key: refuse a
    // key the outbox could not encrypt to (no encryption subkey, or only
    // revoked or expired ones), rather than fall back to clear text later.
    crate::mail::compose::encryptable(&key, now as i64).map_err(KeyProblem::NoEncryption)?;
    let armored = key
        .to_armored_string(Default::default())
        .map_err(|e| KeyProblem::Unreadable(e.to_string()))?;
    Ok(CheckedKey { fingerprint: format!("{:X}", primary.fingerprint()), user_ids, armored })
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC")).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// A fingerprint in groups of four, as GnuPG prints it.
pub fn grouped(fingerprint: &str) -> String {
    fingerprint.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(user_id: &str) -> String {
        let key = crate::pgp::generate_key(crate::pgp::KeySpec::Ed25519, user_id).unwrap();
        let public = SignedPublicKey::from_bytes(&key.public[..]).unwrap();
        public.to_armored_string(Default::default()).unwrap()
    }

    #[test]
    fn a_good_key_is_listed_back() {
        let armored = generated("Finn <finn@example.com>");
        let pasted = format!("Here it is:\n\n{armored}\n\nthanks");
        let checked = check(&pasted, SystemTime::now()).unwrap();
        assert_eq!(checked.user_ids, ["Finn <finn@example.com>"]);
        assert_eq!(checked.fingerprint.len(), 40);
        assert!(checked.armored.starts_with(BEGIN) && checked.armored.trim_end().ends_with(END));
        assert_eq!(grouped("ABCD1234EF"), "ABCD 1234 EF");
    }

    /// A key mail cannot be encrypted to is refused at upload, not found
    /// out at the first message (which would then leave in clear text).
    #[test]
    fn keys_without_a_usable_encryption_subkey_are_refused() {
        use pgp::composed::SignedSecretKey;
        use pgp::packet::{SignatureConfig, Subpacket, SubpacketData};
        use pgp::types::{Password, Timestamp};
        let now = SystemTime::now();
        let generated = crate::pgp::generate_key(crate::pgp::KeySpec::Ed25519, "Ann <ann@example.com>").unwrap();
        let secret = SignedSecretKey::from_bytes(&generated.secret[..]).unwrap();
        let public = SignedPublicKey::from_bytes(&generated.public[..]).unwrap();
        let armor = |k: &SignedPublicKey| k.to_armored_string(Default::default()).unwrap();
        assert!(check(&armor(&public), now).is_ok(), "the generated key has an encryption subkey");

        // Sign-only: no subkey at all.
        let mut sign_only = public.clone();
        sign_only.public_subkeys.clear();
        assert!(matches!(check(&armor(&sign_only), now), Err(KeyProblem::NoEncryption(_))), "{:?}", check(&armor(&sign_only), now));

        // The encryption subkey revoked by the key itself.
        let mut revoked = public.clone();
        let mut config = SignatureConfig::from_key(rand::thread_rng(), &secret.primary_key, SignatureType::SubkeyRevocation).unwrap();
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now())).unwrap(),
            Subpacket::regular(SubpacketData::IssuerFingerprint(secret.primary_key.fingerprint())).unwrap(),
        ];
        let revocation = config
            .sign_subkey_binding(&secret.primary_key, secret.primary_key.public_key(), &Password::empty(), &revoked.public_subkeys[0].key)
            .unwrap();
        revoked.public_subkeys[0].signatures.push(revocation);
        let problem = check(&armor(&revoked), now).unwrap_err();
        assert!(matches!(problem, KeyProblem::NoEncryption(_)), "{problem:?}");
        assert!(problem.to_string().contains("gpg --quick-add-key"), "{problem}");
    }

    #[test]
    fn bad_pastes_are_named() {
        let armored = generated("Jake <jake@example.com>");
        let now = SystemTime::now();
        assert_eq!(check("  \n", now), Err(KeyProblem::Empty));
        assert_eq!(check("hello", now), Err(KeyProblem::NotArmored));
        let head = &armored[..armored.find(END).unwrap()];
        assert_eq!(check(head, now), Err(KeyProblem::Incomplete));
        let tail = &armored[BEGIN.len()..];
        assert_eq!(check(tail, now), Err(KeyProblem::Incomplete));
        assert_eq!(check(&format!("{armored}\n{armored}"), now), Err(KeyProblem::Several));
        assert_eq!(check("-----BEGIN PGP PRIVATE KEY BLOCK-----\nx\n-----END PGP PRIVATE KEY BLOCK-----", now), Err(KeyProblem::SecretKey));
        assert_eq!(check(&"A".repeat(MAX_KEY_BYTES + 1), now), Err(KeyProblem::TooLarge));
        let garbled = format!("{BEGIN}\n\nbm90IGEga2V5\n=AAAA\n{END}\n");
        assert!(matches!(check(&garbled, now), Err(KeyProblem::Unreadable(_))), "{:?}", check(&garbled, now));
    }
}
