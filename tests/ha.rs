//! `kt ha enable | init-passive | enable-sync | status | disable-sync |
//! disable`: two real instances on this machine (two confdirs, two
//! clusters, two servers, loopback only), the confdir carried with
//! `kt ha sync` through an ssh stand-in, psql, curl and openssl as
//! witnesses.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use crate::server::{client, org_with_secret};

/// ssh stand-in: skips options and the host, runs the command here.
const SSH: &str = "#!/bin/sh\n\
    while [ $# -gt 0 ]; do case \"$1\" in -l|-p) shift 2;; -*) shift;; *) break;; esac; done\n\
    shift\n\
    exec sh -c \"$*\"\n";

/// The passive host: a home that `kt ha sync` fills with the active's
/// confdir, its own ports. Its server and database stop on drop.
pub(crate) struct Passive {
    pub(crate) dir: TestDir,
    pub(crate) home: PathBuf,
    pub(crate) confdir: PathBuf,
    pub(crate) db_port: u16,
    pub(crate) server_port: u16,
}

impl Passive {
    fn new(name: &str) -> Passive {
        let dir = TestDir::new(name);
        let home = dir.join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The service account's home, as on a passive host (useradd -m).
        if is_root() {
            run(std::process::Command::new("chown").arg("keytrustee:").arg(&home)).expect(0);
        }
        let confdir = home.join(".keytrustee");
        Passive { dir, home, confdir, db_port: free_port(), server_port: free_port() }
    }

    pub(crate) fn kt(&self, args: &[&str]) -> Run {
        run(kt().arg("-c").arg(&self.confdir).args(args))
    }

    fn init_args(&self, active_db: u16) -> Vec<String> {
        [
            "ha", "init-passive", "--active", &format!("127.0.0.1:{active_db}"), "--hostname", "kts02.example.test", "--san", "127.0.0.1",
            "--pg-rootdir", self.home.join("db").to_str().unwrap(), "--database-port", &self.db_port.to_string(),
            "--listen", &format!("127.0.0.1:{}", self.server_port),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub(crate) fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.server_port)
    }

    pub(crate) fn psql(&self, sql: &str) -> Run {
        psql_at(&self.confdir, self.db_port, "keytrustee", sql)
    }
}

impl Drop for Passive {
    fn drop(&mut self) {
        let _ = self.kt(&["server", "stop", "--quiet"]);
        let _ = self.kt(&["db", "stop", "--quiet"]);
    }
}

fn psql_at(confdir: &Path, port: u16, database: &str, sql: &str) -> Run {
    run(Command::new("psql")
        .env("PGPASSFILE", confdir.join(".pgpass"))
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "keytrustee", "-d", database])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]))
}

/// The files `kt ha enable` changes and `kt ha disable` must put back.
fn active_state(a: &Instance) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = snapshot(&a.confdir).into_iter().map(|(k, v)| (k.display().to_string(), v)).collect();
    for name in ["postgresql.conf", "pg_hba.conf", "postgresql.auto.conf"] {
        out.push((name.into(), std::fs::read_to_string(a.pg_rootdir().join(name)).unwrap()));
    }
    out
}

