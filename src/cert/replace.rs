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
//! 2. the new `.ssl` is made whole beside the old one, as `.ssl.kt-new`: a
//!    copy of `.ssl` with the new certificate, key and CA files (mode 0600;
//!    a CA file the new certificate does not use left out);
//! 3. the two are swapped in one rename (renameat2 `RENAME_EXCHANGE`), so
//!    `.ssl` always holds one consistent set, even after a `kill -9`; the
//!    previous `.ssl` gets `kt-cert-previous.json` (the four settings being
//!    replaced, what `rollback` reads) and becomes `.ssl.bak`;
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
//!
//! Run as root, `kt cert` reads the operator's files first and then works
//! as the service account (commands/cert/replace.rs): the confdir is that
//! account's, and root working by path in a directory another account can
//! write is open to symlink and rename races.

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
use crate::config::{self, Config};
use crate::daemon::ServerProcess;
use crate::error::{Context, Error, Result};
use crate::fsutil;
use crate::instance::{self, Instance};
use crate::journal::Journal;
use crate::progress::Progress;
use crate::secret::{PasswordSource, Secret};

/// The directory that holds the previous certificate after a replace.
pub const BACKUP_DIR: &str = ".ssl.bak";
/// Where the new `.ssl` is made before it is swapped in.
pub const STAGING_DIR: &str = ".ssl.kt-new";
/// In `.ssl.bak`: the settings the replace changed, for `kt cert rollback`.
pub const PREVIOUS_SETTINGS: &str = "kt-cert-previous.json";
/// How long a reloaded server has to serve the new certificate.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The four settings a replace sets.
const SETTINGS: [&str; 4] =
    [config::SSL_CERTIFICATE, config::SSL_PRIVATE_KEY, config::SSL_CA, config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT];

/// A file named on the command line, read before kt drops root: the
/// operator may keep new keys where only root can read them, and after the
/// drop kt works as the service account.
pub struct Given {
    /// The path, for messages.
    pub origin: String,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Given {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Given({}, {} bytes)", self.origin, self.bytes.len())
    }
}

impl Given {
    /// Reads `path`; `what` names it in the error ("the certificate").
    pub fn read(path: &Path, what: &str) -> Result<Given> {
        let bytes = fs::read(path).map_err(|e| Error::usage(format!("cannot read {what} {}", path.display())).because_err(&e))?;
        Ok(Given { origin: path.display().to_string(), bytes: Zeroizing::new(bytes) })
    }
}

/// Where the new certificate and key come from.
#[derive(Debug)]
pub enum Source {
    /// A certificate file (PEM or DER, possibly followed by its chain) and
    /// a key file (None: the instance's current key).
    Files { cert: Given, key: Option<Given>, password: Option<PasswordSource>, password_what: String },
    /// A PKCS#12 bundle and its password.
    Pkcs12 { bundle: Given, password: Secret },
    /// What `.ssl.bak` holds (`kt cert rollback`).
    Backup,
}

