//! Several `kt serve` nodes over one instance's database: deposits and the
//! replay guard are shared, a node told to stop drains, and `/metrics`
//! (checked by a real Prometheus text parser) counts what was asked.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::server::{org_with_secret, register, Raw};

/// A `kt serve` in the foreground (its exit status is the test's to see),
/// killed if the test ends before it does.
pub struct Node {
    pub child: Child,
    pub port: u16,
}

impl Node {
    /// Another node of `inst`: a copy of its confdir (same keys, same
    /// database) that listens on its own port, with `settings` on top.
    pub fn copy_of(inst: &Instance, name: &str, settings: &[(&str, serde_json::Value)]) -> Node {
        let home = inst.dir.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let confdir = home.join(".keytrustee");
        run(Command::new("cp").arg("-a").arg(&inst.confdir).arg(&confdir)).expect(0);
        run(Command::new("chown").arg("keytrustee:").arg(&home)).expect(0);
        let port = free_port();
        set(&confdir, "LISTEN", format!("127.0.0.1:{port}").into());
        // The database is the original's.
        set(&confdir, "PG_ROOTDIR", inst.pg_rootdir().to_string_lossy().into_owned().into());
        for (key, value) in settings {
            set(&confdir, key, value.clone());
        }
        Node::serve(confdir, port)
    }

