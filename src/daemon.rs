//! `kt server start | stop | restart | reload | status`: the server in the
//! background, managed the way an init script would: a pid file and a log
//! file under the instance home, start waits until the server answers over
//! HTTPS, stop is graceful (SIGTERM, then wait), reload is SIGHUP.
//! Under systemd use `scripts/systemd/kt-server.service` instead: a
//! `kt serve` run in the foreground there has no pid file, and
//! [`ServerProcess::running_pid`] finds it by its command line and account
//! (for `kt server reload` and `kt cert`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::https::{HttpsClient, Trust, Url};
use crate::error::{Context, Error, Kind, Result};
use crate::fsutil;
use crate::instance::Instance;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The background server of one instance.
#[derive(Debug, Clone)]
pub struct ServerProcess {
    pub confdir: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    pub listen: SocketAddr,
    /// The account the server runs as: a process of another account is
    /// never taken for it (nor signalled).
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    Running { pid: u32 },
    Stopped,
    /// A pid file whose process is gone.
    Stale { pid: u32 },
}

impl ServerProcess {
    pub fn for_instance(instance: &Instance) -> Result<ServerProcess> {
        let listen = instance.settings.listen;
        Ok(ServerProcess {
            confdir: instance.layout.confdir.clone(),
            pid_file: instance.layout.home.join("kt-server.pid"),
            log_file: instance.layout.log_dir().join("kt-server.log"),
            listen,
            // SAFETY: geteuid has no preconditions.
            uid: instance.service_account()?.map(|a| a.uid).unwrap_or_else(|| unsafe { libc::geteuid() }),
        })
    }

    /// The address to probe: a wildcard listen address is reached on loopback.
    pub fn probe_url(&self) -> Url {
        let ip = match self.listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Url { host: ip.to_string(), port: self.listen.port() }
    }

