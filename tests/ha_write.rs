//! The HA write path against a real synchronous pair: no write reported as
//! failed exists, none is written twice. Writes are sent as signed requests
//! with an `X-KT-Request-Id` (the reference client's way), so that the test
//! chooses when a retry happens; psql on the active is the witness of what
//! was stored, `kill -STOP` on the passive's WAL receiver freezes the
//! standby while it stays connected, and `pg_terminate_backend` (as the
//! cluster's superuser) cuts the server's connection in the middle of a
//! commit.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kt::client::https::{HttpsClient, Trust, Url};
use pgp::composed::{Deserializable, SignedSecretKey};

use crate::ha::{eventually, synchronous_pair, Passive};
use crate::harness::*;
use crate::server::{client, org_with_secret};

/// A client that signs its own requests, with the request id it is given.
struct Writer {
    http: HttpsClient,
    key: SignedSecretKey,
    fpr: String,
}

/// Status, error code (or empty) and the `uuid` of the answer (or empty).
type Answer = (u16, String, String);

impl Writer {
    fn new(url: &str, ca: &Path, dir: &Path) -> Writer {
        let http = HttpsClient::new(&Url::parse(url).unwrap(), &Trust::Ca(ca.to_path_buf()), Duration::from_secs(60)).unwrap();
        let key = SignedSecretKey::from_bytes(&std::fs::read(dir.join("secret.gpg")).unwrap()[..]).unwrap();
        let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("client.json")).unwrap()).unwrap();
        Writer { http, key, fpr: settings["fingerprint"].as_str().unwrap().to_string() }
    }

    fn sign(&self, method: &str, path: &str, body: &[u8], id: &str) -> kt::auth::SignedHeaders {
        kt::auth::sign_request_with_id(&self.key, &self.fpr, method, path, body, id).unwrap()
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8], h: &kt::auth::SignedHeaders) -> Answer {
        self.try_send(method, path, body, h).unwrap()
    }

    /// [`Writer::send`], `None` when no answer came.
    fn try_send(&mut self, method: &str, path: &str, body: &[u8], h: &kt::auth::SignedHeaders) -> Option<Answer> {
        let ts = h.timestamp.to_string();
        let mut headers = vec![
            ("X-KT-Client", h.client.as_str()),
            ("X-KT-Timestamp", ts.as_str()),
            ("X-KT-Nonce", h.nonce.as_str()),
            ("X-KT-Signature", h.signature.as_str()),
        ];
        if let Some(id) = &h.request_id {
            headers.push(("X-KT-Request-Id", id));
        }
        let resp = self.http.request(method, path, &headers, body).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        Some((resp.status, json["error"].as_str().unwrap_or("").to_string(), json["uuid"].as_str().unwrap_or("").to_string()))
    }

    /// A new deposit `name` under request id `id`, freshly signed.
    fn post(&mut self, name: &str, body: &[u8], id: &str) -> Answer {
        let path = format!("/deposits?name={name}");
        let h = self.sign("POST", &path, body, id);
        self.send("POST", &path, body, &h)
    }
}

/// The passive's WAL receiver stopped (connected, confirming nothing) until drop.
struct Frozen(String);

impl Frozen {
    fn new(b: &Passive) -> Frozen {
        let pid = b.psql("SELECT pid FROM pg_stat_wal_receiver").expect(0).stdout.trim().to_string();
        assert!(!pid.is_empty(), "the passive has no WAL receiver");
        run(Command::new("kill").args(["-STOP", &pid])).expect(0);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = run(Command::new("kill").args(["-CONT", &self.0]));
    }
}

fn count(a: &Instance, name: &str) -> String {
    a.psql("keytrustee", &format!("SELECT count(*) FROM deposits WHERE name = '{name}'")).expect(0).stdout.trim().to_string()
}

fn uuids(a: &Instance, name: &str) -> String {
    a.psql("keytrustee", &format!("SELECT string_agg(uuid::text, ',') FROM deposits WHERE name = '{name}'")).expect(0).stdout.trim().to_string()
}

