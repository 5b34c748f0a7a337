//! `kt verify backup FILE`: is this backup whole and restorable?
//!
//! Without a key: the OpenPGP message is walked packet by packet to its last
//! byte (a truncated file is caught) and its recipients are listed. With
//! `--decrypt` (the GnuPG keyring of the account running kt) or
//! `--secret-key FILE`, it is decrypted as a stream through GnuPG (whose
//! MDC check catches flipped bits) and read by the reader `kt restore`
//! uses (`backup::read`, one policy for both), and judged as `kt restore`
//! judges it (`backup::trust`): every member against the manifest, the
//! manifest's signature, the server key against this instance's or
//! `--expect-fingerprint`. `--restore-test` then loads the dump into a
//! scratch database of the instance's cluster as a role without superuser
//! rights, through the statement filter, compares the rows, and drops it
//! again (on an external database: a scratch schema of kt's database,
//! loaded as kt's role, as `kt restore` does there, `restore::external`);
//! only a backup whose key this host trusts is loaded at all.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::backup::read::{self, Contents};
use crate::backup::trust::{self, Assessment, Identity};
use crate::error::{Error, Result};
use crate::instance::{Instance, DB_USER};
use crate::storage::scratch::ScratchDb;
use crate::storage::cluster;
use crate::verify::Report;

#[derive(Debug, Clone, Default)]
pub struct BackupCheckOptions {
    pub decrypt: bool,
    pub secret_key: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    /// The server key the backup must carry.
    pub expect_fingerprint: Option<String>,
    /// Accept a backup without kt's signature (reported, not failed).
    pub allow_unsigned: bool,
    /// Load the dump into a scratch database of `instance`'s cluster.
    pub restore_test: bool,
}

/// The scratch databases of restore tests: `kt_verify_<pid>`.
const SCRATCH_PREFIX: &str = "kt_verify_";

/// Runs every check on `file`. `instance` (when there is one) is the key
/// the backup is compared with, and the cluster of `--restore-test`.
pub fn verify(file: &Path, options: &BackupCheckOptions, instance: Option<&Instance>) -> Result<Report> {
    let mut report = Report::default();
    if !file.is_file() {
        return Err(Error::usage(format!("{} is not a file", file.display())));
    }
    if options.restore_test && instance.is_none() {
        return Err(Error::usage("--restore-test needs an instance to load into (-c CONFDIR)"));
    }
    let mut head = [0u8; 1];
    std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Error::usage(format!("cannot read {}", file.display())).because_err(&e))?;
    let encrypted = head[0] & 0x80 != 0;
    if encrypted {
        if !report.record("message", crate::backup::message::walk(file).map(|(ids, n)| format!("whole to its last byte; {n} bytes of encrypted data for key IDs {}", ids.join(", ")))) {
            return Ok(report);
        }
    } else {
        report.skip("message", "a cleartext tar (not encrypted)");
    }
    let wants_contents = !encrypted || options.decrypt || options.secret_key.is_some() || options.restore_test;
    if !wants_contents {
        report.skip("contents", "give --decrypt or --secret-key to check the tar, signature, checksums and row counts");
        return Ok(report);
    }
    // Private (0700) and removed on drop; next to nothing else.
    let scratch = crate::gnupg::PrivateDir::create(std::env::temp_dir().join(format!("kt-verify-{}", std::process::id())))?;
    let gnupg_home = match &options.secret_key {
        Some(key) => Some(scratch.import_secret_key(key)?),
        None => None,
    };
    let (source, child) = crate::restore::stage::open(file, gnupg_home.as_deref(), options.passphrase_file.as_deref())?;
    // The restore test needs the dump on disk; otherwise nothing is written.
    let root = scratch.0.join("root");
    if options.restore_test {
        std::fs::create_dir(&root).map_err(|e| Error::env("cannot create the scratch directory").because_err(&e))?;
    }
    let contents = read::read(source, options.restore_test.then_some(root.as_path()));
    if encrypted {
        match crate::restore::stage::finish_decryption(child) {
            Ok(()) => report.ok("decryption", "the message decrypts and its integrity check (MDC) holds"),
            Err(e) => {
                report.fail("decryption", e.to_string());
                return Ok(report);
            }
        }
    }
    let contents = match contents {
        Ok(c) => c,
        Err(e) => {
            report.fail("tar", e.to_string());
            return Ok(report);
        }
    };
    report.ok("tar", format!("{} members, none escaping its root, links only inside the confdir", contents.members.len()));
    let instance_key = instance.and_then(|i| crate::pgp::load_public_key(&i.layout.pubring()).ok());
    let expected = trust::Expected {
        fingerprint: options.expect_fingerprint.as_deref(),
        instance_key: instance_key.as_ref(),
        allow_unsigned: options.allow_unsigned,
    };
    let assessment = match trust::assess(&contents, &expected) {
        Ok(a) => a,
        Err(e) => {
            report.fail("manifest", e.to_string());
            return Ok(report);
        }
    };
    match &assessment.manifest {
        Some(m) => report.ok("checksums", format!("{} members match the manifest (SHA-256, links, directories), none unlisted", m.members.len())),
        None => report.skip("checksums", "no kt manifest (a backup made outside kt), allowed by --allow-unsigned"),
    }
    match &contents.dump {
        Some((_, facts)) => report.ok("row counts", format_counts(&facts.row_counts)),
        None => report.fail("row counts", "the archive has no SQL dump"),
    }
    if assessment.signed {
        report.ok("signature", format!("the manifest is signed by the server key {}", assessment.fingerprint));
    } else {
        report.skip("signature", "not signed (allowed by --allow-unsigned)");
    }
    match &assessment.identity {
        Identity::Instance => report.ok("identity", "the server key is this instance's"),
        Identity::Expected => report.ok("identity", "the server key is the expected one"),
        Identity::Foreign(why) => report.fail("identity", why.clone()),
        Identity::Unanchored => report.skip("identity", format!("no key to compare with: check {} against your records, or give --expect-fingerprint", assessment.fingerprint)),
    }
    if options.restore_test {
        let instance = instance.expect("checked above");
        report.record("restore test", restore_test(instance, &root, &contents, &assessment));
    }
    Ok(report)
}

