//! The checks of `kt verify` on this host's instance.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::account::{self, Account};
use crate::client::https::{HttpsClient, Trust};
use crate::error::{Kind, Result};
use crate::instance::{Instance, Layout};
use crate::storage::endpoint::{connect_instance, Endpoint};
use crate::storage::schema;
use crate::verify::Report;

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub warn_days: i64,
    pub max_age: Option<Duration>,
    pub backup_dir: Option<PathBuf>,
}

/// Runs every local check. Fails (exit 3) only when there is nothing to
/// check: no configuration at the confdir.
pub fn verify(layout: Layout, options: &LocalOptions) -> Result<Report> {
    let mut report = Report::default();
    let instance = match layout.clone().load() {
        Ok(instance) => {
            report.ok("config", format!("{} parses", instance.layout.config_file().display()));
            instance
        }
        Err(e) if e.kind() == Kind::Environment && !layout.config_file().exists() => return Err(e),
        Err(e) => {
            report.fail("config", e.to_string());
            return Ok(report);
        }
    };
    report.record("permissions", permissions(&instance));
    let fingerprint = server_key(&instance);
    let key_ok = report.record("server key", fingerprint.clone());
    report.record("tls certificate", tls(&instance, options.warn_days));
    let mut warnings = Vec::new();
    report.record("database", database(&instance, &mut warnings));
    for warning in warnings {
        report.warn("database grants", warning);
    }
    match (key_ok, fingerprint) {
        (true, Ok(fpr)) => report.record("server", server(&instance, &fpr)),
        _ => {
            report.fail("server", "cannot compare: the server key does not load");
            false
        }
    };
    match instance.settings.ha_role {
        None => report.skip("ha", "no HA peer configured"),
        Some(_) => {
            // The same reading as `kt ha status`.
            let result = match crate::ha::status::read(&instance) {
                Ok(status) if status.healthy => Ok(status.summary()),
                Ok(status) => Err(status.summary()),
                Err(e) => Err(e.to_string()),
            };
            report.record("ha", result);
        }
    }
    backups(&instance, options, &mut report);
    Ok(report)
}

/// The account that must own the instance's files.
fn expected_owner(instance: &Instance) -> Option<Account> {
    match instance.service_user() {
        Some(name) if account::is_root() => Account::lookup(name).ok().flatten(),
        _ => Account::current().ok(),
    }
}

fn permissions(instance: &Instance) -> std::result::Result<String, String> {
    let owner = expected_owner(instance);
    let mut problems = Vec::new();
    let mut count = 0;
    let mut visit = |path: &Path, is_dir: bool| {
        count += 1;
        let Ok(meta) = std::fs::symlink_metadata(path) else { return };
        if meta.file_type().is_symlink() {
            return;
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            problems.push(format!("{} is {:o} (want {})", path.display(), mode, if is_dir { "0700" } else { "0600" }));
        }
        if let Some(owner) = &owner {
            if meta.uid() != owner.uid {
                problems.push(format!("{} belongs to uid {} (want {})", path.display(), meta.uid(), owner.name));
            }
        }
    };
    walk(&instance.layout.confdir, &mut visit);
    if problems.is_empty() {
        Ok(format!("{count} entries under {} are private", instance.layout.confdir.display()))
    } else {
        Err(problems.join("; "))
    }
}

fn walk(path: &Path, visit: &mut impl FnMut(&Path, bool)) {
    let is_dir = path.is_dir() && !path.is_symlink();
    visit(path, is_dir);
    if is_dir {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                walk(&e.path(), visit);
            }
        }
    }
}

fn server_key(instance: &Instance) -> std::result::Result<String, String> {
    let public = crate::pgp::load_public_key(&instance.layout.pubring()).map_err(|e| e.to_string())?;
    let secret = crate::pgp::load_secret_key(&instance.layout.secring()).map_err(|e| e.to_string())?;
    let fpr = crate::pgp::wire_fingerprint(&public);
    let secret_fpr = crate::pgp::wire_fingerprint(&secret.to_public_key());
    if fpr != secret_fpr {
        return Err(format!("secring.gpg holds {secret_fpr} but pubring.gpg holds {fpr}"));
    }
    Ok(fpr)
}

