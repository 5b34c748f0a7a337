//! `kt ha enable` and `kt ha disable` on the active.
//!
//! Both converge, so that a `kill -9` between two steps (which no undo
//! journal survives) is never a dead end: enable checks each piece against
//! what it would make and does only what is missing (run again with the
//! same peer, it completes an interrupted run), disable removes whichever
//! pieces are there. Enable checks everything first (role, peer,
//! certificate and key, the cluster, pieces there but different), then
//! changes under an undo journal:
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
    /// The database was running and was restarted to take new settings.
    pub restarted: bool,
    /// The database runs (else it was stopped and stays so).
    pub running: bool,
}

/// Where one piece of the HA setup stands against what `enable` wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Missing,
    Done,
}

/// A piece that is there but not as this run would make it: another
/// peer's setup, or an edited file. Removing it is `disable`'s job.
fn differs(what: &str) -> Error {
    Error::usage(format!("{what} holds HA settings other than those for this peer"))
        .with_hint("run `kt ha disable` (it removes any part of an HA setup), then kt ha enable again")
}

/// The state of kt's block in a configuration file against `wanted`.
fn block_piece(path: &Path, text: &str, wanted: &str) -> Result<Piece> {
    match pgconf::current_block(text) {
        None => Ok(Piece::Missing),
        Some(block) if block == pgconf::rendered_block(wanted) => Ok(Piece::Done),
        Some(_) => Err(differs(&path.display().to_string())),
    }
}

