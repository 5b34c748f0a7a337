//! `kt ha init-passive` on the passive, after the active's confdir was
//! synced here (`kt ha sync`, `.ssl` excluded): the documented
//! `ktadmin init` of the passive host.
//!
//! Checks first (the synced HA files, the host name, a cluster that holds
//! no data unless `--force`, a free port), then, under an undo journal:
//! this host's own certificate (kept when `.ssl` has one), its settings in
//! keytrustee.conf (`HOSTNAME`, the `.ssl` paths, `HA_ROLE=passive`,
//! `HA_PEER`), a base backup of the active with `pg_basebackup -R` over
//! TLS as the replication role (its password through the synced password
//! file, never argv; the active's certificate verified against the synced
//! copy of its CA), the passive's own `postgresql.conf` block in place of
//! the active's, the standby started and confirmed streaming, and the
//! server started. With `--force` an existing data directory is set aside
//! (renamed, never deleted) and put back on failure.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cert;
use crate::error::{Context, Error, Result};
use crate::fsutil;
use crate::ha::{self, enable, pgconf, Peer, REPLICATION_ROLE, STANDBY_NAME};
use crate::instance::{self, Instance, Layout};
use crate::journal::Journal;
use crate::progress::Progress;
use crate::settings::HaRole;
use crate::storage::cluster::{self, Cluster, State};

/// Everything `init_passive` needs, resolved by the command-line layer.
#[derive(Debug, Clone)]
pub struct PassiveOptions {
    /// The active's database (port default: `DB_PORT` of the synced config).
    pub active: Peer,
    /// This host's name (default: its FQDN).
    pub hostname: String,
    pub force: bool,
    /// This host's data directory, database port and server address when
    /// they differ from the active's (two instances on one machine).
    pub pg_rootdir: Option<PathBuf>,
    pub db_port: Option<u16>,
    pub listen: Option<SocketAddr>,
    /// How long to wait for the active's database to answer.
    pub wait: Duration,
    pub cert_days: u32,
    pub extra_sans: Vec<String>,
    /// The kt executable that runs the server.
    pub exe: PathBuf,
}

/// What `init_passive` did.
#[derive(Debug, Clone)]
pub struct PassiveReport {
    pub data_dir: PathBuf,
    pub set_aside: Option<PathBuf>,
    pub new_certificate: bool,
    pub server_url: String,
}

