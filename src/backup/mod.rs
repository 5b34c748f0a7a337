//! `kt backup`: encrypted, cron-safe backups of the confdir and database.
//!
//! Order of work, so that nothing is half-written and nothing is lost:
//! check the input and resolve every recipient (exit 2 before any file is
//! written); take the output directory's lock; remove temp files an
//! interrupted run left; check the database; dump it to a private temp file
//! (hash and row counts on the fly, as pg_dump writes); sign the manifest;
//! stream the archive (the manifest last) to a temp file
//! (0600), fsync it, rename it to its final name, fsync the directory;
//! only then roll old backups. Any failure removes this run's temp files
//! and leaves older backups untouched.

pub mod archive;
pub mod dump;
pub mod list;
pub mod lock;
pub mod manifest;
pub mod message;
pub mod naming;
pub mod read;
pub mod recipients;
pub mod seal;
pub mod status;
pub mod trust;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::instance::Instance;
use crate::progress::Progress;
use crate::storage::endpoint::Endpoint;
use crate::storage::{cluster, schema};
use recipients::Recipient;

/// What `kt backup` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Default: the instance home.
    pub output: Option<PathBuf>,
    pub recipients: Vec<String>,
    pub recipient_files: Vec<PathBuf>,
    pub cleartext: bool,
    pub roll: Option<usize>,
    pub lock_wait: Option<Duration>,
    pub db_port: Option<u16>,
}

/// What a backup made.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub path: PathBuf,
    pub size: u64,
    pub encrypted: bool,
    pub recipients: Vec<(String, String)>,
    pub row_counts: BTreeMap<String, u64>,
    pub rolled: Vec<PathBuf>,
    /// The backups `--roll` kept (newest first), for `--verbose`.
    pub roll_kept: Vec<PathBuf>,
    pub stale_temps_removed: Vec<PathBuf>,
    /// Every archive member and its size (directories and links: 0), in
    /// archive order, for `--verbose`.
    pub members: Vec<(String, u64)>,
    /// The dump's size before it was archived.
    pub dump_size: u64,
    /// Why the status record (`status`) could not be written, if it could
    /// not: the backup itself is complete.
    pub status_error: Option<String>,
}

/// Removes the listed files when dropped (unless disarmed).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Checks the options and resolves every recipient: no file is touched.
pub fn resolve_recipients(options: &BackupOptions) -> Result<Vec<Recipient>> {
    let wants_encryption = !options.recipients.is_empty() || !options.recipient_files.is_empty();
    if options.cleartext && wants_encryption {
        return Err(Error::usage("--cleartext and --gpg-recipient exclude each other"));
    }
    if !options.cleartext && !wants_encryption {
        return Err(Error::usage("no recipient: the backup would not be encrypted")
            .with_hint("give --gpg-recipient=NAME (or --gpg-recipient-file=FILE), or --cleartext for an unencrypted tarball"));
    }
    if options.roll == Some(0) {
        return Err(Error::usage("--roll=0 would remove every backup").with_hint("--roll=N keeps the N newest, N >= 1"));
    }
    let mut out = Vec::new();
    for name in &options.recipients {
        out.push(recipients::from_keyring(name)?);
    }
    for file in &options.recipient_files {
        out.push(recipients::from_file(file)?);
    }
    Ok(out)
}

/// Records, in the output directory's status record of `hostname`, a run
/// refused before it began (its recipients or its instance): for the
/// status record, and so for `kt verify --max-age`, a refused nightly run
/// is a failed one (an expired key, a key removed from the keyring).
/// Nothing else is written; a directory that does not exist is left alone.
pub fn record_refusal(output: &Path, hostname: &str, error: &Error) {
    let Ok(output) = fsutil::absolute(output) else { return };
    if output.is_dir() {
        let _ = status::record_failure(&output, &crate::hostname::slug(hostname), error);
    }
}

