//! A queued text becomes a mail: PGP/MIME (RFC 3156) `multipart/signed`
//! by the server's OpenPGP key, and, for a contact with a registered key,
//! that signed entity encrypted to the key (`multipart/encrypted`, RFC 3156
//! section 6.1: signed, then encrypted).
//!
//! The signature covers the first body part exactly as lettre writes it,
//! headers included, up to the CRLF before the boundary; it is a text-mode
//! signature (type 0x01), so `gpg --verify` checks it whether the part is
//! read with CRLF or, as an mbox stores it, with LF line ends. The text
//! part is quoted-printable so no relay rewraps or re-encodes it.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use pgp::composed::{ArmorOptions, DetachedSignature, MessageBuilder, SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::KeyDetails;

use crate::error::{Error, Result};

/// The signed (and maybe encrypted) message, and whether it was encrypted.
pub struct Composed {
    pub message: Message,
    pub encrypted: bool,
}

/// The inner text part, as it is signed.
fn text_part(body: &str) -> SinglePart {
    // lettre writes line ends as CRLF; the text is given with LF.
    SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(body.to_string())
}

/// `multipart/signed` of `body` by `signer`.
pub fn signed_entity(body: &str, signer: &SignedSecretKey) -> Result<MultiPart> {
    let part = text_part(body);
    let formatted = part.formatted();
    // The CRLF before the next boundary belongs to the boundary (RFC 2046).
    let signed = formatted.strip_suffix(b"\r\n").unwrap_or(&formatted);
    let signature = DetachedSignature::sign_text_data(
        rand::thread_rng(),
        &signer.primary_key,
        &pgp::types::Password::empty(),
        HashAlgorithm::Sha256,
        signed,
    )
    .map_err(|e| Error::env("cannot sign the message with the server key").because(e))?;
    let armored = signature
        .to_armored_string(ArmorOptions::default())
        .map_err(|e| Error::env("cannot encode the message signature").because(e))?;
    let signature_part = SinglePart::builder()
        .header(ContentType::parse("application/pgp-signature; name=\"signature.asc\"").expect("a valid content type"))
        .header(ContentTransferEncoding::SevenBit)
        .body(armored);
    Ok(MultiPart::signed("application/pgp-signature".to_string(), "pgp-sha256".to_string())
        .singlepart(part)
        .singlepart(signature_part))
}

/// The whole message from `from` to `to`: signed; encrypted as well when
/// `recipient_key` is given (the contact's registered key).
pub fn compose(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    signer: &SignedSecretKey,
    recipient_key: Option<&SignedPublicKey>,
) -> Result<Composed> {
    let mailbox = |what: &str, address: &str| -> Result<Mailbox> {
        address.parse().map_err(|e| Error::usage(format!("invalid {what} address {address:?}")).because(e))
    };
    let builder = Message::builder()
        .from(mailbox("sender", from)?)
        .to(mailbox("recipient", to)?)
        .subject(subject)
        .user_agent(format!("kt {}", env!("CARGO_PKG_VERSION")));
    let signed = signed_entity(body, signer)?;
    let (multipart, encrypted) = match recipient_key {
        None => (signed, false),
        Some(key) => (encrypted_entity(&signed.formatted(), key)?, true),
    };
    let message = builder.multipart(multipart).map_err(|e| Error::env("cannot build the message").because(e))?;
    Ok(Composed { message, encrypted })
}

/// `multipart/encrypted` holding `entity` (a whole MIME entity, headers
/// included) encrypted to `key` as GnuPG 2.2 reads it (SEIPD v1).
fn encrypted_entity(entity: &[u8], key: &SignedPublicKey) -> Result<MultiPart> {
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot encrypt the message to the contact's key").because(e);
    let mut rng = rand::thread_rng();
    let mut builder = MessageBuilder::from_bytes("", entity.to_vec()).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    match encryption_subkey(key, crate::clock::unix_now()) {
        Some(sub) => builder.encrypt_to_key(&mut rng, &sub.key).map_err(|e| failed(&e))?,
        None => return Err(failed(&format!("the key {:X} has no usable encryption subkey", key.fingerprint()))),
    };
    let armored = builder.to_armored_string(&mut rng, ArmorOptions::default()).map_err(|e| failed(&e))?;
    let control = SinglePart::builder()
        .header(ContentType::parse("application/pgp-encrypted").expect("a valid content type"))
        .header(ContentTransferEncoding::SevenBit)
        .body("Version: 1\n".to_string());
    let data = SinglePart::builder()
        .header(ContentType::parse("application/octet-stream; name=\"encrypted.asc\"").expect("a valid content type"))
        .header(ContentTransferEncoding::SevenBit)
        .body(armored);
    Ok(MultiPart::encrypted("application/pgp-encrypted".to_string()).singlepart(control).singlepart(data))
}

/// The newest subkey that mail can be encrypted to at `now` (seconds), as
/// gpg picks one: a binding signature by the primary key that verifies,
/// allows encryption and has not expired; and no subkey revocation by the
/// primary key. Signatures are verified here, not only at upload, so a
/// key row changed behind the page's back does not bind a stranger's
/// subkey or revive a revoked one.
pub fn encryption_subkey(key: &SignedPublicKey, now: i64) -> Option<&pgp::composed::SignedPublicSubKey> {
    let primary = &key.primary_key;
    key.public_subkeys
        .iter()
        .filter(|sub| {
            let verified = |sig: &&pgp::packet::Signature| sig.verify_subkey_binding(primary, &sub.key).is_ok();
            let revoked =
                sub.signatures.iter().filter(verified).any(|sig| sig.typ() == Some(pgp::packet::SignatureType::SubkeyRevocation));
            !revoked
                && sub.signatures.iter().filter(verified).any(|sig| {
                    let flags = sig.key_flags();
                    let can = sig.typ() == Some(pgp::packet::SignatureType::SubkeyBinding)
                        && (flags.encrypt_comms() || flags.encrypt_storage());
                    let created = i64::from(sub.key.created_at().as_secs());
                    let alive = match sig.key_expiration_time() {
                        Some(d) if d.as_secs() > 0 => created + i64::from(d.as_secs()) > now,
                        _ => true,
                    };
                    can && alive
                })
        })
        .max_by_key(|sub| sub.key.created_at().as_secs())
}

/// Whether mail can be encrypted to `key` at `now`: a trial encryption to
/// the subkey [`encryption_subkey`] picks, so that a key the page accepts
/// is one the outbox can use (the page promises encrypted mail); the
/// reason when not.
pub fn encryptable(key: &SignedPublicKey, now: i64) -> std::result::Result<(), String> {
    let sub = encryption_subkey(key, now).ok_or_else(|| "no subkey for encryption that is bound, valid and not revoked".to_string())?;
    let mut rng = rand::thread_rng();
    let mut builder = MessageBuilder::from_bytes("", b"kt".to_vec()).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    builder.encrypt_to_key(&mut rng, &sub.key).map_err(|e| format!("its encryption subkey cannot be used: {e}"))?;
    builder.to_armored_string(&mut rng, ArmorOptions::default()).map_err(|e| format!("its encryption subkey cannot be used: {e}"))?;
    Ok(())
}

/// Parses a contact's registered (armored) key.
pub fn contact_key(armored: &str) -> Result<SignedPublicKey> {
    crate::pgp::parse_public_key(armored.as_bytes())
}