/// What `kt cert replace` was asked to do.
#[derive(Debug)]
pub struct Options {
    pub source: Source,
    /// A file with the root and any intermediates.
    pub ca: Option<Given>,
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
struct Install {
    path: PathBuf,
    /// None: the file must not exist afterwards.
    contents: Option<Zeroizing<Vec<u8>>>,
}

/// The contents may be a private key: only their size is shown.
impl std::fmt::Debug for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.contents {
            Some(c) => write!(f, "Install({}, {} bytes)", self.path.display(), c.len()),
            None => write!(f, "Install({}, absent)", self.path.display()),
        }
    }
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

    // The certificate(s), the key, the password script the server will
    // run, and the CA certificates given.
    let (certs, key, script, ca_certs): (Vec<CertificateDer<'static>>, PrivateKey, Option<String>, Option<Vec<CertificateDer<'static>>>) =
        match &options.source {
            Source::Files { cert, key, password, password_what } => {
                let certs = chain::parse_certs(&cert.bytes, &cert.origin)?;
                let (key, script) = match key {
                    Some(given) => {
                        let password = password.clone().map(|p| p.run_by(runs_as.as_ref()));
                        let key = PrivateKey::parse(&given.bytes, &given.origin, password.as_ref(), password_what)?;
                        (key, password.as_ref().and_then(|p| p.script()).map(str::to_string))
                    }
                    None => {
                        // The current key, with the current script unless
                        // another password source was given.
                        let source = password
                            .clone()
                            .or_else(|| current_script.clone().map(PasswordSource::Script))
                            .map(|p| p.run_by(runs_as.as_ref()));
                        let key = match password {
                            Some(_) => PrivateKey::read(&current_key, source.as_ref(), password_what)?,
                            None => PrivateKey::read_configured(&current_key, source.as_ref())?,
                        };
                        (key, source.as_ref().and_then(|p| p.script()).map(str::to_string))
                    }
                };
                (certs, key, script, given_certs(options.ca.as_ref())?)
            }
            Source::Pkcs12 { bundle, password } => {
                let (key, certs) = chain::parse_pkcs12(&bundle.bytes, &bundle.origin, password)?;
                (certs, key, None, given_certs(options.ca.as_ref())?)
            }
            Source::Backup => {
                if !backup_dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
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
                let ca_certs = if ca.exists() { Some(chain::read_cert_file(&ca)?) } else { None };
                (certs, key, script, ca_certs)
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
                .because(format!(
                    "the key's public half is {} {}; the certificate's is {}",
                    key.describe(),
                    short_fingerprint(&key.public_key_info()),
                    certs.first().and_then(|c| CertInfo::parse(c).ok()).map(|i| format!("{} {}", i.key, short_fingerprint(&i.public_key_info))).unwrap_or_else(|| "unreadable".into())
                ))
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
    // The leaf itself is no chain member: a self-signed certificate is its
    // own CA file (as kt init writes it), which must not make a chain.
    let mut others = carried.clone();
    let ca_given = ca_certs.is_some();
    for cert in ca_certs.into_iter().flatten() {
        if cert != leaf && !others.contains(&cert) {
            others.push(cert);
        }
    }
    let (chain_ders, chain_verified) = if others.is_empty() {
        (if new.self_issued { vec![leaf.clone()] } else { Vec::new() }, new.self_issued)
    } else if ca_given || others.iter().any(|c| CertInfo::parse(c).is_ok_and(|i| i.self_issued)) {
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
        Install { path: cert_path.clone(), contents: Some(Zeroizing::new(chain::certs_pem(std::slice::from_ref(&leaf)).into_bytes())) },
        Install { path: key_path.clone(), contents: Some(key.to_file_pem()) },
        Install {
            path: ca_path.clone(),
            contents: (!chain_ders.is_empty()).then(|| Zeroizing::new(chain::certs_pem(&chain_ders).into_bytes())),
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
    if !ssl.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Error::env(format!("{} is missing or not a directory (a link is not followed)", ssl.display()))
            .with_hint("is this an instance? (kt init makes it)"));
    }
    if backup_dir.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        return Err(Error::usage(format!("{} is not a directory", backup_dir.display())).with_hint("move it away first"));
    }
    let staged = layout.confdir.join(STAGING_DIR);
    if staged.symlink_metadata().is_ok() {
        return Err(Error::env(format!("{} is left from an interrupted kt cert run", staged.display()))
            .because("it holds the new files if the run stopped before the swap, or the previous .ssl if it stopped just after")
            .with_hint(format!("compare it with {}, keep what you need, then remove it", ssl.display())));
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
        // The new .ssl is made whole beside the old one, then the two are
        // swapped in one rename: the certificate, key and CA in .ssl are
        // always one consistent set, even after a kill -9.
        let staged = layout.confdir.join(STAGING_DIR);
        progress.step(&format!("preparing the new {} in {}", ssl.display(), staged.display()));
        stage_recorded(&mut journal, &ssl, &staged, &plan.files, owner.as_ref())?;
        progress.step(&format!("swapping it in; the previous one becomes {}", plan.backup_dir.display()));
        exchange_recorded(&mut journal, &staged, &ssl)?;
        write_previous(instance, &staged, owner.as_ref())?;
        {
            let file = staged.join(PREVIOUS_SETTINGS);
            journal.record(format!("wrote {}", file.display()), move || {
                fs::remove_file(&file).env_context(|| format!("cannot remove {}", file.display()))
            });
        }
        rename_recorded(&mut journal, &staged, &plan.backup_dir)?;

        progress.step(&format!("updating {}", config_path.display()));
        let old_config = Zeroizing::new(fs::read(&config_path).env_context(|| format!("cannot read {}", config_path.display()))?);
        let mut config = Config::load(&config_path)?;
        for (key, value) in &plan.settings {
            config.set(key, value.clone());
        }
        config.save(&config_path, owner.as_ref())?;
        // The host file (in the new .ssl, undone with the swap) would
        // otherwise go on overriding these with the old paths.
        let changes: Vec<(&str, Option<Value>)> = plan.settings.iter().map(|(k, v)| (*k, Some(Value::from(v.clone())))).collect();
        crate::hostconf::update(&layout.confdir, &changes, owner.as_ref())?;
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
        let last = match process.served_leaf(Duration::from_secs(2)) {
            Ok(der) if der == leaf.as_ref() => return Ok(()),
            Ok(der) => format!("it still serves {}", crate::cert::info::fingerprint(&der)),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::env(format!("the server at {url} did not serve the new certificate within {} s", RELOAD_TIMEOUT.as_secs()))
                .because(last)
                .with_hint(format!("see {} (or the journal: journalctl -u kt-server, for a server run by systemd)", process.log_file.display())));
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

/// One change of the confdir at a time, and no backup reading it half
/// changed (`kt backup` holds the same lock shared).
fn lock(confdir: &Path) -> Result<fs::File> {
    fsutil::lock_dir(confdir, true)?.ok_or_else(|| {
        Error::env(format!("{} is locked by another kt command", confdir.display()))
            .because("a kt cert replace or rollback, or a kt backup reading it")
            .with_hint("wait for it to finish, then run this again")
    })
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

/// Makes `staged`: a copy of `ssl` (modes and owners kept) with the new
/// files in place (or a file the new set does not have left out).
fn stage_recorded(journal: &mut Journal, ssl: &Path, staged: &Path, files: &[Install], owner: Option<&Account>) -> Result<()> {
    if staged.symlink_metadata().is_ok() {
        return Err(Error::env(format!("{} appeared while kt was running", staged.display())));
    }
    let result = (|| -> Result<()> {
        copy_tree(ssl, staged)?;
        for file in files {
            let name = file.path.file_name().expect("the .ssl files have names");
            let path = staged.join(name);
            match &file.contents {
                Some(contents) => fsutil::write_atomic(&path, contents, 0o600, owner)?,
                None => match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::env(format!("cannot remove {}", path.display())).because_err(&e)),
                },
            }
        }
        fsutil::sync_dir(staged)
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(staged);
        return Err(e);
    }
    let staged = staged.to_path_buf();
    journal.record(format!("prepared {}", staged.display()), move || {
        fs::remove_dir_all(&staged).env_context(|| format!("cannot remove {}", staged.display()))
    });
    Ok(())
}

/// Swaps two directories in one atomic rename (Linux renameat2
/// RENAME_EXCHANGE), and records the swap back.
fn exchange_recorded(journal: &mut Journal, a: &Path, b: &Path) -> Result<()> {
    exchange(a, b)?;
    let (a, b) = (a.to_path_buf(), b.to_path_buf());
    journal.record(format!("swapped {} and {}", a.display(), b.display()), move || exchange(&a, &b));
    Ok(())
}

fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::usage(format!("{} holds a NUL byte", p.display())));
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two valid NUL-terminated paths relative to the working directory.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 {
        return Err(Error::env(format!("cannot swap {} and {}", a.display(), b.display())).because(std::io::Error::last_os_error()));
    }
    fsutil::sync_dir(fsutil::parent_dir(b))
}

/// Records in the previous `.ssl` (about to become `.ssl.bak`) the four
/// settings the change replaces: what `kt cert rollback` restores.
fn write_previous(instance: &Instance, dir: &Path, owner: Option<&Account>) -> Result<()> {
    let mut previous = serde_json::Map::new();
    for key in SETTINGS {
        if let Some(value) = instance.config.get(key) {
            previous.insert(key.to_string(), value.clone());
        }
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(previous)).expect("a map serializes");
    text.push('\n');
    fsutil::write_atomic(&dir.join(PREVIOUS_SETTINGS), text.as_bytes(), 0o600, owner)
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

/// The certificates of a `--ca` file, when one was given.
fn given_certs(given: Option<&Given>) -> Result<Option<Vec<CertificateDer<'static>>>> {
    given.map(|g| chain::parse_certs(&g.bytes, &g.origin)).transpose()
}

/// The first bytes of a public key's SHA-256: enough to tell two keys of
/// the same kind apart in a message.
fn short_fingerprint(public_key_info: &[u8]) -> String {
    let full = crate::cert::info::fingerprint(public_key_info);
    format!("(SHA-256 {}...)", &full[..full.len().min(23)])
}
