//! Client approval, end to end with the reference client against a real
//! server: a registration that names an organization with an auth secret
//! but gives none waits for an administrator (`kt org enable-client`
//! approves, `kt org deny-client` refuses); a wrong secret is refused and
//! stores nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kt::client::https::{HttpsClient, Trust, Url};
use pgp::composed::{Deserializable, SignedSecretKey};

use crate::harness::*;
use crate::server::{client, org_with_secret, register};

/// `kt client register` without an auth secret.
fn ask(inst: &Instance, dir: &Path, org: &str) -> Run {
    client(dir, &["register", "--server", &inst.url(), "--org", org, "--ca", inst.ca().to_str().unwrap()])
}

fn clients(inst: &Instance, org: &str) -> Vec<serde_json::Value> {
    let out = inst.kt(&["org", "clients", "-n", org]).expect(0);
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn row<'a>(list: &'a [serde_json::Value], fpr: &str) -> Option<&'a serde_json::Value> {
    list.iter().find(|c| c["fingerprint"] == fpr)
}

fn pending(inst: &Instance, dir: &Path, org: &str) -> String {
    let out = ask(inst, dir, org).expect(1);
    let fpr = out.stdout.trim().to_string();
    assert_eq!(fpr.len(), 40, "{}", out.stdout);
    assert!(out.stderr.contains("awaits approval"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("kt org enable-client --fingerprint {fpr}")), "{}", out.stderr);
    fpr
}

#[test]
fn a_registration_without_the_secret_waits_for_an_administrator() {
    let inst = Instance::serving("approval");
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "s3cret-value");
    org_with_secret(&inst, "open", "");

    // No secret: stored as pending, and the client says so (exit 1).
    let web01 = inst.dir.join("web01");
    let fpr = pending(&inst, &web01, "acme");
    assert!(client(&web01, &["status"]).expect(0).stdout.contains("pending"));
    let listed = clients(&inst, "acme");
    let entry = row(&listed, &fpr).expect("the pending client is listed");
    assert_eq!(entry["state"], "pending");
    assert_eq!(entry["claimed_host"], kt::hostname::fqdn().unwrap().as_str());
    assert_eq!(entry["creation"].as_str().unwrap().len(), 19, "{entry}");
    let ext: serde_json::Value = serde_json::from_str(&inst.kt(&["org", "list", "--json-extended"]).expect(0).stdout).unwrap();
    assert_eq!(ext["acme"]["pending_clients"], 1);

    // A pending client can do nothing.
    let refused = client(&web01, &["list"]).expect(3);
    assert!(refused.stderr.contains("423 client_pending"), "{}", refused.stderr);
    assert!(refused.stderr.contains("kt org enable-client"), "{}", refused.stderr);
    let file = inst.dir.join("key.bin");
    std::fs::write(&file, b"material").unwrap();
    assert!(client(&web01, &["put", "k", file.to_str().unwrap()]).expect(3).stderr.contains("client_pending"));
    // Asking again while pending: still pending.
    assert_eq!(pending(&inst, &web01, "acme"), fpr);

    // Approved: it works, and registering again records the new state.
    let out = inst.kt(&["org", "enable-client", "--fingerprint", &fpr]).expect(0);
    assert!(out.stderr.contains("approved"), "{}", out.stderr);
    assert_eq!(row(&clients(&inst, "acme"), &fpr).unwrap()["state"], "active");
    client(&web01, &["put", "k", file.to_str().unwrap()]).expect(0);
    assert_eq!(ask(&inst, &web01, "acme").expect(0).stdout.trim(), fpr);
    assert!(client(&web01, &["status"]).expect(0).stdout.contains("active"));
    // An approved client is not denied (that is disable-client).
    let out = inst.kt(&["org", "deny-client", "--fingerprint", &fpr]).expect(2);
    assert!(out.stderr.contains("not pending"), "{}", out.stderr);

    // Denied: the row goes; the client is unknown; it may ask again.
    let web02 = inst.dir.join("web02");
    let fpr2 = pending(&inst, &web02, "acme");
    inst.kt(&["org", "deny-client", "--fingerprint", &fpr2]).expect(0);
    assert!(row(&clients(&inst, "acme"), &fpr2).is_none());
    assert!(client(&web02, &["list"]).expect(3).stderr.contains("unknown_client"));
    inst.kt(&["org", "deny-client", "--fingerprint", &fpr2]).expect(2);
    assert_eq!(pending(&inst, &web02, "acme"), fpr2);
    assert_eq!(row(&clients(&inst, "acme"), &fpr2).unwrap()["state"], "pending");
    // The right secret given now admits it.
    let secret = inst.dir.join("acme.secret");
    let out = client(
        &web02,
        &["register", "--server", &inst.url(), "--org", "acme", "--auth-secret-file", secret.to_str().unwrap(), "--ca", inst.ca().to_str().unwrap()],
    );
    assert_eq!(out.expect(0).stdout.trim(), fpr2);
    client(&web02, &["list"]).expect(0);

    // A wrong secret: refused, nothing stored, no client directory.
    let before = inst.psql("keytrustee", "SELECT count(*) FROM clients").expect(0).stdout;
    let (web03, out) = register(&inst, "web03", "acme", "not-the-secret");
    assert!(out.expect(3).stderr.contains("403 registration_refused"));
    assert!(!web03.exists());
    assert_eq!(inst.psql("keytrustee", "SELECT count(*) FROM clients").expect(0).stdout, before);

    // An organization without a secret admits without asking.
    let (_, out) = register(&inst, "web04", "open", "");
    out.expect(0);
    let (_, out) = ask_dir(&inst, "web05", "open");
    out.expect(0);
}

