//! `kt ha enable` and `kt ha disable` on the active.
//!
//! Enable checks everything first (role, peer, certificate and key, the
//! cluster, no earlier HA state), then changes under an undo journal:
//! the replication role (created with a SCRAM verifier, never a
//! plaintext password in SQL), its password file and the active's CA copy
//! in the confdir, kt's blocks in `postgresql.conf` and `pg_hba.conf`, and
//! `HA_ROLE`/`HA_PEER` in keytrustee.conf. The database is restarted to
//! take the settings (and started and stopped again when it was stopped,
//! so that a setting PostgreSQL refuses, such as an unreadable key, fails
//! here and is undone, not at the next start). Disable removes exactly
//! what enable added.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::account::Account;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::ha::{self, pgconf, Peer, REPLICATION_ROLE};
use crate::instance::Instance;
use crate::journal::Journal;
use crate::progress::Progress;
use crate::settings::HaRole;
use crate::storage::cluster::{Cluster, State};
use crate::storage::pgpass::Password;
use crate::storage::roles;

/// What `enable` did.
#[derive(Debug, Clone)]
pub struct EnableReport {
    pub peer: Peer,
    /// The addresses pg_hba.conf admits for replication.
    pub peer_addresses: Vec<IpAddr>,
    /// What the database listens on now.
    pub listen_addresses: Vec<IpAddr>,
    pub password_file: PathBuf,
    /// The database was running and was restarted (else it stays stopped).
    pub restarted: bool,
}

