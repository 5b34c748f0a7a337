//! `kt serve` and `kt server`: endpoints seen by curl and openssl, the
//! registration rules, authenticated deposits and every refusal, TLS
//! policy, SIGHUP reload, limits, and a flood of malformed requests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kt::client::https::{HttpsClient, Trust, Url};
use pgp::composed::{Deserializable, SignedSecretKey};

use crate::harness::*;

/// Creates an organization whose auth secret is `secret` ("" approves automatically).
pub fn org_with_secret(inst: &Instance, name: &str, secret: &str) {
    inst.kt(&["org", "add", "-n", name, "-c", &format!("ops@{name}.example.com")]).expect(0);
    let file = inst.dir.join(&format!("{name}.secret"));
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    inst.kt(&["org", "set-auth", "-n", name, "--secret-file", file.to_str().unwrap()]).expect(0);
}

/// `kt client --dir DIR ARGS...`
pub fn client(dir: &Path, args: &[&str]) -> Run {
    run(kt().arg("client").arg("--dir").arg(dir).args(args))
}

/// Registers a new client in `inst.dir/<name>` with `org`, using `secret`.
pub fn register(inst: &Instance, name: &str, org: &str, secret: &str) -> (PathBuf, Run) {
    let dir = inst.dir.join(name);
    let secret_file = inst.dir.join(&format!("{name}.auth"));
    std::fs::write(&secret_file, secret).unwrap();
    let out = client(
        &dir,
        &["register", "--server", &inst.url(), "--org", org, "--auth-secret-file", secret_file.to_str().unwrap(), "--ca", inst.ca().to_str().unwrap()],
    );
    (dir, out)
}

fn start(inst: &Instance) {
    inst.kt(&["server", "start"]).expect(0);
}

#[test]
fn fingerprint_pubkey_and_health_over_https() {
    let inst = Instance::serving("endpoints");
    start(&inst);
    let fingerprint = inst.kt(&["fingerprint"]).expect(0).stdout.trim().to_string();
    // The documented check, with curl as the outside witness.
    let (code, body) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!((code, body.as_str()), (200, fingerprint.as_str()));
    // And with the certificate verified against the instance's CA and host name.
    let (code, body) = curl(&["--cacert", inst.ca().to_str().unwrap(), "--resolve", &format!("localhost:{}:127.0.0.1", inst.server_port), &format!("https://localhost:{}/?a=fingerprint", inst.server_port)]);
    assert_eq!((code, body.as_str()), (200, fingerprint.as_str()));

    let (code, armored) = curl(&["-k", &format!("{}/?a=pubkey", inst.url())]);
    assert_eq!(code, 200);
    assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"), "{armored}");
    let key_file = inst.dir.join("served.asc");
    std::fs::write(&key_file, &armored).unwrap();
    let gpg = GnupgHome::new();
    let listing = gpg.gpg(&["--with-colons", "--show-keys", key_file.to_str().unwrap()]).expect(0);
    let fpr = listing.stdout.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string();
    assert!(fingerprint.ends_with(&fpr));

    let (code, health) = curl(&["-k", &format!("{}/health", inst.url())]);
    assert_eq!(code, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["role"], "active");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["schema_version"], kt::storage::schema::latest_version());
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["replication"].is_array());

    // The database going away turns health red, and back.
    inst.kt(&["db", "stop"]).expect(0);
    let (code, health) = curl(&["-k", &format!("{}/health", inst.url())]);
    assert_eq!(code, 503, "{health}");
    inst.kt(&["db", "start"]).expect(0);
    let (code, _) = curl(&["-k", &format!("{}/health", inst.url())]);
    assert_eq!(code, 200);
}

