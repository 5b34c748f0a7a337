//! Whether to believe a backup, decided from what [`super::read`] found and
//! before anything from it is used: the manifest matches every member (and
//! lists them all), its signature verifies with the archived server key,
//! and that key is one the reader already trusts (the instance's own, or a
//! fingerprint the operator gave). `kt restore` and `kt verify backup` both
//! decide here, so they never disagree about a backup.

use std::collections::BTreeSet;

use pgp::composed::SignedPublicKey;

use super::manifest::{Manifest, Member};
use super::read::{Contents, Found};
use crate::error::{Error, Result};

/// What the reader already trusts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Expected<'a> {
    /// `--expect-fingerprint`: the wire form (`4096R/4EDC...`) or the bare
    /// 40 (or 64) hex digits.
    pub fingerprint: Option<&'a str>,
    /// The key of the instance being replaced (restore) or checked against.
    pub instance_key: Option<&'a SignedPublicKey>,
    /// Accept a backup without a kt signature (made the documented way, or
    /// by kt before backups were signed).
    pub allow_unsigned: bool,
}

/// How the backup's server key relates to what the reader trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The instance's own key.
    Instance,
    /// The fingerprint the operator gave.
    Expected,
    /// Another key than the instance's (why).
    Foreign(String),
    /// Nothing to compare with (a fresh host, no --expect-fingerprint):
    /// only the operator can tell whether this key is the right one.
    Unanchored,
}

#[derive(Debug)]
pub struct Assessment {
    /// `None`: no kt manifest (the documented manual backup).
    pub manifest: Option<Manifest>,
    pub key: SignedPublicKey,
    /// `<bits><letter>/<FINGERPRINT>` of the archived server key.
    pub fingerprint: String,
    /// The manifest's signature verified with that key.
    pub signed: bool,
    pub identity: Identity,
}

/// Runs every check. Errors are refusals (exit 2); a foreign or unanchored
/// identity is reported, for the caller's policy to decide.
pub fn assess(contents: &Contents, expected: &Expected<'_>) -> Result<Assessment> {
    let manifest = match &contents.manifest {
        Some((_, bytes)) => Some(Manifest::parse(bytes)?),
        None => None,
    };
    let pubring = contents.pubring.as_deref().ok_or_else(|| Error::usage("the backup holds no pubring.gpg (the server key)"))?;
    let key = crate::pgp::parse_public_key(pubring).map_err(|e| e.restate(crate::error::Kind::Usage, "the backup's pubring.gpg is not a valid OpenPGP key"))?;
    let fingerprint = crate::pgp::wire_fingerprint(&key);

    let signed = match (&manifest, &contents.signature) {
        (Some(m), Some((_, sig))) if m.is_signed_format() => {
            let (_, bytes) = contents.manifest.as_ref().expect("parsed above");
            crate::pgp::verify_detached(&key, bytes, sig).map_err(|e| {
                Error::usage("the backup's manifest signature does not verify with the backup's server key: the manifest was changed or signed by another key")
                    .because(e.causes().join("; "))
            })?;
            if m.server_fingerprint != fingerprint {
                return Err(Error::usage(format!(
                    "the manifest names the server key {}, the archived key is {fingerprint}",
                    m.server_fingerprint
                )));
            }
            true
        }
        (Some(m), None) if m.is_signed_format() => {
            return Err(Error::usage("the backup's manifest is of a signed format but has no signature: refused"));
        }
        (_, Some(_)) => return Err(Error::usage("the backup holds a manifest signature but no manifest of a signed format")),
        (_, None) => false,
    };
    if let Some(m) = &manifest {
        check_members(m, contents)?;
    }
    if !signed && !expected.allow_unsigned {
        let what = if manifest.is_some() { "made by kt before backups were signed" } else { "made outside kt: no kt manifest" };
        return Err(Error::usage(format!("the backup is not signed ({what}): nothing proves who made it"))
            .with_hint("if you know where this file comes from, give --allow-unsigned"));
    }
    let identity = identity(&key, &fingerprint, expected)?;
    Ok(Assessment { manifest, key, fingerprint, signed, identity })
}

fn identity(key: &SignedPublicKey, fingerprint: &str, expected: &Expected<'_>) -> Result<Identity> {
    let bare = |f: &str| f.rsplit('/').next().unwrap_or(f).replace(' ', "").to_ascii_uppercase();
    if let Some(want) = expected.fingerprint {
        if bare(want) != bare(fingerprint) {
            return Err(Error::usage(format!("the backup's server key is {fingerprint}, not the expected {want}")));
        }
        return Ok(Identity::Expected);
    }
    Ok(match expected.instance_key {
        Some(here) if crate::pgp::fingerprint_hex(&here.primary_key) == crate::pgp::fingerprint_hex(&key.primary_key) => Identity::Instance,
        Some(here) => Identity::Foreign(format!(
            "the backup's server key is {fingerprint}, this instance's is {}",
            crate::pgp::wire_fingerprint(here)
        )),
        None => Identity::Unanchored,
    })
}

/// Every member the archive holds is listed and matches; every listed
/// member is there; the dump's rows are those the manifest counted.
fn check_members(manifest: &Manifest, contents: &Contents) -> Result<()> {
    let mut problems = Vec::new();
    let mut listed = BTreeSet::new();
    for m in &manifest.members {
        let path = m.path();
        listed.insert(path.to_string());
        let found = contents.members.get(path);
        let matches = match (m, found) {
            (Member::File { size, sha256, .. }, Some(Found::File { size: s, sha256: h, .. })) => size == s && sha256.eq_ignore_ascii_case(h),
            (Member::Dir { .. }, Some(Found::Dir { .. })) => true,
            (Member::Symlink { target, .. }, Some(Found::Symlink { target: t })) => target == t,
            (_, None) => {
                problems.push(format!("{path} is missing"));
                continue;
            }
            _ => false,
        };
        if !matches {
            problems.push(format!("{path} does not match the manifest"));
        }
    }
    for path in contents.members.keys() {
        if !listed.contains(path) {
            problems.push(format!("{path} is not listed in the manifest"));
        }
    }
    match &contents.dump {
        Some((path, facts)) => {
            if *path != manifest.dump {
                problems.push(format!("the dump is {path}, the manifest names {}", manifest.dump));
            }
            if facts.row_counts != manifest.row_counts {
                problems.push(format!("the dump's row counts {:?} differ from the manifest's {:?}", facts.row_counts, manifest.row_counts));
            }
        }
        None => problems.push("the archive holds no .sql dump".into()),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(8);
        Err(Error::usage("the backup does not match its manifest").because(problems.join("; ")))
    }
}
