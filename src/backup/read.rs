//! The one reader of backup archives, with one policy, for `kt restore`
//! (which extracts into a private staging directory) and `kt verify backup`
//! (which only reads, or extracts for its restore test).
//!
//! The policy: member paths are relative with no `..`; each path appears
//! once; regular files and directories are taken; symbolic links are taken
//! only when they sit inside the confdir (the directory holding
//! `keytrustee.conf`) and their target, relative, stays inside it (kt backup
//! archives links that leave the confdir as the files they point to); hard
//! links, devices, fifos and everything else are refused. Links are created
//! last, after the whole archive was read and checked, so nothing is ever
//! written through one.
//!
//! The reader hashes every file (SHA-256; the dump also gets its rows
//! counted, see [`DumpDigest`]) and keeps the manifest, its signature and
//! the server's public key in memory: what [`super::trust`] needs to decide
//! whether to believe the rest.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

use super::dump::{DumpDigest, DumpFacts};
use super::manifest::{MANIFEST_SUFFIX, MAX_MANIFEST_BYTES, SIG_SUFFIX};
use crate::error::{Error, Result};

/// Signatures and public keys are small; more is not kt's.
const MAX_SMALL_MEMBER: u64 = 1 << 20;

/// One member as found in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    File { size: u64, sha256: String, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// What the archive holds.
#[derive(Debug, Default)]
pub struct Contents {
    /// Every member but the manifest and its signature, by path
    /// (directories end with `/`).
    pub members: BTreeMap<String, Found>,
    /// The manifest's member path and bytes.
    pub manifest: Option<(String, Vec<u8>)>,
    pub signature: Option<(String, Vec<u8>)>,
    /// The `.sql` member and what its scan found.
    pub dump: Option<(String, DumpFacts)>,
    /// The confdir's member path (`var/lib/keytrustee/.keytrustee`).
    pub confdir: Option<String>,
    /// The confdir's `pubring.gpg`: the server key the archive claims.
    pub pubring: Option<Vec<u8>>,
}

impl Contents {
    /// The confdir's member path, or why there is none.
    pub fn confdir(&self) -> Result<&str> {
        self.confdir.as_deref().ok_or_else(|| Error::usage("the backup holds no keytrustee.conf"))
    }
}

fn bad(why: String) -> Error {
    Error::usage("the backup is not a safe, whole archive").because(why)
}