#[test]
fn server_start_stop_status() {
    let inst = Instance::serving("lifecycle");
    inst.kt(&["server", "status"]).expect(1);
    let out = inst.kt(&["server", "start"]).expect(0);
    assert!(out.stderr.contains("the server is running"), "{}", out.stderr);
    let pid = inst.server_pid();
    let again = inst.kt(&["server", "start"]).expect(0);
    assert!(again.stderr.contains("already running"), "{}", again.stderr);
    let status = inst.kt(&["server", "status"]).expect(0);
    assert!(status.stdout.contains(&format!("pid:    {pid}")), "{}", status.stdout);
    inst.kt(&["server", "restart"]).expect(0);
    assert_ne!(inst.server_pid(), pid);
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200);
    inst.kt(&["server", "stop"]).expect(0);
    assert!(!inst.home.join("kt-server.pid").exists());
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 0, "the server still answers after stop");
    let stopped = inst.kt(&["server", "stop"]).expect(0);
    assert!(stopped.stderr.contains("already stopped"), "{}", stopped.stderr);
    inst.kt(&["server", "reload"]).expect(3);
    // A stale pid file (crash) does not block a start.
    std::fs::write(inst.home.join("kt-server.pid"), "999999\n").unwrap();
    inst.kt(&["server", "status"]).expect(1);
    inst.kt(&["server", "start"]).expect(0);
    assert!(inst.server_log().contains("serving https://127.0.0.1"));
}

#[test]
fn registration_follows_the_organization_secret() {
    let inst = Instance::serving("register");
    start(&inst);
    org_with_secret(&inst, "acme", "s3cret-value");
    org_with_secret(&inst, "open", "");

    let (dir, out) = register(&inst, "wrong", "acme", "not-the-secret");
    let out = out.expect(3);
    assert!(out.stderr.contains("registration_refused"), "{}", out.stderr);
    assert!(!dir.exists(), "a refused registration leaves no client directory");
    let (_, out) = register(&inst, "unknown", "no-such-org", "s3cret-value");
    assert!(out.expect(3).stderr.contains("registration_refused"));

    let (dir, out) = register(&inst, "right", "acme", "s3cret-value");
    let out = out.expect(0);
    let fpr = out.stdout.trim().to_string();
    assert_eq!(fpr.len(), 40, "{}", out.stdout);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("secret.gpg")), 0o600);
    let status = client(&dir, &["status"]).expect(0);
    assert!(status.stdout.contains(&fpr) && status.stdout.contains("acme"), "{}", status.stdout);
    // Registering again from the same directory is refused.
    let again = client(&dir, &["register", "--server", &inst.url(), "--org", "acme", "--insecure"]);
    assert_eq!(again.code, 2, "{}", again.stderr);

    let (_, out) = register(&inst, "auto", "open", "anything");
    out.expect(0);

    let clients: serde_json::Value = serde_json::from_str(&inst.kt(&["org", "clients", "-n", "acme"]).expect(0).stdout).unwrap();
    assert_eq!(clients.as_array().unwrap().len(), 1);
    assert_eq!(clients[0]["fingerprint"], fpr);
    assert_eq!(clients[0]["state"], "active");
    let all: serde_json::Value = serde_json::from_str(&inst.kt(&["org", "clients"]).expect(0).stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
}

