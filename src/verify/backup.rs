//! `kt verify backup FILE`: is this backup whole and restorable?
//!
//! Without a key: the OpenPGP message is walked packet by packet to its last
//! byte (a truncated file is caught) and its recipients are listed. With
//! `--decrypt` (the GnuPG keyring of the account running kt) or
//! `--secret-key FILE`, it is decrypted as a stream through GnuPG (whose
//! MDC check catches flipped bits), the tar is read member by member, every
//! member's SHA-256 and the dump's row counts are compared with the
//! manifest. `--restore-test` also loads the dump into a scratch database
//! of the instance's cluster, compares the rows, and drops it again.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::backup::dump::{DumpDigest, DumpFacts};
use crate::error::{Error, Result};
use crate::instance::{Instance, DB_USER};
use crate::storage::{cluster, databases, db_error_text};
use crate::verify::Report;

#[derive(Debug, Clone, Default)]
pub struct BackupCheckOptions {
    pub decrypt: bool,
    pub secret_key: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

/// Runs every check on `file`; `instance` is needed for `--restore-test`.
pub fn verify(file: &Path, options: &BackupCheckOptions, restore_into: Option<&Instance>) -> Result<Report> {
    let mut report = Report::default();
    if !file.is_file() {
        return Err(Error::usage(format!("{} is not a file", file.display())));
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
    let wants_contents = !encrypted || options.decrypt || options.secret_key.is_some() || restore_into.is_some();
    if !wants_contents {
        report.skip("contents", "give --decrypt or --secret-key to check the tar, checksums and row counts");
        return Ok(report);
    }
    let scratch = crate::gnupg::PrivateDir::create(std::env::temp_dir().join(format!("kt-verify-{}", std::process::id())))?;
    let gnupg_home = match &options.secret_key {
        Some(key) => Some(scratch.import_secret_key(key)?),
        None => None,
    };
    let (source, child) = crate::restore::stage::open(file, gnupg_home.as_deref(), options.passphrase_file.as_deref())?;
    let restore_sql = scratch.0.join("dump.sql");
    let contents = read_contents(source, restore_into.map(|_| restore_sql.as_path()));
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
        Err(why) => {
            report.fail("tar", why);
            return Ok(report);
        }
    };
    report.ok("tar", format!("{} members, none escaping its root", contents.hashes.len() + 1));
    let Some(manifest) = contents.manifest.clone() else {
        report.fail("manifest", "the archive has no kt manifest (a backup made outside kt?)");
        return Ok(report);
    };
    let mut mismatches = Vec::new();
    let mut listed = 0;
    for m in manifest["members"].as_array().into_iter().flatten() {
        if m["type"] != "file" {
            continue;
        }
        listed += 1;
        let path = m["path"].as_str().unwrap_or("");
        match contents.hashes.get(path) {
            Some((size, sha)) if Some(sha.as_str()) == m["sha256"].as_str() && Some(*size) == m["size"].as_u64() => {}
            Some(_) => mismatches.push(format!("{path} differs")),
            None => mismatches.push(format!("{path} is missing")),
        }
    }
    if mismatches.is_empty() {
        report.ok("checksums", format!("{listed} files match the manifest's SHA-256"));
    } else {
        report.fail("checksums", mismatches.join("; "));
    }
    let expected: BTreeMap<String, u64> = manifest["row_counts"]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
        .unwrap_or_default();
    match contents.dump.as_ref().map(|d| &d.row_counts) {
        Some(rows) if *rows == expected => report.ok("row counts", format_counts(rows)),
        Some(rows) => report.fail("row counts", format!("dump has {}, manifest says {}", format_counts(rows), format_counts(&expected))),
        None => report.fail("row counts", "the archive has no SQL dump"),
    }
    if let Some(instance) = restore_into {
        report.record("restore test", restore_test(instance, &restore_sql, &expected, &manifest, &contents));
    }
    Ok(report)
}

fn format_counts(rows: &BTreeMap<String, u64>) -> String {
    rows.iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
}

struct Contents {
    /// member path -> (size, sha256)
    hashes: BTreeMap<String, (u64, String)>,
    manifest: Option<serde_json::Value>,
    /// What the scan of the SQL dump found (rows, psql meta-commands).
    dump: Option<DumpFacts>,
    pubring: Option<Vec<u8>>,
}

/// Reads the tar to its end, refusing members that could escape the
/// directory they would be extracted to.
fn read_contents(source: Box<dyn Read>, keep_sql: Option<&Path>) -> std::result::Result<Contents, String> {
    let mut archive = tar::Archive::new(source);
    let mut out = Contents { hashes: BTreeMap::new(), manifest: None, dump: None, pubring: None };
    let entries = archive.entries().map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the tar is damaged: {e}"))?;
        let path = entry.path().map_err(|e| format!("a member has an unreadable name: {e}"))?.to_string_lossy().into_owned();
        let p = Path::new(&path);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("member {path:?} would escape the extraction root"));
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() || kind.is_symlink() {
            let target = entry.link_name().ok().flatten().map(|t| t.to_path_buf()).unwrap_or_default();
            if target.is_absolute() || target.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(format!("link {path:?} points outside ({})", target.display()));
            }
            continue;
        }
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            return Err(format!("member {path:?} is a device or fifo"));
        }
        if !kind.is_file() {
            continue;
        }
        if path.ends_with(".manifest.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(|e| format!("cannot read the manifest: {e}"))?;
            out.manifest = Some(serde_json::from_str(&text).map_err(|e| format!("the manifest is not JSON: {e}"))?);
            continue;
        }
        let is_sql = path.ends_with(".sql");
        let is_pubring = path.ends_with("/pubring.gpg");
        let mut sql_file = match (is_sql, keep_sql) {
            (true, Some(p)) => Some(
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(p).map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let mut hasher = Sha256::new();
        let mut digest = is_sql.then(DumpDigest::default);
        let mut keep = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            if let Some(d) = digest.as_mut() {
                d.update(&buf[..n]);
            }
            if let Some(f) = sql_file.as_mut() {
                f.write_all(&buf[..n]).map_err(|e| e.to_string())?;
            }
            if is_pubring {
                keep.extend_from_slice(&buf[..n]);
            }
        }
        if let Some(d) = digest {
            out.dump = Some(d.finish());
        }
        if is_pubring {
            out.pubring = Some(keep);
        }
        out.hashes.insert(path, (size, hex::encode(hasher.finalize())));
    }
    Ok(out)
}