/// Writes one backup to the `recipients` that [`resolve_recipients`]
/// returned for `options` (none: cleartext).
pub fn backup(
    instance: &Instance,
    options: &BackupOptions,
    recipients: &[Recipient],
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let output = match &options.output {
        Some(dir) => fsutil::absolute(dir)?,
        None => instance.layout.home.clone(),
    };
    if !output.is_dir() {
        return Err(Error::env(format!("the output directory {} does not exist", output.display()))
            .with_hint("create it first (mkdir -m 700 DIR)"));
    }
    let host = crate::hostname::slug(instance.hostname()?);
    let _lock = lock::acquire(&output, options.lock_wait).inspect_err(|e| {
        // A run that never started is a failed run too (a job stuck behind
        // another, or a lock it cannot create).
        let _ = status::record_failure(&output, &host, e);
    })?;
    // Recorded under the lock, success or failure (`status`).
    let started = std::time::Instant::now();
    let result = backup_locked(instance, options, recipients, progress, &output);
    match result {
        Ok(mut report) => {
            if let Err(e) = status::record_success(&output, &host, &report.path, report.size, started.elapsed()) {
                report.status_error = Some(e.to_string());
            }
            Ok(report)
        }
        Err(e) => {
            let _ = status::record_failure(&output, &host, &e);
            Err(e)
        }
    }
}