#[test]
fn deposits_belong_to_their_client() {
    let inst = Instance::serving("deposits");
    start(&inst);
    org_with_secret(&inst, "acme", "");
    let (alice, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    let (bob, out) = register(&inst, "bob", "acme", "");
    let bob_fpr = out.expect(0).stdout.trim().to_string();

    let secret = inst.dir.join("key.bin");
    let content: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&secret, &content).unwrap();
    let uuid = client(&alice, &["put", "disk-key", secret.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    assert_eq!(uuid.len(), 36);
    let got = std::process::Command::new(KT).args(["client", "--dir", alice.to_str().unwrap(), "get", &uuid]).output().unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, content, "the deposit comes back byte for byte");

    let list: serde_json::Value = serde_json::from_str(&client(&alice, &["list"]).expect(0).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["uuid"], uuid.as_str());
    assert_eq!(list[0]["name"], "disk-key");
    assert_eq!(list[0]["size"], 5000);

    // Bob sees nothing of Alice's: not in his list, not by id, cannot delete it.
    assert_eq!(client(&bob, &["list"]).expect(0).stdout.trim(), "[]");
    assert!(client(&bob, &["get", &uuid]).expect(2).stderr.contains("not_found"));
    client(&bob, &["delete", &uuid]).expect(2);
    client(&alice, &["get", &uuid]).expect(0);

    // Disabled: refused; re-enabled: works again.
    inst.kt(&["org", "disable-client", "--fingerprint", &bob_fpr]).expect(0);
    assert!(client(&bob, &["list"]).expect(3).stderr.contains("423 client_disabled"));
    inst.kt(&["org", "enable-client", "--fingerprint", &bob_fpr.to_lowercase()]).expect(0);
    client(&bob, &["list"]).expect(0);

    client(&alice, &["delete", &uuid]).expect(0);
    client(&alice, &["get", &uuid]).expect(2);
    client(&alice, &["get", "not-a-uuid"]).expect(2);
}

/// A raw HTTPS client and the registered key of a client directory, to
/// craft requests kt's own client would never send.
pub struct Raw {
    pub http: HttpsClient,
    key: SignedSecretKey,
    pub fpr: String,
}

impl Raw {
    pub fn new(inst: &Instance, dir: &Path) -> Raw {
        Raw::to(&inst.url(), inst.ca(), dir)
    }

    /// A raw client of the server at `url` (another node of the instance).
    pub fn to(url: &str, ca: PathBuf, dir: &Path) -> Raw {
        let url = Url::parse(url).unwrap();
        let http = HttpsClient::new(&url, &Trust::Ca(ca), Duration::from_secs(10)).unwrap();
        let key = SignedSecretKey::from_bytes(&std::fs::read(dir.join("secret.gpg")).unwrap()[..]).unwrap();
        let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("client.json")).unwrap()).unwrap();
        Raw { http, key, fpr: settings["fingerprint"].as_str().unwrap().to_string() }
    }

    pub fn send(&mut self, method: &str, path: &str, body: &[u8], h: &kt::auth::SignedHeaders) -> (u16, String) {
        let resp = self.answer(method, path, body, h);
        (resp.status, resp.error_code().unwrap_or_default())
    }

    /// The whole answer to a request sent with the headers `h` (and its
    /// request id, when `h` has one).
    pub fn answer(&mut self, method: &str, path: &str, body: &[u8], h: &kt::auth::SignedHeaders) -> kt::client::https::Response {
        let ts = h.timestamp.to_string();
        let mut headers: Vec<(&str, &str)> = vec![
            ("X-KT-Client", &h.client),
            ("X-KT-Timestamp", &ts),
            ("X-KT-Nonce", &h.nonce),
            ("X-KT-Signature", &h.signature),
        ];
        if let Some(id) = &h.request_id {
            headers.push(("X-KT-Request-Id", id));
        }
        self.http.request(method, path, &headers, body).unwrap()
    }

    /// Signs a write with a request id, as kt's client does.
    pub fn signed_with_id(&self, method: &str, path: &str, body: &[u8], id: &str) -> kt::auth::SignedHeaders {
        kt::auth::sign_request_with_id(&self.key, &self.fpr, method, path, body, id).unwrap()
    }

    pub fn signed(&self, method: &str, path: &str, body: &[u8], timestamp: i64, nonce: &str) -> kt::auth::SignedHeaders {
        kt::auth::sign_request_at(&self.key, &self.fpr, method, path, body, timestamp, nonce).unwrap()
    }
}