/// Reads the tar from `source` to its end. With `dest`, members are
/// extracted under it (files 0600 or 0700, directories 0700; `dest` must be
/// a private directory of this run); without, they are only hashed.
pub fn read(source: impl Read, dest: Option<&Path>) -> Result<Contents> {
    let mut archive = tar::Archive::new(source);
    let mut out = Contents::default();
    let mut pubrings: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut conf_files = Vec::new();
    let entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the tar is damaged: {e}")))?;
        let raw = entry.path().map_err(|e| bad(format!("unreadable member name: {e}")))?.into_owned();
        let path = member_name(&raw)?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o600) & 0o7777;
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue; // metadata for the next member, applied by the tar crate
        }
        if kind.is_dir() {
            let key = format!("{path}/");
            insert(&mut out.members, key, Found::Dir { mode })?;
            if let Some(dest) = dest {
                private_dirs(&dest.join(&path))?;
            }
            continue;
        }
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(|e| bad(format!("unreadable link target of {path:?}: {e}")))?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            insert(&mut out.members, path, Found::Symlink { target })?;
            continue;
        }
        if !kind.is_file() {
            let what = if kind.is_hard_link() { "a hard link" } else { "a device, fifo or other special member" };
            return Err(bad(format!("member {path:?} is {what}: refused")));
        }
        if path.ends_with(MANIFEST_SUFFIX) || path.ends_with(&format!("{MANIFEST_SUFFIX}{SIG_SUFFIX}")) {
            let is_sig = path.ends_with(SIG_SUFFIX);
            let limit = if is_sig { MAX_SMALL_MEMBER } else { MAX_MANIFEST_BYTES };
            let bytes = read_small(&mut entry, &path, limit)?;
            let slot = if is_sig { &mut out.signature } else { &mut out.manifest };
            if slot.is_some() {
                return Err(bad(format!("a second {} ({path:?})", if is_sig { "manifest signature" } else { "manifest" })));
            }
            *slot = Some((path, bytes));
            continue;
        }
        let is_dump = path.ends_with(".sql");
        if is_dump && out.dump.is_some() {
            return Err(bad("the archive holds more than one .sql dump".into()));
        }
        let file_mode = 0o600 | (mode & 0o700);
        let mut dump_digest = is_dump.then(DumpDigest::default);
        let mut plain = Sha256::new();
        let mut small = path.ends_with("/pubring.gpg").then(Vec::new);
        let mut each = |chunk: &[u8]| {
            match dump_digest.as_mut() {
                Some(d) => d.update(chunk),
                None => plain.update(chunk),
            }
            if let Some(s) = small.as_mut() {
                if s.len() as u64 <= MAX_SMALL_MEMBER {
                    s.extend_from_slice(chunk);
                }
            }
        };
        let size = match dest {
            Some(dest) => copy_member(&mut entry, &dest.join(&path), file_mode, &mut each)?,
            None => hash_member(&mut entry, &path, &mut each)?,
        };
        let sha256 = match dump_digest.map(DumpDigest::finish) {
            Some(facts) => {
                let sha = facts.sha256.clone();
                out.dump = Some((path.clone(), facts));
                sha
            }
            None => hex::encode(plain.finalize()),
        };
        if let Some(bytes) = small {
            pubrings.insert(path.clone(), bytes);
        }
        if path.ends_with("/keytrustee.conf") {
            conf_files.push(path.clone());
        }
        insert(&mut out.members, path, Found::File { size, sha256, mode: mode & 0o777 })?;
    }
    out.confdir = match conf_files.as_slice() {
        [] => None,
        [one] => Some(one.trim_end_matches("/keytrustee.conf").to_string()),
        _ => return Err(bad("the archive holds more than one keytrustee.conf".into())),
    };
    if let Some(confdir) = &out.confdir {
        out.pubring = pubrings.remove(&format!("{confdir}/pubring.gpg"));
    }
    // Links last: checked against the confdir, then created.
    for (path, found) in &out.members {
        if let Found::Symlink { target } = found {
            check_link(path, target, out.confdir.as_deref())?;
            if out.members.range(format!("{path}/")..).next().is_some_and(|(p, _)| p.starts_with(&format!("{path}/"))) {
                return Err(bad(format!("link {path:?} has members below it: refused")));
            }
            if let Some(dest) = dest {
                let at = dest.join(path);
                if let Some(parent) = at.parent() {
                    private_dirs(parent)?;
                }
                std::os::unix::fs::symlink(target, &at)
                    .map_err(|e| bad(format!("link {path:?} cannot be created: {e}")))?;
            }
        }
    }
    Ok(out)
}

/// A member's path as a clean relative string: `a/b/c`, no `.`, no `..`,
/// not absolute.
fn member_name(raw: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(|| bad(format!("member {raw:?} is not UTF-8")))?),
            Component::CurDir => {}
            _ => return Err(bad(format!("member {raw:?} would escape the extraction root"))),
        }
    }
    if parts.is_empty() {
        return Err(bad(format!("member {raw:?} has an empty name")));
    }
    Ok(parts.join("/"))
}

fn insert(members: &mut BTreeMap<String, Found>, path: String, found: Found) -> Result<()> {
    let twin = if let Some(dir) = path.strip_suffix('/') { dir.to_string() } else { format!("{path}/") };
    if members.contains_key(&path) || members.contains_key(&twin) {
        return Err(bad(format!("member {path:?} appears twice")));
    }
    members.insert(path, found);
    Ok(())
}

