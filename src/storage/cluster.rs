//! Control of the instance's PostgreSQL cluster: the equivalent of the
//! documented `ktadmin db --start --pg-rootdir DIR --background` / `--stop`.
//!
//! The cluster listens on 127.0.0.1, where it requires a password (SCRAM),
//! and on a Unix socket in a short private directory for the service
//! account alone (peer authentication; see [`super::socket`]), so the
//! documented manual commands work. PostgreSQL refuses to run as root, so
//! every server tool runs as the service account.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::account::Account;
use crate::error::{Context, Error, Result};
use crate::fsutil;
use crate::instance::{Instance, DB_USER};
use crate::storage::pgpass::Password;
use crate::storage::socket;

/// How long `start` and `stop` wait for PostgreSQL.
const WAIT_SECONDS: u32 = 60;
/// Lines of the server log quoted when the server fails to start.
const LOG_LINES_ON_FAILURE: usize = 15;

/// One PostgreSQL cluster and how to run it.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub data_dir: PathBuf,
    pub port: u16,
    pub log_file: PathBuf,
    pub account: Account,
    pub bindir: PathBuf,
}

/// What `postmaster.pid` and the process table say about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running { pid: u32, port: Option<u16> },
    Stopped,
    /// A `postmaster.pid` whose process is gone (crash, power loss, reboot).
    Stale { pid: u32 },
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Now { pid: u32, removed_stale_pid: Option<u32> },
    AlreadyRunning { pid: u32 },
}

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    Now { pid: u32 },
    AlreadyStopped { stale_pid: Option<u32> },
}