fn ask_dir(inst: &Instance, name: &str, org: &str) -> (PathBuf, Run) {
    let dir = inst.dir.join(name);
    let out = ask(inst, &dir, org);
    (dir, out)
}

/// The wire answer itself, without the reference client: 202 with
/// `registration_pending`, then 423 `client_pending` for a signed request.
#[test]
fn the_wire_answers_202_then_423() {
    let inst = Instance::serving("approvalwire");
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "s3cret-value");
    let key = kt::pgp::generate_key(kt::pgp::KeySpec::Ed25519, "wire <wire@example.com>").unwrap();
    let secret = SignedSecretKey::from_bytes(&key.secret[..]).unwrap();
    let fpr = key.fingerprint_hex();
    let armored = kt::pgp::armored(&SignedSecretKey::to_public_key(&secret)).unwrap();
    let url = Url::parse(&inst.url()).unwrap();
    let mut http = HttpsClient::new(&url, &Trust::Ca(inst.ca()), Duration::from_secs(10)).unwrap();
    let mut send = |method: &str, path: &str, body: &[u8]| {
        let h = kt::auth::sign_request(&secret, &fpr, method, path, body).unwrap();
        let ts = h.timestamp.to_string();
        let headers = [("X-KT-Client", h.client.as_str()), ("X-KT-Timestamp", &ts), ("X-KT-Nonce", &h.nonce), ("X-KT-Signature", &h.signature)];
        http.request(method, path, &headers, body).unwrap()
    };
    let body = serde_json::json!({"organization": "acme", "auth_secret": "", "public_key": armored, "host": "web01.example.com"}).to_string();
    let resp = send("POST", "/register", body.as_bytes());
    assert_eq!(resp.status, 202);
    let answer: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(answer["status"], "registration_pending");
    assert_eq!(answer["state"], "pending");
    assert_eq!(answer["fingerprint"], fpr.as_str());
    assert_eq!(clients(&inst, "acme")[0]["claimed_host"], "web01.example.com");
    let resp = send("GET", "/deposits", b"");
    assert_eq!((resp.status, resp.error_code().unwrap_or_default()), (423, "client_pending".to_string()));
    // A bad host name is bad input.
    let body = serde_json::json!({"organization": "acme", "auth_secret": "", "public_key": armored, "host": "no such host"}).to_string();
    assert_eq!(send("POST", "/register", body.as_bytes()).status, 400);
}

#[test]
fn pending_clients_are_capped_per_organization() {
    let inst = Instance::serving("approval-cap");
    inst.kt(&["server", "stop"]).expect(0);
    inst.set_config("MAX_PENDING_CLIENTS", serde_json::json!(2));
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "s3cret-value");
    org_with_secret(&inst, "other", "s3cret-value");
    let first = pending(&inst, &inst.dir.join("p1"), "acme");
    pending(&inst, &inst.dir.join("p2"), "acme");
    // The third is refused and stores nothing.
    let third = ask(&inst, &inst.dir.join("p3"), "acme").expect(3);
    assert!(third.stderr.contains("HTTP 429 too_many_pending"), "{}", third.stderr);
    assert_eq!(clients(&inst, "acme").len(), 2);
    // A pending key asking again is answered as before, not refused.
    pending(&inst, &inst.dir.join("p1"), "acme");
    // The cap is per organization, and the secret still admits at once.
    pending(&inst, &inst.dir.join("o1"), "other");
    let (_, admitted) = register(&inst, "p4", "acme", "s3cret-value");
    admitted.expect(0);
    // Once one is decided, another may ask.
    inst.kt(&["org", "deny-client", "--fingerprint", &first]).expect(0);
    pending(&inst, &inst.dir.join("p3"), "acme");
}
