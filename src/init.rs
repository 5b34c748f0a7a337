//! `kt init`: create a complete, working instance, or nothing at all.
//!
//! Everything that can be checked is checked before the first change
//! (host name, addresses, existing instance, free port, PostgreSQL tools,
//! writable and reachable directories). After that, every path this run
//! creates (and the database it starts) is recorded in an undo journal
//! ([`crate::journal`]), and a failure removes exactly those paths (and
//! stops that database), so a failed init leaves the machine as it found
//! it, or names what it could not remove. The one exception is the service account: when kt creates
//! it, it stays, as accounts are shared infrastructure that other files may
//! already name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::account::Account;
use crate::cert;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::hostname;
use crate::instance::{self, Layout, DB_USER};
use crate::journal::Journal;
use crate::pgp::{self, KeySpec};
use crate::progress::Progress;
use crate::storage::cluster::{self, Cluster};
use crate::storage::pgpass::Password;
use crate::storage::schema;

/// Everything `kt init` needs, resolved by the command-line layer.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub layout: Layout,
    pub hostname: String,
    pub listen: String,
    pub db_port: u16,
    /// None: `<home>/db`.
    pub pg_rootdir: Option<PathBuf>,
    /// Used when running as root; otherwise the current user runs everything.
    pub service_user: String,
    pub key_type: KeySpec,
    pub cert_days: u32,
    /// Extra DNS names or IP addresses for the certificate.
    pub extra_sans: Vec<String>,
    /// `--external-db`: the database is an existing server (then
    /// `db_port` and `pg_rootdir` are not used; see src/init_external.rs).
    pub external: Option<crate::init_external::ExternalInit>,
}

/// What a successful init made.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub confdir: PathBuf,
    /// The data directory, or `external HOST:PORT/DB`.
    pub database: String,
    pub service_user: String,
    pub fingerprint: String,
    pub schema_version: i32,
}

/// Creates the instance described by `options`.
pub fn init(options: &InitOptions, progress: &dyn Progress) -> Result<InitReport> {
    if let Some(external) = &options.external {
        return crate::init_external::init(options, external, progress);
    }
    let layout = &options.layout;
    let pg_rootdir = match &options.pg_rootdir {
        Some(dir) => fsutil::absolute(dir)?,
        None => layout.default_pg_rootdir(),
    };

    // -- Checks of the input: nothing changes before these pass.
    check_input(options)?;
    if options.db_port == 0 {
        return Err(Error::usage("the database port must be between 1 and 65535"));
    }
    refuse_existing(layout, &[&layout.confdir, &pg_rootdir])?;

    // -- Checks of the environment.
    let bindir = cluster::find_bindir()?;
    cluster::ensure_port_free(options.db_port)?;
    for dir in [&layout.confdir, &pg_rootdir] {
        check_creatable(dir)?;
    }
    let account = Account::service(&options.service_user, &layout.home)?;
    for dir in [&layout.confdir, &pg_rootdir] {
        check_reachable(&account, dir)?;
    }

    // -- Changes, each recorded in an undo journal: a failure undoes them
    // all, and names whatever it could not undo.
    let mut journal = Journal::new();
    let result = create(options, &pg_rootdir, bindir, account, &mut journal, progress);
    journal.finish(result, "remove what is marked NOT UNDONE by hand before running kt init again")
}

/// The checks of the options both kinds of instance share.
pub(crate) fn check_input(options: &InitOptions) -> Result<()> {
    hostname::validate(&options.hostname)?;
    options.listen.parse::<SocketAddr>().map_err(|e| {
        Error::usage(format!("invalid listen address {:?}", options.listen))
            .because(e)
            .with_hint("give an address and port such as 0.0.0.0:11371 or [::]:11371")
    })?;
    for san in &options.extra_sans {
        if san.parse::<std::net::IpAddr>().is_err() {
            hostname::validate(san)?;
        }
    }
    if options.cert_days == 0 {
        return Err(Error::usage("the certificate validity must be at least one day"));
    }
    Ok(())
}

