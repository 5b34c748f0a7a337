//! Backup file names: `kts_bak_<host>_<YYYY-MM-DD_HH-MM-SS>.tar[.gpg]`
//! (the documented ktbackup.sh names, local time), the temp names kt uses
//! while writing, and `--roll`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const PREFIX: &str = "kts_bak_";
/// Temp files start with this and end with `.kt-tmp-<pid>`.
pub const TEMP_PREFIX: &str = ".kts_bak_";
pub const TEMP_MARK: &str = ".kt-tmp-";

/// A backup found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    pub path: PathBuf,
    pub host: String,
    /// `YYYY-MM-DD_HH-MM-SS`, sortable.
    pub stamp: String,
    pub encrypted: bool,
}

/// The local time as `YYYY-MM-DD_HH-MM-SS`.
pub fn stamp_now() -> String {
    crate::clock::local_stamp_now()
}

/// `kts_bak_<host>_<stamp>.tar` or `.tar.gpg`.
pub fn file_name(host_slug: &str, stamp: &str, encrypted: bool) -> String {
    format!("{PREFIX}{host_slug}_{stamp}.tar{}", if encrypted { ".gpg" } else { "" })
}

fn is_stamp(s: &str) -> bool {
    s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 | 13 | 16 => b == b'-',
            10 => b == b'_',
            _ => b.is_ascii_digit(),
        })
}

/// Parses a backup file name; None for anything else.
pub fn parse(path: &Path) -> Option<BackupName> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix(PREFIX)?;
    let (rest, encrypted) = match rest.strip_suffix(".tar.gpg") {
        Some(r) => (r, true),
        None => (rest.strip_suffix(".tar")?, false),
    };
    if rest.len() < 21 || !rest.is_char_boundary(rest.len() - 20) {
        return None;
    }
    let (host, stamp) = rest.split_at(rest.len() - 20);
    let stamp = stamp.strip_prefix('_')?;
    if host.is_empty() || !is_stamp(stamp) {
        return None;
    }
    Some(BackupName { path: path.to_path_buf(), host: host.to_string(), stamp: stamp.to_string(), encrypted })
}

/// Every backup in `dir` (optionally only of `host`), newest first.
pub fn list(dir: &Path, host: Option<&str>) -> Result<Vec<BackupName>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::env(format!("cannot read the backup directory {}", dir.display())).because_err(&e))?;
    let mut found: Vec<BackupName> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| parse(&e.path()))
        .filter(|b| host.is_none_or(|h| b.host == h))
        .collect();
    found.sort_by(|a, b| b.stamp.cmp(&a.stamp).then_with(|| b.path.cmp(&a.path)));
    Ok(found)
}

/// Keeps the `keep` newest backups of `host` in `dir`, removing the older
/// ones; touches nothing else. Returns what it kept (newest first) and
/// what it removed.
pub fn roll(dir: &Path, host: &str, keep: usize) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut all = list(dir, Some(host))?;
    let older = all.split_off(keep.max(1).min(all.len()));
    let kept = all.into_iter().map(|b| b.path).collect();
    let mut removed = Vec::new();
    for old in older {
        std::fs::remove_file(&old.path)
            .map_err(|e| Error::env(format!("cannot remove the old backup {}", old.path.display())).because_err(&e))?;
        removed.push(old.path);
    }
    Ok((kept, removed))
}

/// Removes temp files an earlier, interrupted kt backup left in `dir`.
/// Called with the output directory's lock held, so no live run owns them.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_ours = name.starts_with(TEMP_PREFIX)
            && name.rsplit_once(TEMP_MARK).is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if is_ours && entry.file_type().map(|t| t.is_file()).unwrap_or(false) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_backup_names() {
        let b = parse(Path::new("/x/kts_bak_kts01_example_com_2026-11-27_22-00-01.tar.gpg")).unwrap();
        assert_eq!((b.host.as_str(), b.stamp.as_str(), b.encrypted), ("kts01_example_com", "2026-11-27_22-00-01", true));
        assert!(!parse(Path::new("kts_bak_h_2026-11-27_22-00-01.tar")).unwrap().encrypted);
        for bad in [
            "kts_bak_h_2026-11-27_22-00-01.tar.gz",
            "kts_bak__2026-11-27_22-00-01.tar",
            "kts_bak_h_2026-11-27T22-00-01.tar",
            "xkts_bak_h_2026-11-27_22-00-01.tar",
            ".kts_bak_h_2026-11-27_22-00-01.tar.gpg.kt-tmp-12",
        ] {
            assert!(parse(Path::new(bad)).is_none(), "{bad}");
        }
        assert_eq!(file_name("h", "2026-11-27_22-00-01", true), "kts_bak_h_2026-11-27_22-00-01.tar.gpg");
        assert!(is_stamp(&stamp_now()));
    }
}