/// Prepares the active's database for a passive at `peer`.
///
/// Converges: each step first checks whether what it would make is there
/// already (the role with the verifier of the password file, the blocks,
/// the files, the configuration keys) and does only what is missing, so
/// that a run interrupted anywhere (even by `kill -9`, which no journal
/// survives) is completed by running it again with the same peer. A piece
/// that is there but different is refused: `disable` removes any part.
/// An ordinary failure still undoes this run's steps through the journal.
pub fn enable(instance: &Instance, peer: &Peer, progress: &dyn Progress) -> Result<EnableReport> {
    let configured_peer = instance.settings.ha_peer.clone();
    match instance.settings.ha_role {
        Some(HaRole::Active) if configured_peer.as_deref() != Some(peer.to_string().as_str()) => {
            return Err(Error::usage(format!(
                "HA is already enabled on this host (peer {})",
                configured_peer.as_deref().unwrap_or("?")
            ))
            .with_hint("run `kt ha disable` first to change the peer"))
        }
        Some(HaRole::Active) | None => {}
        Some(HaRole::Passive) => {
            return Err(Error::usage("this host is the passive of an HA pair").with_hint("run `kt ha enable` on the active"))
        }
    }
    let HaFiles { cluster, conf_path, hba_path, conf, hba, pgpass_path, ca_copy } = HaFiles::read(instance)?;
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
    let hba_block = hba_block(peer, &peer_addresses);

    // Where each piece stands (a different one is refused here, nothing changed).
    let conf_piece = block_piece(&conf_path, &conf, &conf_block)?;
    let hba_piece = block_piece(&hba_path, &hba, &hba_block)?;
    let password = match read_optional(&pgpass_path)? {
        None => None,
        Some(_) => Some(Password::read(&pgpass_path, REPLICATION_ROLE).map_err(|e| differs(&pgpass_path.display().to_string()).because(e.message()))?),
    };
    let ca_piece = match read_optional(&ca_copy)? {
        None => Piece::Missing,
        Some(bytes) if bytes == anchor_pem => Piece::Done,
        Some(_) => return Err(differs(&ca_copy.display().to_string())),
    };
    let config_piece = if instance.settings.ha_role == Some(HaRole::Active) { Piece::Done } else { Piece::Missing };
    let new_conf = match conf_piece {
        Piece::Missing => Some(pgconf::with_block(&conf, &conf_block)?),
        Piece::Done => None,
    };
    let new_hba = match hba_piece {
        Piece::Missing => Some(pgconf::with_block(&hba, &hba_block)?),
        Piece::Done => None,
    };
    let config_path = instance.layout.config_file();
    let old_config = std::fs::read(&config_path)
        .map_err(|e| Error::env(format!("cannot read {}", config_path.display())).because_err(&e))?;
    let mut config = instance.config.clone();
    config.set(crate::config::HA_ROLE, HaRole::Active.name());
    config.set(crate::config::HA_PEER, peer.to_string());
    crate::settings::Settings::from_config(&config)?;

    let mut journal = Journal::new();
    // The steps below, in this order (role, its password, password file,
    // CA copy, stop, postgresql.conf, pg_hba.conf, keytrustee.conf, start),
    // are the states a kill can leave: tests/ha.rs
    // `an_interrupted_enable_is_completed_or_removed` builds each prefix
    // of this order by hand; a reorder here must be mirrored there.
    let result = (|| -> Result<(bool, bool)> {
        let was_running = ensure_running(&cluster, &mut journal, progress)?;
        let mut changed = false;
        let mut admin = ha::admin(instance, &cluster)?;
        let password = match password {
            Some(p) => p,
            None => Password::generate(),
        };
        match roles_verifier(&mut admin)? {
            None => {
                progress.step(&format!("creating the database role {REPLICATION_ROLE}"));
                admin
                    .batch_execute(&format!(
                        "CREATE ROLE {REPLICATION_ROLE} WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
                    ))
                    .map_err(|e| ha::sql_failed(&format!("cannot create the database role {REPLICATION_ROLE}"), &e))?;
                let instance = instance.clone();
                let cluster = cluster.clone();
                journal.record(format!("created the database role {REPLICATION_ROLE}"), move || drop_role(&instance, &cluster));
                roles::set_verifier(&mut admin, REPLICATION_ROLE, &roles::scram_verifier(&password))?;
                changed = true;
            }
            Some(Some(v)) if roles::verifier_matches(&v, &password) => {}
            Some(old) => {
                // Left by an interrupted run (no password yet, or one whose
                // password file was never written): given this run's password.
                progress.step(&format!("setting the password of the database role {REPLICATION_ROLE}"));
                roles::set_verifier(&mut admin, REPLICATION_ROLE, &roles::scram_verifier(&password))?;
                let instance = instance.clone();
                let cluster = cluster.clone();
                journal.record(format!("set the password of the database role {REPLICATION_ROLE}"), move || {
                    let mut admin = ha::admin(&instance, &cluster)?;
                    match old {
                        Some(v) => roles::set_verifier(&mut admin, REPLICATION_ROLE, &v),
                        None => admin
                            .batch_execute(&format!("ALTER ROLE {REPLICATION_ROLE} PASSWORD NULL"))
                            .map_err(|e| ha::sql_failed("cannot clear the role's password", &e)),
                    }
                });
                changed = true;
            }
        }
        drop(admin);
        if !pgpass_path.exists() {
            write_recorded(&mut journal, &pgpass_path, password.pgpass_line(REPLICATION_ROLE).as_bytes(), &cluster.account)?;
            changed = true;
        }
        if ca_piece == Piece::Missing {
            write_recorded(&mut journal, &ca_copy, &anchor_pem, &cluster.account)?;
            changed = true;
        }
        let restart = new_conf.is_some() || new_hba.is_some();
        if !changed && !restart && config_piece == Piece::Done {
            // Complete (a kill after the last file was written leaves the
            // database stopped, as does an operator's kt db stop).
            return Err(Error::usage(format!("HA is already enabled on this host (peer {peer})")).with_hint(if was_running {
                "run `kt ha disable` first to change the peer"
            } else {
                "the database is stopped: start it with kt db start (run `kt ha disable` first to change the peer)"
            }));
        }
        if restart {
            progress.step("stopping the database to change its settings");
            stop_recorded(&cluster, &mut journal)?;
            if let Some(text) = &new_conf {
                replace_recorded(&mut journal, &conf_path, &conf, text, &cluster.account)?;
            }
            if let Some(text) = &new_hba {
                replace_recorded(&mut journal, &hba_path, &hba, text, &cluster.account)?;
            }
        }
        if config_piece == Piece::Missing {
            config.save(&config_path, Some(&cluster.account))?;
            let path = config_path.clone();
            let account = cluster.account.clone();
            journal.record(format!("wrote HA_ROLE and HA_PEER in {}", config_path.display()), move || {
                fsutil::write_atomic(&path, &old_config, 0o600, Some(&account))
            });
        }
        if restart {
            progress.step("starting the database with TLS and the replication rule");
            cluster.start()?;
        }
        if !was_running {
            progress.step("stopping the database again (it was stopped)");
            cluster.stop()?;
        }
        Ok((was_running && restart, was_running))
    })();
    let (restarted, running) = journal.finish(result, FINISH_HINT)?;
    Ok(EnableReport { peer: peer.clone(), peer_addresses, listen_addresses: listen, password_file: pgpass_path, restarted, running })
}