#[test]
fn every_refusal_has_its_own_status() {
    let inst = Instance::serving("refusals");
    inst.set_config("AUTH_WINDOW_SECONDS", serde_json::json!(60));
    start(&inst);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    let mut raw = Raw::new(&inst, &dir);
    let now = kt::clock::unix_now();

    // Unsigned.
    let (code, body) = curl(&["-k", &format!("{}/deposits", inst.url())]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"unsigned\""));
    // Correctly signed: accepted.
    let h = raw.signed("GET", "/deposits", b"", now, &kt::auth::random_nonce());
    assert_eq!(raw.send("GET", "/deposits", b"", &h), (200, String::new()));
    // Replayed: the very same request again.
    assert_eq!(raw.send("GET", "/deposits", b"", &h), (409, "replayed".into()));
    // Forged: a signature made for another request.
    let other = raw.signed("GET", "/deposits/00000000-0000-0000-0000-000000000000", b"", now, &kt::auth::random_nonce());
    assert_eq!(raw.send("GET", "/deposits", b"", &other), (403, "forged".into()));
    // Forged body: signed for one body, sent with another.
    let put = raw.signed("POST", "/deposits?name=x", b"original", now, &kt::auth::random_nonce());
    assert_eq!(raw.send("POST", "/deposits?name=x", b"tampered", &put), (403, "forged".into()));
    // Stale, both ways.
    for ts in [now - 600, now + 600] {
        let h = raw.signed("GET", "/deposits", b"", ts, &kt::auth::random_nonce());
        assert_eq!(raw.send("GET", "/deposits", b"", &h), (412, "stale".into()));
    }
    // Unknown client: a key the server never saw.
    let mut stranger = raw.signed("GET", "/deposits", b"", now, &kt::auth::random_nonce());
    stranger.client = "0123456789ABCDEF0123456789ABCDEF01234567".into();
    assert_eq!(raw.send("GET", "/deposits", b"", &stranger), (403, "unknown_client".into()));
    // Malformed header values.
    let mut bad = raw.signed("GET", "/deposits", b"", now, &kt::auth::random_nonce());
    bad.nonce = "short".into();
    assert_eq!(raw.send("GET", "/deposits", b"", &bad).0, 400);
    // Disabled.
    inst.kt(&["org", "disable-client", "--fingerprint", &raw.fpr]).expect(0);
    let h = raw.signed("GET", "/deposits", b"", now, &kt::auth::random_nonce());
    assert_eq!(raw.send("GET", "/deposits", b"", &h), (423, "client_disabled".into()));
    inst.kt(&["org", "enable-client", "--fingerprint", &raw.fpr]).expect(0);
    let h = raw.signed("GET", "/deposits", b"", kt::clock::unix_now(), &kt::auth::random_nonce());
    assert_eq!(raw.send("GET", "/deposits", b"", &h).0, 200);
    // Wrong method and unknown path.
    let (code, _) = curl(&["-k", "-X", "PATCH", &format!("{}/deposits", inst.url())]);
    assert_eq!(code, 405);
    let (code, _) = curl(&["-k", &format!("{}/nowhere", inst.url())]);
    assert_eq!(code, 404);
    let (code, _) = curl(&["-k", &format!("{}/?a=nothing", inst.url())]);
    assert_eq!(code, 400);
    let (code, body) = curl(&["-k", "-X", "POST", "-d", "{not json", &format!("{}/register", inst.url())]);
    assert_eq!(code, 400, "{body}");
}

#[test]
fn body_limit_and_slow_clients() {
    let inst = Instance::serving("limits");
    inst.set_config("MAX_BODY_BYTES", serde_json::json!(1000));
    inst.set_config("IDLE_TIMEOUT_SECONDS", serde_json::json!(1));
    start(&inst);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    let big = inst.dir.join("big");
    std::fs::write(&big, vec![b'x'; 1001]).unwrap();
    let out = client(&dir, &["put", "big", big.to_str().unwrap()]).expect(2);
    assert!(out.stderr.contains("413 body_too_large"), "{}", out.stderr);
    std::fs::write(&big, vec![b'x'; 1000]).unwrap();
    client(&dir, &["put", "fits", big.to_str().unwrap()]).expect(0);

    // A client that sends half a request and stalls is cut off, and does
    // not hold up anybody else meanwhile.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", inst.server_port)).unwrap();
    slow.write_all(b"\x16\x03\x01").unwrap();
    let started = std::time::Instant::now();
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let url = Url::parse(&inst.url()).unwrap();
    let mut idle = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(20)).unwrap();
    assert_eq!(idle.request("GET", "/?a=fingerprint", &[], b"").unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(2500));
    // The idle keep-alive connection was closed by the server; the client
    // reconnects transparently.
    assert_eq!(idle.request("GET", "/?a=fingerprint", &[], b"").unwrap().status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(slow.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "a stalled handshake must be cut off");
}