/// Prepares the active's database for a passive at `peer`.
pub fn enable(instance: &Instance, peer: &Peer, progress: &dyn Progress) -> Result<EnableReport> {
    match instance.settings.ha_role {
        Some(HaRole::Active) => {
            return Err(Error::usage(format!(
                "HA is already enabled on this host (peer {})",
                instance.settings.ha_peer.as_deref().unwrap_or("?")
            ))
            .with_hint("run `kt ha disable` first to change the peer"))
        }
        Some(HaRole::Passive) => {
            return Err(Error::usage("this host is the passive of an HA pair").with_hint("run `kt ha enable` on the active"))
        }
        None => {}
    }
    let cluster = Cluster::for_instance(instance)?;
    let conf_path = cluster.data_dir.join("postgresql.conf");
    let hba_path = cluster.data_dir.join("pg_hba.conf");
    let conf = pgconf::read(&conf_path)?;
    let hba = pgconf::read(&hba_path)?;
    if pgconf::has_block(&conf) || pgconf::has_block(&hba) {
        return Err(Error::usage(format!("{} already has kt's HA settings", cluster.data_dir.display()))
            .with_hint("a run of kt ha enable was interrupted, or the files were copied: remove the `# BEGIN kt ha` blocks by hand"));
    }
    let pgpass_path = ha::replication_pgpass(instance);
    let ca_copy = ha::active_ca(instance);
    for path in [&pgpass_path, &ca_copy] {
        if path.exists() {
            return Err(Error::usage(format!("{} exists already", path.display()))
                .with_hint("remove it (left from an earlier HA setup) and run kt ha enable again"));
        }
    }
    let (cert, key, ca) = instance.tls_files();
    check_key_for_postgres(instance, &key, &cluster.account)?;
    let anchor = if ca.is_file() { ca } else { cert.clone() };
    let anchor_pem = std::fs::read(&anchor)
        .map_err(|e| Error::env(format!("cannot read {}", anchor.display())).because_err(&e))?;
    let peer_addresses = peer.addresses()?;
    let mut listen = Vec::new();
    for ip in &peer_addresses {
        let local = ha::local_address_towards(*ip)?;
        if !listen.contains(&local) {
            listen.push(local);
        }
    }
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    if !listen.contains(&loopback) {
        listen.push(loopback);
    }
    let conf_block = active_block(&listen, &cert, &key);
    let hba_block = peer_addresses
        .iter()
        .map(|ip| {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            format!("hostssl replication {REPLICATION_ROLE} {ip}/{bits} scram-sha-256\n")
        })
        .collect::<String>();
    let new_conf = pgconf::with_block(&conf, &conf_block)?;
    let new_hba = pgconf::with_block(&hba, &format!("# The passive {peer} replicates as {REPLICATION_ROLE}, over TLS, with SCRAM.\n{hba_block}"))?;
    let config_path = instance.layout.config_file();
    let old_config = std::fs::read(&config_path)
        .map_err(|e| Error::env(format!("cannot read {}", config_path.display())).because_err(&e))?;
    let mut config = instance.config.clone();
    config.set(crate::config::HA_ROLE, HaRole::Active.name());
    config.set(crate::config::HA_PEER, peer.to_string());
    crate::settings::Settings::from_config(&config)?;

    let mut journal = Journal::new();
    let result = (|| -> Result<bool> {
        let was_running = ensure_running(&cluster, &mut journal, progress)?;
        progress.step(&format!("creating the database role {REPLICATION_ROLE}"));
        let password = Password::generate();
        let mut admin = ha::admin(instance, &cluster)?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&REPLICATION_ROLE])
            .map_err(|e| ha::sql_failed("cannot read the database roles", &e))?
            .is_some();
        if exists {
            return Err(Error::usage(format!("the database role {REPLICATION_ROLE} exists already"))
                .with_hint(format!("drop it (DROP ROLE {REPLICATION_ROLE}) if it is left from an earlier HA setup")));
        }
        admin
            .batch_execute(&format!(
                "CREATE ROLE {REPLICATION_ROLE} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            ))
            .map_err(|e| ha::sql_failed(&format!("cannot create the database role {REPLICATION_ROLE}"), &e))?;
        {
            let instance = instance.clone();
            let cluster = cluster.clone();
            journal.record(format!("created the database role {REPLICATION_ROLE}"), move || drop_role(&instance, &cluster));
        }
        roles::set_verifier(&mut admin, REPLICATION_ROLE, &roles::scram_verifier(&password))?;
        drop(admin);

        write_recorded(&mut journal, &pgpass_path, password.pgpass_line(REPLICATION_ROLE).as_bytes(), &cluster.account)?;
        write_recorded(&mut journal, &ca_copy, &anchor_pem, &cluster.account)?;

        progress.step("stopping the database to change its settings");
        stop_recorded(&cluster, &mut journal)?;
        replace_recorded(&mut journal, &conf_path, &conf, &new_conf, &cluster.account)?;
        replace_recorded(&mut journal, &hba_path, &hba, &new_hba, &cluster.account)?;
        config.save(&config_path, Some(&cluster.account))?;
        {
            let path = config_path.clone();
            let account = cluster.account.clone();
            journal.record(format!("wrote HA_ROLE and HA_PEER in {}", config_path.display()), move || {
                fsutil::write_atomic(&path, &old_config, 0o600, Some(&account))
            });
        }
        progress.step("starting the database with TLS and the replication rule");
        cluster.start()?;
        if !was_running {
            progress.step("stopping the database again (it was stopped)");
            cluster.stop()?;
        }
        Ok(was_running)
    })();
    let restarted = journal.finish(result, FINISH_HINT)?;
    Ok(EnableReport { peer: peer.clone(), peer_addresses, listen_addresses: listen, password_file: pgpass_path, restarted })
}

/// What `disable` did.
#[derive(Debug, Clone)]
pub struct DisableReport {
    pub restarted: bool,
}