/// Loads the dump into a scratch database of the instance's cluster,
/// compares the rows with the manifest, and drops the scratch database.
fn restore_test(
    instance: &Instance,
    sql: &Path,
    expected: &BTreeMap<String, u64>,
    manifest: &serde_json::Value,
    contents: &Contents,
) -> std::result::Result<String, String> {
    let cl = cluster::Cluster::for_instance(instance).map_err(|e| e.to_string())?;
    let password = crate::storage::pgpass::Password::read(&instance.layout.pgpass(), DB_USER).map_err(|e| e.to_string())?;
    let scratch_db = format!("kt_verify_{}", std::process::id());
    let mut admin = cl.connect(&password, "postgres").map_err(|e| e.to_string())?;
    databases::drop(&mut admin, &scratch_db).map_err(|e| e.to_string())?;
    databases::create(&mut admin, &scratch_db).map_err(|e| e.to_string())?;
    let result = (|| {
        // The loader kt restore uses (psql for dumps that need it), so the
        // test proves what a restore would do.
        let _ = std::fs::set_permissions(sql, std::fs::Permissions::from_mode(0o600));
        let facts = contents.dump.as_ref().ok_or("the archive has no SQL dump")?;
        // A dump that switches databases would leave the scratch one.
        if let Some(c) = facts.meta_commands.iter().find(|m| m.starts_with("\\c ") || m.starts_with("\\connect")) {
            return Err(format!("the dump switches databases ({c}): not loaded into a scratch database"));
        }
        let needs_psql = facts.needs_psql(&scratch_db);
        crate::storage::load::load(&cl, &password, &instance.layout.pgpass(), &scratch_db, sql, needs_psql.as_deref(), &crate::progress::Silent)
            .map_err(|e| e.to_string())?;
        let mut db = cl.connect(&password, &scratch_db).map_err(|e| e.to_string())?;
        let mut loaded = BTreeMap::new();
        for table in expected.keys() {
            if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("odd table name {table:?} in the manifest"));
            }
            let n: i64 = db.query_one(&format!("SELECT count(*) FROM {table}"), &[]).map_err(|e| db_error_text(&e))?.get(0);
            loaded.insert(table.clone(), n as u64);
        }
        if &loaded != expected {
            return Err(format!("loaded {}, manifest says {}", format_counts(&loaded), format_counts(expected)));
        }
        let fpr = contents
            .pubring
            .as_deref()
            .and_then(|k| crate::pgp::parse_public_key(k).ok())
            .map(|k| crate::pgp::wire_fingerprint(&k))
            .ok_or("the archive has no readable pubring.gpg")?;
        if Some(fpr.as_str()) != manifest["server_fingerprint"].as_str() {
            return Err(format!("the archived key is {fpr}, the manifest says {}", manifest["server_fingerprint"]));
        }
        Ok(format!("the dump loads into a scratch database with the same rows; key {fpr}"))
    })();
    let _ = databases::drop(&mut admin, &scratch_db);
    result
}

