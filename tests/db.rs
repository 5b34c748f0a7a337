//! `kt db start | stop | status` against a real cluster.

use crate::harness::*;

fn postmaster_pid(inst: &Instance) -> Option<u32> {
    let text = std::fs::read_to_string(inst.pg_rootdir().join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

#[test]
fn start_stop_status_round_trip() {
    let inst = Instance::new("roundtrip");
    let status = inst.kt(&["db", "status"]).expect(1);
    assert!(status.stdout.contains("state:    stopped"), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("port:     {}", inst.db_port)), "{}", status.stdout);

    let start = inst.kt(&["db", "start"]).expect(0);
    assert!(start.stderr.contains("the database is running"), "{}", start.stderr);
    assert!(start.stdout.is_empty());
    // Start waits until it accepts connections: psql works right away.
    assert_eq!(inst.psql("keytrustee", "SELECT 1").expect(0).stdout.trim(), "1");

    let again = inst.kt(&["db", "start"]).expect(0);
    assert!(again.stderr.contains("already running"), "{}", again.stderr);

    let pid = postmaster_pid(&inst).expect("a postmaster.pid while running");
    let status = inst.kt(&["db", "status"]).expect(0);
    assert!(status.stdout.contains("state:    running"), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("pid:      {pid}")), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("data dir: {}", inst.pg_rootdir().display())), "{}", status.stdout);
    let json: serde_json::Value = serde_json::from_str(&inst.kt(&["db", "status", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["pid"], pid);
    assert_eq!(json["port"], inst.db_port);

    // --quiet silences information, not data.
    let quiet = inst.kt(&["--quiet", "db", "start"]).expect(0);
    assert!(quiet.stderr.is_empty() && quiet.stdout.is_empty(), "{quiet:?}");

    let stop = inst.kt(&["db", "stop"]).expect(0);
    assert!(stop.stderr.contains("stopped"), "{}", stop.stderr);
    assert!(postmaster_pid(&inst).is_none(), "postmaster.pid remains after a clean stop");
    inst.psql("keytrustee", "SELECT 1").expect(2);
    let again = inst.kt(&["db", "stop"]).expect(0);
    assert!(again.stderr.contains("already stopped"), "{}", again.stderr);
    let status = inst.kt(&["db", "status", "--json"]).expect(1);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["state"], "stopped");
    assert!(json["pid"].is_null());
}