/// Removes everything `enable` added. Synchronous replication must be off.
pub fn disable(instance: &Instance, progress: &dyn Progress) -> Result<DisableReport> {
    match instance.settings.ha_role {
        Some(HaRole::Active) => {}
        Some(HaRole::Passive) => {
            return Err(Error::usage("this host is the passive of an HA pair").with_hint("run `kt ha disable` on the active"))
        }
        None => return Err(Error::usage("HA is not enabled on this host")),
    }
    let cluster = Cluster::for_instance(instance)?;
    let conf_path = cluster.data_dir.join("postgresql.conf");
    let hba_path = cluster.data_dir.join("pg_hba.conf");
    let conf = pgconf::read(&conf_path)?;
    let hba = pgconf::read(&hba_path)?;
    let pgpass_path = ha::replication_pgpass(instance);
    let ca_copy = ha::active_ca(instance);
    let config_path = instance.layout.config_file();
    let old_config = std::fs::read(&config_path)
        .map_err(|e| Error::env(format!("cannot read {}", config_path.display())).because_err(&e))?;
    let mut config = instance.config.clone();
    config.remove(crate::config::HA_ROLE);
    config.remove(crate::config::HA_PEER);

    let mut journal = Journal::new();
    let result = (|| -> Result<bool> {
        let was_running = ensure_running(&cluster, &mut journal, progress)?;
        let mut admin = ha::admin(instance, &cluster)?;
        if ha::syncrep::configured(&mut admin)? {
            return Err(Error::usage("synchronous replication is on").with_hint("run `kt ha disable-sync` first"));
        }
        if let Some(verifier) = roles_verifier(&mut admin)? {
            progress.step(&format!("dropping the database role {REPLICATION_ROLE}"));
            admin
                .batch_execute(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{REPLICATION_ROLE}'; \
                     DROP ROLE {REPLICATION_ROLE}"
                ))
                .map_err(|e| ha::sql_failed(&format!("cannot drop the database role {REPLICATION_ROLE}"), &e))?;
            let instance = instance.clone();
            let cluster = cluster.clone();
            journal.record(format!("dropped the database role {REPLICATION_ROLE}"), move || {
                let mut admin = ha::admin(&instance, &cluster)?;
                admin
                    .batch_execute(&format!("CREATE ROLE {REPLICATION_ROLE} WITH LOGIN REPLICATION NOINHERIT"))
                    .map_err(|e| ha::sql_failed("cannot create the role again", &e))?;
                match verifier {
                    Some(v) => roles::set_verifier(&mut admin, REPLICATION_ROLE, &v),
                    None => Ok(()),
                }
            });
        }
        drop(admin);
        progress.step("stopping the database to change its settings");
        stop_recorded(&cluster, &mut journal)?;
        if let Some(text) = pgconf::without_block(&conf) {
            replace_recorded(&mut journal, &conf_path, &conf, &text, &cluster.account)?;
        }
        if let Some(text) = pgconf::without_block(&hba) {
            replace_recorded(&mut journal, &hba_path, &hba, &text, &cluster.account)?;
        }
        for path in [&pgpass_path, &ca_copy] {
            remove_recorded(&mut journal, path, &cluster.account)?;
        }
        config.save(&config_path, Some(&cluster.account))?;
        {
            let path = config_path.clone();
            let account = cluster.account.clone();
            journal.record(format!("removed HA_ROLE and HA_PEER from {}", config_path.display()), move || {
                fsutil::write_atomic(&path, &old_config, 0o600, Some(&account))
            });
        }
        if was_running {
            progress.step("starting the database");
            cluster.start()?;
        }
        Ok(was_running)
    })();
    let restarted = journal.finish(result, FINISH_HINT)?;
    Ok(DisableReport { restarted })
}

/// The postgresql.conf block of the active.
fn active_block(listen: &[IpAddr], cert: &Path, key: &Path) -> String {
    let listen = listen.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(",");
    format!(
        "# The active of an HA pair: the passive streams WAL from here over TLS.\n\
         listen_addresses = {}\n\
         ssl = on\n\
         ssl_cert_file = {}\n\
         ssl_key_file = {}\n\
         ssl_min_protocol_version = 'TLSv1.2'\n\
         wal_level = replica\n\
         max_wal_senders = 10\n\
         wal_keep_size = '1GB'\n",
        pgconf::quote(&listen),
        pgconf::quote(&cert.to_string_lossy()),
        pgconf::quote(&key.to_string_lossy()),
    )
}