impl Cluster {
    /// The cluster of an existing instance, run by the service account
    /// recorded at init (as root; checked: never root, and the owner of the
    /// confdir, since `SERVICE_USER` sits in a file that account writes) or
    /// by the current user.
    ///
    /// An instance whose database is external has no cluster of its own:
    /// refused (exit 2), so no command ever starts, stops, initdb's or
    /// reconfigures a server kt does not own.
    pub fn for_instance(instance: &Instance) -> Result<Cluster> {
        if instance.settings.external_db.is_some() {
            return Err(external_refusal(instance));
        }
        let account = match instance.service_account()? {
            Some(account) => account,
            None => Account::current()?,
        };
        Ok(Cluster {
            data_dir: instance.pg_rootdir()?,
            port: instance.db_port()?,
            log_file: instance.layout.db_log_file(),
            account,
            bindir: find_bindir()?,
        })
    }

    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(name));
        self.account.apply(&mut cmd);
        // Keep the server's messages in English and stable for the log quotes.
        cmd.env("LC_ALL", "C").env("LANG", "C").env_remove("PGDATA");
        cmd
    }

    /// Creates the cluster in the (existing, empty) data directory with the
    /// database superuser `keytrustee` protected by `password`, and writes
    /// kt's settings into `postgresql.conf` and `pg_hba.conf`.
    pub fn initdb(&self, password: &Password, scratch_dir: &Path) -> Result<()> {
        // initdb reads the password from a file: one only the service
        // account can read, removed as soon as initdb is done.
        let pwfile = scratch_dir.join(format!(".initdb-pw-{}", std::process::id()));
        fsutil::write_atomic(&pwfile, password.expose().as_bytes(), 0o600, Some(&self.account))?;
        let output = self
            .tool("initdb")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .args(["--encoding=UTF8", "--no-locale", "--auth=scram-sha-256"])
            .arg(format!("--username={DB_USER}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_file(&pwfile);
        let output = output.env_context(|| format!("cannot run {}", self.bindir.join("initdb").display()))?;
        if !output.status.success() {
            return Err(Error::env("initdb failed").because(tool_message(&output)));
        }
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).env_context(|| format!("cannot read {}", conf.display()))?;
        text.push_str(
            "\n# Settings of the Key Trustee Server instance (kt init).\n\
             # The port comes from DB_PORT in keytrustee.conf (pg_ctl -o -p).\n\
             listen_addresses = '127.0.0.1'\n\
             # The Unix socket's directory comes from kt db start (pg_ctl -o -k).\n\
             unix_socket_directories = ''\n\
             password_encryption = 'scram-sha-256'\n\
             log_line_prefix = '%m [%p] '\n",
        );
        fsutil::write_atomic(&conf, text.as_bytes(), 0o600, Some(&self.account))?;
        fsutil::write_atomic(&self.data_dir.join("pg_hba.conf"), socket::initial_hba().as_bytes(), 0o600, Some(&self.account))?;
        socket::write_initial_ident(&self.data_dir, &self.account)
    }

    /// The directory of the cluster's Unix socket ([`socket::dir`]).
    pub fn socket_dir(&self) -> PathBuf {
        socket::dir(self.account.uid, self.port)
    }

    /// Whether a cluster has been created in the data directory.
    pub fn exists(&self) -> bool {
        self.data_dir.join("PG_VERSION").is_file()
    }

    /// The data directory exists, is a cluster, and is the service
    /// account's (checked before kt writes or runs anything there).
    pub fn check_data_dir(&self) -> Result<()> {
        if !self.data_dir.exists() {
            return Err(Error::env(format!("the database directory {} does not exist", self.data_dir.display()))
                .with_hint("create the instance with `kt init`, or fix PG_ROOTDIR in keytrustee.conf"));
        }
        if !self.exists() {
            return Err(Error::env(format!(
                "{} is not a PostgreSQL data directory (no PG_VERSION)",
                self.data_dir.display()
            ))
            .with_hint("fix PG_ROOTDIR in keytrustee.conf, or restore the database with `kt restore`"));
        }
        // PG_ROOTDIR comes from a file the service account writes: root
        // works only on a data directory of that account (PostgreSQL
        // itself insists on it too, but kt writes there first).
        let owner = std::os::unix::fs::MetadataExt::uid(
            &std::fs::symlink_metadata(&self.data_dir).env_context(|| format!("cannot inspect {}", self.data_dir.display()))?,
        );
        if owner != self.account.uid {
            return Err(Error::usage(format!(
                "the database directory {} does not belong to the service account {} (uid {owner})",
                self.data_dir.display(),
                self.account.name
            ))
            .with_hint("PG_ROOTDIR must name this instance's own data directory"));
        }
        Ok(())
    }

    /// Reads `postmaster.pid` and checks that its process is a live
    /// PostgreSQL server.
    pub fn state(&self) -> Result<State> {
        let pidfile = self.data_dir.join("postmaster.pid");
        let text = match std::fs::read_to_string(&pidfile) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Stopped),
            Err(e) => return Err(Error::env(format!("cannot read {}", pidfile.display())).because_err(&e)),
        };
        let mut lines = text.lines();
        let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
        let Some(pid) = pid.filter(|&p| p > 0) else {
            // An empty or torn pid file: a server that died while starting.
            return Ok(State::Stale { pid: 0 });
        };
        let port = text.lines().nth(3).and_then(|l| l.trim().parse::<u16>().ok());
        if is_postgres_process(pid) {
            Ok(State::Running { pid, port })
        } else {
            Ok(State::Stale { pid })
        }
    }

    /// Starts the cluster in the background and waits until it accepts
    /// connections. Starting a running cluster is not an error.
    pub fn start(&self) -> Result<Started> {
        self.check_data_dir()?;
        let mut removed_stale_pid = None;
        match self.state()? {
            State::Running { pid, .. } => return Ok(Started::AlreadyRunning { pid }),
            State::Stale { pid } => {
                // The process is gone (or the pid now belongs to something
                // that is not PostgreSQL): the lock protects nothing.
                let pidfile = self.data_dir.join("postmaster.pid");
                std::fs::remove_file(&pidfile)
                    .env_context(|| format!("cannot remove the stale {}", pidfile.display()))?;
                removed_stale_pid = Some(pid);
            }
            State::Stopped => {}
        }
        ensure_port_free(self.port)?;
        let socket_dir = self.socket_dir();
        socket::prepare_dir(&socket_dir, &self.account)?;
        let log_dir = fsutil::parent_dir(&self.log_file).to_path_buf();
        for dir in fsutil::create_dirs(&log_dir, 0o700)? {
            self.account.chown(&dir)?;
        }
        let output = self
            .tool("pg_ctl")
            .arg("start")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg("--log")
            .arg(&self.log_file)
            .arg("--wait")
            .arg(format!("--timeout={WAIT_SECONDS}"))
            .arg(format!("-o -p {} {}", self.port, socket::postgres_option(&socket_dir)?))
            .stdin(Stdio::null())
            .output()
            .env_context(|| format!("cannot run {}", self.bindir.join("pg_ctl").display()))?;
        if !output.status.success() {
            if crate::account::is_root() {
                socket::unlink_default(&socket_dir, self.port);
            }
            let mut err = Error::env(format!("the database did not start (port {})", self.port))
                .because(tool_message(&output));
            for line in tail_lines(&self.log_file, LOG_LINES_ON_FAILURE) {
                err = err.because(line);
            }
            return Err(err.with_hint(format!("see the full server log in {}", self.log_file.display())));
        }
        if crate::account::is_root() {
            // A note only: the documented commands then need -h.
            let _ = socket::link_default(&socket_dir, self.port, &self.account);
        }
        match self.state()? {
            State::Running { pid, .. } => Ok(Started::Now { pid, removed_stale_pid }),
            _ => Err(Error::env("the database reported a start but is not running")
                .with_hint(format!("see {}", self.log_file.display()))),
        }
    }

    /// Stops the cluster (fast shutdown: clients are disconnected,
    /// transactions rolled back, data flushed). Stopping a stopped cluster
    /// is not an error.
    pub fn stop(&self) -> Result<Stopped> {
        self.check_data_dir()?;
        let pid = match self.state()? {
            State::Running { pid, .. } => pid,
            State::Stopped => return Ok(Stopped::AlreadyStopped { stale_pid: None }),
            State::Stale { pid } => return Ok(Stopped::AlreadyStopped { stale_pid: Some(pid) }),
        };
        let output = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .args(["--mode=fast", "--wait"])
            .arg(format!("--timeout={WAIT_SECONDS}"))
            .stdin(Stdio::null())
            .output()
            .env_context(|| format!("cannot run {}", self.bindir.join("pg_ctl").display()))?;
        if !output.status.success() {
            return Err(Error::env("the database did not stop").because(tool_message(&output)));
        }
        socket::remove_after_stop(&self.socket_dir(), self.port);
        Ok(Stopped::Now { pid })
    }

    /// Makes the running cluster re-read its configuration files.
    pub fn reload(&self) -> Result<()> {
        let output = self
            .tool("pg_ctl")
            .arg("reload")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .output()
            .env_context(|| format!("cannot run {}", self.bindir.join("pg_ctl").display()))?;
        if !output.status.success() {
            return Err(Error::env("the database did not reload its configuration").because(tool_message(&output)));
        }
        Ok(())
    }

    /// Connects to `database` as the instance's database user.
    pub fn connect(&self, password: &Password, database: &str) -> Result<postgres::Client> {
        self.connect_as(DB_USER, password, database)
    }

    /// Connects to `database` as `user` (a loading role, say).
    pub fn connect_as(&self, user: &str, password: &Password, database: &str) -> Result<postgres::Client> {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password.expose())
            .dbname(database)
            .application_name("kt")
            .connect_timeout(Duration::from_secs(10));
        config.connect(postgres::NoTls).map_err(|e| {
            Error::env(format!("cannot connect to the database on 127.0.0.1:{}", self.port))
                .because_err(&e)
                .with_hint("is it running? try `kt db status` and `kt db start`")
        })
    }
}