#[test]
fn tls_policy_is_enforced() {
    let inst = Instance::serving("tls");
    inst.set_config("TLS_MIN_VERSION", serde_json::json!("tlsv1.3"));
    inst.set_config("CIPHERS", serde_json::json!("TLS_AES_256_GCM_SHA384"));
    start(&inst);
    let connect = format!("127.0.0.1:{}", inst.server_port);
    let s_client = |args: &[&str]| {
        run(std::process::Command::new("openssl")
            .args(["s_client", "-connect", &connect, "-servername", "localhost"])
            .args(args)
            .stdin(std::process::Stdio::null()))
    };
    let ok = s_client(&["-tls1_3"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.contains("TLS_AES_256_GCM_SHA384"), "{}", ok.stdout);
    let old = s_client(&["-tls1_2"]);
    assert_ne!(old.code, 0, "TLS 1.2 below the minimum must be refused:\n{}", old.stdout);
    let other = s_client(&["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"]);
    assert_ne!(other.code, 0, "a suite outside CIPHERS must be refused:\n{}", other.stdout);

    // TLS 1.2 with one suite.
    inst.kt(&["server", "stop"]).expect(0);
    inst.set_config("TLS_MIN_VERSION", serde_json::json!("tlsv1.2"));
    inst.set_config("CIPHERS", serde_json::json!("ECDHE-ECDSA-AES128-GCM-SHA256, TLS_AES_256_GCM_SHA384"));
    start(&inst);
    let ok = s_client(&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let other = s_client(&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"]);
    assert_ne!(other.code, 0, "{}", other.stdout);

    // tlsv1 is accepted with a warning; the effective minimum is 1.2.
    inst.kt(&["server", "stop"]).expect(0);
    inst.set_config("TLS_MIN_VERSION", serde_json::json!("tlsv1"));
    start(&inst);
    assert!(inst.server_log().contains("effective minimum is TLS 1.2"));
    let tls11 = s_client(&["-tls1_1"]);
    assert_ne!(tls11.code, 0);

    // The documented example, an OpenSSL cipher string: the server starts,
    // logs once what it cannot offer, and offers the AES-256 suites.
    inst.kt(&["server", "stop"]).expect(0);
    inst.set_config("TLS_MIN_VERSION", serde_json::json!("tlsv1.2"));
    inst.set_config("CIPHERS", serde_json::json!("AES256:CAMELLIA256-SHA"));
    start(&inst);
    let log = inst.server_log();
    assert_eq!(log.matches("CAMELLIA256-SHA").count(), 1, "{log}");
    let aes256 = s_client(&["-tls1_2", "-cipher", "AES256"]);
    assert_eq!(aes256.code, 0, "{}", aes256.stderr);
    assert!(aes256.stdout.contains("AES256-GCM"), "{}", aes256.stdout);
    let aes128 = s_client(&["-tls1_2", "-cipher", "AES128"]);
    assert_ne!(aes128.code, 0, "AES128 is outside AES256:\n{}", aes128.stdout);
    // TLS 1.3 is not governed by a cipher string, as with OpenSSL.
    let tls13 = s_client(&["-tls1_3"]);
    assert_eq!(tls13.code, 0, "{}", tls13.stderr);

    // A string that leaves nothing kt can offer stops startup with an
    // error naming it.
    inst.kt(&["server", "stop"]).expect(0);
    inst.set_config("CIPHERS", serde_json::json!("RC4-MD5:CAMELLIA"));
    let out = inst.kt(&["serve"]).expect(2);
    assert!(out.stderr.contains("leaves no cipher suite kt can offer"), "{}", out.stderr);
    // The same bad setting gives the same exit code in the background.
    let out = inst.kt(&["server", "start"]).expect(2);
    assert!(out.stderr.contains("RC4-MD5:CAMELLIA"), "{}", out.stderr);
    inst.kt(&["server", "status"]).expect(1);
    inst.set_config("CIPHERS", serde_json::json!(""));
    inst.set_config("TLS_MIN_VERSION", serde_json::json!("sslv3"));
    inst.kt(&["serve"]).expect(2);
    inst.kt(&["server", "start"]).expect(2);
    // A restart with a bad setting leaves the running server serving.
    inst.set_config("TLS_MIN_VERSION", serde_json::json!("tlsv1.2"));
    start(&inst);
    let pid = inst.server_pid();
    inst.set_config("CIPHERS", serde_json::json!("RC4-MD5"));
    inst.kt(&["server", "restart"]).expect(2);
    assert_eq!(inst.server_pid(), pid);
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200, "the old server must still serve");
}

#[test]
fn encrypted_keys_need_their_password_script() {
    let inst = Instance::serving("enckey");
    let key = inst.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem");
    let encrypted = inst.confdir.join(".ssl/encrypted-pk.pem");
    openssl(&["pkcs8", "-topk8", "-in", key.to_str().unwrap(), "-out", encrypted.to_str().unwrap(), "-passout", "pass:correct horse"]).expect(0);
    assert!(std::fs::read_to_string(&encrypted).unwrap().contains("ENCRYPTED PRIVATE KEY"));
    give_to_service_account(&inst, &encrypted);
    let pw = inst.dir.join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    inst.set_config("SSL_PRIVATE_KEY", serde_json::json!(encrypted.to_str().unwrap()));

    // No script: a clear error, found by the server itself, with the same
    // exit code whether it runs in the foreground or the background.
    let out = inst.kt(&["serve"]).expect(2);
    assert!(out.stderr.contains("SSL_PRIVATE_KEY_PASSWORD_SCRIPT"), "{}", out.stderr);
    let out = inst.kt(&["server", "start"]).expect(2);
    assert!(out.stderr.contains("SSL_PRIVATE_KEY_PASSWORD_SCRIPT"), "{}", out.stderr);
    // A failing script.
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!("echo nope >&2; exit 4"));
    let out = inst.kt(&["serve"]).expect(3);
    assert!(out.stderr.contains("SSL_PRIVATE_KEY_PASSWORD_SCRIPT failed"), "{}", out.stderr);
    // The wrong password: refused, and the password never printed.
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!("echo wrong-password-123"));
    let out = inst.kt(&["serve"]).expect(2);
    assert!(out.stderr.contains("cannot decrypt"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-password-123"));
    // The right one: the server starts and serves.
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!(format!("cat {}", pw.display())));
    start(&inst);
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200);
    assert!(!inst.server_log().contains("correct horse"));
    // A legacy encrypted PEM is named as such.
    inst.kt(&["server", "stop"]).expect(0);
    let legacy = inst.confdir.join(".ssl/legacy.pem");
    std::fs::write(&legacy, "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n").unwrap();
    give_to_service_account(&inst, &legacy);
    inst.set_config("SSL_PRIVATE_KEY", serde_json::json!(legacy.to_str().unwrap()));
    let out = inst.kt(&["serve"]).expect(2);
    assert!(out.stderr.contains("legacy encrypted PEM"), "{}", out.stderr);
    let out = inst.kt(&["server", "start"]).expect(2);
    assert!(out.stderr.contains("legacy encrypted PEM"), "{}", out.stderr);
    // A key file that is not there: the world is not as needed (3), also
    // in the background.
    inst.set_config("SSL_PRIVATE_KEY", serde_json::json!(inst.dir.join("no-such-key.pem").to_str().unwrap()));
    inst.kt(&["serve"]).expect(3);
    inst.kt(&["server", "start"]).expect(3);
}

