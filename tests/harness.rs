//! The test harness: temporary instances under the system temp dir, free
//! ports, running `kt` and the outside witnesses, and clean-up that stops
//! every database a test started.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const KT: &str = env!("CARGO_BIN_EXE_kt");

/// The outcome of one command: exit code and both output streams.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "unexpected exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// Runs a prepared command to completion.
pub fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")))
}

/// A `kt` command with a clean environment for kt's own variables.
pub fn kt() -> Command {
    let mut cmd = Command::new(KT);
    cmd.env_remove("KT_CONFDIR").env_remove("KT_PG_BINDIR");
    cmd
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `check` (every 100 ms) until it holds or `secs` pass; whether it
/// held. For waiting on a server or a database, never a fixed sleep.
pub fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fresh directory under the system temp dir, mode 0755 so that the
/// service account can traverse it; removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("kt-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An initialized instance in its own directory and port; its database is
/// stopped when the value is dropped (also when the test fails).
pub struct Instance {
    pub dir: TestDir,
    pub confdir: PathBuf,
    pub home: PathBuf,
    pub db_port: u16,
    pub server_port: u16,
    pub init: Run,
}

impl Instance {
    /// `kt init` with a fast ed25519 key, host name localhost and a free port.
    pub fn new(name: &str) -> Instance {
        Instance::with_args(name, &["--key-type", "ed25519"])
    }

    /// `kt init` with `extra` arguments; host name localhost unless
    /// `extra` gives `--hostname`.
    pub fn with_args(name: &str, extra: &[&str]) -> Instance {
        let dir = TestDir::new(name);
        let home = dir.join("home");
        let confdir = home.join(".keytrustee");
        let db_port = free_port();
        let hostname: &[&str] = if extra.contains(&"--hostname") { &[] } else { &["--hostname", "localhost"] };
        let init = run(kt()
            .arg("init")
            .arg("--confdir")
            .arg(&confdir)
            .args(hostname)
            .args(["--database-port", &db_port.to_string()])
            .args(extra))
        .expect(0);
        Instance { dir, confdir, home, db_port, server_port: 11371, init }
    }

    /// An instance listening on a free loopback port, its database started.
    pub fn serving(name: &str) -> Instance {
        Instance::serving_as(name, "localhost")
    }

    /// [`Instance::serving`] for the host name `hostname` (its certificate
    /// also names 127.0.0.1, so clients reach it on loopback): an instance
    /// whose backups are foreign to this host whatever this host is called.
    pub fn serving_as(name: &str, hostname: &str) -> Instance {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut inst = Instance::with_args(
            name,
            &["--key-type", "ed25519", "--listen", &listen, "--hostname", hostname, "--san", "127.0.0.1"],
        );
        inst.server_port = port;
        inst.kt(&["db", "start"]).expect(0);
        inst
    }

    /// The server's URL (for instances made with [`Instance::serving`]).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.server_port)
    }

    pub fn ca(&self) -> PathBuf {
        self.confdir.join(".ssl/ssl-cert-keytrustee-ca.pem")
    }

    /// Changes keytrustee.conf (as an operator would, by hand), and the
    /// host's own file `.ssl/host.conf` too when it holds the key (its
    /// keys override keytrustee.conf's).
    pub fn set_config(&self, key: &str, value: serde_json::Value) {
        let host = self.confdir.join(".ssl/host.conf");
        for path in [self.confdir.join("keytrustee.conf"), host.clone()] {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
            if path == host && config.get(key).is_none() {
                continue;
            }
            config[key] = value.clone();
            std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        }
    }

    /// The server's process id from its pid file.
    pub fn server_pid(&self) -> u32 {
        std::fs::read_to_string(self.home.join("kt-server.pid")).unwrap().trim().parse().unwrap()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.home.join("logs/kt-server.log")).unwrap_or_default()
    }

    /// `kt -c CONFDIR ARGS...`
    pub fn kt(&self, args: &[&str]) -> Run {
        run(kt().arg("-c").arg(&self.confdir).args(args))
    }

    pub fn pg_rootdir(&self) -> PathBuf {
        self.home.join("db")
    }

    /// Runs SQL through psql (an outside witness) and returns its
    /// unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Run {
        run(Command::new("psql")
            .env("PGPASSFILE", self.confdir.join(".pgpass"))
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-h", "127.0.0.1", "-p", &self.db_port.to_string(), "-U", "keytrustee", "-d", database])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]))
    }

    /// One query in the instance's database through psql; its output,
    /// trimmed (the query must succeed).
    pub fn sql(&self, query: &str) -> String {
        self.psql("keytrustee", query).expect(0).stdout.trim().to_string()
    }

    /// A connection of kt's own database user (with the password from the
    /// instance's .pgpass), for tests that drive transactions themselves.
    pub fn db_client(&self) -> postgres::Client {
        let password = kt::storage::pgpass::Password::read(&self.confdir.join(".pgpass"), "keytrustee").unwrap();
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.db_port)
            .user("keytrustee")
            .password(password.expose())
            .dbname("keytrustee")
            .connect(postgres::NoTls)
            .unwrap()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = run(kt().arg("-c").arg(&self.confdir).args(["server", "stop", "--quiet"]));
        let _ = run(kt().arg("-c").arg(&self.confdir).args(["db", "stop", "--quiet"]));
    }
}