fn format_counts(rows: &BTreeMap<String, u64>) -> String {
    rows.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
}

/// Loads the dump into a scratch database of the instance's cluster, as a
/// role that is no superuser and through the statement filter (what
/// `kt restore` does), compares the rows with the backup's, and drops the
/// scratch database. Only a backup whose key this host already trusts is
/// loaded at all.
fn restore_test(
    instance: &Instance,
    root: &Path,
    contents: &Contents,
    assessment: &Assessment,
) -> std::result::Result<String, String> {
    if !matches!(assessment.identity, Identity::Instance | Identity::Expected) {
        return Err("not loaded: the backup's server key is not one this host trusts (this instance's, or --expect-fingerprint)".into());
    }
    let (dump_member, facts) = contents.dump.as_ref().ok_or("the archive has no SQL dump")?;
    facts.check_loadable().map_err(|e| e.to_string())?;
    let expected = match &assessment.manifest {
        Some(m) => m.row_counts.clone(),
        None => facts.row_counts.clone(),
    };
    if instance.settings.external_db.is_some() {
        // What `kt restore` loads there: a scratch schema of kt's own
        // database, as kt's role; dropped (with the reference schema)
        // when `loaded` goes.
        let loaded = crate::restore::external::load(instance, &root.join(dump_member), &crate::progress::Silent).map_err(|e| e.to_string())?;
        let counted: BTreeMap<String, u64> = expected.keys().map(|t| (t.clone(), loaded.report.rows.get(t).copied().unwrap_or(0))).collect();
        if counted != expected {
            return Err(format!("loaded {}, the backup says {}", format_counts(&counted), format_counts(&expected)));
        }
        return Ok(format!("the dump loads (as kt's role, through the statement filter) into a scratch schema of the external database with kt's schema and the same rows; {} dropped again", loaded.schema));
    }
    let cl = cluster::Cluster::for_instance(instance).map_err(|e| e.to_string())?;
    let password = crate::storage::pgpass::Password::read(&instance.layout.pgpass(), DB_USER).map_err(|e| e.to_string())?;
    // Dropped (with its loading role) when `_scratch` goes.
    let (_scratch, loaded) =
        ScratchDb::load_new(&cl, &password, SCRATCH_PREFIX, &root.join(dump_member), crate::storage::load::Sharing::Shared, &crate::progress::Silent).map_err(|e| e.to_string())?;
    // As the server counted them while loading (no superuser ever queries
    // the scratch database).
    let counted: BTreeMap<String, u64> = expected.keys().map(|t| (t.clone(), loaded.rows.get(t).copied().unwrap_or(0))).collect();
    if counted != expected {
        return Err(format!("loaded {}, the backup says {}", format_counts(&counted), format_counts(&expected)));
    }
    Ok("the dump loads (as a role without superuser rights) into a scratch database with kt's schema and the same rows".into())
}