/// Files an operator adds as root must belong to the account the server runs as.
fn give_to_service_account(inst: &Instance, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&inst.confdir).unwrap();
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).unwrap();
}

#[test]
fn sighup_swaps_the_certificate_without_dropping_connections() {
    let inst = Instance::serving("reload");
    start(&inst);
    let cert = inst.confdir.join(".ssl/ssl-cert-keytrustee.pem");
    let key = inst.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem");
    assert_eq!(served_cert(&inst), file_cert(&cert));
    let pid = inst.server_pid();

    // An open keep-alive connection from before the reload.
    let url = Url::parse(&inst.url()).unwrap();
    let mut open = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(10)).unwrap();
    assert_eq!(open.request("GET", "/?a=fingerprint", &[], b"").unwrap().status, 200);

    // A new certificate made by openssl, written where the config points.
    let new_cert = inst.dir.join("new-cert.pem");
    let new_key = inst.dir.join("new-key.pem");
    openssl(&[
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost", "-keyout", new_key.to_str().unwrap(), "-out", new_cert.to_str().unwrap(),
    ])
    .expect(0);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, inst.ca()).unwrap();
    inst.kt(&["server", "reload"]).expect(0);
    let mut swapped = false;
    for _ in 0..50 {
        if served_cert(&inst) == file_cert(&new_cert) {
            swapped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(swapped, "the new certificate is not served after SIGHUP");
    assert_eq!(inst.server_pid(), pid, "reload must not restart the server");
    // The connection opened before the reload is still served.
    let resp = open.request("GET", "/?a=fingerprint", &[], b"").unwrap();
    assert_eq!(resp.status, 200);

    // A reload that fails (a key that does not match) keeps the new-old certificate.
    let other_key = inst.dir.join("other-key.pem");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other_key.to_str().unwrap()]).expect(0);
    std::fs::copy(&other_key, &key).unwrap();
    inst.kt(&["server", "reload"]).expect(0);
    let mut logged = false;
    for _ in 0..50 {
        if inst.server_log().contains("reload failed, still serving the old certificate") {
            logged = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(logged, "{}", inst.server_log());
    assert_eq!(served_cert(&inst), file_cert(&new_cert));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_thousand_malformed_requests_leave_the_server_answering() {
    let inst = Instance::serving("malformed");
    start(&inst);
    let pid = inst.server_pid();
    let port = inst.server_port;
    let url = Url::parse(&inst.url()).unwrap();
    // Warm up, then measure.
    for _ in 0..20 {
        let mut c = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(10)).unwrap();
        c.request("GET", "/?a=fingerprint", &[], b"").unwrap();
    }
    let before = rss_kib(pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    if std::time::Instant::now() > deadline {
                        break;
                    }
                    match (t * 250 + i) % 5 {
                        // Garbage instead of TLS.
                        0 => {
                            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage");
                            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let _ = s.read(&mut [0u8; 256]);
                        }
                        // A truncated TLS handshake.
                        1 => {
                            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                            let _ = s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
                        }
                        // Huge headers.
                        2 => {
                            let mut c = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(10)).unwrap();
                            let big = "a".repeat(64 * 1024);
                            if let Ok(r) = c.request("GET", "/?a=fingerprint", &[("X-Big", &big)], b"") {
                                assert!(r.status >= 400, "huge headers accepted");
                            }
                        }
                        // Wrong methods and paths.
                        3 => {
                            let mut c = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(10)).unwrap();
                            let r = c.request("TRACE", "/deposits/../../etc/passwd", &[], b"").unwrap();
                            assert!(r.status >= 400);
                        }
                        // Bad JSON and bad signatures.
                        _ => {
                            let mut c = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(10)).unwrap();
                            let r = c.request("POST", "/register", &[("X-KT-Client", "zz")], b"{\"organization\": [").unwrap();
                            assert_eq!(r.status, 400);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200, "the server stopped answering");
    let after = rss_kib(pid);
    assert!(after < before + 64 * 1024, "memory grew from {before} KiB to {after} KiB");
    assert_eq!(inst.server_pid(), pid);
}

