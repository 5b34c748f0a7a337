//! `kt cert replace` and `kt cert rollback`: a new certificate put in place
//! in a running server with no downtime, or nothing changed at all.
//!
//! [`plan`] reads and checks everything (the certificate and key parse and
//! match, the certificate is valid now and names the host, a chain
//! verifies, an encrypted key really decrypts with its password script, the
//! result loads as the server would load it) and changes nothing. Any
//! refusal there is bad input (exit 2) with every file as it was.
//!
//! [`apply`] then makes the change in steps, each recorded in the undo
//! journal right after it succeeded:
//!
//! 1. an older `.ssl.bak` is set aside as `.ssl.bak.<stamp>` (never
//!    overwritten);
//! 2. `.ssl` is copied to `.ssl.bak`, with `kt-cert-previous.json`
//!    recording the four settings it replaces (what `rollback` reads);
//! 3. the new certificate, key and CA files are installed in `.ssl` (mode
//!    0600, owned by the service account; a CA file the new certificate
//!    does not use is moved out of the way: its copy is in `.ssl.bak`);
//! 4. `keytrustee.conf` gets `SSL_CERTIFICATE`, `SSL_PRIVATE_KEY`,
//!    `SSL_CA` and `SSL_PRIVATE_KEY_PASSWORD_SCRIPT` (atomic rewrite, every
//!    other key and its order kept);
//! 5. a running server is reloaded (SIGHUP) and a TLS handshake confirms it
//!    serves the new certificate.
//!
//! If step 5 fails (the server's reload fails, for example because the
//! password script fails in the server's environment), every step is
//! undone in reverse and the server is reloaded once more onto the old
//! files: a first journal step, recorded before anything changed, does
//! that last reload, so it runs after the files and the configuration are
//! back. The error is an environment failure (exit 3).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::cell::Cell;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::account::Account;
use crate::cert::chain;
use crate::cert::info::CertInfo;
use crate::cert::key::PrivateKey;
use crate::client::https::{HttpsClient, Trust};
use crate::config::{self, Config};
use crate::daemon::ServerProcess;
use crate::error::{Context, Error, Result};
use crate::fsutil;
use crate::instance::{self, Instance};
use crate::journal::Journal;
use crate::progress::Progress;
use crate::secret::PasswordSource;

/// The directory that holds the previous certificate after a replace.
pub const BACKUP_DIR: &str = ".ssl.bak";
/// In `.ssl.bak`: the settings the replace changed, for `kt cert rollback`.
pub const PREVIOUS_SETTINGS: &str = "kt-cert-previous.json";
/// How long a reloaded server has to serve the new certificate.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The four settings a replace sets.
const SETTINGS: [&str; 4] =
    [config::SSL_CERTIFICATE, config::SSL_PRIVATE_KEY, config::SSL_CA, config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT];

/// Where the new certificate and key come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A certificate file (PEM or DER, possibly followed by its chain) and
    /// a key file (None: the instance's current key).
    Files { cert: PathBuf, key: Option<PathBuf>, password: Option<PasswordSource>, password_what: String },
    /// A PKCS#12 bundle and the file holding its password.
    Pkcs12 { bundle: PathBuf, password_file: PathBuf },
    /// What `.ssl.bak` holds (`kt cert rollback`).
    Backup,
}

/// What `kt cert replace` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// A file with the root and any intermediates.
    pub ca: Option<PathBuf>,
    pub warn_days: i64,
    pub allow_hostname_mismatch: bool,
}