fn status_json(out: &Run) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn the_documented_bootstrap_with_kt_alone_and_back() {
    let a = Instance::serving_as("ha-a", "localhost");
    a.kt(&["server", "start"]).expect(0);
    let b = Passive::new("ha-b");
    let before = active_state(&a);

    // 1. enable on the active.
    let peer = format!("127.0.0.1:{}", b.db_port);
    let out = a.kt(&["ha", "enable", "--peer", &peer]).expect(0);
    assert!(out.stderr.contains("HA enabled") && out.stderr.contains("(restarted)"), "{}", out.stderr);
    let pwfile = a.confdir.join(".pgpass-replication");
    assert_eq!(mode(&pwfile), 0o600);
    let password = std::fs::read_to_string(&pwfile).unwrap().trim().rsplit(':').next().unwrap().to_string();
    assert!(password.len() >= 32);
    assert_eq!(a.psql("postgres", "SELECT rolreplication, rolsuper, rolcanlogin FROM pg_roles WHERE rolname = 'kt_replication'").expect(0).stdout.trim(), "t|f|t");
    assert!(a.psql("postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = 'kt_replication'").expect(0).stdout.starts_with("SCRAM-SHA-256$4096:"));
    assert_eq!(a.psql("postgres", "SHOW ssl").expect(0).stdout.trim(), "on");
    assert_eq!(a.psql("postgres", "SHOW listen_addresses").expect(0).stdout.trim(), "127.0.0.1");
    let hba = std::fs::read_to_string(a.pg_rootdir().join("pg_hba.conf")).unwrap();
    assert!(hba.contains("hostssl replication kt_replication 127.0.0.1/32 scram-sha-256"), "{hba}");
    let db_log = std::fs::read_to_string(a.home.join("logs/postgresql.log")).unwrap_or_default();
    assert!(!db_log.contains(&password), "the replication password reached the server log");
    // The database port now speaks TLS with the instance's certificate.
    let served = run(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -starttls postgres -connect 127.0.0.1:{} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        a.db_port
    )));
    assert_eq!(served.stdout.trim(), file_cert(&a.confdir.join(".ssl/ssl-cert-keytrustee.pem")));
    // Twice is refused, nothing changed.
    let during = active_state(&a);
    let again = a.kt(&["ha", "enable", "--peer", &peer]).expect(2);
    assert!(again.stderr.contains("already enabled"), "{}", again.stderr);
    assert_eq!(active_state(&a), during);

    // 2. the confdir to the passive, the documented way (.ssl excluded), through a remote shell.
    let ssh = b.dir.join("ssh");
    std::fs::write(&ssh, SSH).unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    run(kt()
        .args(["ha", "sync", "-zcav", "--exclude", ".ssl", "-e", ssh.to_str().unwrap(), "--remote-kt", KT])
        .arg(&a.confdir)
        .arg(format!("root@kts02.example.test:{}/.", b.home.display())))
    .expect(0);
    assert!(b.confdir.join(".pgpass-replication").is_file() && !b.confdir.join(".ssl").exists());

    // 3. init-passive: with the active's database down it waits, bounded, and changes nothing.
    a.kt(&["db", "stop"]).expect(0);
    let synced = snapshot(&b.home);
    let mut args = b.init_args(a.db_port);
    let quick = run(kt().arg("-c").arg(&b.confdir).args(&args).args(["--wait", "1"])).expect(3);
    assert!(quick.stderr.contains("did not answer within 1s"), "{}", quick.stderr);
    assert_eq!(snapshot(&b.home), synced, "a failed init-passive left changes");
    // ... and goes on when the active appears.
    let waiting_log = b.dir.join("init-passive.err");
    let child = kt()
        .arg("-c")
        .arg(&b.confdir)
        .args(&args)
        .args(["--wait", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&waiting_log).unwrap())
        .spawn()
        .unwrap();
    // The active is started only once kt says it is waiting for it.
    assert!(
        eventually(30, || std::fs::read_to_string(&waiting_log).unwrap_or_default().contains("waiting up to 60s")),
        "kt ha init-passive did not start waiting: {}",
        std::fs::read_to_string(&waiting_log).unwrap_or_default()
    );
    a.kt(&["db", "start"]).expect(0);
    let mut out = Run::from(child.wait_with_output().unwrap());
    out.stderr = std::fs::read_to_string(&waiting_log).unwrap();
    let out = out.expect(0);
    assert!(out.stderr.contains("waiting up to 60s for the active's database"), "{}", out.stderr);
    assert!(out.stderr.contains("is the passive of"), "{}", out.stderr);
    let conf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(b.confdir.join("keytrustee.conf")).unwrap()).unwrap();
    assert_eq!(conf["HOSTNAME"], "kts02.example.test");
    assert_eq!(conf["HA_ROLE"], "passive");
    assert_eq!(conf["HA_PEER"], format!("127.0.0.1:{}", a.db_port));
    // Its own certificate, for its own name.
    let b_cert = b.confdir.join(".ssl/ssl-cert-keytrustee.pem");
    let subject = openssl(&["x509", "-noout", "-subject", "-in", b_cert.to_str().unwrap()]).expect(0).stdout;
    assert!(subject.contains("kts02.example.test"), "{subject}");
    assert_ne!(file_cert(&b_cert), file_cert(&a.confdir.join(".ssl/ssl-cert-keytrustee.pem")));
    // A streaming standby, over TLS, as the replication role.
    assert_eq!(b.psql("SELECT pg_is_in_recovery()").expect(0).stdout.trim(), "t");
    assert_eq!(
        a.psql("postgres", "SELECT r.usename, r.application_name, r.state, s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)").expect(0).stdout.trim(),
        "kt_replication|kt_passive|streaming|t"
    );
    let argv_free = !std::fs::read_to_string(b.dir.path.join("home/db/postgresql.auto.conf")).unwrap().contains(&password);
    assert!(argv_free, "the replication password was written into the standby's configuration");
    // Twice is refused, nothing changed.
    let after = snapshot(&b.confdir);
    let again = run(kt().arg("-c").arg(&b.confdir).args(&args)).expect(2);
    assert!(again.stderr.contains("passive already"), "{}", again.stderr);
    assert_eq!(snapshot(&b.confdir), after);

    // 4. synchronous replication, confirmed.
    let out = a.kt(&["ha", "enable-sync"]).expect(0);
    assert!(out.stderr.contains("synchronous replication is on"), "{}", out.stderr);
    assert_eq!(a.psql("postgres", "SELECT sync_state FROM pg_stat_replication").expect(0).stdout.trim(), "sync");
    // Refused on the passive.
    b.kt(&["ha", "enable-sync"]).expect(2);

    // A deposit written on A is read on B; B refuses writes, naming the active.
    org_with_secret(&a, "acme", "");
    let cdir = register_on_both(&a, &b, "acme");
    let data = a.dir.join("data");
    std::fs::write(&data, "the secret key").unwrap();
    let uuid = client(&cdir, &["put", "k1", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    // Synchronous (remote_apply): on B at once.
    assert_eq!(b.psql("SELECT count(*) FROM deposits").expect(0).stdout.trim(), "1");
    a.kt(&["server", "stop"]).expect(0);
    assert_eq!(client(&cdir, &["get", &uuid]).expect(0).stdout, "the secret key");
    let refused = client(&cdir, &["put", "k2", data.to_str().unwrap()]);
    assert_ne!(refused.code, 0, "the passive took a write");
    assert!(refused.stderr.contains("read_only") || refused.stderr.contains("passive"), "{}", refused.stderr);
    a.kt(&["server", "start"]).expect(0);
    // Both serve one fingerprint.
    let (ca, fa) = curl(&["-k", &format!("{}/?a=fingerprint", a.url())]);
    let (cb, fb) = curl(&["-k", &format!("{}/?a=fingerprint", b.url())]);
    assert_eq!((ca, cb), (200, 200));
    assert_eq!(fa, fb);
    // A backup on the passive, from its standby, holds what A acknowledged.
    let out_dir = b.dir.join("backups");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let backup = b.kt(&["backup", "--cleartext", "--output", out_dir.to_str().unwrap()]).expect(0);
    assert!(backup.stderr.contains("deposits 1") && backup.stdout.contains("kts_bak_kts02_example_test_"), "{backup:?}");

    // 5. status, healthy on both; kt verify's HA line from the same code.
    let sa = status_json(&a.kt(&["ha", "status", "--json"]).expect(0));
    assert_eq!((sa["role"].as_str(), sa["replication"].as_str(), sa["sync_state"].as_str(), sa["healthy"].as_bool()), (Some("active"), Some("streaming"), Some("sync"), Some(true)));
    assert_eq!(sa["synchronous"], true);
    assert!(sa["lag_bytes"].is_i64() && sa["last_wal_replayed"].is_string(), "{sa}");
    let sb = status_json(&b.kt(&["ha", "status", "--json"]).expect(0));
    assert_eq!((sb["role"].as_str(), sb["replication"].as_str(), sb["healthy"].as_bool()), (Some("passive"), Some("streaming"), Some(true)));
    assert!(sb["last_wal_received"].is_string(), "{sb}");
    // A CA on the active that the passive's copy does not match: degraded, saying what to do.
    let ca_copy = a.confdir.join("ha-active-ca.pem");
    let kept = std::fs::read(&ca_copy).unwrap();
    std::fs::write(&ca_copy, b"-----BEGIN CERTIFICATE-----\n").unwrap();
    let stale = a.kt(&["ha", "status"]).expect(1);
    assert!(stale.stderr.contains("kt ha sync"), "{}", stale.stderr);
    std::fs::write(&ca_copy, kept).unwrap();
    let text = a.kt(&["ha", "status"]).expect(0).stdout;
    assert!(text.contains("health:        healthy"), "{text}");
    let verify = a.kt(&["verify"]).stdout;
    assert!(verify.lines().any(|l| l.starts_with("ok") && l.contains(" ha: active")), "{verify}");
    let verify = b.kt(&["verify"]).stdout;
    assert!(verify.lines().any(|l| l.starts_with("ok") && l.contains(" ha: passive")), "{verify}");
    assert!(!verify.contains("FAIL"), "{verify}");

    // The passive's database down: degraded (1) on the active, and kt verify fails its HA line.
    b.kt(&["db", "stop"]).expect(0);
    let sa = status_json(&a.kt(&["ha", "status", "--json"]).expect(1));
    assert_eq!(sa["healthy"], false);
    assert!(sa["problems"][0].as_str().unwrap().contains("not connected"), "{sa}");
    b.kt(&["db", "start"]).expect(0);

    // 6. back: disable refuses while synchronous, then disable-sync and disable leave A as before.
    let refused = a.kt(&["ha", "disable"]).expect(2);
    assert!(refused.stderr.contains("disable-sync"), "{}", refused.stderr);
    a.kt(&["ha", "disable-sync"]).expect(0);
    let sa = status_json(&a.kt(&["ha", "status", "--json"]).expect(0));
    assert_eq!(sa["synchronous"], false);
    b.kt(&["server", "stop"]).expect(0);
    b.kt(&["db", "stop"]).expect(0);
    a.kt(&["ha", "disable"]).expect(0);
    assert_eq!(active_state(&a), before, "kt ha disable did not put the active back as it was");
    assert_eq!(a.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'kt_replication'").expect(0).stdout.trim(), "0");
    assert_eq!(a.psql("postgres", "SHOW ssl").expect(0).stdout.trim(), "off");
    a.kt(&["ha", "status"]).expect(1);
    a.kt(&["ha", "disable"]).expect(2);
    // The server on A still serves the deposit.
    assert_eq!(client(&cdir, &["get", &uuid]).expect(0).stdout, "the secret key");

    // init-passive --force on B fails now that A admits no replication, and puts B back as it was.
    args.push("--force".into());
    let b_before = snapshot(&b.home);
    run(kt().arg("-c").arg(&b.confdir).args(&args).args(["--wait", "1"])).expect(3);
    assert_eq!(snapshot(&b.home), b_before);
}

#[test]
fn an_encrypted_key_is_refused_with_nothing_changed() {
    let a = Instance::serving("ha-enc");
    let key = a.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem");
    let enc = a.dir.join("enc.pem");
    openssl(&["pkey", "-in", key.to_str().unwrap(), "-aes256", "-passout", "pass:secret", "-out", enc.to_str().unwrap()]).expect(0);
    std::fs::copy(&enc, &key).unwrap();
    let before = active_state(&a);
    let out = a.kt(&["ha", "enable", "--peer", "127.0.0.1:5432"]).expect(2);
    assert!(out.stderr.contains("is encrypted") && out.stderr.contains("hint:"), "{}", out.stderr);
    assert_eq!(active_state(&a), before);
    // A bad peer is bad input too.
    a.kt(&["ha", "enable", "--peer", "127.0.0.1:0"]).expect(2);
    a.kt(&["ha", "enable-sync"]).expect(2);
    a.kt(&["ha", "disable"]).expect(2);
}

#[test]
fn a_failed_start_undoes_enable() {
    // A key PostgreSQL refuses (readable by others): kt checks it first.
    let a = Instance::serving("ha-undo");
    let key = a.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = active_state(&a);
    let out = a.kt(&["ha", "enable", "--peer", "127.0.0.1"]).expect(2);
    assert!(out.stderr.contains("chmod 0600"), "{}", out.stderr);
    assert_eq!(active_state(&a), before);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A certificate PostgreSQL cannot load (not PEM): the restart fails and every step is undone.
    let cert = a.confdir.join(".ssl/ssl-cert-keytrustee.pem");
    let good = std::fs::read(&cert).unwrap();
    let before = active_state(&a);
    std::fs::write(&cert, b"not a certificate\n").unwrap();
    let with_bad = active_state(&a);
    let out = a.kt(&["ha", "enable", "--peer", "127.0.0.1"]).expect(3);
    assert!(out.stderr.contains("the database did not start") && out.stderr.contains("could not load server certificate"), "{}", out.stderr);
    assert_eq!(active_state(&a), with_bad);
    std::fs::write(&cert, good).unwrap();
    assert_eq!(active_state(&a), before);
    // The database runs again, without the role.
    assert_eq!(a.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'kt_replication'").expect(0).stdout.trim(), "0");
}

/// An active (server started, `HA_WRITE_TIMEOUT_SECONDS` given) with a
/// synchronous passive (server started), the confdir synced locally.
pub(crate) fn synchronous_pair(name: &str, write_timeout: u64) -> (Instance, Passive) {
    let a = Instance::serving(&format!("{name}-a"));
    a.set_config("HA_WRITE_TIMEOUT_SECONDS", serde_json::json!(write_timeout));
    let b = Passive::new(&format!("{name}-b"));
    a.kt(&["ha", "enable", "--peer", &format!("127.0.0.1:{}", b.db_port)]).expect(0);
    run(kt().args(["ha", "sync", "-a", "--exclude", ".ssl"]).arg(&a.confdir).arg(format!("{}/", b.home.display()))).expect(0);
    run(kt().arg("-c").arg(&b.confdir).args(b.init_args(a.db_port))).expect(0);
    a.kt(&["ha", "enable-sync"]).expect(0);
    a.kt(&["server", "start"]).expect(0);
    (a, b)
}

/// Polls `check` every 100 ms for up to `secs` seconds.
/// Registers a client (in `<a's dir>/client`) of `org` that knows both
/// servers, active first, and trusts both hosts' CAs.
fn register_on_both(a: &Instance, b: &Passive, org: &str) -> PathBuf {
    let cdir = a.dir.join("client");
    let cas = a.dir.join("both-ca.pem");
    let mut pem = std::fs::read(a.ca()).unwrap();
    pem.extend(std::fs::read(b.confdir.join(".ssl/ssl-cert-keytrustee-ca.pem")).unwrap());
    std::fs::write(&cas, pem).unwrap();
    client(&cdir, &["register", "--server", &a.url(), "--server", &b.url(), "--org", org, "--ca", cas.to_str().unwrap()]).expect(0);
    cdir
}

#[test]
fn writes_need_both_servers_and_an_unconfirmed_one_is_neither_lost_nor_doubled() {
    let (a, b) = synchronous_pair("ha-writes", 2);
    org_with_secret(&a, "acme", "");
    let cdir = register_on_both(&a, &b, "acme");
    let data = a.dir.join("data");
    std::fs::write(&data, "payload").unwrap();
    let put = |name: &str| client(&cdir, &["put", name, data.to_str().unwrap()]);
    let count_on = |psql: &dyn Fn(&str) -> Run, name: &str| -> String {
        psql(&format!("SELECT count(*) FROM deposits WHERE name = '{name}'")).expect(0).stdout.trim().to_string()
    };
    let on_a = |sql: &str| a.psql("keytrustee", sql);
    let on_b = |sql: &str| b.psql(sql);
    let d1 = put("d1").expect(0).stdout.trim().to_string();

    // The passive's database down: writes are refused fast, with their own code, and change nothing; reads go on.
    b.kt(&["db", "stop"]).expect(0);
    // The server notices within its gate interval (250 ms); on a busy
    // machine maybe later: wait for its log to say so.
    assert!(eventually(20, || a.server_log().contains("writes refused")), "{}", a.server_log());
    let started = std::time::Instant::now();
    let refused = put("d2");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("503 passive_unavailable") && refused.stderr.contains("nothing was changed"), "{}", refused.stderr);
    assert_eq!(count_on(&on_a, "d2"), "0");
    assert_eq!(client(&cdir, &["get", &d1]).expect(0).stdout, "payload");
    assert!(a.server_log().contains("writes refused"), "{}", a.server_log());
    // Admin writes are refused as well, at once, instead of waiting without end.
    let started = std::time::Instant::now();
    // (Bounded by timeout(1): a write that waits would otherwise hang the suite.)
    let out = run(Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_kt"))
        .arg("-c")
        .arg(&a.confdir)
        .args(["org", "add", "-n", "later", "-c", "ops@later.example.com"]))
    .expect(3);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(out.stderr.contains("the passive is not connected") && out.stderr.contains("kt ha disable-sync"), "{}", out.stderr);
    assert_eq!(on_a("SELECT count(*) FROM organizations WHERE name = 'later'").expect(0).stdout.trim(), "0");
    a.kt(&["org", "list"]).expect(0);

    // The passive back: writes work again, no restart, and the passive has every acknowledged deposit.
    b.kt(&["db", "start"]).expect(0);
    assert!(eventually(20, || put("d2").code == 0), "writes did not come back");
    assert_eq!(count_on(&on_a, "d2"), "1");
    assert_eq!(on_b("SELECT count(*) FROM deposits").expect(0).stdout.trim(), on_a("SELECT count(*) FROM deposits").expect(0).stdout.trim());

    // The cancelled commit: the passive stays connected but stops confirming (its WAL receiver frozen).
    let receiver = on_b("SELECT pid FROM pg_stat_wal_receiver").expect(0).stdout.trim().to_string();
    assert!(!receiver.is_empty());
    run(Command::new("kill").args(["-STOP", &receiver])).expect(0);
    let started = std::time::Instant::now();
    let unconfirmed = put("d3");
    let took = started.elapsed();
    run(Command::new("kill").args(["-CONT", &receiver])).expect(0);
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(unconfirmed.code, 3, "{unconfirmed:?}");
    assert!(unconfirmed.stderr.contains("504 write_unconfirmed") && unconfirmed.stderr.contains("do not send it again"), "{}", unconfirmed.stderr);
    // Stored once on the active, never reported as failed; it reaches the passive once it confirms again.
    assert_eq!(count_on(&on_a, "d3"), "1");
    assert!(eventually(20, || count_on(&on_b, "d3") == "1"), "the passive never got the unconfirmed deposit");
    let list: serde_json::Value = serde_json::from_str(&client(&cdir, &["list"]).expect(0).stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == "d3").count(), 1, "{names:?}");
    assert!(eventually(20, || put("d4").code == 0));
    assert_eq!(on_b("SELECT count(*) FROM deposits").expect(0).stdout.trim(), "4");

    // Stop A: B keeps serving reads; its database restarts without the
    // active (after a bounded wait, saying so) and streams again when the active is back.
    a.kt(&["db", "stop"]).expect(0);
    assert_eq!(client(&cdir, &["get", &d1]).expect(0).stdout, "payload");
    b.kt(&["db", "stop"]).expect(0);
    let started = std::time::Instant::now();
    let out = b.kt(&["db", "start", "--wait-for-active", "1"]).expect(0);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(out.stderr.contains("waiting up to 1s for the active") && out.stderr.contains("starting the standby anyway"), "{}", out.stderr);
    assert_eq!(client(&cdir, &["get", &d1]).expect(0).stdout, "payload");
    b.kt(&["ha", "status"]).expect(1);
    a.kt(&["db", "start"]).expect(0);
    assert!(eventually(30, || b.kt(&["ha", "status"]).code == 0), "the passive did not stream again");
}

/// `kt ha enable` killed between any two of its steps: `kt ha status` says
/// what to run, `kt ha enable` again completes it, and `kt ha disable`
/// removes any subset, leaving the host byte for byte as before enable.
///
/// The states are built by hand (a completed enable, then what the later
/// steps did undone), not by killing a real run: a kill lands between two
/// steps only by luck of timing. Why that covers the real states: a kill
/// between steps leaves exactly the pieces of the steps done so far, each
/// whole (every file is written atomically, the role's SQL is one
/// statement each), and enable and disable judge each piece on its own
/// (src/ha/enable.rs: `block_piece`, the password file, the CA copy,
/// `HA_ROLE`, the role's verifier), never by how the host got there; so
/// the reachable states are the prefixes of enable's step order, and
/// `kill_after(k)` builds prefix k of the order enable has today: role,
/// password, password file, CA copy, stop, postgresql.conf, pg_hba.conf,
/// keytrustee.conf, start. The order is not read from the code: enable()
/// says at its steps that a reorder must be mirrored here.
#[test]
fn an_interrupted_enable_is_completed_or_removed() {
    let a = Instance::serving("ha-kill");
    let peer = "127.0.0.1:5999";
    let conf = a.pg_rootdir().join("postgresql.conf");
    let hba = a.pg_rootdir().join("pg_hba.conf");
    let config = a.confdir.join("keytrustee.conf");
    let pwfile = a.confdir.join(".pgpass-replication");
    let ca_copy = a.confdir.join("ha-active-ca.pem");
    let original = |p: &Path| std::fs::read(p).unwrap();
    let (conf0, hba0, config0) = (original(&conf), original(&hba), original(&config));
    let before = active_state(&a);
    a.kt(&["ha", "enable", "--peer", peer]).expect(0);
    let (conf1, hba1, config1, ca1) = (original(&conf), original(&hba), original(&config), original(&ca_copy));
    assert!(conf1 != conf0 && hba1 != hba0 && config1 != config0);

    // A kill after step `k` leaves steps 0..=k done.
    let kill_after = |k: usize| {
        if k < 8 {
            std::fs::write(&config, &config0).unwrap();
        }
        if k < 7 {
            std::fs::write(&hba, &hba0).unwrap();
        }
        if k < 6 {
            std::fs::write(&conf, &conf0).unwrap();
        }
        if k < 4 {
            std::fs::remove_file(&ca_copy).unwrap();
        }
        if k < 3 {
            std::fs::remove_file(&pwfile).unwrap();
        }
        if k < 2 {
            a.psql("postgres", "ALTER ROLE kt_replication PASSWORD NULL").expect(0);
        }
        // From step 5 on (the stop) the database is down.
        if k >= 5 {
            a.kt(&["db", "stop"]).expect(0);
        }
    };
    // The replication role logs in with the password file (the role, its verifier and the file agree).
    let role_logs_in = || {
        run(Command::new("psql")
            .env("PGPASSFILE", &pwfile)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-h", "127.0.0.1", "-p", &a.db_port.to_string(), "-U", "kt_replication", "-d", "postgres", "-w"])
            .args(["-X", "-A", "-t", "-c", "SELECT current_user"]))
        .expect(0)
        .stdout
        .trim()
        .to_string()
    };
    for k in 1..=8 {
        kill_after(k);
        if k < 5 {
            // The database runs: status names the partial state and what to run.
            let status = a.kt(&["ha", "status"]).expect(1);
            assert!(status.stderr.contains("kt ha enable --peer") && status.stderr.contains("kt ha disable"), "after step {k}: {}", status.stderr);
        }
        // Enable again completes it.
        let out = a.kt(&["ha", "enable", "--peer", peer]);
        if k == 8 {
            // Every file written, the database stopped: nothing left but to start it.
            let out = out.expect(2);
            assert!(out.stderr.contains("already enabled") && out.stderr.contains("kt db start"), "{}", out.stderr);
        } else {
            let out = out.expect(0);
            assert!(out.stderr.contains("HA enabled"), "after step {k}: {}", out.stderr);
        }
        assert_eq!((original(&conf), original(&hba), original(&config), original(&ca_copy)), (conf1.clone(), hba1.clone(), config1.clone(), ca1.clone()), "after step {k}");
        a.kt(&["db", "start"]).expect(0);
        assert_eq!(role_logs_in(), "kt_replication", "after step {k}");
        let status = a.kt(&["ha", "status"]);
        assert!(!status.stderr.contains("incomplete") && status.stderr.contains("not connected"), "after step {k}: {}", status.stderr);
        // And once more: complete, so refused, nothing changed.
        let during = active_state(&a);
        a.kt(&["ha", "enable", "--peer", peer]).expect(2);
        assert_eq!(active_state(&a), during);
        // Disable from the same partial state: the host as before enable.
        kill_after(k);
        a.kt(&["ha", "disable"]).expect(0);
        assert_eq!(active_state(&a), before, "disable after a kill after step {k}");
        a.kt(&["db", "start"]).expect(0);
        assert_eq!(a.psql("postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'kt_replication'").expect(0).stdout.trim(), "0");
        a.kt(&["ha", "disable"]).expect(2);
        a.kt(&["ha", "enable", "--peer", peer]).expect(0);
        a.kt(&["db", "start"]).expect(0);
    }
    // A disable killed after its first step (the role dropped, the rest there): status says so, enable completes it.
    a.psql("postgres", "DROP ROLE kt_replication").expect(0);
    let status = a.kt(&["ha", "status"]).expect(1);
    assert!(status.stderr.contains("incomplete (the database role kt_replication missing") && status.stderr.contains(&format!("kt ha enable --peer {peer}")), "{}", status.stderr);
    a.kt(&["ha", "enable", "--peer", peer]).expect(0);
    assert_eq!((original(&conf), original(&hba), original(&config)), (conf1.clone(), hba1.clone(), config1.clone()));
    assert_eq!(role_logs_in(), "kt_replication");
    // A piece that is there but for another peer is refused, nothing changed; disable clears it.
    std::fs::write(&config, &config0).unwrap();
    let during = active_state(&a);
    let out = a.kt(&["ha", "enable", "--peer", "127.0.0.2:5999"]).expect(2);
    assert!(out.stderr.contains("other than those for this peer") && out.stderr.contains("kt ha disable"), "{}", out.stderr);
    assert_eq!(active_state(&a), during);
    a.kt(&["ha", "disable"]).expect(0);
    assert_eq!(active_state(&a), before);
}

/// `kt ha init-passive` run on the active by mistake: refused (exit 2),
/// `--force` or not, with nothing changed and the active serving on.
fn init_passive_on_the_active_is_refused(a: &Instance, b: &Passive) {
    let before = active_state(a);
    let data = snapshot(&a.pg_rootdir().join("base"));
    let base = |active: String| -> Vec<String> {
        ["ha", "init-passive", "--active", &active, "--hostname", "kts02.example.test", "--san", "127.0.0.1", "--wait", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    // The active names itself: the same cluster answers at --active.
    for force in [false, true] {
        let mut args = base(format!("127.0.0.1:{}", a.db_port));
        if force {
            args.push("--force".into());
        }
        let out = run(kt().arg("-c").arg(&a.confdir).args(&args)).expect(2);
        assert!(out.stderr.contains("this host is the active") && out.stderr.contains("system identifier"), "{}", out.stderr);
        assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    }
    // --active names the passive: this database still has the active's settings.
    let mut args = base(format!("127.0.0.1:{}", b.db_port));
    args.push("--force".into());
    let out = run(kt().arg("-c").arg(&a.confdir).args(&args)).expect(2);
    assert!(out.stderr.contains("this host is the active") && out.stderr.contains("settings of kt ha enable"), "{}", out.stderr);
    assert_eq!(active_state(a), before);
    assert_eq!(snapshot(&a.pg_rootdir().join("base")).len(), data.len());
    assert_eq!(a.psql("keytrustee", "SELECT pg_is_in_recovery()").expect(0).stdout.trim(), "f");
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", a.url())]);
    assert_eq!(code, 200);
}

/// `kt restore` on an HA active: refused while synchronous replication
/// would make it wait for a passive that is gone; then, with it off, the
/// restore writes its marker and `kt ha status` asks for the passive to be
/// re-initialised (exit 1) until a standby has replayed past the restore.
///
/// The restore here goes into the same cluster (a new database, its WAL
/// streamed as any other), so the passive, started again, replays it: the
/// marker's position is what decides, not `--force` (which the bootstrap
/// test runs; a restore onto a new cluster, which the passive cannot
/// stream from, is not built here). Status and verify only read: the
/// standby "has caught up" is reported until `kt ha enable-sync` (the
/// documented next step) clears the marker. A corrupt marker is a problem
/// line, not a failure of status or verify.
#[test]
fn after_a_restore_on_the_active_the_marker_stays_until_a_standby_has_replayed_it_and_it_is_cleared() {
    let (a, b) = synchronous_pair("ha-restore", 5);
    init_passive_on_the_active_is_refused(&a, &b);
    org_with_secret(&a, "acme", "");
    let out_dir = a.dir.join("backups");
    std::fs::create_dir(&out_dir).unwrap();
    let backup = a.kt(&["backup", "--cleartext", "--output", out_dir.to_str().unwrap()]).expect(0);
    let file = backup.stdout.trim().to_string();
    assert!(file.ends_with(".tar"), "{backup:?}");

    // The passive gone, synchronous replication on: refused at once, nothing changed.
    b.kt(&["server", "stop"]).expect(0);
    b.kt(&["db", "stop"]).expect(0);
    let before = active_state(&a);
    let home = snapshot(&a.home.join(".keytrustee"));
    let started = std::time::Instant::now();
    let out = run(Command::new("timeout").arg("60").arg(env!("CARGO_BIN_EXE_kt")).arg("-c").arg(&a.confdir).args(["restore", &file, "--yes"])).expect(3);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(out.stderr.contains("the passive is not connected") && out.stderr.contains("kt ha disable-sync"), "{}", out.stderr);
    assert_eq!(active_state(&a), before);
    assert_eq!(snapshot(&a.home.join(".keytrustee")), home);
    assert!(!a.home.join("ha-reinit-needed").exists());

    // Synchronous replication off: the restore goes through and marks the passive.
    a.kt(&["ha", "disable-sync"]).expect(0);
    a.kt(&["restore", &file, "--yes"]).expect(0);
    let marker = a.home.join("ha-reinit-needed");
    assert_eq!(mode(&marker), 0o600);
    let written = std::fs::read(&marker).unwrap();
    let status = a.kt(&["ha", "status"]).expect(1);
    assert!(
        status.stderr.contains("passive must be re-initialised")
            && status.stderr.contains(&format!("run kt ha init-passive --force on the passive 127.0.0.1:{}", b.db_port)),
        "{}",
        status.stderr
    );
    let sa = status_json(&a.kt(&["ha", "status", "--json"]).expect(1));
    assert_eq!((sa["reinit_needed"].clone(), sa["reinit_caught_up"].clone()), (true.into(), false.into()), "{sa}");
    // No standby has the restore: clearing is refused, the marker stays.
    let out = a.kt(&["ha", "status", "--clear-reinit"]).expect(1);
    assert!(out.stderr.contains("the restore's marker stays: no standby has caught up"), "{}", out.stderr);
    assert_eq!(std::fs::read(&marker).unwrap(), written);

    // The passive started again replays the restore: caught up, reported,
    // and the marker still there after status and verify (they only read).
    b.kt(&["db", "start"]).expect(0);
    let caught_up = eventually(60, || status_json(&a.kt(&["ha", "status", "--json"]))["reinit_caught_up"] == true);
    assert!(caught_up, "{:?}", a.kt(&["ha", "status"]));
    let status = a.kt(&["ha", "status"]).expect(1);
    assert!(status.stderr.contains("the passive has caught up with the restore") && status.stderr.contains("kt ha status --clear-reinit"), "{}", status.stderr);
    assert!(!status.stderr.contains("must be re-initialised"), "{}", status.stderr);
    let verify = a.kt(&["verify"]).expect(1);
    assert!(verify.stdout.contains("has caught up with the restore"), "{verify:?}");
    assert_eq!(std::fs::read(&marker).unwrap(), written, "status or verify changed the marker");

    // A corrupt marker: a problem line (exit 1) of status and verify, not exit 3.
    std::fs::write(&marker, "not json").unwrap();
    if is_root() {
        run(Command::new("chown").arg("keytrustee:").arg(&marker)).expect(0);
    }
    let status = a.kt(&["ha", "status"]).expect(1);
    assert!(status.stderr.contains("the restore marker is unreadable"), "{}", status.stderr);
    let verify = a.kt(&["verify"]).expect(1);
    assert!(verify.stdout.contains("the restore marker is unreadable"), "{verify:?}");
    std::fs::write(&marker, &written).unwrap();
    if is_root() {
        run(Command::new("chown").arg("keytrustee:").arg(&marker)).expect(0);
    }

    // kt ha enable-sync, the documented next step, clears it: healthy again.
    let out = a.kt(&["ha", "enable-sync"]).expect(0);
    assert!(out.stderr.contains("caught up with the restore") && out.stderr.contains("marker removed"), "{}", out.stderr);
    assert!(!marker.exists());
    let status = a.kt(&["ha", "status"]).expect(0);
    assert!(status.stdout.contains("health:        healthy"), "{status:?}");
    b.kt(&["server", "start"]).expect(0);

    // A deposit written on A after the restore is read on B.
    let cdir = register_on_both(&a, &b, "acme");
    let data = a.dir.join("data");
    std::fs::write(&data, "after the restore").unwrap();
    let uuid = client(&cdir, &["put", "late", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    a.kt(&["server", "stop"]).expect(0);
    assert_eq!(client(&cdir, &["get", &uuid]).expect(0).stdout, "after the restore");
}