#[test]
fn reads_fail_over_to_the_next_server() {
    let inst = Instance::serving("failover");
    start(&inst);
    org_with_secret(&inst, "acme", "");
    // The first URL points at a port where nothing listens.
    let dead = format!("https://127.0.0.1:{}", free_port());
    let dir = inst.dir.join("client");
    client(&dir, &["register", "--server", &dead, "--server", &inst.url(), "--org", "acme", "--ca", inst.ca().to_str().unwrap()]).expect(0);
    let file = inst.dir.join("data");
    std::fs::write(&file, "payload").unwrap();
    let uuid = client(&dir, &["put", "k", file.to_str().unwrap()]).expect(0).stdout.trim().to_string();
    let got = client(&dir, &["get", &uuid]).expect(0);
    assert_eq!(got.stdout, "payload");
    client(&dir, &["list"]).expect(0);
    // With every server down, a clear environment error.
    inst.kt(&["server", "stop"]).expect(0);
    let out = client(&dir, &["get", &uuid]).expect(3);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

#[test]
fn the_connection_limit_holds() {
    let inst = Instance::serving("connlimit");
    inst.set_config("MAX_CONNECTIONS", serde_json::json!(3));
    start(&inst);
    let url = Url::parse(&inst.url()).unwrap();
    let mut held: Vec<HttpsClient> = (0..3)
        .map(|_| {
            let mut c = HttpsClient::new(&url, &Trust::Insecure, Duration::from_secs(5)).unwrap();
            assert_eq!(c.request("GET", "/?a=fingerprint", &[], b"").unwrap().status, 200);
            c
        })
        .collect();
    // A fourth connection is closed at once.
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 0, "a connection over the limit was served");
    assert!(inst.server_log().contains("connection limit (3) reached"));
    // The held ones still work; once they go, new clients are served.
    assert_eq!(held[0].request("GET", "/?a=fingerprint", &[], b"").unwrap().status, 200);
    held.clear();
    std::thread::sleep(Duration::from_millis(300));
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200);
}