/// PostgreSQL reads the TLS key itself, at start, with no way to run kt's
/// password script: the key must be unencrypted, and (its own check) a
/// file of the account it runs as, readable by no one else.
fn check_key_for_postgres(instance: &Instance, key: &Path, account: &Account) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let encrypted_hint = "PostgreSQL would ask for the passphrase on a terminal at every start and fail in the background: \
         give the instance an unencrypted key (0600, owned by the service account) with `kt cert replace`, then run kt ha enable";
    if instance.settings.ssl_private_key_password_script.is_some() {
        return Err(Error::usage(format!(
            "the TLS key {} is encrypted (SSL_PRIVATE_KEY_PASSWORD_SCRIPT is set): PostgreSQL cannot use it for the replication port",
            key.display()
        ))
        .with_hint(encrypted_hint));
    }
    let text = std::fs::read(key).map_err(|e| Error::env(format!("cannot read the TLS key {}", key.display())).because_err(&e))?;
    let text = String::from_utf8_lossy(&text);
    if text.contains("ENCRYPTED") {
        return Err(Error::usage(format!("the TLS key {} is encrypted: PostgreSQL cannot use it for the replication port", key.display()))
            .with_hint(encrypted_hint));
    }
    let meta = std::fs::metadata(key).map_err(|e| Error::env(format!("cannot read {}", key.display())).because_err(&e))?;
    if meta.uid() != account.uid || meta.mode() & 0o077 != 0 {
        return Err(Error::usage(format!(
            "the TLS key {} must be owned by {} and readable by it alone (mode {:o}, uid {}) for PostgreSQL to use it",
            key.display(),
            account.name,
            meta.mode() & 0o7777,
            meta.uid()
        ))
        .with_hint(format!("chown {} {k} && chmod 0600 {k}", account.name, k = key.display())));
    }
    Ok(())
}

/// The replication role's verifier (None: no such role; Some(None): no password).
fn roles_verifier(admin: &mut postgres::Client) -> Result<Option<Option<String>>> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&REPLICATION_ROLE])
        .map_err(|e| ha::sql_failed("cannot read the database roles", &e))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    Ok(Some(roles::current_verifier(admin, REPLICATION_ROLE)?))
}

fn drop_role(instance: &Instance, cluster: &Cluster) -> Result<()> {
    let mut admin = ha::admin(instance, cluster)?;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {REPLICATION_ROLE}"))
        .map_err(|e| ha::sql_failed(&format!("cannot drop the database role {REPLICATION_ROLE}"), &e))
}

/// Starts the database when it is stopped (recorded); whether it ran.
pub(crate) fn ensure_running(cluster: &Cluster, journal: &mut Journal, progress: &dyn Progress) -> Result<bool> {
    if matches!(cluster.state()?, State::Running { .. }) {
        return Ok(true);
    }
    progress.step("starting the database for the change");
    cluster.start()?;
    let c = cluster.clone();
    journal.record(format!("started the database on port {}", cluster.port), move || c.stop().map(|_| ()));
    Ok(false)
}

/// Stops the database (recorded: undone by starting it).
pub(crate) fn stop_recorded(cluster: &Cluster, journal: &mut Journal) -> Result<()> {
    cluster.stop()?;
    let c = cluster.clone();
    journal.record(format!("stopped the database on port {}", cluster.port), move || c.start().map(|_| ()));
    Ok(())
}

/// Replaces a file's text `old` by `new` (recorded: `old` written back).
pub(crate) fn replace_recorded(journal: &mut Journal, path: &Path, old: &str, new: &str, account: &Account) -> Result<()> {
    pgconf::write(path, new, account)?;
    let (path, old, account) = (path.to_path_buf(), old.to_string(), account.clone());
    journal.record(format!("rewrote {}", path.display()), move || pgconf::write(&path, &old, &account));
    Ok(())
}

/// Writes a new private file (recorded: removed).
/// What the operator does about a step an HA command could not undo.
pub(crate) const FINISH_HINT: &str = "put back by hand what is marked NOT UNDONE";

pub(crate) fn write_recorded(journal: &mut Journal, path: &Path, contents: &[u8], account: &Account) -> Result<()> {
    fsutil::write_new(path, contents, 0o600, Some(account))?;
    journal.record_created([path.to_path_buf()]);
    Ok(())
}

/// Removes a file if present (recorded: written back as it was, 0600).
fn remove_recorded(journal: &mut Journal, path: &Path, account: &Account) -> Result<()> {
    let old = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::env(format!("cannot read {}", path.display())).because_err(&e)),
    };
    std::fs::remove_file(path).map_err(|e| Error::env(format!("cannot remove {}", path.display())).because_err(&e))?;
    let (path, account) = (path.to_path_buf(), account.clone());
    journal.record(format!("removed {}", path.display()), move || fsutil::write_atomic(&path, &old, 0o600, Some(&account)));
    Ok(())
}

