//! `kt ha status --peer` (confdir drift between the hosts) and the host's
//! own settings in `.ssl/host.conf` surviving a re-sync: a real pair on
//! this machine (two confdirs, two clusters, two servers), the confdir
//! carried the documented way through an ssh stand-in.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::*;

/// ssh stand-in: skips options and the host, runs the command here.
const SSH: &str = "#!/bin/sh\n\
    while [ $# -gt 0 ]; do case \"$1\" in -l|-p) shift 2;; -*) shift;; *) break;; esac; done\n\
    shift\n\
    exec sh -c \"$*\"\n";

/// The passive host of a [`Pair`]: its own home, confdir and ports.
pub struct PassiveHost {
    /// Holds the host's directory (removed on drop).
    pub _dir: TestDir,
    pub home: PathBuf,
    pub confdir: PathBuf,
    pub db_port: u16,
    pub server_port: u16,
}

impl PassiveHost {
    pub fn kt(&self, args: &[&str]) -> Run {
        run(kt().arg("-c").arg(&self.confdir).args(args))
    }
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.server_port)
    }
    pub fn ca(&self) -> PathBuf {
        self.confdir.join(".ssl/ssl-cert-keytrustee-ca.pem")
    }
}

impl Drop for PassiveHost {
    fn drop(&mut self) {
        let _ = self.kt(&["server", "stop", "--quiet"]);
        let _ = self.kt(&["db", "stop", "--quiet"]);
    }
}

/// An active A (server started) with a synchronous passive B (server
/// started), bootstrapped the documented way: `kt ha enable`, the confdir
/// synced with `kt ha sync -zcav --exclude .ssl` through the ssh stand-in,
/// `kt ha init-passive`, `kt ha enable-sync`.
pub struct Pair {
    pub a: Instance,
    pub b: PassiveHost,
    pub ssh: PathBuf,
}

pub const PASSIVE_NAME: &str = "kts02.example.test";

impl Pair {
    pub fn new(name: &str) -> Pair {
        let a = Instance::serving(&format!("{name}-a"));
        let dir = TestDir::new(&format!("{name}-b"));
        let home = dir.join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        if is_root() {
            run(std::process::Command::new("chown").arg("keytrustee:").arg(&home)).expect(0);
        }
        let ssh = dir.join("ssh");
        std::fs::write(&ssh, SSH).unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let b = PassiveHost { confdir: home.join(".keytrustee"), home, _dir: dir, db_port: free_port(), server_port: free_port() };
        let pair = Pair { a, b, ssh };
        pair.a.kt(&["ha", "enable", "--peer", &format!("127.0.0.1:{}", pair.b.db_port)]).expect(0);
        pair.sync();
        pair.b
            .kt(&[
                "ha", "init-passive", "--active", &format!("127.0.0.1:{}", pair.a.db_port), "--hostname", PASSIVE_NAME,
                "--san", "127.0.0.1", "--pg-rootdir", pair.b.home.join("db").to_str().unwrap(),
                "--database-port", &pair.b.db_port.to_string(), "--listen", &format!("127.0.0.1:{}", pair.b.server_port),
            ])
            .expect(0);
        pair.a.kt(&["ha", "enable-sync"]).expect(0);
        pair.a.kt(&["server", "start"]).expect(0);
        pair
    }

    /// The documented sync of A's confdir to B, through the remote shell.
    pub fn sync(&self) {
        run(kt()
            .args(["ha", "sync", "-zcav", "--exclude", ".ssl", "-e", self.ssh.to_str().unwrap(), "--remote-kt", KT])
            .arg(&self.a.confdir)
            .arg(format!("root@{PASSIVE_NAME}:{}/.", self.b.home.display())))
        .expect(0);
    }

    /// `kt ha status --json --peer` from `confdir` towards `peer_confdir`.
    pub fn status_with_peer(&self, confdir: &Path, peer_confdir: &Path, code: i32) -> serde_json::Value {
        let out = run(kt().arg("-c").arg(confdir).args(["ha", "status", "--json", "-e", self.ssh.to_str().unwrap(), "--remote-kt", KT]).arg("--peer").arg(format!(
            "root@peer.example.test:{}",
            peer_confdir.display()
        )))
        .expect(code);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
    }
}