#[test]
fn a_stale_keep_alive_connection_neither_loses_nor_replays_a_deposit() {
    let inst = Instance::serving("stale");
    inst.set_config("IDLE_TIMEOUT_SECONDS", serde_json::json!(1));
    start(&inst);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    // One client process, two deposits with the server's idle timeout in
    // between: the second goes out after the server closed the connection.
    let mut session = kt::client::ClientDir::new(&dir).unwrap().open().unwrap();
    let first = session.put("first", b"one").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let second = session.put("second", b"two").unwrap();
    assert_ne!(first, second);
    assert_eq!(session.get(&second).unwrap(), b"two");
    let names: Vec<String> = session.list().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!inst.server_log().contains("replayed"), "{}", inst.server_log());
}

/// A TCP relay in front of the server that, once armed, swallows the next
/// answer from the server and cuts the client's connection: the server has
/// carried the request out, the client never hears of it.
struct AnswerCutter {
    port: u16,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AnswerCutter {
    fn new(server_port: u16) -> AnswerCutter {
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let (mut server, mut client) = (server, client);
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if flag.swap(false, Ordering::SeqCst) {
                            let _ = client.shutdown(Shutdown::Both);
                            let _ = server.shutdown(Shutdown::Both);
                            return;
                        }
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(Shutdown::Write);
                });
            }
        });
        AnswerCutter { port, armed }
    }
}

#[test]
fn a_lost_answer_to_a_deposit_is_sent_again_and_never_written_twice() {
    let inst = Instance::serving("lostanswer");
    start(&inst);
    org_with_secret(&inst, "acme", "");
    let relay = AnswerCutter::new(inst.server_port);
    let dir = inst.dir.join("alice");
    let relay_url = format!("https://127.0.0.1:{}", relay.port);
    client(&dir, &["register", "--server", &relay_url, "--org", "acme", "--ca", inst.ca().to_str().unwrap()]).expect(0);
    let mut session = kt::client::ClientDir::new(&dir).unwrap().open().unwrap();
    session.put("first", b"one").unwrap();

    // The server stores the second deposit; its answer is lost on the way.
    // The session sends it again with the same request id (a new signature,
    // so no replay) and gets the recorded answer: the stored deposit's uuid.
    relay.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let uuid = session.put("second", b"two").unwrap();
    let notes = session.take_notes();
    assert!(notes.len() == 1 && notes[0].contains("no answer") && notes[0].contains("same request id"), "{notes:?}");

    // Nothing was lost or doubled, and the session goes on working.
    let list = session.list().unwrap();
    let seconds: Vec<&str> = list.iter().filter(|d| d["name"] == "second").map(|d| d["uuid"].as_str().unwrap()).collect();
    assert_eq!(seconds, [uuid.as_str()], "{list:?}");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(session.get(&uuid).unwrap(), b"two");
    session.put("third", b"three").unwrap();
    assert!(!inst.server_log().contains("replayed"), "{}", inst.server_log());
    assert_eq!(inst.psql("keytrustee", "SELECT count(*) FROM write_requests").expect(0).stdout.trim(), "3");
}