/// The certificate line: `kt cert check`'s findings in one line.
fn tls(instance: &Instance, warn_days: i64) -> std::result::Result<String, String> {
    // The TLS settings first: the server refuses to start without them.
    let settings = &instance.settings;
    let (versions, _) = crate::tls::protocol_versions(&settings.tls_min_version).map_err(|e| e.to_string())?;
    crate::tls::provider(&settings.ciphers, &versions).map_err(|e| e.to_string())?;
    crate::cert::check::check_instance(instance, warn_days).map_err(|e| e.to_string())?.summary()
}

/// The database line; what is worth knowing but no failure goes to
/// `warnings`.
fn database(instance: &Instance, warnings: &mut Vec<String>) -> std::result::Result<String, String> {
    let endpoint = Endpoint::for_instance(instance);
    let mut db = connect_instance(instance, "kt verify").map_err(|e| format!("database: {}: {e}", endpoint.describe()))?;
    if endpoint.external {
        return external_database(&endpoint, &mut db, warnings);
    }
    let version = schema::current_version(&mut db).map_err(|e| e.to_string())?;
    if version != schema::latest_version() {
        return Err(format!("schema version {version}, this kt expects {}", schema::latest_version()));
    }
    // A restore killed after it set the previous database aside leaves it
    // under this name: it may hold data the operator wants back.
    let aside = leftovers(&mut db, "SELECT datname FROM pg_database WHERE datname LIKE 'kt\\_restore\\_safety\\_%' ORDER BY 1")?;
    if !aside.is_empty() {
        return Err(format!(
            "{} set aside by a restore that did not finish: check it, then drop it (DROP DATABASE) once keytrustee is right",
            aside.join(", ")
        ));
    }
    Ok(format!("answers on 127.0.0.1:{}, schema version {version}", endpoint.port))
}

/// The names `query` lists: what a restore that did not finish left set
/// aside (databases locally, schemas on an external database).
fn leftovers(db: &mut postgres::Client, query: &str) -> std::result::Result<Vec<String>, String> {
    Ok(db.query(query, &[]).map_err(|e| e.to_string())?.iter().map(|row| row.get(0)).collect())
}

/// An external database: it answers, over TLS when sslmode asks for it,
/// with this kt's schema, owned by kt's role (so migrations can alter it),
/// and the role is no superuser (a dump loaded by it could run programs).
/// A role without CREATE on the database runs everything but `kt
/// restore`: a warning.
fn external_database(endpoint: &Endpoint, db: &mut postgres::Client, warnings: &mut Vec<String>) -> std::result::Result<String, String> {
    let at = endpoint.describe();
    let tls = crate::storage::endpoint::tls_in_use(db).map_err(|e| e.to_string())?;
    if tls.is_none() && endpoint.sslmode != crate::settings::SslMode::Disable {
        return Err(format!("database: {at}: the session is not encrypted (DB_SSLMODE {}): the server offers no TLS", endpoint.sslmode.name()));
    }
    let version = schema::current_version(db).map_err(|e| e.to_string())?;
    if version != schema::latest_version() {
        return Err(format!("database: {at}: schema version {version}, this kt expects {}", schema::latest_version()));
    }
    let grants = crate::storage::grants::read(db).map_err(|e| e.to_string())?;
    grants.problem().map_or(Ok(()), |p| Err(format!("database: {at}: {p}")))?;
    warnings.extend(grants.warning(&endpoint.dbname));
    // A restore killed after its swap leaves kt's previous tables in a
    // schema of this name (`restore::external`): maybe the only copy.
    let aside = leftovers(db, "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'kt\\_restore\\_prev\\_%' ORDER BY 1")?;
    if !aside.is_empty() {
        return Err(format!(
            "database: {at}: the schema {} holds tables set aside by a restore that did not finish: check them, then drop it (DROP SCHEMA ... CASCADE) once kt's tables are right",
            aside.join(", ")
        ));
    }
    let tls = match tls {
        Some(version) => format!("{version}, sslmode {}", endpoint.sslmode.name()),
        None => "no TLS (DB_SSLMODE disable)".into(),
    };
    Ok(format!("database: {at} as {}, {tls}, schema version {version}, {}", endpoint.user, grants.summary()))
}

