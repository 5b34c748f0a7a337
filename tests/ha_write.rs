//! The HA write path against a real synchronous pair: no write reported as
//! failed exists, none is written twice. Writes are sent as signed requests
//! with an `X-KT-Request-Id` (the reference client's way), so that the test
//! chooses when a retry happens; psql on the active is the witness of what
//! was stored, `kill -STOP` on the passive's WAL receiver freezes the
//! standby while it stays connected, and `pg_terminate_backend` (as the
//! cluster's superuser) cuts the server's connection in the middle of a
//! commit. Also the schema upgrade at `kt serve` start: an older schema
//! migrated, one that cannot be refused, a newer one refused, and a
//! passive whose kt is newer than its schema serving reads.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kt::client::https::{HttpsClient, Trust, Url};
use pgp::composed::{Deserializable, SignedSecretKey};

use crate::ha::{synchronous_pair, Passive};
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

    /// A signed GET of `path` (no request id): status and body.
    fn get(&mut self, path: &str) -> (u16, String) {
        let h = kt::auth::sign_request(&self.key, &self.fpr, "GET", path, b"").unwrap();
        let ts = h.timestamp.to_string();
        let headers = [
            ("X-KT-Client", h.client.as_str()),
            ("X-KT-Timestamp", ts.as_str()),
            ("X-KT-Nonce", h.nonce.as_str()),
            ("X-KT-Signature", h.signature.as_str()),
        ];
        let resp = self.http.request("GET", path, &headers, b"").unwrap();
        (resp.status, String::from_utf8_lossy(&resp.body).to_string())
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

/// Puts `inst`'s database at schema `version`, as a kt of that version left
/// it, keeping the data: the rows of every data table are read as JSON,
/// every table is dropped, the migrations up to `version` are applied by
/// this kt's own code ([`kt::storage::schema::migrate_to`]) and the rows
/// go back in (columns that `version` lacks are left out). No test names a
/// column of a later migration, so a new migration needs no test edit.
pub(crate) fn downgrade_schema(inst: &Instance, version: i32) {
    let tables = kt::storage::schema::DATA_TABLES;
    let rows: Vec<String> = tables
        .iter()
        .map(|t| inst.psql("keytrustee", &format!("SELECT coalesce(json_agg(t), '[]') FROM {t} t")).expect(0).stdout.trim().to_string())
        .collect();
    let mut db = inst.db_client();
    db.batch_execute(
        "DO $$ DECLARE r record; BEGIN \
         FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP \
         EXECUTE format('DROP TABLE %I CASCADE', r.tablename); END LOOP; END $$",
    )
    .unwrap();
    assert_eq!(kt::storage::schema::migrate_to(&mut db, version).unwrap().last(), Some(&version));
    for (t, json) in tables.iter().zip(&rows) {
        // A table of a later migration (contact_keys at version 1) is not there.
        let exists: bool = db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{t}")]).unwrap().get(0);
        if !exists {
            assert_eq!(json, "[]", "{t} has rows that version {version} cannot hold");
            continue;
        }
        db.execute(&format!("INSERT INTO {t} SELECT * FROM json_populate_recordset(NULL::{t}, $1::text::json)"), &[json]).unwrap();
    }
}

fn uuids(a: &Instance, name: &str) -> String {
    a.psql("keytrustee", &format!("SELECT string_agg(uuid::text, ',') FROM deposits WHERE name = '{name}'")).expect(0).stdout.trim().to_string()
}

/// A registered client of `acme` on `a` (no auth secret) and its writer.
fn writer_on(a: &Instance) -> (std::path::PathBuf, Writer) {
    org_with_secret(a, "acme", "");
    let cdir = a.dir.join("client");
    client(&cdir, &["register", "--server", &a.url(), "--org", "acme", "--ca", a.ca().to_str().unwrap()]).expect(0);
    let w = Writer::new(&a.url(), &a.ca(), &cdir);
    (cdir, w)
}

/// The PostgreSQL pid of the server's commit that waits for the passive.
fn waiting_commit(a: &Instance) -> String {
    let waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = 'kt serve' AND wait_event = 'SyncRep'";
    let mut pid = String::new();
    assert!(
        eventually(30, || {
            pid = a.psql("postgres", waiting).expect(0).stdout.trim().to_string();
            !pid.is_empty()
        }),
        "no commit waited for the passive"
    );
    pid
}

#[test]
fn a_retry_is_answered_from_the_record_only_once_the_passive_confirms_it() {
    let (a, b) = synchronous_pair("haw", 2);
    let (_cdir, mut w) = writer_on(&a);
    let new_id = kt::auth::random_nonce;

    // An unconfirmed write (the passive stops confirming): 504
    // write_unconfirmed with its uuid. The same request id, signed afresh,
    // runs no second write, and while the passive still confirms nothing
    // it is 504 write_unconfirmed again, with the same uuid: a recorded
    // answer is not a confirmed one.
    let id = new_id();
    let (first, retry, replayed) = {
        let _frozen = Frozen::new(&b);
        let started = Instant::now();
        let h = w.sign("POST", "/deposits?name=u1", b"one", &id);
        let first = w.send("POST", "/deposits?name=u1", b"one", &h);
        assert!(started.elapsed() >= Duration::from_secs(2), "answered before the write timeout: {first:?}");
        let started = Instant::now();
        let retry = w.post("u1", b"one", &id);
        assert!(started.elapsed() >= Duration::from_secs(2), "the retry did not wait for the passive: {retry:?}");
        // The very same signed request is still a replay.
        let replayed = w.send("POST", "/deposits?name=u1", b"one", &h);
        (first, retry, replayed)
    };
    assert_eq!((first.0, first.1.as_str()), (504, "write_unconfirmed"), "{first:?}");
    assert_eq!((retry.0, retry.1.as_str()), (504, "write_unconfirmed"), "{retry:?}");
    assert_eq!(replayed.1, "replayed");
    assert_eq!(uuids(&a, "u1"), first.2, "the 504's uuid is not the stored deposit's");
    assert_eq!(retry.2, first.2);
    // Confirmed again: 201 with the same uuid, still one row, on both.
    let confirmed = w.post("u1", b"one", &id);
    assert_eq!((confirmed.0, confirmed.1.as_str(), confirmed.2.as_str()), (201, "", first.2.as_str()), "{confirmed:?}");
    assert_eq!(count(&a, "u1"), "1");
    assert!(eventually(20, || b.psql("SELECT count(*) FROM deposits WHERE name = 'u1'").expect(0).stdout.trim() == "1"));
    // The same id for another request is refused, and writes nothing.
    assert_eq!(w.post("u1", b"other", &id).1, "request_id_reused");
    assert_eq!(w.post("u2", b"one", &id).1, "request_id_reused");
    assert_eq!(count(&a, "u2"), "0");
    // PUT and DELETE answer from the record too: a repeated DELETE is still 204.
    let del = format!("/deposits/{}", first.2);
    let del_id = new_id();
    let h = w.sign("DELETE", &del, b"", &del_id);
    assert_eq!(w.send("DELETE", &del, b"", &h).0, 204);
    let h = w.sign("DELETE", &del, b"", &del_id);
    assert_eq!(w.send("DELETE", &del, b"", &h).0, 204);
    let h = w.sign("DELETE", &del, b"", &new_id());
    assert_eq!(w.send("DELETE", &del, b"", &h).0, 404);

    // The passive's database down (the gate closed): a retry of a recorded
    // write is 504 write_unconfirmed with its uuid, a new write 503.
    let id = new_id();
    let stored = w.post("u3", b"three", &id);
    assert_eq!(stored.0, 201, "{stored:?}");
    b.kt(&["db", "stop"]).expect(0);
    // Until the server sees the passive gone, a new write waits for it and
    // ends unconfirmed (stored); after, it is refused (nothing stored).
    let mut unconfirmed = 0;
    assert!(eventually(20, || {
        let answer = w.post("u4", b"four", &new_id());
        unconfirmed += (answer.1 == "write_unconfirmed") as usize;
        answer.1 == "passive_unavailable"
    }));
    let retry = w.post("u3", b"three", &id);
    assert_eq!((retry.0, retry.1.as_str(), retry.2.as_str()), (504, "write_unconfirmed", stored.2.as_str()), "{retry:?}");
    assert_eq!(count(&a, "u3"), "1");
    assert_eq!(count(&a, "u4"), unconfirmed.to_string());
}

#[test]
fn queued_writes_end_504_or_503_never_408_and_old_records_are_pruned() {
    let (a, b) = synchronous_pair("haw-queue", 2);
    let (cdir, _w) = writer_on(&a);
    let new_id = kt::auth::random_nonce;
    // A queue of writes (more than the write connections) while the
    // passive confirms nothing, with a request timeout close to the write
    // timeout: each ends 504 or 503 (busy / passive_unavailable), never
    // 408; every 504'd deposit exists once, every 503'd one not at all.
    a.kt(&["server", "stop"]).expect(0);
    a.set_config("DB_POOL_SIZE", serde_json::json!(2));
    a.set_config("REQUEST_TIMEOUT_SECONDS", serde_json::json!(3));
    // A recorded answer older than a day: the server prunes it when it starts.
    a.psql(
        "keytrustee",
        "INSERT INTO write_requests (client, request_id, digest, answer, created) \
         VALUES ('X', 'an-old-request-id', '\\x00', '1', now() - interval '25 hours'), \
         ('X', 'a-new-request-id', '\\x00', '1', now())",
    )
    .expect(0);
    a.kt(&["server", "start"]).expect(0);
    let left = "SELECT string_agg(request_id, ',') FROM write_requests WHERE client = 'X'";
    assert!(eventually(20, || a.psql("keytrustee", left).expect(0).stdout.trim() == "a-new-request-id"), "not pruned");
    assert!(a.server_log().contains("pruned 1 recorded write answers"), "{}", a.server_log());
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
}

#[test]
fn a_write_cut_off_mid_commit_is_learned_by_its_retry_and_never_written_twice() {
    let (a, b) = synchronous_pair("haw-cut", 60);
    a.kt(&["server", "stop"]).expect(0);
    a.set_config("REQUEST_TIMEOUT_SECONDS", serde_json::json!(30));
    a.kt(&["server", "start"]).expect(0);
    let (cdir, mut w) = writer_on(&a);
    let new_id = kt::auth::random_nonce;

    // 1. The connection killed in the middle of a commit that waits for the
    //    frozen passive: 504 write_outcome_unknown. A retry while the
    //    passive is frozen runs no write and waits for its confirmation;
    //    once the passive is back it answers the stored deposit, one row.
    let id = new_id();
    let (killed, retry) = {
        let frozen = Frozen::new(&b);
        let mut w2 = Writer::new(&a.url(), &a.ca(), &cdir);
        let id2 = id.clone();
        let pending = std::thread::spawn(move || w2.post("k1", b"killed", &id2));
        let pid = waiting_commit(&a);
        assert_eq!(a.psql("postgres", &format!("SELECT pg_terminate_backend({pid})")).expect(0).stdout.trim(), "t");
        let killed = pending.join().unwrap();
        let mut w3 = Writer::new(&a.url(), &a.ca(), &cdir);
        let id3 = id.clone();
        let retrying = std::thread::spawn(move || w3.post("k1", b"killed", &id3));
        waiting_commit(&a);
        assert_eq!(count(&a, "k1"), "1", "the retry ran the write again");
        drop(frozen);
        (killed, retrying.join().unwrap())
    };
    assert_eq!((killed.0, killed.1.as_str()), (504, "write_outcome_unknown"), "{killed:?}");
    assert_eq!((retry.0, retry.1.as_str()), (201, ""), "{retry:?}");
    assert_eq!(uuids(&a, "k1"), retry.2);
    assert_eq!(w.post("k1", b"killed", &id), retry);
    assert!(eventually(20, || b.psql("SELECT count(*) FROM deposits WHERE name = 'k1'").expect(0).stdout.trim() == "1"));

    // 2. The reference client retries a write once after
    //    write_outcome_unknown, saying so: kill the connection of its
    //    commit too; its retry is answered once the passive confirms.
    let data = a.dir.join("data");
    std::fs::write(&data, "by kt client").unwrap();
    let out = {
        let frozen = Frozen::new(&b);
        let child = kt()
            .args(["client", "--dir", cdir.to_str().unwrap(), "put", "c1", data.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = waiting_commit(&a);
        a.psql("postgres", &format!("SELECT pg_terminate_backend({pid})")).expect(0);
        drop(frozen);
        Run::from(child.wait_with_output().unwrap())
    };
    let out = out.expect(0);
    assert!(out.stderr.contains("sent again with the same request id"), "{}", out.stderr);
    assert_eq!(uuids(&a, "c1"), out.stdout.trim());

    // 3. The server stops while a commit waits for the frozen passive: after
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
        waiting_commit(&a);
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
fn an_older_schema_is_migrated_when_the_server_starts_and_one_that_cannot_be_is_refused() {
    let a = Instance::serving("haw-upgrade");
    org_with_secret(&a, "acme", "");
    downgrade_schema(&a, 1);
    a.kt(&["verify"]).expect(1);
    // kt org does not upgrade, it says who does.
    let org = a.kt(&["org", "list"]).expect(3);
    assert!(org.stderr.contains("older than this kt") && org.stderr.contains("run `kt db start` or restart `kt serve`"), "{}", org.stderr);
    a.kt(&["server", "stop"]).expect(0);
    a.kt(&["server", "start"]).expect(0);
    let applied: Vec<String> = (2..=kt::storage::schema::latest_version()).map(|v| v.to_string()).collect();
    assert!(a.server_log().contains(&format!("schema migrated: applied [{}]", applied.join(", "))), "{}", a.server_log());
    let latest = kt::storage::schema::latest_version().to_string();
    assert_eq!(a.psql("keytrustee", "SELECT max(version) FROM schema_version").expect(0).stdout.trim(), latest);
    let list: serde_json::Value = serde_json::from_str(&a.kt(&["org", "list"]).expect(0).stdout).unwrap();
    assert_eq!(list["acme"]["contacts"], serde_json::json!(["ops@acme.example.com"]));
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

    // A migration that fails (its table is in the way): the server does
    // not start (exit 3), and the log says which migration failed and why.
    a.kt(&["server", "stop"]).expect(0);
    downgrade_schema(&a, 1);
    a.psql("keytrustee", "CREATE TABLE write_requests (in_the_way integer)").expect(0);
    let served = a.server_log().matches("serving https://").count();
    let start = a.kt(&["server", "start"]).expect(3);
    for text in [&start.stderr, &a.server_log()] {
        assert!(text.contains("could not be upgraded") && text.contains("schema migration 2") && text.contains("already exists"), "{text}");
    }
    assert_eq!(a.psql("keytrustee", "SELECT max(version) FROM schema_version").expect(0).stdout.trim(), "1");
    assert_eq!(a.server_log().matches("serving https://").count(), served, "{}", a.server_log());

    // A database newer than this kt: refused, untouched, by the server and
    // kt org (exit 3); kt db start starts the database and warns.
    a.psql("keytrustee", "DROP TABLE write_requests").expect(0);
    a.kt(&["db", "start"]).expect(0);
    let next = kt::storage::schema::latest_version() + 1;
    a.psql("keytrustee", &format!("INSERT INTO schema_version (version, description) VALUES ({next}, 'from a later kt')")).expect(0);
    let start = a.kt(&["server", "start"]).expect(3);
    assert!(start.stderr.contains("this kt is older than the database"), "{}", start.stderr);
    let org = a.kt(&["org", "list"]).expect(3);
    assert!(org.stderr.contains("this kt is older than the database"), "{}", org.stderr);
    let db = a.kt(&["db", "start"]).expect(0);
    assert!(db.stderr.contains("this kt is older than the database"), "{}", db.stderr);
    assert_eq!(a.psql("keytrustee", "SELECT max(version) FROM schema_version").expect(0).stdout.trim(), next.to_string());
}

#[test]
fn a_passive_whose_kt_is_newer_than_its_schema_serves_reads_and_says_so() {
    let (a, b) = synchronous_pair("haw-behind", 2);
    let (cdir, _w) = writer_on(&a);
    let data = a.dir.join("data");
    std::fs::write(&data, "kept").unwrap();
    let uuid = client(&cdir, &["put", "k", data.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    // The active still runs the older kt (its schema at version 1); the
    // passive was upgraded first, the wrong order.
    a.kt(&["server", "stop"]).expect(0);
    downgrade_schema(&a, 1);
    assert!(eventually(20, || b.psql("SELECT max(version) FROM schema_version").expect(0).stdout.trim() == "1"));
    // (init-passive started it, with the schema of the day.)
    b.kt(&["server", "stop"]).expect(0);
    b.kt(&["server", "start"]).expect(0);
    let log = std::fs::read_to_string(b.home.join("logs/kt-server.log")).unwrap();
    assert!(log.contains("schema behind") && log.contains("upgrade the active first"), "{log}");
    let bca = b.confdir.join(".ssl/ssl-cert-keytrustee-ca.pem");
    let (status, body) = curl(&["--cacert", bca.to_str().unwrap(), &format!("{}/health", b.url())]);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!((health["role"].as_str(), health["schema"].as_str(), health["schema_version"].as_i64()), (Some("passive"), Some("behind"), Some(1)), "{body}");
    // Reads go on; a write is told to go to the active, not a 500.
    let mut wb = Writer::new(&b.url(), &bca, &cdir);
    assert_eq!(wb.get(&format!("/deposits/{uuid}")), (200, "kept".to_string()));
    assert_eq!(wb.get("/deposits").0, 200);
    let write = wb.post("n1", b"new", &kt::auth::random_nonce());
    assert_eq!((write.0, write.1.as_str()), (503, "read_only"), "{write:?}");
}