/// The link policy: inside the confdir, pointing (relatively) inside it.
fn check_link(path: &str, target: &str, confdir: Option<&str>) -> Result<()> {
    let refuse = |why: &str| Err(bad(format!("link {path:?} -> {target:?} {why}: refused (kt restores only links inside the confdir that point inside it)")));
    let Some(confdir) = confdir else { return refuse("is outside the confdir") };
    let Some(inside) = path.strip_prefix(confdir).and_then(|r| r.strip_prefix('/')) else {
        return refuse("is outside the confdir");
    };
    if !link_stays_inside(inside, target) {
        return refuse("points outside the confdir");
    }
    Ok(())
}

/// Whether a link at `inside` (a path relative to the confdir) pointing to
/// `target` resolves, lexically, to a path inside the confdir. kt backup
/// asks this too: a link that leaves the confdir is archived as the file
/// it points to.
pub fn link_stays_inside(inside: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') {
        return false;
    }
    let mut dirs: Vec<&str> = inside.split('/').filter(|p| !p.is_empty()).collect();
    dirs.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if dirs.pop().is_none() {
                    return false;
                }
            }
            p => dirs.push(p),
        }
    }
    true
}

fn read_small(entry: &mut impl Read, path: &str, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry.take(limit + 1).read_to_end(&mut bytes).map_err(|e| bad(format!("{path}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(bad(format!("{path} is larger than kt ever writes ({limit} bytes)")));
    }
    Ok(bytes)
}

/// Creates `dir` and its missing parents, private (0700).
pub(crate) fn private_dirs(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::env(format!("cannot create {}", dir.display())).because_err(&e))
}

/// Copies one member into a new private file, handing every chunk to
/// `each` on the way. Read errors are the archive's fault, write errors the
/// environment's.
pub(crate) fn copy_member(from: &mut impl Read, target: &Path, mode: u32, each: &mut impl FnMut(&[u8])) -> Result<u64> {
    if let Some(parent) = target.parent() {
        private_dirs(parent)?;
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(target)
        .map_err(|e| bad(format!("{} cannot be written: {e}", target.display())))?;
    let mut out = crate::fsutil::WritebackFile::new(out);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(|e| bad(format!("{}: {e}", target.display())))?;
        if n == 0 {
            break;
        }
        each(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::env(format!("cannot write {}", target.display())).because_err(&e))?;
        size += n as u64;
    }
    out.finish().map_err(|e| Error::env(format!("cannot write {}", target.display())).because_err(&e))?;
    Ok(size)
}

fn hash_member(from: &mut impl Read, path: &str, each: &mut impl FnMut(&[u8])) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(|e| bad(format!("{path}: {e}")))?;
        if n == 0 {
            return Ok(size);
        }
        each(&buf[..n]);
        size += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_inside_the_confdir() {
        let c = Some("h/.keytrustee");
        assert!(check_link("h/.keytrustee/.ssl/cert.pem", "../live/cert1.pem", c).is_ok());
        assert!(check_link("h/.keytrustee/cert.pem", "x/y.pem", c).is_ok());
        assert!(check_link("h/.keytrustee/cert.pem", "../x", c).is_err());
        assert!(check_link("h/.keytrustee/.ssl/cert.pem", "../../x", c).is_err());
        assert!(check_link("h/.keytrustee/cert.pem", "/etc/passwd", c).is_err());
        assert!(check_link("h/other", "x", c).is_err());
        assert!(check_link("h/.keytrustee2/x", "y", c).is_err());
        assert!(check_link("h/.keytrustee/x", "", c).is_err());
        assert!(check_link("h/.keytrustee/x", "y", None).is_err());
    }

    #[test]
    fn names_are_clean_and_relative() {
        assert_eq!(member_name(Path::new("./a/b")).unwrap(), "a/b");
        assert!(member_name(Path::new("/a")).is_err());
        assert!(member_name(Path::new("a/../../b")).is_err());
        assert!(member_name(Path::new(".")).is_err());
    }
}