fn conf(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn drift_shows_and_host_settings_survive_a_resync() {
    let pair = Pair::new("hapeer");
    let (a, b) = (&pair.a, &pair.b);

    // The passive's own keys are in its host file, beside its identity.
    let host = conf(&b.confdir.join(".ssl/host.conf"));
    assert_eq!(host["HOSTNAME"], PASSIVE_NAME);
    assert_eq!(host["HA_ROLE"], "passive");
    assert_eq!(host["LISTEN"], format!("127.0.0.1:{}", b.server_port));
    assert_eq!(mode(&b.confdir.join(".ssl/host.conf")), 0o600);
    // The active has none: its keytrustee.conf holds every key.
    assert!(!a.confdir.join(".ssl/host.conf").exists());

    // No drift after the bootstrap, seen from either host.
    let status = pair.status_with_peer(&a.confdir, &b.confdir, 0);
    assert_eq!(status["drift"]["changes"], serde_json::json!([]), "{status}");
    assert_eq!(status["healthy"], true);
    let status = pair.status_with_peer(&b.confdir, &a.confdir, 0);
    assert_eq!(status["drift"]["changes"], serde_json::json!([]), "{status}");

    // A shared setting changed on A: one path shows, with the key, and the status is degraded.
    a.set_config("MAX_CONNECTIONS", serde_json::json!(77));
    let status = pair.status_with_peer(&a.confdir, &b.confdir, 1);
    let changes: Vec<String> = serde_json::from_value(status["drift"]["changes"].clone()).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].starts_with("<f") && changes[0].ends_with(" keytrustee.conf"), "{changes:?}");
    assert_eq!(status["drift"]["settings"], serde_json::json!(["MAX_CONNECTIONS"]));
    assert_eq!(status["healthy"], false);
    let problems = status["problems"].to_string();
    assert!(problems.contains("confdir differs") && problems.contains("MAX_CONNECTIONS"), "{problems}");
    // The text form lists the path.
    let out = run(kt().arg("-c").arg(&a.confdir).args(["ha", "status", "-e", pair.ssh.to_str().unwrap(), "--remote-kt", KT]).arg("--peer").arg(format!("root@b:{}", b.confdir.display()))).expect(1);
    assert!(out.stdout.contains("confdir drift: 1 path(s)") && out.stdout.contains("keytrustee.conf"), "{}", out.stdout);
    // A new file shows too.
    std::fs::write(a.confdir.join("notes.txt"), "x").unwrap();
    let status = pair.status_with_peer(&a.confdir, &b.confdir, 1);
    assert!(status["drift"]["changes"].to_string().contains("<f+++++++++ notes.txt"), "{status}");
    std::fs::remove_file(a.confdir.join("notes.txt")).unwrap();
    // An unreachable peer is a problem of the status, not a crash.
    let out = run(kt().arg("-c").arg(&a.confdir).args(["ha", "status", "--json", "-e", "false", "--peer", "b"])).expect(1);
    assert!(out.stdout.contains("cannot compare the confdir"), "{}", out.stdout);

    // Re-sync: B's keytrustee.conf becomes A's, B keeps its own name, role, ports and certificate.
    let b_cert = file_cert(&b.confdir.join(".ssl/ssl-cert-keytrustee.pem"));
    pair.sync();
    assert_eq!(conf(&b.confdir.join("keytrustee.conf"))["HOSTNAME"], "localhost", "the re-sync did not overwrite the file");
    b.kt(&["server", "restart"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&b.kt(&["ha", "status", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(status["role"], "passive");
    let served = run(std::process::Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        b.server_port
    )));
    assert_eq!(served.stdout.trim(), b_cert, "B does not serve its own certificate on its own port");
    let (code, fpr) = curl(&["-k", &format!("{}/?a=fingerprint", b.url())]);
    assert_eq!((code, fpr.trim()), (200, a.kt(&["fingerprint"]).expect(0).stdout.trim()));
    // ... and picked up the shared setting.
    let log = std::fs::read_to_string(b.home.join("logs/kt-server.log")).unwrap();
    assert!(log.contains("up to 77 connections"), "{log}");
    // No drift any more.
    let status = pair.status_with_peer(&a.confdir, &b.confdir, 0);
    assert_eq!(status["drift"]["changes"], serde_json::json!([]), "{status}");

    // A shared key in the host file is refused at load, naming it.
    let host_file = b.confdir.join(".ssl/host.conf");
    let kept = std::fs::read(&host_file).unwrap();
    let mut bad = conf(&host_file);
    bad["MAX_CONNECTIONS"] = serde_json::json!(5);
    std::fs::write(&host_file, bad.to_string()).unwrap();
    let out = b.kt(&["ha", "status"]).expect(2);
    assert!(out.stderr.contains("MAX_CONNECTIONS") && out.stderr.contains("not host-specific"), "{}", out.stderr);
    std::fs::write(&host_file, kept).unwrap();
}

#[test]
fn an_instance_without_a_host_file_reads_keytrustee_conf_as_before() {
    let a = Instance::serving("hostconf-legacy");
    assert!(!a.confdir.join(".ssl/host.conf").exists(), "kt init writes no host file");
    a.set_config("LISTEN", serde_json::json!(format!("127.0.0.1:{}", a.server_port)));
    a.kt(&["server", "start"]).expect(0);
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", a.url())]);
    assert_eq!(code, 200);
    // The operator's edit of a host key in the host file wins over keytrustee.conf.
    a.kt(&["server", "stop"]).expect(0);
    let other = free_port();
    std::fs::write(a.confdir.join(".ssl/host.conf"), format!("{{\"LISTEN\": \"127.0.0.1:{other}\"}}\n")).unwrap();
    a.kt(&["server", "start"]).expect(0);
    let (code, _) = curl(&["-k", &format!("https://127.0.0.1:{other}/?a=fingerprint")]);
    assert_eq!(code, 200);
}