    pub fn state(&self) -> Result<ServerState> {
        let text = match std::fs::read_to_string(&self.pid_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ServerState::Stopped),
            Err(e) => return Err(Error::env(format!("cannot read {}", self.pid_file.display())).because_err(&e)),
        };
        let Some(pid) = text.trim().parse::<u32>().ok().filter(|p| *p > 0) else {
            return Ok(ServerState::Stale { pid: 0 });
        };
        if is_kt_server(pid, self.uid) {
            Ok(ServerState::Running { pid })
        } else {
            Ok(ServerState::Stale { pid })
        }
    }

    /// Starts `exe serve` in the background and waits until it answers
    /// `/?a=fingerprint` over HTTPS. Returns the pid and whether it was
    /// already running.
    pub fn start(&self, exe: &Path) -> Result<(u32, bool)> {
        match self.state()? {
            ServerState::Running { pid } => return Ok((pid, true)),
            ServerState::Stale { .. } => {
                let _ = std::fs::remove_file(&self.pid_file);
            }
            ServerState::Stopped => {}
        }
        fsutil::create_dirs(fsutil::parent_dir(&self.log_file), 0o700)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .env_context(|| format!("cannot open the server log {}", self.log_file.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(exe)
            .arg("--confdir")
            .arg(&self.confdir)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().env_context(|| "cannot share the log file")?)
            .stderr(log)
            // Its own process group: a Ctrl-C in the operator's shell does
            // not reach the background server.
            .process_group(0)
            .spawn()
            .env_context(|| format!("cannot run {}", exe.display()))?;
        let pid = child.id();
        fsutil::write_atomic(&self.pid_file, format!("{pid}\n").as_bytes(), 0o644, None)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.probe_url();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = std::fs::remove_file(&self.pid_file);
                // `kt serve` exits 2 on bad configuration and 3 when the
                // world is not as needed: pass its class on, so that the
                // same bad setting gives the same code here as there.
                let kind = Kind::from_exit_code(status.code());
                let mut err = Error::new(kind, format!("the server exited during startup ({status})"));
                for line in log_since(&self.log_file, log_start) {
                    err = err.because(line);
                }
                return Err(err.with_hint(format!("see {}", self.log_file.display())));
            }
            if answers(&url) {
                return Ok((pid, false));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&self.pid_file);
                return Err(Error::env(format!("the server did not answer at {url} within {} s", START_TIMEOUT.as_secs()))
                    .with_hint(format!("see {}", self.log_file.display())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits until the server has finished its open
    /// requests and exited. Returns the pid it stopped, None if it was not running.
    pub fn stop(&self) -> Result<Option<u32>> {
        let pid = match self.state()? {
            ServerState::Running { pid } => pid,
            ServerState::Stale { .. } => {
                let _ = std::fs::remove_file(&self.pid_file);
                return Ok(None);
            }
            ServerState::Stopped => return Ok(None),
        };
        signal(pid, libc::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_kt_server(pid, self.uid) {
            if Instant::now() >= deadline {
                return Err(Error::env(format!("the server (pid {pid}) did not stop within {} s", STOP_TIMEOUT.as_secs()))
                    .with_hint(format!("see {}; kill -9 {pid} as a last resort", self.log_file.display())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&self.pid_file);
        Ok(Some(pid))
    }

    /// Asks the server to reload its certificate, key and CA (SIGHUP).
    pub fn reload(&self) -> Result<u32> {
        match self.running_pid()? {
            Some(pid) => {
                signal(pid, libc::SIGHUP)?;
                Ok(pid)
            }
            None => Err(Error::env("the server is not running").with_hint("start it with `kt server start`")),
        }
    }

    /// The pid of this instance's server however it was started: the pid
    /// file of `kt server start`, else a `kt serve` process serving this
    /// confdir (systemd's kt-server.service runs it in the foreground,
    /// with no pid file). None when no server runs.
    pub fn running_pid(&self) -> Result<Option<u32>> {
        if let ServerState::Running { pid } = self.state()? {
            return Ok(Some(pid));
        }
        Ok(find_foreground_server(&self.confdir, self.uid))
    }

    /// The certificate the server presents at [`ServerProcess::probe_url`]
    /// (DER), from a TLS handshake alone: no request is sent.
    pub fn served_leaf(&self, timeout: Duration) -> Result<Vec<u8>> {
        let chain = crate::client::https::presented_chain(&self.probe_url(), timeout)?;
        Ok(chain[0].as_ref().to_vec())
    }

    /// The current length of the server log: where a later
    /// [`ServerProcess::log_lines_since`] starts reading.
    pub fn log_offset(&self) -> u64 {
        std::fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0)
    }

    /// The last lines the server logged after `offset` (at most ten).
    pub fn log_lines_since(&self, offset: u64) -> Vec<String> {
        log_since(&self.log_file, offset)
    }
}

/// A `kt serve` process (no pid file) whose confdir is `confdir`.
fn find_foreground_server(confdir: &Path, uid: u32) -> Option<u32> {
    let wanted = std::fs::canonicalize(confdir).ok()?;
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id() && is_kt_server(*pid, uid))
        .find(|pid| served_confdir(*pid).is_some_and(|dir| dir == wanted))
}

/// The confdir a `kt serve` process was given: `-c`/`--confdir` in its
/// arguments, else `KT_CONFDIR` in its environment, else the default;
/// relative to its working directory.
fn served_confdir(pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let mut given: Option<PathBuf> = None;
    for (i, arg) in args.iter().enumerate() {
        use std::os::unix::ffi::OsStrExt;
        let os = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
        if *arg == b"-c" || *arg == b"--confdir" {
            given = args.get(i + 1).map(|v| os(v));
        } else if let Some(v) = arg.strip_prefix(b"--confdir=") {
            given = Some(os(v));
        } else if *arg == b"serve" {
            break;
        }
    }
    if given.is_none() {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        given = environ.split(|&b| b == 0).find_map(|kv| {
            use std::os::unix::ffi::OsStrExt;
            kv.strip_prefix(b"KT_CONFDIR=").map(|v| PathBuf::from(std::ffi::OsStr::from_bytes(v)))
        });
    }
    let dir = given.unwrap_or_else(|| PathBuf::from(crate::instance::DEFAULT_CONFDIR));
    let dir = if dir.is_relative() { std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?.join(dir) } else { dir };
    std::fs::canonicalize(dir).ok()
}

fn answers(url: &Url) -> bool {
    let Ok(mut client) = HttpsClient::new(url, &Trust::Insecure, Duration::from_secs(2)) else { return false };
    matches!(client.request("GET", "/?a=fingerprint", &[], b""), Ok(r) if r.status == 200)
}

fn signal(pid: u32, sig: libc::c_int) -> Result<()> {
    // SAFETY: sending a signal to a pid we checked is our server.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        return Err(Error::env(format!("cannot signal the server (pid {pid})")).because(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether `pid` is alive, runs as `uid`, is a kt binary, and runs
/// `kt ... serve` (a reused pid, another program's `serve`, another
/// account's process are not).
fn is_kt_server(pid: u32, uid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    // A zombie has an empty command line: it is gone for our purposes.
    if !cmdline.split(|&b| b == 0).any(|arg| arg == b"serve") {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    let runs_as = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
    if runs_as != Some(uid) {
        return false;
    }
    is_kt_binary(pid)
}

/// Whether the process runs this kt binary, or one named `kt` (an
/// upgraded or differently installed kt still counts). A server that
/// switched from root to the service account is not dumpable: its
/// /proc/PID/exe is root's to read, and its argv[0] stands in.
fn is_kt_binary(pid: u32) -> bool {
    let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => {
            let text = exe.to_string_lossy();
            PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text))
        }
        Err(_) => {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            PathBuf::from(String::from_utf8_lossy(argv0).into_owned())
        }
    };
    std::env::current_exe().is_ok_and(|me| me == exe) || exe.file_name().is_some_and(|n| n == "kt")
}

/// The last lines after `offset`, reading at most 64 KiB from there (the
/// log may be large; a link there is not followed).
fn log_since(path: &Path, offset: u64) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    const MAX: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) else { return Vec::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(MAX));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.take(MAX).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("log: {l}")).collect();
    lines[lines.len().saturating_sub(10)..].to_vec()
}