/// Everything checked, nothing changed: what [`apply`] will do.
#[derive(Debug)]
pub struct Plan {
    /// The certificate that will be served.
    pub new: CertInfo,
    /// The chain installed as the CA file (intermediates, then the root),
    /// empty when none.
    pub chain: Vec<CertInfo>,
    /// Whether the chain was verified up to a root.
    pub chain_verified: bool,
    /// The certificate configured now, when it can be read.
    pub old: Option<CertInfo>,
    /// Warnings the operator should read (few days left, unverified chain).
    pub warnings: Vec<String>,
    /// Where the current `.ssl` is copied to.
    pub backup_dir: PathBuf,
    /// Where an existing `.ssl.bak` is set aside first.
    pub set_aside: Option<PathBuf>,
    /// The settings written to keytrustee.conf.
    pub settings: Vec<(&'static str, String)>,
    /// The pid of the running server, reloaded and checked at the end.
    pub server_pid: Option<u32>,
    files: Vec<Install>,
    leaf_der: CertificateDer<'static>,
}

/// One file of `.ssl` as it will be after the change.
#[derive(Debug)]
struct Install {
    path: PathBuf,
    /// None: the file must not exist afterwards.
    contents: Option<Zeroizing<Vec<u8>>>,
}

/// What [`apply`] did.
#[derive(Debug)]
pub struct Outcome {
    /// The server was reloaded and serves the new certificate (its pid).
    pub reloaded: Option<u32>,
    pub backup_dir: PathBuf,
    pub set_aside: Option<PathBuf>,
}

/// Reads and checks everything; changes nothing.
pub fn plan(instance: &Instance, options: &Options, now: i64) -> Result<Plan> {
    let layout = &instance.layout;
    let ssl = layout.ssl_dir();
    let (current_cert, current_key, _) = instance.tls_files();
    let current_script = instance.settings.ssl_private_key_password_script.clone();
    let backup_dir = layout.confdir.join(BACKUP_DIR);
    // Every password script runs as the server will run it: as the service
    // account (also because a script read from the confdir is that
    // account's to write, and root must never run it).
    let runs_as = instance.service_account()?;

    // The certificate(s), the key, and the password script the server will run.
    let (certs, key, script, ca_file): (Vec<CertificateDer<'static>>, PrivateKey, Option<String>, Option<PathBuf>) =
        match &options.source {
            Source::Files { cert, key, password, password_what } => {
                let certs = chain::read_cert_file(cert)?;
                let (key, script) = match key {
                    Some(path) => {
                        let password = password.clone().map(|p| p.run_by(runs_as.as_ref()));
                        let key = PrivateKey::read(path, password.as_ref(), password_what)?;
                        (key, password.as_ref().and_then(|p| p.script()).map(str::to_string))
                    }
                    None => {
                        // The current key, with the current script unless
                        // another password source was given.
                        let source = password
                            .clone()
                            .or_else(|| current_script.clone().map(PasswordSource::Script))
                            .map(|p| p.run_by(runs_as.as_ref()));
                        let what = if password.is_some() { password_what.as_str() } else { "SSL_PRIVATE_KEY_PASSWORD_SCRIPT" };
                        let key = PrivateKey::read(&current_key, source.as_ref(), what)?;
                        (key, source.as_ref().and_then(|p| p.script()).map(str::to_string))
                    }
                };
                (certs, key, script, options.ca.clone())
            }
            Source::Pkcs12 { bundle, password_file } => {
                let (key, certs) = chain::read_pkcs12(bundle, &PasswordSource::File(password_file.clone()))?;
                (certs, key, None, options.ca.clone())
            }
            Source::Backup => {
                if !backup_dir.is_dir() {
                    return Err(Error::usage(format!("there is no {} to roll back to", backup_dir.display()))
                        .with_hint("kt cert replace makes it; nothing was changed"));
                }
                let previous = read_previous(&backup_dir, &ssl)?;
                let cert = previous.file(config::SSL_CERTIFICATE, instance::CERT_FILE);
                let key_path = previous.file(config::SSL_PRIVATE_KEY, instance::KEY_FILE);
                let ca = previous.file(config::SSL_CA, instance::CA_FILE);
                let script = previous.script.clone();
                let source = script.clone().map(|s| PasswordSource::Script(s).run_by(runs_as.as_ref()));
                let certs = chain::read_cert_file(&cert)?;
                let key = PrivateKey::read(&key_path, source.as_ref(), "SSL_PRIVATE_KEY_PASSWORD_SCRIPT (as it was)")?;
                (certs, key, script, ca.exists().then_some(ca))
            }
        };
    if key.is_encrypted() && script.is_none() {
        return Err(Error::usage("the key is encrypted, and the server needs a script to get its password at every start")
            .with_hint("give --key-password-script CMD (stored as SSL_PRIVATE_KEY_PASSWORD_SCRIPT), or install an unencrypted key"));
    }

    // The leaf is the certificate that belongs to the key (a PKCS#12
    // bundle or a chain file may list it anywhere).
    let leaf_index = certs
        .iter()
        .position(|c| chain::key_matches(c, &key))
        .ok_or_else(|| {
            Error::usage("the private key does not belong to the certificate")
                .because(format!("the key is {}; the certificate's is {}", key.describe(), describe_first(&certs)))
        })?;
    let leaf = certs[leaf_index].clone();
    let carried: Vec<CertificateDer<'static>> =
        certs.iter().enumerate().filter(|(i, _)| *i != leaf_index).map(|(_, c)| c.clone()).collect();
    let new = CertInfo::parse(&leaf).map_err(|e| Error::usage("cannot read the new certificate").because(e))?;

    let mut warnings = Vec::new();
    if now < new.not_before {
        return Err(Error::usage(format!("the certificate is not valid yet (from {})", crate::clock::rfc3339(new.not_before)))
            .with_hint("check this host's clock, or wait until it is valid"));
    }
    if now > new.not_after {
        return Err(Error::usage(format!("the certificate expired on {}", crate::clock::rfc3339(new.not_after))));
    }
    let days = new.days_left_at(now);
    if days < options.warn_days {
        warnings.push(format!("the certificate expires in {days} days ({})", crate::clock::rfc3339(new.not_after)));
    }
    let host = instance.hostname()?;
    if !new.covers(host) {
        let err = Error::usage(format!("the certificate does not name this host, {host}"))
            .because(format!("it names {}", new.names().join(", ")));
        if !options.allow_hostname_mismatch {
            return Err(err.with_hint("get a certificate for this host name, or give --allow-hostname-mismatch"));
        }
        warnings.push(format!("the certificate does not name this host, {host} (allowed by --allow-hostname-mismatch)"));
    }

    // The chain: --ca (plus whatever the certificate file carried), or
    // the carried certificates alone, or none for a self-signed one.
    let mut others = carried.clone();
    if let Some(ca) = &ca_file {
        for cert in chain::read_cert_file(ca)? {
            if !others.contains(&cert) {
                others.push(cert);
            }
        }
    }
    let (chain_ders, chain_verified) = if others.is_empty() {
        (if new.self_issued { vec![leaf.clone()] } else { Vec::new() }, new.self_issued)
    } else if ca_file.is_some() || others.iter().any(|c| CertInfo::parse(c).is_ok_and(|i| i.self_issued)) {
        (chain::verify_chain(&leaf, &others, now)?, true)
    } else {
        warnings.push("the chain in the certificate file has no root, so it was not verified: give --ca ROOT to verify it".into());
        (others.clone(), false)
    };
    if !new.self_issued && chain_ders.is_empty() {
        warnings.push("no CA chain given: clients need the issuing CA in their trust store (give --ca CHAIN to install it)".into());
    }
    let chain_info: Vec<CertInfo> = chain_ders.iter().filter_map(|c| CertInfo::parse(c).ok()).collect();

    // The result must load as the server loads it.
    let (versions, _) = crate::tls::protocol_versions(&instance.settings.tls_min_version)?;
    let provider = crate::tls::provider(&instance.settings.ciphers, &versions)?;
    let mut served = vec![leaf.clone()];
    served.extend(chain_ders.iter().filter(|c| **c != leaf).cloned());
    rustls::sign::CertifiedKey::from_der(served, key.rustls_der(), &provider)
        .map_err(|e| Error::usage("the server could not use this certificate and key").because(e))?;

    let cert_path = ssl.join(instance::CERT_FILE);
    let key_path = ssl.join(instance::KEY_FILE);
    let ca_path = ssl.join(instance::CA_FILE);
    let files = vec![
        Install { path: cert_path.clone(), contents: Some(Zeroizing::new(pem(&[leaf.clone()]).into_bytes())) },
        Install { path: key_path.clone(), contents: Some(key.to_file_pem()) },
        Install {
            path: ca_path.clone(),
            contents: (!chain_ders.is_empty()).then(|| Zeroizing::new(pem(&chain_ders).into_bytes())),
        },
    ];
    let mut settings = vec![
        (config::SSL_CERTIFICATE, cert_path.display().to_string()),
        (config::SSL_PRIVATE_KEY, key_path.display().to_string()),
        (config::SSL_CA, ca_path.display().to_string()),
    ];
    // The script is set for an encrypted key, emptied when it was set
    // and is no longer needed, and left out when it never was.
    match &script {
        Some(s) if key.is_encrypted() => settings.push((config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT, s.clone())),
        _ if instance.config.get(config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT).is_some() => {
            settings.push((config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT, String::new()))
        }
        _ => {}
    }

    let old = chain::read_cert_file(&current_cert).ok().and_then(|c| CertInfo::parse(&c[0]).ok());
    let set_aside = if backup_dir.symlink_metadata().is_ok() {
        Some(free_name(&layout.confdir, &format!("{BACKUP_DIR}.{}", crate::clock::local_stamp_now())))
    } else {
        None
    };
    if !ssl.is_dir() {
        return Err(Error::env(format!("{} is missing", ssl.display())).with_hint("is this an instance? (kt init makes it)"));
    }
    for file in &files {
        if file.path.symlink_metadata().is_ok_and(|m| !m.is_file()) {
            return Err(Error::usage(format!("{} is not a regular file", file.path.display()))
                .with_hint("kt replaces only regular files there (a link could point anywhere); move it away first"));
        }
    }
    let server_pid = ServerProcess::for_instance(instance)?.running_pid()?;
    Ok(Plan {
        new,
        chain: chain_info,
        chain_verified,
        old,
        warnings,
        backup_dir,
        set_aside,
        settings,
        server_pid,
        files,
        leaf_der: leaf,
    })
}

/// Makes the change [`plan`] checked, under the undo journal; on any
/// failure everything is put back and the error explains what was undone.
pub fn apply(instance: &Instance, plan: Plan, progress: &dyn Progress) -> Result<Outcome> {
    let layout = &instance.layout;
    let _lock = lock(&layout.confdir)?;
    let owner = instance.service_account()?;
    let ssl = layout.ssl_dir();
    let config_path = layout.config_file();
    let process = ServerProcess::for_instance(instance)?;
    let mut journal = Journal::new();

    // Undone last, after the files and configuration are back: a server
    // that was reloaded onto the new files is reloaded onto the old ones.
    let signalled = Rc::new(Cell::new(None::<u32>));
    {
        let signalled = signalled.clone();
        let process = process.clone();
        let old_leaf = instance.tls_files().0;
        journal.record("reload the server again if it was reloaded", move || {
            let Some(pid) = signalled.get() else { return Ok(()) };
            let offset = process.log_offset();
            process.reload()?;
            let old = chain::read_cert_file(&old_leaf)?;
            wait_until_served(&process, &old[0], offset)
                .map_err(|e| Error::env(format!("the server (pid {pid}) did not go back to the previous certificate")).because(e))
        });
    }

    let result = (|| -> Result<Option<u32>> {
        // For a rollback too: what it puts back was read by plan(), and
        // `.ssl.bak` becomes the copy of the certificate it replaces.
        if let Some(aside) = &plan.set_aside {
            progress.step(&format!("keeping the older {} as {}", plan.backup_dir.display(), aside.display()));
            rename_recorded(&mut journal, &plan.backup_dir, aside)?;
        }
        progress.step(&format!("copying {} to {}", ssl.display(), plan.backup_dir.display()));
        copy_to_backup(&mut journal, instance, &ssl, &plan.backup_dir)?;

        progress.step(&format!("installing the new certificate in {}", ssl.display()));
        for file in &plan.files {
            install_recorded(&mut journal, file, owner.as_ref())?;
        }

        progress.step(&format!("updating {}", config_path.display()));
        let old_config = Zeroizing::new(fs::read(&config_path).env_context(|| format!("cannot read {}", config_path.display()))?);
        let mut config = Config::load(&config_path)?;
        for (key, value) in &plan.settings {
            config.set(key, value.clone());
        }
        config.save(&config_path, owner.as_ref())?;
        {
            let path = config_path.clone();
            let owner = owner.clone();
            journal.record(format!("updated {}", config_path.display()), move || {
                fsutil::write_atomic(&path, &old_config, 0o600, owner.as_ref())
            });
        }

        let Some(pid) = process.running_pid()? else { return Ok(None) };
        progress.step(&format!("reloading the server (pid {pid})"));
        let offset = process.log_offset();
        process.reload()?;
        signalled.set(Some(pid));
        wait_until_served(&process, &plan.leaf_der, offset)?;
        Ok(Some(pid))
    })();
    match result {
        Ok(reloaded) => {
            journal.commit();
            Ok(Outcome { reloaded, backup_dir: plan.backup_dir, set_aside: plan.set_aside })
        }
        Err(err) => {
            let report = journal.roll_back();
            // The environment refused the change (the checks had passed):
            // exit 3, with what failed and what was undone.
            let headline = if report.is_complete() {
                "the certificate was not replaced: everything was put back"
            } else {
                "the certificate was not replaced, and some steps could not be undone"
            };
            let mut wrapped = Error::env(headline).because(err.message());
            for cause in err.causes() {
                wrapped = wrapped.because(cause);
            }
            if let Some(hint) = err.hint() {
                wrapped = wrapped.with_hint(hint);
            }
            Err(report.explain(wrapped))
        }
    }
}

/// Waits until the server at `process` presents `leaf`; fails when the
/// server logs a failed reload after `log_offset`, or after a timeout.
fn wait_until_served(process: &ServerProcess, leaf: &CertificateDer<'_>, log_offset: u64) -> Result<()> {
    let url = process.probe_url();
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let failed: Vec<String> = process.log_lines_since(log_offset).into_iter().filter(|l| l.contains("reload failed")).collect();
        if let Some(line) = failed.last() {
            return Err(Error::env("the server refused the new certificate on reload").because(line.clone()));
        }
        let last = match HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(2)).and_then(|mut c| {
            c.request("GET", "/?a=fingerprint", &[], b"")?;
            Ok(c.peer_certificate().map(<[u8]>::to_vec))
        }) {
            Ok(Some(der)) if der == leaf.as_ref() => return Ok(()),
            Ok(Some(der)) => format!("it still serves {}", crate::cert::info::fingerprint(&der)),
            Ok(None) => "it presented no certificate".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::env(format!("the server at {url} did not serve the new certificate within {} s", RELOAD_TIMEOUT.as_secs()))
                .because(last)
                .with_hint(format!("see {}", process.log_file.display())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The settings `.ssl.bak` was made from.
struct Previous {
    backup_dir: PathBuf,
    ssl: PathBuf,
    values: serde_json::Map<String, Value>,
    script: Option<String>,
}

impl Previous {
    /// Where the file of `setting` is now: inside `.ssl.bak` when it was
    /// inside `.ssl`, else where it was (replace does not touch files
    /// outside `.ssl`); the default name when the setting was not there.
    fn file(&self, setting: &str, default_name: &str) -> PathBuf {
        let path = match self.values.get(setting) {
            Some(Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            _ => return self.backup_dir.join(default_name),
        };
        match path.strip_prefix(&self.ssl) {
            Ok(rest) => self.backup_dir.join(rest),
            Err(_) => path,
        }
    }
}

fn read_previous(backup_dir: &Path, ssl: &Path) -> Result<Previous> {
    let file = backup_dir.join(PREVIOUS_SETTINGS);
    let values = match fs::read(&file) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            _ => return Err(Error::usage(format!("{} is not a JSON object", file.display()))),
        },
        // A .ssl.bak made by hand (the documented `cp -r .ssl .ssl.bak`):
        // the default file names, no password script.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Map::new(),
        Err(e) => return Err(Error::env(format!("cannot read {}", file.display())).because_err(&e)),
    };
    let script = match values.get(config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(Previous { backup_dir: backup_dir.to_path_buf(), ssl: ssl.to_path_buf(), values, script })
}

/// One change of the confdir's certificate at a time: a lock on the
/// confdir itself (flock on the directory), so no lock file is left behind.
fn lock(confdir: &Path) -> Result<fs::File> {
    let dir = fs::File::open(confdir).env_context(|| format!("cannot open {}", confdir.display()))?;
    dir.try_lock().map_err(|_| {
        Error::env("another kt cert replace or rollback is running on this instance")
            .with_hint(format!("wait for it to finish ({} is locked)", confdir.display()))
    })?;
    Ok(dir)
}

/// `dir/base`, or `dir/base-2`, `-3`, ... when taken.
fn free_name(dir: &Path, base: &str) -> PathBuf {
    let first = dir.join(base);
    if first.symlink_metadata().is_err() {
        return first;
    }
    (2..).map(|n| dir.join(format!("{base}-{n}"))).find(|p| p.symlink_metadata().is_err()).expect("some name is free")
}

fn rename_recorded(journal: &mut Journal, from: &Path, to: &Path) -> Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(Error::env(format!("{} appeared while kt was running", to.display())));
    }
    fs::rename(from, to).env_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
    fsutil::sync_dir(fsutil::parent_dir(to))?;
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    journal.record(format!("renamed {} to {}", from.display(), to.display()), move || {
        fs::rename(&to, &from).env_context(|| format!("cannot rename {} back to {}", to.display(), from.display()))
    });
    Ok(())
}

/// Copies `ssl` (regular files and symbolic links, one level of
/// subdirectories or more, modes and owners kept) to `backup` through a
/// temp directory, plus the settings being replaced.
fn copy_to_backup(journal: &mut Journal, instance: &Instance, ssl: &Path, backup: &Path) -> Result<()> {
    if backup.symlink_metadata().is_ok() {
        return Err(Error::env(format!("{} appeared while kt was running", backup.display())));
    }
    let tmp = backup.with_file_name(format!("{BACKUP_DIR}.kt-tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) });
    let result = (|| -> Result<()> {
        copy_tree(ssl, &tmp)?;
        let mut previous = serde_json::Map::new();
        for key in SETTINGS {
            if let Some(value) = instance.config.get(key) {
                previous.insert(key.to_string(), value.clone());
            }
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(previous)).expect("a map serializes");
        text.push('\n');
        let meta = fs::metadata(ssl).env_context(|| format!("cannot read {}", ssl.display()))?;
        let owner = Account::lookup_uid(meta.uid());
        fsutil::write_atomic(&tmp.join(PREVIOUS_SETTINGS), text.as_bytes(), 0o600, owner.as_ref())?;
        fsutil::sync_dir(&tmp)?;
        fs::rename(&tmp, backup).env_context(|| format!("cannot rename {} to {}", tmp.display(), backup.display()))?;
        fsutil::sync_dir(fsutil::parent_dir(backup))
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let backup = backup.to_path_buf();
    journal.record(format!("copied {} to {}", ssl.display(), backup.display()), move || {
        fs::remove_dir_all(&backup).env_context(|| format!("cannot remove {}", backup.display()))
    });
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let meta = fs::metadata(from).env_context(|| format!("cannot read {}", from.display()))?;
    fs::DirBuilder::new().mode(0o700).create(to).env_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).env_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry.env_context(|| format!("cannot read {}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().env_context(|| format!("cannot read {}", src.display()))?;
        if kind.is_symlink() {
            let target = fs::read_link(&src).env_context(|| format!("cannot read {}", src.display()))?;
            std::os::unix::fs::symlink(&target, &dst).env_context(|| format!("cannot create {}", dst.display()))?;
            let m = src.symlink_metadata().env_context(|| format!("cannot read {}", src.display()))?;
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid())).env_context(|| format!("cannot chown {}", dst.display()))?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            let m = src.symlink_metadata().env_context(|| format!("cannot read {}", src.display()))?;
            let contents = Zeroizing::new(fs::read(&src).env_context(|| format!("cannot read {}", src.display()))?);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dst)
                .env_context(|| format!("cannot create {}", dst.display()))?;
            use std::io::Write;
            file.write_all(&contents).env_context(|| format!("cannot write {}", dst.display()))?;
            file.set_permissions(fs::Permissions::from_mode(m.mode() & 0o7777)).env_context(|| format!("cannot set the mode of {}", dst.display()))?;
            file.sync_all().env_context(|| format!("cannot fsync {}", dst.display()))?;
            std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid())).env_context(|| format!("cannot chown {}", dst.display()))?;
        } else {
            return Err(Error::usage(format!("{} is not a file, link or directory: kt does not copy it", src.display())));
        }
    }
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777)).env_context(|| format!("cannot set the mode of {}", to.display()))?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid())).env_context(|| format!("cannot chown {}", to.display()))?;
    fsutil::sync_dir(to)
}