/// The service account can enter every parent of `dir`.
pub(crate) fn check_reachable(account: &Account, dir: &Path) -> Result<()> {
    let reachable = nearest_existing(dir);
    if let Some(blocked) = account.first_untraversable(&reachable) {
        return Err(Error::env(format!("the service account {} cannot enter {}", account.name, blocked.display())).with_hint(
            format!(
                "kt runs as {} and must reach {}: put the instance under a directory it can enter (such as /var/lib or /tmp)",
                account.name,
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The files of an instance whatever its database: the confdir, the
/// server's OpenPGP key and its self-signed TLS certificate.
pub(crate) struct Made {
    pub fingerprint: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
}

/// Creates the confdir, the server key and the certificate (recorded).
pub(crate) fn create_confdir(options: &InitOptions, account: &Account, journal: &mut Journal, progress: &dyn Progress) -> Result<Made> {
    let layout = &options.layout;
    let owner = Some(account);
    progress.step(&format!("creating {}", layout.confdir.display()));
    // The home must stay enterable by the service account; only the
    // confdir and the data inside are private.
    let home_created = fsutil::create_dirs(&layout.home, 0o755)?;
    journal.record_created(home_created.iter().cloned());
    if home_created.last() == Some(&layout.home) {
        account.chown(&layout.home)?;
    }
    let made = fsutil::create_dirs(&layout.confdir, 0o700)?;
    journal.record_created(made);
    account.chown(&layout.confdir)?;
    let ssl_dir = layout.ssl_dir();
    journal.record_created(fsutil::create_dirs(&ssl_dir, 0o700)?);
    account.chown(&ssl_dir)?;

    progress.step(match options.key_type {
        KeySpec::Rsa4096 => "generating the server OpenPGP key (RSA 4096, this takes a while)",
        KeySpec::Ed25519 => "generating the server OpenPGP key (ed25519/cv25519)",
    });
    let key = pgp::generate_server_key(options.key_type, &options.hostname)?;
    write_new(journal, &layout.secring(), &key.secret, owner)?;
    write_new(journal, &layout.pubring(), &key.public, owner)?;

    progress.step(&format!("creating a self-signed TLS certificate for {}", options.hostname));
    let tls = cert::self_signed(&options.hostname, &options.extra_sans, options.cert_days)?;
    let cert_path = ssl_dir.join(instance::CERT_FILE);
    let key_path = ssl_dir.join(instance::KEY_FILE);
    let ca_path = ssl_dir.join(instance::CA_FILE);
    write_new(journal, &cert_path, tls.cert_pem.as_bytes(), owner)?;
    write_new(journal, &key_path, tls.key_pem.as_bytes(), owner)?;
    // Self-signed: the certificate is its own CA, which clients can pin.
    write_new(journal, &ca_path, tls.cert_pem.as_bytes(), owner)?;
    Ok(Made { fingerprint: key.fingerprint, cert_path, key_path, ca_path })
}

/// The configuration keys both kinds of instance write.
pub(crate) fn base_config(options: &InitOptions, made: &Made, account: &Account) -> Config {
    let mut config = Config::new();
    config.set(config::HOSTNAME, options.hostname.clone());
    config.set(config::LISTEN, options.listen.clone());
    config.set(config::SSL_CERTIFICATE, made.cert_path.to_string_lossy().into_owned());
    config.set(config::SSL_PRIVATE_KEY, made.key_path.to_string_lossy().into_owned());
    config.set(config::SSL_CA, made.ca_path.to_string_lossy().into_owned());
    config.set(config::TLS_MIN_VERSION, config::DEFAULT_TLS_MIN_VERSION);
    config.set(config::CIPHERS, config::DEFAULT_CIPHERS);
    config.set(config::SERVICE_USER, account.name.clone());
    config
}

/// The changes of [`init`], after every check passed.
fn create(
    options: &InitOptions,
    pg_rootdir: &Path,
    bindir: PathBuf,
    account: Account,
    journal: &mut Journal,
    progress: &dyn Progress,
) -> Result<InitReport> {
    let layout = &options.layout;
    let pg_rootdir = pg_rootdir.to_path_buf();
    let owner = Some(&account);
    let made = create_confdir(options, &account, journal, progress)?;

    let password = Password::generate();
    write_new(journal, &layout.pgpass(), password.pgpass_line(DB_USER).as_bytes(), owner)?;

    progress.step(&format!("creating the database cluster in {}", pg_rootdir.display()));
    let data_created = fsutil::create_dirs(&pg_rootdir, 0o700)?;
    journal.record_created(data_created.iter().cloned());
    for dir in &data_created {
        account.chown(dir)?;
    }
    let log_created = fsutil::create_dirs(&layout.log_dir(), 0o700)?;
    journal.record_created(log_created.iter().cloned());
    for dir in &log_created {
        account.chown(dir)?;
    }
    let cluster = Cluster {
        data_dir: pg_rootdir.clone(),
        port: options.db_port,
        log_file: layout.db_log_file(),
        account: account.clone(),
        bindir,
    };
    cluster.initdb(&password, &layout.confdir)?;
    progress.step(&format!("starting the database on 127.0.0.1:{}", options.db_port));
    cluster.start()?;
    {
        let cluster = cluster.clone();
        journal.record(format!("started the database on port {}", cluster.port), move || cluster.stop().map(|_| ()));
    }
    progress.step("creating the keytrustee database and its schema");
    let mut admin = cluster.connect(&password, "postgres")?;
    crate::storage::databases::create(&mut admin, crate::instance::DB_NAME)?;
    drop(admin);
    let mut client = cluster.connect(&password, instance::DB_NAME)?;
    schema::migrate(&mut client)?;
    let schema_version = schema::current_version(&mut client)?;
    drop(client);

    // The configuration is written last: its presence marks a complete instance.
    let mut config = base_config(options, &made, &account);
    config.set(config::DB_PORT, options.db_port);
    config.set(config::PG_ROOTDIR, pg_rootdir.to_string_lossy().into_owned());
    // No host file (src/hostconf.rs): a single host keeps every key in
    // keytrustee.conf, where the operator edits them; only a passive,
    // whose keytrustee.conf comes from the active, needs one.
    let config_path = layout.config_file();
    journal.record_created([config_path.clone()]);
    config.save(&config_path, owner)?;

    progress.step("stopping the database (start it with `kt db start`)");
    cluster.stop()?;
    Ok(InitReport {
        confdir: layout.confdir.clone(),
        database: pg_rootdir.display().to_string(),
        service_user: account.name,
        fingerprint: made.fingerprint,
        schema_version,
    })
}

/// Refuses to touch an existing instance or a non-empty directory.
pub(crate) fn refuse_existing(layout: &Layout, dirs: &[&Path]) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::usage(what).with_hint(
            "kt init never overwrites: choose another --confdir/--pg-rootdir, or remove the old instance yourself",
        ))
    };
    if layout.config_file().exists() {
        return refuse(format!("an instance already exists at {}", layout.confdir.display()));
    }
    for dir in dirs {
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return refuse(format!("{} already exists and is not empty", dir.display()));
                }
                return refuse(format!("{} already exists", dir.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(Error::env(format!("cannot create {}", dir.display())).because_err(&e))
            }
            Err(_) if dir.exists() => return refuse(format!("{} already exists", dir.display())),
            Err(_) => {}
        }
    }
    Ok(())
}

/// The closest ancestor of `dir` (or `dir` itself) that exists.
fn nearest_existing(dir: &Path) -> PathBuf {
    let mut cursor = Some(dir);
    while let Some(p) = cursor {
        if p.exists() {
            return p.to_path_buf();
        }
        cursor = p.parent();
    }
    PathBuf::from("/")
}

/// Checks that `dir` could be created: its nearest existing ancestor is a
/// directory this process may write to.
pub(crate) fn check_creatable(dir: &Path) -> Result<()> {
    let ancestor = nearest_existing(dir);
    let fail = |why: String| {
        Err(Error::env(format!("cannot create {}", dir.display())).because(why))
    };
    if !ancestor.is_dir() {
        return fail(format!("{} is not a directory", ancestor.display()));
    }
    let c = std::ffi::CString::new(ancestor.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::usage("path contains a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return fail(format!("{}: {e}", ancestor.display()));
    }
    Ok(())
}

/// Writes a file that must not exist yet (0600), recording it for undo.
pub(crate) fn write_new(journal: &mut Journal, path: &Path, contents: &[u8], owner: Option<&Account>) -> Result<()> {
    if path.exists() {
        return Err(Error::env(format!("{} appeared while kt init was running", path.display())));
    }
    // Recorded before the write: a failed atomic write removes its own
    // temp file, and a path that is not there is not an undo failure.
    journal.record_created([path.to_path_buf()]);
    fsutil::write_atomic(path, contents, 0o600, owner)
}