/// The pg_hba.conf block admitting `peer` for replication.
fn hba_block(peer: &Peer, addresses: &[IpAddr]) -> String {
    let rules = addresses
        .iter()
        .map(|ip| {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            format!("hostssl replication {REPLICATION_ROLE} {ip}/{bits} scram-sha-256\n")
        })
        .collect::<String>();
    format!("# The passive {peer} replicates as {REPLICATION_ROLE}, over TLS, with SCRAM.\n{rules}")
}

/// A file's bytes, None when it is not there.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::env(format!("cannot read {}", path.display())).because_err(&e)),
    }
}

/// What `disable` did.
#[derive(Debug, Clone)]
pub struct DisableReport {
    pub restarted: bool,
}

/// What `enable` and `disable` read before deciding anything: the
/// cluster, its two configuration files (paths and text) and where kt's
/// HA files go in the confdir.
struct HaFiles {
    cluster: Cluster,
    conf_path: PathBuf,
    hba_path: PathBuf,
    conf: String,
    hba: String,
    pgpass_path: PathBuf,
    ca_copy: PathBuf,
}

impl HaFiles {
    fn read(instance: &Instance) -> Result<HaFiles> {
        let cluster = Cluster::for_instance(instance)?;
        let conf_path = cluster.data_dir.join("postgresql.conf");
        let hba_path = cluster.data_dir.join("pg_hba.conf");
        let conf = pgconf::read(&conf_path)?;
        let hba = pgconf::read(&hba_path)?;
        Ok(HaFiles { cluster, conf_path, hba_path, conf, hba, pgpass_path: ha::replication_pgpass(instance), ca_copy: ha::active_ca(instance) })
    }
}