/// The backup proper, once `output`'s lock is held.
fn backup_locked(
    instance: &Instance,
    options: &BackupOptions,
    recipients: &[Recipient],
    progress: &dyn Progress,
    output: &std::path::Path,
) -> Result<BackupReport> {
    let output = output.to_path_buf();
    let stale_temps_removed = naming::remove_stale_temps(&output);

    // The database must answer before anything is written.
    let mut endpoint = Endpoint::for_instance(instance);
    if let Some(port) = options.db_port {
        endpoint.port = port;
    }
    let password = endpoint.password(&instance.layout.pgpass())?;
    let schema_version = {
        let mut db = endpoint.connect(&password, "kt backup")?;
        schema::current_version(&mut db)?
    };
    let server_key = crate::pgp::load_public_key(&instance.layout.pubring())?;
    // Every backup is signed (its manifest, see `manifest`): a server key
    // that cannot sign stops the backup before anything is written.
    let server_secret = crate::pgp::load_secret_key(&instance.layout.secring())?;
    let hostname = instance.hostname()?.to_string();
    let host_slug = crate::hostname::slug(&hostname);

    // A unique final name: never overwrite, wait for the next second.
    let encrypted = !recipients.is_empty();
    let (stamp, final_path) = loop {
        let stamp = naming::stamp_now();
        let path = output.join(naming::file_name(&host_slug, &stamp, encrypted));
        if !path.exists() {
            break (stamp, path);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let pid = std::process::id();
    let base = format!("kts_bak_{host_slug}_{stamp}");
    let dump_tmp = output.join(format!(".{base}.sql{}{pid}", naming::TEMP_MARK));
    let archive_tmp = output.join(format!(
        ".{}{}{pid}",
        final_path.file_name().and_then(|n| n.to_str()).unwrap_or("backup"),
        naming::TEMP_MARK
    ));
    let mut temps = TempFiles(vec![dump_tmp.clone(), archive_tmp.clone()]);

    progress.step("dumping the database");
    let bindir = cluster::find_bindir()?;
    let facts = dump::dump(&bindir, &endpoint, &instance.layout.pgpass(), &dump_tmp, progress)?;
    let dump_size = facts.size;

    // Shared with other readers; a kt cert replace or rollback holds it
    // exclusively while it swaps .ssl and rewrites keytrustee.conf, so a
    // backup never holds half of a change.
    let confdir = {
        let _lock = crate::fsutil::lock_dir(&instance.layout.confdir, false)?;
        archive::read_confdir(&instance.layout.confdir)?
    };
    let home_member = archive::member_path(&instance.layout.home);
    let dump_member = format!("{home_member}/{base}.sql");
    let manifest_member = format!("{home_member}/{base}.manifest.json");
    let conf_members: Vec<manifest::Member> = confdir
        .iter()
        .map(|e| match e.kind {
            tar::EntryType::Regular => manifest::Member::File {
                path: e.member.clone(),
                mode: format!("{:o}", e.meta_mode),
                size: e.data.len() as u64,
                sha256: archive::sha256_hex(&e.data),
            },
            tar::EntryType::Symlink => manifest::Member::Symlink {
                path: e.member.clone(),
                target: e.link.as_ref().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default(),
            },
            _ => manifest::Member::Dir { path: format!("{}/", e.member), mode: format!("{:o}", e.meta_mode) },
        })
        .collect();
    let mut members: Vec<(String, u64)> = confdir
        .iter()
        .map(|e| match e.kind {
            tar::EntryType::Regular | tar::EntryType::Symlink => (e.member.clone(), e.data.len() as u64),
            _ => (format!("{}/", e.member), 0),
        })
        .collect();
    members.push((dump_member.clone(), dump_size));
    // The manifest and its signature are the last members, made before
    // the archive is written from what the dump turned out to hold.
    let mut manifest = manifest::Manifest {
        format: manifest::FORMAT.to_string(),
        created: crate::clock::rfc3339_now(),
        hostname: hostname.clone(),
        server_fingerprint: crate::pgp::wire_fingerprint(&server_key),
        kt_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version: schema_version as i64,
        confdir: instance.layout.confdir.clone(),
        home: instance.layout.home.clone(),
        dump: dump_member.clone(),
        encrypted_to: recipients.iter().map(|r| r.primary_fingerprint.clone()).collect(),
        row_counts: facts.row_counts.clone(),
        members: conf_members,
    };
    manifest.members.push(manifest::Member::File {
        path: dump_member.clone(),
        mode: "600".into(),
        size: facts.size,
        sha256: facts.sha256.clone(),
    });
    let manifest_bytes = manifest.to_bytes();
    let signature = crate::pgp::sign_detached(&server_secret, &manifest_bytes)?;
    let signed = archive::SignedManifest { manifest: manifest_bytes, signature };
    let owner = std::fs::metadata(&instance.layout.confdir)
        .map(|m| (std::os::unix::fs::MetadataExt::uid(&m), std::os::unix::fs::MetadataExt::gid(&m)))
        .unwrap_or((0, 0));
    let payload_manifest_member = manifest_member.clone();
    let payload = archive::Payload {
        confdir: &confdir,
        dump_file: &dump_tmp,
        dump_member,
        dump_size,
        dump_owner: owner,
        manifest_member,
    };

    progress.step(if encrypted { "writing the encrypted archive" } else { "writing the archive (cleartext)" });
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&archive_tmp)
        .map_err(|e| Error::env(format!("cannot create {}", archive_tmp.display())).because_err(&e))?;
    let estimate = dump_size + confdir.iter().map(|e| e.data.len() as u64 + 512).sum::<u64>();
    // Small, so the encryptor's half-MiB pieces go straight to the file
    // (a write at least the buffer's size bypasses it): one copy fewer on
    // the busiest thread; headers and cleartext reads are still gathered.
    let mut counting = archive::CountingWriter::new(
        std::io::BufWriter::with_capacity(256 << 10, fsutil::WritebackFile::new(file)),
        estimate,
        progress,
    );
    archive::write_archive(&payload, &signed, recipients, &mut counting)?;
    counting.report();
    let size = counting.written;
    let file = counting
        .inner
        .into_inner()
        .map_err(|e| Error::env("cannot write the backup").because_err(e.error()))?
        .finish()
        .map_err(|e| Error::env("cannot fsync the backup").because_err(&e))?;
    drop(file);
    progress.finish();
    std::fs::rename(&archive_tmp, &final_path)
        .map_err(|e| Error::env(format!("cannot rename the backup to {}", final_path.display())).because_err(&e))?;
    fsutil::sync_dir(&output)?;
    temps.0.retain(|p| p != &archive_tmp);
    drop(temps); // removes the dump temp file

    let (roll_kept, rolled) = match options.roll {
        Some(keep) => naming::roll(&output, &host_slug, keep)?,
        None => (Vec::new(), Vec::new()),
    };
    // Written last, their sizes known only inside the archive writer.
    let signature_member = format!("{payload_manifest_member}{}", manifest::SIG_SUFFIX);
    members.extend([(payload_manifest_member, 0), (signature_member, 0)]);
    Ok(BackupReport {
        path: final_path,
        size,
        encrypted,
        recipients: recipients.iter().map(|r| (r.label.clone(), r.key_id())).collect(),
        row_counts: facts.row_counts,
        rolled,
        roll_kept,
        stale_temps_removed,
        members,
        dump_size,
        status_error: None,
    })
}
