//! The backup status record, `<output>/.kt-backup-status.<host>.json`: the
//! last success (time, file, size, duration) and the last failure (time,
//! the error's first line) of `kt backup` of one host into that directory.
//! One per host, as the backups' names are: the two hosts of an HA pair
//! may back up into one shared directory, and each must report its own
//! job, never the other's.
//!
//! A nightly job that stops working is otherwise noticed only when a
//! backup is needed; with this record `kt backup list` and
//! `kt verify --max-age` say why it failed, not only that the newest
//! backup is old. It is written atomically (temp file, fsync, rename) and
//! only under the output directory's backup lock, so two runs never
//! interleave their updates.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `.kt-backup-status.<host>.json`: the name's parts.
const PREFIX: &str = ".kt-backup-status.";
const SUFFIX: &str = ".json";

/// The record's file name for `host` (a host slug, as in backup names).
pub fn file_name(host: &str) -> String {
    format!("{PREFIX}{host}{SUFFIX}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub last_success: Option<Success>,
    pub last_failure: Option<Failure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Success {
    /// RFC 3339, UTC.
    pub time: String,
    pub unix: i64,
    pub file: PathBuf,
    pub size: u64,
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub time: String,
    pub unix: i64,
    /// The error's first line (its message; causes and hints stay out).
    pub error: String,
}

impl Status {
    /// Whether the most recent run failed.
    pub fn failing(&self) -> Option<&Failure> {
        let failure = self.last_failure.as_ref()?;
        match &self.last_success {
            Some(s) if s.unix > failure.unix => None,
            _ => Some(failure),
        }
    }
}

pub fn path(dir: &Path, host: &str) -> PathBuf {
    dir.join(file_name(host))
}

/// The hosts that have a record in `dir`, sorted.
pub fn hosts(dir: &Path) -> Vec<String> {
    let mut hosts: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let host = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
            // Only names kt writes (host slugs): a file the service
            // account made up never puts its name on root's terminal.
            let slug_like = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            slug_like.then(|| host.to_string())
        })
        .collect();
    hosts.sort();
    hosts
}

/// The record of `host` in `dir` (None when there is none yet).
///
/// The file sits in the output directory, which the service account
/// writes, and is printed on root's terminal by `kt verify` and `kt backup
/// list`: every text in it comes back with control characters escaped, and
/// a record dated in the future (which would hide failures, or pin one
/// for ever) is refused as not trustworthy.
pub fn read(dir: &Path, host: &str) -> Result<Option<Status>> {
    let path = path(dir, host);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::env(format!("cannot read {}", path.display())).because_err(&e)),
    };
    let mut status: Status = serde_json::from_slice(&bytes)
        .map_err(|e| Error::problem(format!("{} is not a kt backup status record", path.display())).because_err(&e))?;
    let latest = [status.last_success.as_ref().map(|s| s.unix), status.last_failure.as_ref().map(|f| f.unix)];
    if latest.into_iter().flatten().any(|t| t > crate::clock::unix_now() + FUTURE_SLACK_SECONDS) {
        return Err(Error::problem(format!("{} is dated in the future: not trusted", path.display()))
            .with_hint("a forged record, or a clock that was wrong; the next kt backup rewrites it"));
    }
    if let Some(s) = &mut status.last_success {
        s.time = printable(&s.time);
        s.file = PathBuf::from(printable(&s.file.to_string_lossy()));
    }
    if let Some(f) = &mut status.last_failure {
        f.time = printable(&f.time);
        f.error = printable(&f.error);
    }
    Ok(Some(status))
}

/// Clock differences tolerated between the writer and the reader.
const FUTURE_SLACK_SECONDS: i64 = 300;

pub use crate::text::printable;

/// Records a success. The caller holds the directory's backup lock.
pub fn record_success(dir: &Path, host: &str, file: &Path, size: u64, duration: std::time::Duration) -> Result<()> {
    let unix = crate::clock::unix_now();
    update(dir, host, |s| {
        s.last_success = Some(Success {
            time: crate::clock::rfc3339(unix),
            unix,
            file: file.to_path_buf(),
            size,
            duration_seconds: (duration.as_secs_f64() * 10.0).round() / 10.0,
        })
    })
}

/// Records a failure. The caller holds the directory's backup lock, or
/// could not get it (a run refused before it: the record is replaced
/// atomically, so at worst one update is lost, never the file).
pub fn record_failure(dir: &Path, host: &str, error: &Error) -> Result<()> {
    let unix = crate::clock::unix_now();
    let first_line = printable(error.message().lines().next().unwrap_or(""));
    update(dir, host, |s| s.last_failure = Some(Failure { time: crate::clock::rfc3339(unix), unix, error: first_line }))
}

fn update(dir: &Path, host: &str, change: impl FnOnce(&mut Status)) -> Result<()> {
    // A damaged record is replaced rather than blocking every later run.
    let mut status = read(dir, host).ok().flatten().unwrap_or_default();
    change(&mut status);
    let mut bytes = serde_json::to_vec_pretty(&status).expect("JSON");
    bytes.push(b'\n');
    crate::fsutil::write_atomic(&path(dir, host), &bytes, 0o600, None)
}