/// Removes whatever part of `enable`'s setup is here: all of it, or the
/// subset an interrupted `enable` (or `disable`) left. Synchronous
/// replication must be off. Nothing there at all is refused (exit 2).
pub fn disable(instance: &Instance, progress: &dyn Progress) -> Result<DisableReport> {
    if instance.settings.ha_role == Some(HaRole::Passive) {
        return Err(Error::usage("this host is the passive of an HA pair").with_hint("run `kt ha disable` on the active"));
    }
    let HaFiles { cluster, conf_path, hba_path, conf, hba, pgpass_path, ca_copy } = HaFiles::read(instance)?;
    let config_path = instance.layout.config_file();
    let old_config = std::fs::read(&config_path)
        .map_err(|e| Error::env(format!("cannot read {}", config_path.display())).because_err(&e))?;
    let config_keys = [crate::config::HA_ROLE, crate::config::HA_PEER].iter().any(|k| instance.config.get(k).is_some());
    let mut config = instance.config.clone();
    config.remove(crate::config::HA_ROLE);
    config.remove(crate::config::HA_PEER);

    let mut journal = Journal::new();
    let result = (|| -> Result<bool> {
        let was_running = ensure_running(&cluster, &mut journal, progress)?;
        let mut changed = false;
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
            changed = true;
        }
        drop(admin);
        let new_conf = pgconf::without_block(&conf);
        let new_hba = pgconf::without_block(&hba);
        let restart = new_conf.is_some() || new_hba.is_some();
        if restart {
            progress.step("stopping the database to change its settings");
            stop_recorded(&cluster, &mut journal)?;
            if let Some(text) = new_conf {
                replace_recorded(&mut journal, &conf_path, &conf, &text, &cluster.account)?;
            }
            if let Some(text) = new_hba {
                replace_recorded(&mut journal, &hba_path, &hba, &text, &cluster.account)?;
            }
            changed = true;
        }
        for path in [&pgpass_path, &ca_copy] {
            changed |= remove_recorded(&mut journal, path, &cluster.account)?;
        }
        if config_keys {
            config.save(&config_path, Some(&cluster.account))?;
            let path = config_path.clone();
            let account = cluster.account.clone();
            journal.record(format!("removed HA_ROLE and HA_PEER from {}", config_path.display()), move || {
                fsutil::write_atomic(&path, &old_config, 0o600, Some(&account))
            });
            changed = true;
        }
        if !changed {
            return Err(Error::usage("HA is not enabled on this host").because("no part of an HA setup was found"));
        }
        if restart && was_running {
            progress.step("starting the database");
            cluster.start()?;
        } else if !restart && !was_running {
            cluster.stop()?;
        }
        Ok(was_running && restart)
    })();
    let restarted = journal.finish(result, FINISH_HINT)?;
    Ok(DisableReport { restarted })
}

/// The parts of an HA setup of the active found on this host, by name:
/// all of them on a complete one, none on a host without HA, a subset
/// after an interrupted `enable` or `disable`. `admin` (when the database
/// runs) adds the replication role. The copy of the CA is left to the
/// status's own check of it.
pub fn pieces_found(instance: &Instance, admin: Option<&mut postgres::Client>) -> Result<Vec<(&'static str, bool)>> {
    let cluster = Cluster::for_instance(instance)?;
    let conf = pgconf::read(&cluster.data_dir.join("postgresql.conf"))?;
    let hba = pgconf::read(&cluster.data_dir.join("pg_hba.conf"))?;
    let mut found = vec![
        ("HA_ROLE in keytrustee.conf", instance.settings.ha_role == Some(HaRole::Active)),
        ("kt's block in postgresql.conf", pgconf::has_block(&conf)),
        ("kt's block in pg_hba.conf", pgconf::has_block(&hba)),
        (ha::REPLICATION_PGPASS, ha::replication_pgpass(instance).is_file()),
    ];
    if let Some(admin) = admin {
        found.push(("the database role kt_replication", roles_verifier(admin)?.is_some()));
    }
    Ok(found)
}

/// The first line of the active's postgresql.conf block: how
/// `init-passive` recognises the active's own data directory.
pub(crate) const ACTIVE_MARK: &str = "# The active of an HA pair";

/// The postgresql.conf block of the active.
fn active_block(listen: &[IpAddr], cert: &Path, key: &Path) -> String {
    let listen = listen.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(",");
    format!(
        "{ACTIVE_MARK}: the passive streams WAL from here over TLS.\n\
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

/// Removes a file if present (recorded: written back as it was, 0600);
/// whether it was there.
fn remove_recorded(journal: &mut Journal, path: &Path, account: &Account) -> Result<bool> {
    let old = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::env(format!("cannot read {}", path.display())).because_err(&e)),
    };
    std::fs::remove_file(path).map_err(|e| Error::env(format!("cannot remove {}", path.display())).because_err(&e))?;
    let (path, account) = (path.to_path_buf(), account.clone());
    journal.record(format!("removed {}", path.display()), move || fsutil::write_atomic(&path, &old, 0o600, Some(&account)));
    Ok(true)
}