fn server(instance: &Instance, expected: &str) -> std::result::Result<String, String> {
    let process = crate::daemon::ServerProcess::for_instance(instance).map_err(|e| e.to_string())?;
    let url = process.probe_url();
    // The certificate itself is judged by the tls check: here only the
    // answer matters.
    let mut client = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let resp = client
        .request("GET", "/?a=fingerprint", &[], b"")
        .map_err(|e| format!("no answer at {url}: {e}"))?;
    let got = String::from_utf8_lossy(&resp.body).trim().to_string();
    if resp.status != 200 {
        return Err(format!("{url}/?a=fingerprint answered HTTP {}", resp.status));
    }
    if got != expected {
        return Err(format!("{url} serves fingerprint {got}, the confdir holds {expected}"));
    }
    Ok(format!("{url} answers {got}"))
}

fn backups(instance: &Instance, options: &LocalOptions, report: &mut Report) {
    let dir = options.backup_dir.clone().unwrap_or_else(|| instance.layout.home.clone());
    let host = instance.hostname().map(crate::hostname::slug).unwrap_or_default();
    let found = match crate::backup::naming::list(&dir, Some(&host)) {
        Ok(found) => found,
        Err(e) => {
            report.fail("backups", e.to_string());
            return;
        }
    };
    let loose: Vec<String> = found
        .iter()
        .filter(|b| std::fs::metadata(&b.path).map(|m| m.mode() & 0o077 != 0).unwrap_or(false))
        .map(|b| b.path.display().to_string())
        .collect();
    if !loose.is_empty() {
        report.fail("backup modes", format!("readable by others: {}", loose.join(", ")));
    } else if !found.is_empty() {
        report.ok("backup modes", format!("{} backups in {}, all 0600", found.len(), dir.display()));
    }
    let Some(max_age) = options.max_age else {
        report.skip("backup age", "give --max-age to check that backups are recent");
        return;
    };
    // The status record (backup::status) says why a job stopped working.
    let status = crate::backup::status::read(&dir, &host);
    let reason = match &status {
        Ok(Some(s)) => s.failing().map(|f| format!("; the last backup run failed at {}: {}", f.time, f.error)),
        _ => None,
    };
    match &status {
        Ok(Some(s)) => match s.failing() {
            Some(f) => report.fail("backup job", format!("the last run failed at {}: {}", f.time, f.error)),
            None => {
                if let Some(ok) = &s.last_success {
                    report.ok("backup job", format!("the last run succeeded at {} ({})", ok.time, ok.file.display()));
                }
            }
        },
        Ok(None) => report.skip("backup job", format!("no status record in {} (written by every kt backup)", dir.display())),
        Err(e) => report.fail("backup job", e.to_string()),
    }
    let reason = reason.unwrap_or_default();
    let Some(newest) = found.first() else {
        report.fail("backup age", format!("no backup of {host} in {}{reason}", dir.display()));
        return;
    };
    let age = std::fs::metadata(&newest.path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or(Duration::MAX);
    if age > max_age {
        report.fail("backup age", format!("the newest backup {} is {} s old (max {} s){reason}", newest.path.display(), age.as_secs(), max_age.as_secs()));
    } else {
        report.ok("backup age", format!("the newest backup {} is {} s old", newest.path.display(), age.as_secs()));
    }
}