    /// `kt -c CONFDIR serve` in the foreground, waited for until it answers.
    pub fn serve(confdir: PathBuf, port: u16) -> Node {
        let child = kt().arg("-c").arg(&confdir).arg("serve").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let node = Node { child, port };
        let until = Instant::now() + Duration::from_secs(30);
        while curl(&["-k", "--max-time", "2", &format!("{}/?a=fingerprint", node.url())]).0 != 200 {
            assert!(Instant::now() < until, "the node on port {port} did not answer in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        node
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn raw(&self, inst: &Instance, client: &Path) -> Raw {
        Raw::to(&self.url(), inst.ca(), client)
    }

    pub fn signal(&self, sig: &str) {
        run(Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string())).expect(0);
    }

    /// Waits for the node to end; its exit code and log (stderr).
    pub fn wait(mut self, limit: Duration) -> (i32, String) {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut log = String::new();
                std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut log).unwrap();
                return (status.code().unwrap_or(-1), log);
            }
            assert!(Instant::now() < until, "the node did not stop within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sets `key` in a confdir's keytrustee.conf (and host.conf when it has it).
fn set(confdir: &Path, key: &str, value: serde_json::Value) {
    for path in [confdir.join("keytrustee.conf"), confdir.join(".ssl/host.conf")] {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        if path.ends_with("host.conf") && config.get(key).is_none() {
            continue;
        }
        config[key] = value.clone();
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    }
}

fn uuid_of(resp: &kt::client::https::Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["uuid"].as_str().unwrap().to_string()
}

#[test]
fn two_nodes_share_deposits_and_refuse_each_others_replays() {
    let inst = Instance::serving("nodes");
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    let b = Node::copy_of(&inst, "b", &[]);
    let mut on_a = Raw::new(&inst, &dir);
    let mut on_b = b.raw(&inst, &dir);
    let now = || kt::clock::unix_now();
    let fresh = || kt::auth::random_nonce();

    // Written through A, read through B.
    let h = on_a.signed("POST", "/deposits?name=k1", b"first", now(), &fresh());
    let created = on_a.answer("POST", "/deposits?name=k1", b"first", &h);
    assert_eq!(created.status, 201);
    let uuid = uuid_of(&created);
    let path = format!("/deposits/{uuid}");
    let h = on_b.signed("GET", &path, b"", now(), &fresh());
    let read = on_b.answer("GET", &path, b"", &h);
    assert_eq!((read.status, read.body.as_slice()), (200, &b"first"[..]));

    // A read replayed to the other node.
    let h = on_a.signed("GET", "/deposits", b"", now(), &fresh());
    assert_eq!(on_a.send("GET", "/deposits", b"", &h).0, 200);
    assert_eq!(on_b.send("GET", "/deposits", b"", &h), (409, "replayed".into()));
    // And one of a single deposit, the other way round.
    let h = on_b.signed("GET", &path, b"", now(), &fresh());
    assert_eq!(on_b.send("GET", &path, b"", &h).0, 200);
    assert_eq!(on_a.send("GET", &path, b"", &h), (409, "replayed".into()));

    // A write without a request id (its nonce is taken in its own
    // transaction), replayed both ways: refused, and not written again.
    let h = on_a.signed("PUT", &path, b"second", now(), &fresh());
    assert_eq!(on_a.send("PUT", &path, b"second", &h).0, 200);
    let third = on_b.signed("PUT", &path, b"third", now(), &fresh());
    assert_eq!(on_b.send("PUT", &path, b"third", &third).0, 200);
    assert_eq!(on_b.send("PUT", &path, b"second", &h), (409, "replayed".into()));
    assert_eq!(on_a.send("PUT", &path, b"third", &third), (409, "replayed".into()));
    let content = inst.psql("keytrustee", &format!("SELECT convert_from(content, 'UTF8') FROM deposits WHERE uuid = '{uuid}'"));
    assert_eq!(content.expect(0).stdout.trim(), "third", "the replayed PUT must not have been written");

    // A new deposit with a request id, replayed to the other node: one row.
    let h = on_a.signed_with_id("POST", "/deposits?name=k2", b"x", &fresh());
    assert_eq!(on_a.send("POST", "/deposits?name=k2", b"x", &h).0, 201);
    assert_eq!(on_b.send("POST", "/deposits?name=k2", b"x", &h), (409, "replayed".into()));
    assert_eq!(on_a.send("POST", "/deposits?name=k2", b"x", &h), (409, "replayed".into()));
    let rows = inst.psql("keytrustee", "SELECT count(*) FROM deposits WHERE name = 'k2'").expect(0).stdout;
    assert_eq!(rows.trim(), "1");

    // A deletion through B is seen by A.
    let h = on_b.signed("DELETE", &path, b"", now(), &fresh());
    assert_eq!(on_b.send("DELETE", &path, b"", &h).0, 204);
    let h = on_a.signed("GET", &path, b"", now(), &fresh());
    assert_eq!(on_a.send("GET", &path, b"", &h), (404, "not_found".into()));

    // The shared guard holds the nonces, each until the window ends.
    let held = inst
        .psql("keytrustee", &format!("SELECT count(*), bool_and(expires > extract(epoch FROM now())) FROM replay_nonces WHERE client = '{}'", on_a.fpr))
        .expect(0)
        .stdout;
    let (count, live) = held.trim().split_once('|').unwrap();
    assert!(count.parse::<u32>().unwrap() >= 10, "{held}");
    assert_eq!(live, "t");
    drop(b);
}

/// A node that is no passive never skips the shared guard: when the
/// database turns read-only under it (DB_HOST now names a standby, a
/// read-only default), requests are refused instead of guarded by the
/// node's memory alone, which another node does not share.
#[test]
fn a_read_only_database_refuses_requests_rather_than_skipping_the_shared_guard() {
    let inst = Instance::serving("nodes-ro");
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    // Every new session read-only; A restarted into it, B started in it.
    inst.sql("ALTER DATABASE keytrustee SET default_transaction_read_only = on");
    inst.kt(&["server", "stop"]).expect(0);
    inst.kt(&["server", "start"]).expect(0);
    let b = Node::copy_of(&inst, "b", &[]);
    let mut on_a = Raw::new(&inst, &dir);
    let mut on_b = b.raw(&inst, &dir);
    let h = on_a.signed("GET", "/deposits", b"", kt::clock::unix_now(), &kt::auth::random_nonce());
    let answer = on_a.send("GET", "/deposits", b"", &h);
    assert_eq!(answer, (503, "read_only".into()), "node A must refuse a request whose nonce it cannot share");
    // Had A answered, this replay would have passed on B, which never saw it.
    let replay = on_b.send("GET", "/deposits", b"", &h);
    assert_eq!(replay, (503, "read_only".into()), "node B must refuse it too");
    drop(b);
}

/// A slow request over TLS, sent in two halves (python's ssl module: an
/// independent client), so that it is in flight while the server stops.
struct SlowRequest {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

const SLOW_CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl._create_unverified_context()
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
s.sendall(b"PUT /deposits/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\nHost: kt\r\nContent-Length: 10\r\n\r\n12345")
print("sent", flush=True)
sys.stdin.readline()
s.sendall(b"67890")
answer = b""
while b"\r\n" not in answer:
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
print(answer.split(b"\r\n")[0].decode() or "closed", flush=True)
"#;

impl SlowRequest {
    fn start(port: u16) -> SlowRequest {
        let mut child = Command::new("python3")
            .args(["-c", SLOW_CLIENT, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "sent");
        SlowRequest { child, lines }
    }

    /// Sends the rest of the body: the answer's status line.
    fn finish(mut self) -> String {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        let _ = self.child.wait();
        line.trim().to_string()
    }
}

#[test]
fn a_stopping_node_drains_then_finishes_its_requests() {
    let inst = Instance::serving("drain");
    inst.set_config("DRAIN_SECONDS", serde_json::json!(2));
    let node = Node::serve(inst.confdir.clone(), inst.server_port);
    let health = || curl(&["-k", "--max-time", "5", &format!("{}/health", node.url())]);
    assert_eq!(health().0, 200);
    let slow = SlowRequest::start(node.port);

    node.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Draining: still accepting, /health says 503 so balancers move away.
    let (code, body) = health();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"draining\":true"), "{body}");
    // Past the drain the listener is closed: new connections are refused...
    let until = Instant::now() + Duration::from_secs(10);
    while health().0 != 0 {
        assert!(Instant::now() < until, "the listener was still open 10 s after SIGTERM with DRAIN_SECONDS 2");
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...and the request in flight still gets its whole answer (unsigned:
    // 401, the server read it to the end and judged it).
    assert_eq!(slow.finish(), "HTTP/1.1 401 Unauthorized");
    let (code, log) = node.wait(Duration::from_secs(15));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("draining"), "{log}");
}

/// A python3 that has the `prometheus_client` package (PATH's, else the
/// system's): scripts/install-deps --for test installs it. None is a
/// failure, never a skipped check.
fn prometheus_python() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python).args(["-c", "import prometheus_client"]).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
        if ok {
            return python.to_string();
        }
    }
    panic!("no python3 with prometheus_client: run scripts/install-deps --for test");
}

const PARSE_METRICS: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// `/metrics` of the node, read by the Prometheus client library's own
/// text-format parser: (sample name, labels, value).
fn scrape(python: &str, metrics_port: u16) -> Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> {
    let (code, text) = curl(&[&format!("http://127.0.0.1:{metrics_port}/metrics")]);
    assert_eq!(code, 200, "{text}");
    let mut child = Command::new(python).args(["-c", PARSE_METRICS]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused the metrics:\n{text}");
    let samples: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    samples
}

/// The value of the sample `name` whose labels include `labels` (0 when absent).
fn value(samples: &[(String, serde_json::Map<String, serde_json::Value>, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v)))
        .map(|(_, _, v)| *v)
        .sum()
}

#[test]
fn metrics_count_what_was_asked() {
    let python = prometheus_python();
    let inst = Instance::serving("metrics");
    // Never on an open address.
    inst.set_config("METRICS_LISTEN", serde_json::json!("0.0.0.0:9100"));
    let out = inst.kt(&["server", "start"]).expect(2);
    assert!(out.stderr.contains("METRICS_LISTEN") && out.stderr.contains("loopback"), "{}", out.stderr);
    let metrics_port = free_port();
    inst.set_config("METRICS_LISTEN", serde_json::json!(format!("127.0.0.1:{metrics_port}")));
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    let mut raw = Raw::new(&inst, &dir);

    let before = scrape(&python, metrics_port);
    for _ in 0..3 {
        assert_eq!(curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]).0, 200);
    }
    let h = raw.signed("GET", "/deposits", b"", kt::clock::unix_now(), &kt::auth::random_nonce());
    assert_eq!(raw.send("GET", "/deposits", b"", &h).0, 200);
    assert_eq!(raw.send("GET", "/deposits", b"", &h), (409, "replayed".into()));
    assert_eq!(curl(&["-k", &format!("{}/deposits", inst.url())]).0, 401);
    // A client that does not speak TLS.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", inst.server_port)).unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let _ = std::io::Read::read(&mut plain, &mut [0u8; 64]);
    drop(plain);
    std::thread::sleep(Duration::from_millis(200));
    let after = scrape(&python, metrics_port);

    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let requests = "kt_http_requests_total";
    assert_eq!(delta(requests, &[("route", "/"), ("method", "GET"), ("status", "200")]), 3.0);
    assert_eq!(delta(requests, &[("route", "/deposits"), ("method", "GET"), ("status", "200")]), 1.0);
    assert_eq!(delta(requests, &[("route", "/deposits"), ("method", "GET"), ("status", "409")]), 1.0);
    assert_eq!(delta(requests, &[("route", "/deposits"), ("method", "GET"), ("status", "401")]), 1.0);
    let durations = "kt_http_request_duration_seconds_count";
    assert_eq!(delta(durations, &[("route", "/deposits"), ("method", "GET"), ("status", "200")]), 1.0);
    assert_eq!(delta("kt_auth_refusals_total", &[("reason", "replayed")]), 1.0);
    assert_eq!(delta("kt_auth_refusals_total", &[("reason", "unsigned")]), 1.0);
    assert_eq!(delta("kt_auth_refusals_total", &[("reason", "forged")]), 0.0);
    assert_eq!(delta("kt_tls_handshake_failures_total", &[]), 1.0);
    assert_eq!(value(&after, "kt_db_up", &[]), 1.0);
    assert_eq!(value(&after, "kt_ha_role", &[("role", "active")]), 1.0);
    assert!(value(&after, "kt_db_pool_connections", &[("pool", "read"), ("state", "open")]) >= 1.0);
    let (_, served) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(value(&after, "kt_server_key_info", &[("fingerprint", served.trim())]), 1.0, "{after:?}");
    let expiry = value(&after, "kt_certificate_expiry_timestamp_seconds", &[]);
    let not_after = openssl(&["x509", "-noout", "-enddate", "-in", inst.confdir.join(".ssl/ssl-cert-keytrustee.pem").to_str().unwrap()]).stdout;
    // openssl's notAfter, in Unix seconds by date(1): the same instant.
    let when = not_after.trim().trim_start_matches("notAfter=");
    let seconds = run(Command::new("date").args(["-u", "-d", when, "+%s"])).expect(0).stdout;
    assert_eq!(expiry, seconds.trim().parse::<f64>().unwrap(), "{not_after}");
    // Only /metrics there.
    assert_eq!(curl(&[&format!("http://127.0.0.1:{metrics_port}/other")]).0, 404);
}