/// Every path under `root` with its mode, owner, size and content hash:
/// two equal snapshots mean nothing was changed.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap_or_default().hash(&mut h);
                h.finish()
            } else {
                0
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                format!("{:o} {}:{} {} {:x}", meta.mode(), meta.uid(), meta.gid(), meta.len(), content),
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// The permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

/// A private GnuPG home for one test, with its agent stopped on drop.
pub struct GnupgHome {
    pub dir: TestDir,
}

impl GnupgHome {
    pub fn new() -> GnupgHome {
        let dir = TestDir::new("gpg");
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700)).unwrap();
        GnupgHome { dir }
    }

    pub fn gpg(&self, args: &[&str]) -> Run {
        run(Command::new("gpg").arg("--homedir").arg(&self.dir.path).args(["--batch", "--no-tty"]).args(args))
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.dir.path)
            .args(["--kill", "all"])
            .stderr(Stdio::null())
            .status();
    }
}

/// `openssl ARGS...`
pub fn openssl(args: &[&str]) -> Run {
    run(Command::new("openssl").args(args))
}

/// Stops the database of `confdir` on drop, for tests that make an
/// instance without [`Instance`].
pub struct StopDbOnDrop(pub PathBuf);

impl Drop for StopDbOnDrop {
    fn drop(&mut self) {
        let _ = run(kt().arg("-c").arg(&self.0).args(["db", "stop", "--quiet"]));
    }
}

/// `curl -sk URL`, returning (HTTP status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = run(Command::new("curl").args(["-s", "-S", "--max-time", "20", "-w", "\n%{http_code}"]).args(args));
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A backup made the documented way (ktbackup.sh's layout, no kt
/// involved): the confdir under its own path and the dump `sql` at the top,
/// in a plain tar at `tarball`.
pub fn documented_tar(inst: &Instance, sql: &Path, tarball: &Path) {
    run(Command::new("tar")
        .arg("cf")
        .arg(tarball)
        .arg("-C")
        .arg("/")
        .arg(inst.confdir.strip_prefix("/").unwrap())
        .arg("-C")
        .arg(sql.parent().unwrap())
        .arg(sql.file_name().unwrap()))
    .expect(0);
}

/// The SHA-256 fingerprint (as openssl prints it) of the certificate the
/// instance's server presents, read by openssl s_client.
pub fn served_cert(inst: &Instance) -> String {
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        inst.server_port
    )));
    out.stdout.trim().to_string()
}

/// The SHA-256 fingerprint (as openssl prints it) of a certificate file.
pub fn file_cert(path: &Path) -> String {
    openssl(&["x509", "-noout", "-fingerprint", "-sha256", "-in", path.to_str().unwrap()]).expect(0).stdout.trim().to_string()
}