/// What a command that runs the instance's own cluster says on an
/// instance whose database is external. Exit 2: the command does not apply
/// to this instance's configuration and nothing was changed; a script that
/// runs it there is wrong, and a success would hide that.
pub fn external_refusal(instance: &Instance) -> Error {
    let endpoint = crate::storage::endpoint::Endpoint::for_instance(instance);
    Error::usage(format!(
        "the database is external ({}): kt does not start, stop or configure it",
        endpoint.address()
    ))
    .with_hint("its server is run by whoever runs it; `kt db status` and `kt verify` check kt's connection to it")
}

/// Finds PostgreSQL's server programs: `KT_PG_BINDIR`, then
/// `pg_config --bindir`, then Debian's versioned directories (newest
/// first), then `PATH`.
pub fn find_bindir() -> Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("KT_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_tools(&dir) {
            return Ok(dir);
        }
        return Err(Error::env(format!("KT_PG_BINDIR={} has no initdb and pg_ctl", dir.display())));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, dir)| has_tools(dir))
            .collect();
        versions.sort();
        if let Some((_, dir)) = versions.pop() {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                return Ok(dir);
            }
        }
    }
    Err(Error::env("PostgreSQL's server programs (initdb, pg_ctl) were not found")
        .with_hint("install the PostgreSQL server package, or set KT_PG_BINDIR to the directory holding initdb"))
}

/// Fails with a clear message when something already listens on
/// 127.0.0.1:`port` (PostgreSQL's own message would only be in its log).
pub fn ensure_port_free(port: u16) -> Result<()> {
    match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::env(format!("port {port} on 127.0.0.1 is not available for the database"))
            .because_err(&e)
            .with_hint("stop whatever uses it (ss -ltnp), or choose another port with --database-port")),
    }
}

/// Whether `pid` is alive and is a PostgreSQL server process.
fn is_postgres_process(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks for existence and permission.
    let alive = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !alive {
        return false;
    }
    // After a reboot the pid may belong to an unrelated process.
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            let name = Path::new(std::str::from_utf8(argv0).unwrap_or_default())
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            name == "postgres" || name == "postmaster"
        }
        // No /proc (or no permission): trust kill(2).
        Err(_) => true,
    }
}

/// The useful part of a failed tool's output: its stderr, else its stdout.
fn tool_message(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = if stderr.trim().is_empty() { String::from_utf8_lossy(&output.stdout) } else { stderr };
    let text = text.trim();
    if text.is_empty() {
        format!("exited with {}", output.status)
    } else {
        text.lines().map(str::trim).collect::<Vec<_>>().join("; ")
    }
}

/// The last `n` lines of a (possibly large) log file.
fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else { return Vec::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    use std::io::Seek;
    if file.seek(std::io::SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("log: {l}")).collect()
}