#[test]
fn retried_writes_are_answered_once_and_no_write_fails_that_exists() {
    let (a, b) = synchronous_pair("haw", 2);
    org_with_secret(&a, "acme", "");
    let cdir = a.dir.join("client");
    client(&cdir, &["register", "--server", &a.url(), "--org", "acme", "--ca", a.ca().to_str().unwrap()]).expect(0);
    let mut w = Writer::new(&a.url(), &a.ca(), &cdir);
    let new_id = kt::auth::random_nonce;

    // 1. An unconfirmed write (the passive stops confirming): 504
    //    write_unconfirmed; the same request id, signed afresh, answers the
    //    same uuid from the record, and there is one row.
    let id = new_id();
    let (first, retry, replayed) = {
        let _frozen = Frozen::new(&b);
        let started = Instant::now();
        let h = w.sign("POST", "/deposits?name=u1", b"one", &id);
        let first = w.send("POST", "/deposits?name=u1", b"one", &h);
        assert!(started.elapsed() >= Duration::from_secs(2), "answered before the write timeout: {first:?}");
        let retry = w.post("u1", b"one", &id);
        // The very same signed request is still a replay.
        let replayed = w.send("POST", "/deposits?name=u1", b"one", &h);
        (first, retry, replayed)
    };
    assert_eq!((first.0, first.1.as_str()), (504, "write_unconfirmed"), "{first:?}");
    assert_eq!((retry.0, retry.1.as_str()), (201, ""), "{retry:?}");
    assert_eq!(replayed.1, "replayed");
    assert_eq!(uuids(&a, "u1"), retry.2, "the retry's uuid is not the stored deposit's");
    // Once confirmed again: still the same answer, still one row, on both.
    assert_eq!(w.post("u1", b"one", &id), retry);
    assert_eq!(count(&a, "u1"), "1");
    assert!(eventually(20, || b.psql("SELECT count(*) FROM deposits WHERE name = 'u1'").expect(0).stdout.trim() == "1"));
    // The same id for another request is refused, and writes nothing.
    assert_eq!(w.post("u1", b"other", &id).1, "request_id_reused");
    assert_eq!(w.post("u2", b"one", &id).1, "request_id_reused");
    assert_eq!(count(&a, "u2"), "0");
    // PUT and DELETE answer from the record too: a repeated DELETE is still 204.
    let del = format!("/deposits/{}", retry.2);
    let del_id = new_id();
    let h = w.sign("DELETE", &del, b"", &del_id);
    assert_eq!(w.send("DELETE", &del, b"", &h).0, 204);
    let h = w.sign("DELETE", &del, b"", &del_id);
    assert_eq!(w.send("DELETE", &del, b"", &h).0, 204);
    let h = w.sign("DELETE", &del, b"", &new_id());
    assert_eq!(w.send("DELETE", &del, b"", &h).0, 404);

    // 2. A queue of writes (more than the write connections) while the
    //    passive confirms nothing, with a request timeout close to the write
    //    timeout: each ends 504 or 503 (busy / passive_unavailable), never
    //    408; every 504'd deposit exists once, every 503'd one not at all.
    a.kt(&["server", "stop"]).expect(0);
    a.set_config("DB_POOL_SIZE", serde_json::json!(2));
    a.set_config("REQUEST_TIMEOUT_SECONDS", serde_json::json!(3));
    // A recorded answer older than a day: the server prunes it when it starts.
    a.psql(
        "keytrustee",
        "INSERT INTO write_requests (client, request_id, digest, answer, created) \
         VALUES ('X', 'an-old-request-id', '\\x00', '1', now() - interval '25 hours')",
    )
    .expect(0);
    a.kt(&["server", "start"]).expect(0);
    let old = "SELECT count(*) FROM write_requests WHERE request_id = 'an-old-request-id'";
    assert!(eventually(20, || a.psql("keytrustee", old).expect(0).stdout.trim() == "0"), "not pruned");
    assert!(a.server_log().contains("pruned 1 recorded write answers"), "{}", a.server_log());
    let kept = format!("SELECT count(*) FROM write_requests WHERE request_id = '{id}'");
    assert_eq!(a.psql("keytrustee", &kept).expect(0).stdout.trim(), "1");
    let answers: Vec<(String, Answer)> = {
        let _frozen = Frozen::new(&b);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let name = format!("q{i}");
                let mut w = Writer::new(&a.url(), &a.ca(), &cdir);
                std::thread::spawn(move || {
                    let answer = w.post(&name, b"queued", &new_id());
                    (name, answer)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    };
    let (mut unconfirmed, mut refused) = (0, 0);
    for (name, (status, code, _)) in &answers {
        match (status, code.as_str()) {
            (504, "write_unconfirmed") => {
                unconfirmed += 1;
                assert_eq!(count(&a, name), "1", "{name}: {answers:?}")
            }
            (503, "busy" | "passive_unavailable") => {
                refused += 1;
                assert_eq!(count(&a, name), "0", "{name}: {answers:?}")
            }
            _ => panic!("{name} answered {status} {code}: {answers:?}"),
        }
    }
    // Two write connections, eight writes, each bounded by the write timeout.
    assert!(unconfirmed >= 1 && refused >= 1, "{answers:?}");
    assert!(!a.server_log().contains("request_timeout"), "{}", a.server_log());

    // 3. The connection killed in the middle of a commit that waits for the
    //    frozen passive: 504 write_outcome_unknown; the retry answers the
    //    stored deposit, one row.
    a.kt(&["server", "stop"]).expect(0);
    a.set_config("HA_WRITE_TIMEOUT_SECONDS", serde_json::json!(60));
    a.set_config("REQUEST_TIMEOUT_SECONDS", serde_json::json!(30));
    a.kt(&["server", "start"]).expect(0);
    let id = new_id();
    let (killed, retry) = {
        let _frozen = Frozen::new(&b);
        let mut w2 = Writer::new(&a.url(), &a.ca(), &cdir);
        let id2 = id.clone();
        let pending = std::thread::spawn(move || w2.post("k1", b"killed", &id2));
        let waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = 'kt serve' AND wait_event = 'SyncRep'";
        let mut pid = String::new();
        assert!(
            eventually(30, || {
                pid = a.psql("postgres", waiting).expect(0).stdout.trim().to_string();
                !pid.is_empty()
            }),
            "no commit waited for the passive"
        );
        assert_eq!(a.psql("postgres", &format!("SELECT pg_terminate_backend({pid})")).expect(0).stdout.trim(), "t");
        let killed = pending.join().unwrap();
        // The retry while the passive is still frozen: answered from the record, nothing to wait for.
        let retry = w.post("k1", b"killed", &id);
        (killed, retry)
    };
    assert_eq!((killed.0, killed.1.as_str()), (504, "write_outcome_unknown"), "{killed:?}");
    assert_eq!((retry.0, retry.1.as_str()), (201, ""), "{retry:?}");
    assert_eq!(uuids(&a, "k1"), retry.2);
    assert_eq!(w.post("k1", b"killed", &id), retry);
    assert!(eventually(20, || b.psql("SELECT count(*) FROM deposits WHERE name = 'k1'").expect(0).stdout.trim() == "1"));

    // 4. The reference client retries a write once after write_outcome_unknown,
    //    saying so: kill the connection of its commit too.
    let data = a.dir.join("data");
    std::fs::write(&data, "by kt client").unwrap();
    let out = {
        let _frozen = Frozen::new(&b);
        let child = kt()
            .args(["client", "--dir", cdir.to_str().unwrap(), "put", "c1", data.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = 'kt serve' AND wait_event = 'SyncRep'";
        let mut pid = String::new();
        assert!(eventually(30, || {
            pid = a.psql("postgres", waiting).expect(0).stdout.trim().to_string();
            !pid.is_empty()
        }));
        a.psql("postgres", &format!("SELECT pg_terminate_backend({pid})")).expect(0);
        Run::from(child.wait_with_output().unwrap())
    };
    let out = out.expect(0);
    assert!(out.stderr.contains("sent again with the same request id"), "{}", out.stderr);
    assert_eq!(uuids(&a, "c1"), out.stdout.trim());

    // 5. The server stops while a commit waits for the frozen passive: after
    //    its shutdown grace the write is abandoned: cancelled (so committed
    //    here), logged with its request id; after a restart a retry with the
    //    id answers the stored deposit.
    let id = new_id();
    let answer = {
        let _frozen = Frozen::new(&b);
        let mut w3 = Writer::new(&a.url(), &a.ca(), &cdir);
        let id3 = id.clone();
        let pending = std::thread::spawn(move || {
            let h = w3.sign("POST", "/deposits?name=s1", b"stopped", &id3);
            w3.try_send("POST", "/deposits?name=s1", b"stopped", &h)
        });
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kt serve' AND wait_event = 'SyncRep'";
        assert!(eventually(30, || a.psql("postgres", waiting).expect(0).stdout.trim() == "1"));
        a.kt(&["server", "stop"]).expect(0);
        pending.join().unwrap()
    };
    assert_eq!(answer, None, "the stopping server answered");
    assert!(a.server_log().contains(&format!("abandoned mid-statement (request id {id})")), "{}", a.server_log());
    a.kt(&["server", "start"]).expect(0);
    let retry = w.post("s1", b"stopped", &id);
    assert_eq!((retry.0, retry.1.as_str()), (201, ""), "{retry:?}");
    assert_eq!(uuids(&a, "s1"), retry.2);
}

#[test]
fn an_older_schema_is_migrated_when_the_server_starts() {
    let a = Instance::serving("haw-upgrade");
    // The schema of a kt from before request ids (version 1).
    a.psql(
        "keytrustee",
        "DROP TABLE write_requests; ALTER TABLE organizations DROP COLUMN token; ALTER TABLE clients DROP COLUMN host; \
         DELETE FROM schema_version WHERE version > 1",
    )
    .expect(0);
    a.kt(&["verify"]).expect(1);
    a.kt(&["server", "start"]).expect(0);
    assert!(a.server_log().contains("schema migrated: applied [2, 3]"), "{}", a.server_log());
    let latest = kt::storage::schema::latest_version().to_string();
    assert_eq!(a.psql("keytrustee", "SELECT max(version) FROM schema_version").expect(0).stdout.trim(), latest);
    org_with_secret(&a, "acme", "");
    let cdir = a.dir.join("client");
    client(&cdir, &["register", "--server", &a.url(), "--org", "acme", "--ca", a.ca().to_str().unwrap()]).expect(0);
    let data = a.dir.join("data");
    std::fs::write(&data, "after the upgrade").unwrap();
    let uuid = client(&cdir, &["put", "k", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    assert_eq!(a.psql("keytrustee", "SELECT count(*) FROM write_requests").expect(0).stdout.trim(), "1");
    assert_eq!(client(&cdir, &["get", &uuid]).expect(0).stdout, "after the upgrade");
    // Started again: nothing more to apply.
    a.kt(&["server", "stop"]).expect(0);
    a.kt(&["server", "start"]).expect(0);
    assert_eq!(a.server_log().matches("schema migrated").count(), 1, "{}", a.server_log());
}