/// Puts one file of the new `.ssl` in place (or out of the way), and
/// records how to put the old one back.
fn install_recorded(journal: &mut Journal, file: &Install, owner: Option<&Account>) -> Result<()> {
    let path = file.path.clone();
    let old = match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => Some((Zeroizing::new(fs::read(&path).env_context(|| format!("cannot read {}", path.display()))?), m)),
        Ok(_) => {
            return Err(Error::usage(format!("{} is not a regular file", path.display()))
                .with_hint("kt replaces only the regular files it installs; move it away first"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::env(format!("cannot read {}", path.display())).because_err(&e)),
    };
    match &file.contents {
        Some(contents) => fsutil::write_atomic(&path, contents, 0o600, owner)?,
        None if old.is_some() => {
            fs::remove_file(&path).env_context(|| format!("cannot remove {}", path.display()))?;
            fsutil::sync_dir(fsutil::parent_dir(&path))?;
        }
        None => return Ok(()),
    }
    let what = if file.contents.is_some() { "installed" } else { "moved away (a copy is in .ssl.bak)" };
    journal.record(format!("{what} {}", path.display()), move || match old {
        Some((contents, meta)) => {
            let owner = Account::lookup_uid(meta.uid());
            fsutil::write_atomic(&path, &contents, meta.mode() & 0o7777, owner.as_ref())
        }
        None => {
            fs::remove_file(&path).env_context(|| format!("cannot remove {}", path.display()))?;
            fsutil::sync_dir(fsutil::parent_dir(&path))
        }
    });
    Ok(())
}

fn pem(certs: &[CertificateDer<'_>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn describe_first(certs: &[CertificateDer<'_>]) -> String {
    certs.first().and_then(|c| CertInfo::parse(c).ok()).map(|i| i.key).unwrap_or_else(|| "unknown".into())
}