pub fn init_passive(layout: &Layout, options: &PassiveOptions, progress: &dyn Progress) -> Result<PassiveReport> {
    let synced = layout.clone().load()?;
    crate::hostname::validate(&options.hostname)?;
    for san in &options.extra_sans {
        if san.parse::<std::net::IpAddr>().is_err() {
            crate::hostname::validate(san)?;
        }
    }
    match synced.settings.ha_role {
        Some(HaRole::Active) => {}
        Some(HaRole::Passive) if options.force => {}
        Some(HaRole::Passive) => {
            return Err(Error::usage("this host is a passive already").with_hint("give --force to build it again from the active"))
        }
        None => {
            return Err(Error::usage("the synced configuration has no HA settings")
                .with_hint("run `kt ha enable --peer THIS-HOST` on the active, then `kt ha sync` its confdir here again"))
        }
    }
    let pgpass = ha::replication_pgpass(&synced);
    let ca = ha::active_ca(&synced);
    for path in [&pgpass, &ca] {
        if !path.is_file() {
            return Err(Error::usage(format!("{} is missing", path.display()))
                .with_hint("run `kt ha enable` on the active, then `kt ha sync` its confdir here again"));
        }
    }

    // The configuration this host will have.
    let ssl = layout.ssl_dir();
    let (cert_path, key_path, ca_path) = (ssl.join(instance::CERT_FILE), ssl.join(instance::KEY_FILE), ssl.join(instance::CA_FILE));
    let keep_certificate = cert_path.is_file() && key_path.is_file();
    let mut config = synced.config.clone();
    config.set(crate::config::HOSTNAME, options.hostname.clone());
    config.set(crate::config::SSL_CERTIFICATE, cert_path.to_string_lossy().into_owned());
    config.set(crate::config::SSL_PRIVATE_KEY, key_path.to_string_lossy().into_owned());
    config.set(crate::config::SSL_CA, ca_path.to_string_lossy().into_owned());
    if !keep_certificate {
        // The active's password script is for the active's key, not ours.
        config.remove(crate::config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT);
    }
    if let Some(dir) = &options.pg_rootdir {
        config.set(crate::config::PG_ROOTDIR, fsutil::absolute(dir)?.to_string_lossy().into_owned());
    }
    if let Some(port) = options.db_port {
        config.set(crate::config::DB_PORT, port);
    }
    if let Some(listen) = options.listen {
        config.set(crate::config::LISTEN, listen.to_string());
    }
    config.set(crate::config::HA_ROLE, HaRole::Passive.name());
    config.set(crate::config::HA_PEER, options.active.to_string());
    let target = Instance::new(layout.clone(), config.clone())?;
    let cluster = Cluster::for_instance(&target)?;
    refuse_on_the_active(&synced, &target, &cluster, &options.active, &pgpass, &ca)?;
    let data_dir = cluster.data_dir.clone();
    let running = matches!(cluster.state(), Ok(State::Running { .. }));
    let has_data = std::fs::read_dir(&data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if (has_data || running) && !options.force {
        return Err(Error::usage(format!("this host's database {} has data already", data_dir.display()))
            .with_hint("give --force to set it aside (renamed, not deleted) and copy the active's instead"));
    }
    let server = crate::daemon::ServerProcess::for_instance(&target)?;
    let server_running = matches!(server.state()?, crate::daemon::ServerState::Running { .. });
    if server_running && !options.force {
        return Err(Error::usage("the key server runs on this host").with_hint("stop it (`kt server stop`) or give --force"));
    }
    if !running {
        cluster::ensure_port_free(cluster.port)?;
    }
    if !cluster.bindir.join("pg_basebackup").is_file() {
        return Err(Error::env(format!("pg_basebackup is not in {}", cluster.bindir.display())));
    }
    let config_path = layout.config_file();
    let old_config = std::fs::read(&config_path).env_context(|| format!("cannot read {}", config_path.display()))?;
    let account = cluster.account.clone();

    let mut journal = Journal::new();
    let result = (|| -> Result<PassiveReport> {
        if server_running {
            progress.step("stopping the key server");
            server.stop()?;
            let (server, exe) = (server.clone(), options.exe.clone());
            journal.record("stopped the key server", move || server.start(&exe).map(|_| ()));
        }
        if running {
            enable::stop_recorded(&cluster, &mut journal)?;
        }
        let mut set_aside = None;
        if data_dir.exists() && has_data {
            let aside = aside_name(&data_dir);
            progress.step(&format!("setting {} aside as {}", data_dir.display(), aside.display()));
            std::fs::rename(&data_dir, &aside).env_context(|| format!("cannot rename {}", data_dir.display()))?;
            let (from, to) = (aside.clone(), data_dir.clone());
            journal.record(format!("set {} aside as {}", data_dir.display(), aside.display()), move || {
                let _ = std::fs::remove_dir_all(&to);
                std::fs::rename(&from, &to).env_context(|| format!("cannot rename {} back", from.display()))
            });
            set_aside = Some(aside);
        }

        if !keep_certificate {
            progress.step(&format!("creating a self-signed TLS certificate for {}", options.hostname));
            for dir in fsutil::create_dirs(&ssl, 0o700)? {
                account.chown(&dir)?;
                journal.record_created([dir]);
            }
            let tls = cert::self_signed(&options.hostname, &options.extra_sans, options.cert_days)?;
            enable::write_recorded(&mut journal, &cert_path, tls.cert_pem.as_bytes(), &account)?;
            enable::write_recorded(&mut journal, &key_path, tls.key_pem.as_bytes(), &account)?;
            if !ca_path.exists() {
                enable::write_recorded(&mut journal, &ca_path, tls.cert_pem.as_bytes(), &account)?;
            }
        }
        config.save(&config_path, Some(&account))?;
        {
            let (path, account) = (config_path.clone(), account.clone());
            journal.record(format!("wrote this host's settings in {}", config_path.display()), move || {
                fsutil::write_atomic(&path, &old_config, 0o600, Some(&account))
            });
        }
        // ... and in .ssl/host.conf, which the next `kt ha sync` leaves alone.
        crate::hostconf::write_recorded(&mut journal, &layout.confdir, &config, Some(&account))?;

        // The base backup goes into an empty directory of the service account.
        for dir in fsutil::create_dirs(&data_dir, 0o700)? {
            account.chown(&dir)?;
            journal.record_created([dir]);
        }
        {
            let dir = data_dir.clone();
            journal.record(format!("copied the active's database into {}", data_dir.display()), move || empty_dir(&dir));
        }
        wait_for_active(&options.active, options.wait, progress)?;
        progress.step(&format!("copying the active's database from {} (pg_basebackup over TLS)", options.active));
        basebackup(&cluster, &options.active, &pgpass, &ca)?;

        // The passive's own settings in place of the active's block.
        let conf_path = data_dir.join("postgresql.conf");
        let hba_path = data_dir.join("pg_hba.conf");
        let conf = pgconf::read(&conf_path)?;
        let conf = pgconf::without_block(&conf).unwrap_or(conf);
        let conf = pgconf::with_block(&conf, &passive_block(&options.active))?;
        pgconf::write(&conf_path, &conf, &account)?;
        let hba = pgconf::read(&hba_path)?;
        if let Some(hba) = pgconf::without_block(&hba) {
            pgconf::write(&hba_path, &hba, &account)?;
        }
        if !data_dir.join("standby.signal").is_file() {
            return Err(Error::env("pg_basebackup -R wrote no standby.signal"));
        }

        progress.step(&format!("starting the database as a standby on 127.0.0.1:{}", cluster.port));
        cluster.start()?;
        {
            let c = cluster.clone();
            journal.record(format!("started the database on port {}", cluster.port), move || c.stop().map(|_| ()));
        }
        progress.step("waiting for the standby to stream from the active");
        let mut admin = ha::admin(&target, &cluster)?;
        let streaming = ha::wait_until(Duration::from_secs(30), || {
            let row = admin
                .query_opt("SELECT status FROM pg_stat_wal_receiver", &[])
                .map_err(|e| ha::sql_failed("cannot read pg_stat_wal_receiver", &e))?;
            Ok(row.map(|r| r.get::<_, String>(0)).as_deref() == Some("streaming"))
        })?;
        drop(admin);
        if !streaming {
            return Err(Error::env("the standby does not stream from the active")
                .with_hint(format!("see {}", cluster.log_file.display())));
        }

        progress.step("starting the key server (passive: reads only)");
        let server = crate::daemon::ServerProcess::for_instance(&target)?;
        // A configuration the server refuses makes it exit during
        // startup, which `start` reports with the server's own words.
        server.start(&options.exe)?;
        Ok(PassiveReport {
            data_dir: data_dir.clone(),
            set_aside,
            new_certificate: !keep_certificate,
            server_url: server.probe_url().to_string(),
        })
    })();
    journal.finish(result, enable::FINISH_HINT)
}

/// Refuses (exit 2, before anything changed, `--force` or not) an
/// init-passive run on the active itself, which would set the active's
/// database aside: `--active` names this host's own database (a local
/// address and this cluster's port); this host's database carries the
/// active's settings (kt's block of `kt ha enable`, no standby.signal);
/// or, when this confdir is not a passive's yet, this host's database runs
/// as a primary with data and the database at `--active` reports its
/// system identifier (one cluster seen through two names).
fn refuse_on_the_active(synced: &Instance, target: &Instance, cluster: &Cluster, active: &Peer, pgpass: &Path, ca: &Path) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::usage(format!("this host is the active of the HA pair: {why}"))
            .because("nothing was changed")
            .with_hint("run kt ha init-passive on the passive host, with --active naming this one; to make this host a passive, run `kt ha disable` here first"))
    };
    if synced.settings.ha_role == Some(HaRole::Active) && matches!(cluster.state(), Ok(State::Running { .. })) {
        if let Some(here) = local_primary_identifier(target, cluster) {
            if remote_system_identifier(cluster, active, pgpass, ca).as_deref() == Some(here.as_str()) {
                return refuse(format!("the database at --active {active} is this host's own (system identifier {here})"));
            }
        }
    }
    let local = |ip: &std::net::IpAddr| std::net::UdpSocket::bind(SocketAddr::new(*ip, 0)).is_ok();
    if active.port == cluster.port && active.addresses().map(|ips| ips.iter().any(local)).unwrap_or(false) {
        return refuse(format!("--active {active} is this host's own database"));
    }
    let data_dir = &cluster.data_dir;
    if data_dir.join("PG_VERSION").is_file() && !data_dir.join("standby.signal").exists() {
        let conf = std::fs::read_to_string(data_dir.join("postgresql.conf")).unwrap_or_default();
        if pgconf::current_block(&conf).is_some_and(|b| b.contains(enable::ACTIVE_MARK)) {
            return refuse(format!("its database {} has the settings of kt ha enable", data_dir.display()));
        }
    }
    Ok(())
}

