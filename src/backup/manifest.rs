//! The backup manifest: what a kt backup holds, member by member, signed by
//! the server's OpenPGP key.
//!
//! The manifest (`kts_bak_<host>_<stamp>.manifest.json`) lists every other
//! member of the archive with its kind, mode and, for files, size and
//! SHA-256; for links, their target. Its detached signature
//! (`....manifest.json.sig`, binary OpenPGP, by the server key) follows it.
//! A reader trusts the archive only when the signature verifies with a key
//! it already trusts (the instance being replaced, or a fingerprint the
//! operator gives), every member matches its line, and no member is
//! missing from it: the signature then covers every byte of the backup.
//!
//! Format versions: `kt-backup/2` (this one, signed, every member listed)
//! and `kt-backup/1` (kt before signatures; read only as an unsigned
//! backup). Anything else is refused: a reader must not guess.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The format this kt writes.
pub const FORMAT: &str = "kt-backup/2";
/// The format kt wrote before backups were signed.
pub const FORMAT_UNSIGNED: &str = "kt-backup/1";

/// The manifest member's name ends so; its signature's adds [`SIG_SUFFIX`].
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
pub const SIG_SUFFIX: &str = ".sig";

/// Manifests are small: a confdir's worth of lines. Anything larger is not
/// one of kt's, and is refused before it is read whole.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub hostname: String,
    /// `<bits><letter>/<FINGERPRINT>` of the server key.
    pub server_fingerprint: String,
    pub kt_version: String,
    pub schema_version: i64,
    pub confdir: PathBuf,
    pub home: PathBuf,
    /// The dump's member path.
    pub dump: String,
    /// Primary key fingerprints the message was encrypted to.
    #[serde(default)]
    pub encrypted_to: Vec<String>,
    pub row_counts: BTreeMap<String, u64>,
    pub members: Vec<Member>,
}

/// One archive member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Member {
    File { path: String, mode: String, size: u64, sha256: String },
    /// Directory paths end with `/`, as tar lists them.
    Dir { path: String, mode: String },
    Symlink { path: String, target: String },
}

impl Member {
    pub fn path(&self) -> &str {
        match self {
            Member::File { path, .. } | Member::Dir { path, .. } | Member::Symlink { path, .. } => path,
        }
    }
}

impl Manifest {
    /// Parses a manifest, refusing an empty one, an unknown format and one
    /// that lists a path twice.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let bad = |why: String| Error::usage("the backup's manifest is not one kt can read").because(why);
        if bytes.trim_ascii().is_empty() {
            return Err(bad("it is empty".into()));
        }
        // The format first, so that a future format is named as such rather
        // than reported as a missing field.
        let head: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        match head.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT | FORMAT_UNSIGNED) => {}
            Some(other) => return Err(bad(format!("unknown format {other:?} (this kt reads {FORMAT} and {FORMAT_UNSIGNED})"))),
            None => return Err(bad("it names no format".into())),
        }
        let manifest: Manifest = serde_json::from_value(head).map_err(|e| bad(e.to_string()))?;
        if manifest.members.is_empty() {
            return Err(bad("it lists no members".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &manifest.members {
            if !seen.insert(m.path().trim_end_matches('/')) {
                return Err(bad(format!("it lists {} twice", m.path())));
            }
        }
        Ok(manifest)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest is plain data");
        bytes.push(b'\n');
        bytes
    }

    /// Whether this format carries a signature.
    pub fn is_signed_format(&self) -> bool {
        self.format == FORMAT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            created: "2026-11-29T02:00:00Z".into(),
            hostname: "kts01.example.com".into(),
            server_fingerprint: "255E/ABC".into(),
            kt_version: "0.1.0".into(),
            schema_version: 1,
            confdir: "/var/lib/keytrustee/.keytrustee".into(),
            home: "/var/lib/keytrustee".into(),
            dump: "var/lib/keytrustee/x.sql".into(),
            encrypted_to: vec![],
            row_counts: BTreeMap::from([("deposits".to_string(), 3)]),
            members: vec![
                Member::Dir { path: "var/lib/keytrustee/.keytrustee/".into(), mode: "700".into() },
                Member::Symlink { path: "var/lib/keytrustee/.keytrustee/a".into(), target: "b".into() },
                Member::File { path: "var/lib/keytrustee/x.sql".into(), mode: "600".into(), size: 1, sha256: "00".into() },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn refuses_empty_unknown_and_duplicate() {
        assert!(Manifest::parse(b"").unwrap_err().causes()[0].contains("empty"));
        assert!(Manifest::parse(b"{}").unwrap_err().causes()[0].contains("no format"));
        let mut m = serde_json::to_value(sample()).unwrap();
        m["format"] = "kt-backup/9".into();
        assert!(Manifest::parse(m.to_string().as_bytes()).unwrap_err().causes()[0].contains("unknown format"));
        let mut m = sample();
        m.members.clear();
        assert!(Manifest::parse(&m.to_bytes()).is_err());
        let mut m = sample();
        m.members.push(m.members[0].clone());
        assert!(Manifest::parse(&m.to_bytes()).unwrap_err().causes()[0].contains("twice"));
    }
}