/// A textfile-collector file read by the Prometheus parser: name → value
/// (labels folded into the name as `name{k=v}` for the rows).
fn read_prom(python: &str, path: &Path) -> std::collections::BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut child = Command::new(python).args(["-c", PARSE_METRICS]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser refused:\n{text}");
    let samples: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    samples
        .into_iter()
        .map(|(name, labels, v)| match labels.get("table") {
            Some(t) => (format!("{name}{{table={}}}", t.as_str().unwrap()), v),
            None => (name, v),
        })
        .collect()
}

#[test]
fn backup_and_restore_leave_a_metrics_file_for_node_exporter() {
    let python = prometheus_python();
    let inst = Instance::serving("jobmetrics");
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    let mut raw = Raw::new(&inst, &dir);
    for name in ["a", "b"] {
        let path = format!("/deposits?name={name}");
        let h = raw.signed("POST", &path, b"x", kt::clock::unix_now(), &kt::auth::random_nonce());
        assert_eq!(raw.send("POST", &path, b"x", &h).0, 201);
    }
    let textfiles = inst.dir.join("textfiles");
    std::fs::create_dir_all(&textfiles).unwrap();
    let prom = textfiles.join("kt_backup.prom");
    let out_dir = inst.dir.join("backups");
    std::fs::create_dir_all(&out_dir).unwrap();

    let made = inst
        .kt(&["--quiet", "backup", "--cleartext", "--output", out_dir.to_str().unwrap(), "--metrics-file", prom.to_str().unwrap()])
        .expect(0);
    let backup = PathBuf::from(made.stdout.trim());
    let m = read_prom(&python, &prom);
    assert_eq!(m["kt_backup_success"], 1.0, "{m:?}");
    assert_eq!(m["kt_backup_bytes"], std::fs::metadata(&backup).unwrap().len() as f64);
    assert_eq!(m["kt_backup_rows{table=deposits}"], 2.0, "{m:?}");
    assert_eq!(m["kt_backup_rows{table=clients}"], 1.0, "{m:?}");
    assert!(m["kt_backup_duration_seconds"] > 0.0);
    assert!((m["kt_backup_last_run_timestamp_seconds"] - kt::clock::unix_now() as f64).abs() < 60.0);
    // Only the file itself in the directory: the temp file was renamed.
    assert_eq!(std::fs::read_dir(&textfiles).unwrap().count(), 1);

    // A failed run replaces it, success 0.
    let nowhere = inst.dir.join("no-such-dir");
    inst.kt(&["backup", "--cleartext", "--output", nowhere.to_str().unwrap(), "--metrics-file", prom.to_str().unwrap()]).expect(3);
    let m = read_prom(&python, &prom);
    assert_eq!((m["kt_backup_success"], m["kt_backup_bytes"]), (0.0, 0.0), "{m:?}");

    // Restore: a dry run writes nothing, a restore its result.
    let rprom = textfiles.join("kt_restore.prom");
    inst.kt(&["restore", backup.to_str().unwrap(), "--dry-run", "--allow-unsigned", "--metrics-file", rprom.to_str().unwrap()]);
    assert!(!rprom.exists());
    let out = inst.kt(&["restore", backup.to_str().unwrap(), "--yes", "--allow-unsigned", "--metrics-file", rprom.to_str().unwrap()]);
    let m = read_prom(&python, &rprom);
    assert_eq!(m["kt_restore_success"], if out.code == 0 { 1.0 } else { 0.0 }, "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(m["kt_restore_bytes"], std::fs::metadata(&backup).unwrap().len() as f64);
    assert_eq!(m["kt_restore_rows{table=deposits}"], 2.0, "{m:?}");
    let missing = inst.dir.join("missing.tar");
    inst.kt(&["restore", missing.to_str().unwrap(), "--yes", "--metrics-file", rprom.to_str().unwrap()]);
    assert_eq!(read_prom(&python, &rprom)["kt_restore_success"], 0.0);
}