/// The system identifier of this host's database when it runs as a
/// primary holding kt's database (None otherwise, or when it cannot be asked).
fn local_primary_identifier(target: &Instance, cluster: &Cluster) -> Option<String> {
    let mut admin = ha::admin(target, cluster).ok()?;
    let row = admin
        .query_one(
            "SELECT NOT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), \
             (SELECT system_identifier::text FROM pg_control_system())",
            &[&crate::instance::DB_NAME],
        )
        .ok()?;
    row.get::<_, bool>(0).then(|| row.get(1))
}

/// The system identifier of the database at `active` (`IDENTIFY_SYSTEM`
/// on a replication connection, as the replication role, through psql);
/// None when it cannot be asked.
fn remote_system_identifier(cluster: &Cluster, active: &Peer, pgpass: &Path, ca: &Path) -> Option<String> {
    let conninfo = conninfo(active, pgpass, ca) + " replication=true application_name=kt_identify";
    let mut cmd = Command::new(cluster.bindir.join("psql"));
    cluster.account.apply(&mut cmd);
    let output = cmd
        .env("LC_ALL", "C")
        .env("PGPASSFILE", pgpass)
        .env_remove("PGPASSWORD")
        .args(["-X", "-A", "-t", "-w", "-c", "IDENTIFY_SYSTEM", "-d"])
        .arg(conninfo)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let id = text.lines().next()?.split('|').next()?.trim().to_string();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

/// The postgresql.conf block of the passive: loopback only, a hot standby.
fn passive_block(active: &Peer) -> String {
    format!(
        "# The passive of an HA pair: a hot standby of {active} (kt ha init-passive).\n\
         listen_addresses = '127.0.0.1'\n\
         hot_standby = on\n\
         hot_standby_feedback = on\n"
    )
}

/// Waits (bounded) until the active's database port accepts connections.
pub fn wait_for_active(active: &Peer, limit: Duration, progress: &dyn Progress) -> Result<()> {
    let addresses = active.addresses()?;
    let reachable = || addresses.iter().any(|ip| TcpStream::connect_timeout(&SocketAddr::new(*ip, active.port), Duration::from_secs(2)).is_ok());
    if reachable() {
        return Ok(());
    }
    progress.step(&format!("waiting up to {}s for the active's database at {active}", limit.as_secs()));
    if ha::wait_until(limit, || Ok(reachable()))? {
        return Ok(());
    }
    Err(Error::env(format!("the active's database at {active} did not answer within {}s", limit.as_secs()))
        .with_hint("start it on the active (`kt db start`), check the firewall for the database port, and run kt ha init-passive again"))
}

/// `pg_basebackup -R` as the service account, over TLS, the password
/// from the synced password file.
fn basebackup(cluster: &Cluster, active: &Peer, pgpass: &Path, ca: &Path) -> Result<()> {
    let conninfo = conninfo(active, pgpass, ca);
    let mut cmd = Command::new(cluster.bindir.join("pg_basebackup"));
    cluster.account.apply(&mut cmd);
    let output = cmd
        .env("LC_ALL", "C")
        .env("PGPASSFILE", pgpass)
        .env_remove("PGPASSWORD")
        .arg("--pgdata")
        .arg(&cluster.data_dir)
        .args(["--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast", "--no-password"])
        .arg("--dbname")
        .arg(conninfo)
        .stdin(Stdio::null())
        .output()
        .env_context(|| "cannot run pg_basebackup")?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let mut err = Error::env(format!("pg_basebackup from {active} failed"));
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            err = err.because(line.trim().to_string());
        }
        return Err(err.with_hint(
            "check on the active that `kt ha enable --peer` named this host's address, and that its certificate names the host given to --active",
        ));
    }
    Ok(())
}

/// The libpq connection string to the active's database, as the
/// replication role, over TLS verified with the synced CA copy.
fn conninfo(active: &Peer, pgpass: &Path, ca: &Path) -> String {
    [
        ("host", active.host.clone()),
        ("port", active.port.to_string()),
        ("user", REPLICATION_ROLE.to_string()),
        ("passfile", pgpass.to_string_lossy().into_owned()),
        ("sslmode", "verify-full".to_string()),
        ("sslrootcert", ca.to_string_lossy().into_owned()),
        ("application_name", STANDBY_NAME.to_string()),
        ("connect_timeout", "10".to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", conninfo_quote(v)))
    .collect::<Vec<_>>()
    .join(" ")
}

/// A libpq connection-string value in single quotes.
fn conninfo_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `<dir>.kt-old-<unix time>`: where `--force` sets the old data aside.
fn aside_name(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".kt-old-{}", crate::clock::unix_now()));
    PathBuf::from(name)
}

/// Removes everything inside `dir` (what this run copied there).
fn empty_dir(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::env(format!("cannot read {}", dir.display())).because_err(&e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.env_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}