#[test]
fn a_stale_postmaster_pid_is_reported_and_cleared() {
    let inst = Instance::new("stale");
    let pidfile = inst.pg_rootdir().join("postmaster.pid");
    // A pid that no longer exists (a crash), and a live pid that is not
    // PostgreSQL (a reboot gave the number to another process).
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let mut sleeper = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    for pid in [dead, sleeper.id()] {
        let fake = format!("{pid}\n{}\n1700000000\n{}\n\n127.0.0.1\n  1234  5678\nready   \n", inst.pg_rootdir().display(), inst.db_port);
        std::fs::write(&pidfile, fake).unwrap();
        let status = inst.kt(&["db", "status"]).expect(1);
        assert!(status.stdout.contains("state:    stopped"), "{}", status.stdout);
        assert!(status.stderr.contains(&format!("stale postmaster.pid: pid {pid}")), "{}", status.stderr);
        let stop = inst.kt(&["db", "stop"]).expect(0);
        assert!(stop.stderr.contains("already stopped"), "{}", stop.stderr);
        let start = inst.kt(&["db", "start"]).expect(0);
        assert!(start.stderr.contains(&format!("removed a stale postmaster.pid (pid {pid}")), "{}", start.stderr);
        assert_eq!(inst.psql("keytrustee", "SELECT 1").expect(0).stdout.trim(), "1");
        inst.kt(&["db", "stop"]).expect(0);
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_crashed_server_is_restarted() {
    let inst = Instance::new("crash");
    inst.kt(&["db", "start"]).expect(0);
    let pid = postmaster_pid(&inst).unwrap();
    // SAFETY: pid is the postmaster this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    // Wait until the postmaster and its children are gone.
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = inst.kt(&["db", "status"]).expect(1);
    assert!(status.stderr.contains("stale postmaster.pid"), "{}", status.stderr);
    // Orphaned backends may hold the shared memory for a moment.
    let mut last = None;
    for _ in 0..20 {
        let start = inst.kt(&["db", "start"]);
        if start.code == 0 {
            last = None;
            break;
        }
        last = Some(start);
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(last.is_none(), "restart after a crash failed: {last:?}");
    assert_eq!(
        inst.psql("keytrustee", "SELECT count(*) FROM schema_version").expect(0).stdout.trim(),
        kt::storage::schema::MIGRATIONS.len().to_string()
    );
}

#[test]
fn a_port_in_use_gets_a_clear_message() {
    let inst = Instance::new("busyport");
    let _listener = std::net::TcpListener::bind(("127.0.0.1", inst.db_port)).unwrap();
    let out = inst.kt(&["db", "start"]).expect(3);
    assert!(out.stderr.contains(&format!("port {} on 127.0.0.1 is not available", inst.db_port)), "{}", out.stderr);
    assert!(out.stderr.contains("hint: "), "{}", out.stderr);
    inst.kt(&["db", "status"]).expect(1);
}

#[test]
fn a_missing_data_dir_gets_a_clear_message() {
    let inst = Instance::new("nodata");
    let moved = inst.dir.join("moved-db");
    std::fs::rename(inst.pg_rootdir(), &moved).unwrap();
    for args in [&["db", "start"][..], &["db", "stop"]] {
        let out = inst.kt(args).expect(3);
        assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
        assert!(out.stderr.contains("PG_ROOTDIR"), "{}", out.stderr);
    }
    std::fs::rename(&moved, inst.pg_rootdir()).unwrap();
    inst.kt(&["db", "start"]).expect(0);
}

#[test]
fn a_failed_start_quotes_the_server_log() {
    let inst = Instance::new("badconf");
    let conf = inst.pg_rootdir().join("postgresql.conf");
    let original = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{original}\nshared_buffers = 'lots'\n")).unwrap();
    let out = inst.kt(&["db", "start"]).expect(3);
    assert!(out.stderr.contains("the database did not start"), "{}", out.stderr);
    assert!(out.stderr.contains("log: "), "no log lines quoted: {}", out.stderr);
    assert!(out.stderr.contains("shared_buffers"), "{}", out.stderr);
    std::fs::write(&conf, original).unwrap();
    inst.kt(&["db", "start"]).expect(0);
}

/// An instance made by an earlier kt (schema version 1): `kt db start`
/// brings its schema up to this kt's, once; its data stays.
#[test]
fn db_start_upgrades_an_older_schema() {
    let inst = Instance::new("dbupgrade");
    let _stop = StopDbOnDrop(inst.confdir.clone());
    let first = inst.kt(&["db", "start"]).expect(0);
    assert!(!first.stderr.contains("warning") && !first.stderr.contains("schema"), "{}", first.stderr);
    inst.kt(&["org", "add", "-n", "acme", "-c", "a@acme.com"]).expect(0);
    // Back to version 1, as the first kt left it.
    crate::ha_write::downgrade_schema(&inst, 1);
    let org = inst.kt(&["org", "list"]).expect(3);
    assert!(org.stderr.contains("run `kt db start` or restart `kt serve` to upgrade the schema"), "{}", org.stderr);
    let out = inst.kt(&["db", "start"]).expect(0);
    assert!(
        out.stderr.contains(&format!("brought the database schema up to version {}", kt::storage::schema::latest_version())),
        "{}",
        out.stderr
    );
    let list: serde_json::Value = serde_json::from_str(&inst.kt(&["org", "list"]).expect(0).stdout).unwrap();
    assert_eq!(list["acme"]["contacts"], serde_json::json!(["a@acme.com"]));
    assert_eq!(
        inst.psql("keytrustee", "SELECT max(version) FROM schema_version").expect(0).stdout.trim(),
        kt::storage::schema::latest_version().to_string()
    );
    let again = inst.kt(&["db", "start"]).expect(0);
    assert!(!again.stderr.contains("brought the database schema"), "{}", again.stderr);
}
