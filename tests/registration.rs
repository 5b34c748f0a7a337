//! The contact key registration page (`/?q=TOKEN`): every answer over
//! HTTPS with curl as the witness, keys made by GnuPG, and a real browser
//! (headless Chromium through chromedriver's WebDriver API) filling in the
//! form. Tokens are inserted the way the mail side issues them: the row in
//! `contact_tokens` with the SHA-256 of the token text, through psql.

use std::path::{Path, PathBuf};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::harness::*;

const ORG: &str = "acme";
const CONTACT: &str = "finn@acme.example.com";

/// A serving instance with the organization and its contact.
fn setup(name: &str) -> Instance {
    let inst = Instance::serving(name);
    inst.kt(&["server", "start"]).expect(0);
    inst.kt(&["org", "add", "-n", ORG, "-c", CONTACT]).expect(0);
    inst
}

/// Issues a token for `contact` that expires `hours` from now (negative:
/// expired), as the mail side stores it; returns the token.
fn issue(inst: &Instance, contact: &str, hours: i64) -> String {
    let token = kt::org::new_token();
    inst.psql(
        "keytrustee",
        &format!(
            "INSERT INTO contact_tokens (token_sha256, organization, contact, expires) \
             SELECT sha256(convert_to('{token}', 'UTF8')), uuid, '{contact}', now() + interval '{hours} hours' \
             FROM organizations WHERE name = '{ORG}'"
        ),
    )
    .expect(0);
    token
}

fn link(inst: &Instance, token: &str) -> String {
    format!("{}/?q={token}", inst.url())
}

/// What the database holds of the registration: stored keys, used tokens.
fn stored(inst: &Instance) -> String {
    inst.psql(
        "keytrustee",
        "SELECT (SELECT string_agg(contact || '=' || fingerprint, ',' ORDER BY contact) FROM contact_keys), \
         (SELECT count(*) FROM contact_tokens WHERE used IS NOT NULL)",
    )
    .expect(0)
    .stdout
    .trim()
    .to_string()
}

/// The anti-forgery value in a served form.
fn form_value(html: &str) -> String {
    let start = html.find("name=\"form\" value=\"").unwrap_or_else(|| panic!("no form field in {html}")) + 19;
    html[start..].split('"').next().unwrap().to_string()
}

/// `curl -k` posting the form (`key` from a file) with extra arguments.
fn post(inst: &Instance, token: &str, key: &Path, form: &str, extra: &[&str]) -> (u16, String) {
    let key_arg = format!("key@{}", key.display());
    let form_arg = format!("form={form}");
    let mut args = vec!["-k", "--data-urlencode", &key_arg, "--data-urlencode", &form_arg];
    args.extend_from_slice(extra);
    let url = link(inst, token);
    args.push(&url);
    curl(&args)
}

/// A GnuPG home with keys made by `gpg --quick-gen-key` (also used by
/// tests/mail.rs to register a key through a mailed link).
pub(crate) struct Keys {
    gpg: GnupgHome,
}

impl Keys {
    pub(crate) fn new() -> Keys {
        Keys { gpg: GnupgHome::new() }
    }

    /// Makes a key for `uid` (options before the command, expiry) and
    /// returns its fingerprint: GnuPG's default kind, a signing primary
    /// key and an encryption subkey (mail to a contact is encrypted to it).
    pub(crate) fn make(&self, uid: &str, before: &[&str], expire: &str) -> String {
        let mut args = vec!["--passphrase", ""];
        args.extend_from_slice(before);
        args.extend_from_slice(&["--quick-gen-key", uid, "future-default", "default", expire]);
        self.gpg.gpg(&args).expect(0);
        self.fingerprint(uid)
    }

    fn fingerprint(&self, uid: &str) -> String {
        let listing = self.gpg.gpg(&["--with-colons", "--list-keys", uid]).expect(0).stdout;
        listing.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string()
    }

    /// `gpg --armor --export UIDS...` into a file.
    pub(crate) fn export(&self, uids: &[&str], file: &Path) -> PathBuf {
        let mut args = vec!["--armor", "--export"];
        args.extend_from_slice(uids);
        let out = self.gpg.gpg(&args).expect(0).stdout;
        assert!(out.contains("BEGIN PGP PUBLIC KEY BLOCK"), "{out}");
        std::fs::write(file, out).unwrap();
        file.to_path_buf()
    }

    /// Revokes the key with the revocation certificate GnuPG made with it.
    fn revoke(&self, fingerprint: &str) {
        let cert = self.gpg.dir.join(&format!("openpgp-revocs.d/{fingerprint}.rev"));
        let text = std::fs::read_to_string(&cert).unwrap().replace(":-----BEGIN", "-----BEGIN");
        let file = self.gpg.dir.join("revoke.asc");
        std::fs::write(&file, text).unwrap();
        self.gpg.gpg(&["--import", file.to_str().unwrap()]).expect(0);
    }
}

#[test]
fn every_answer_of_the_registration_page() {
    let inst = setup("contact-page");
    let keys = Keys::new();
    let fpr = keys.make(&format!("Finn <{CONTACT}>"), &[], "1y");
    let good = keys.export(&[CONTACT], &inst.dir.join("good.asc"));

    // 200: the form, with the page's headers.
    let token = issue(&inst, CONTACT, 12);
    let headers = inst.dir.join("headers");
    let (code, html) = curl(&["-k", "-D", headers.to_str().unwrap(), &link(&inst, &token)]);
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("KeyTrustee Contact Registration") && html.contains(CONTACT) && html.contains("<textarea"), "{html}");
    assert!(html.contains("including the <code>-----BEGIN PGP PUBLIC KEY BLOCK-----</code>"), "{html}");
    let headers = std::fs::read_to_string(&headers).unwrap().to_ascii_lowercase();
    for expected in [
        "content-type: text/html; charset=utf-8",
        "content-security-policy: default-src 'none'; style-src 'sha256-",
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "cache-control: no-store",
    ] {
        assert!(headers.contains(expected), "{expected} missing in\n{headers}");
    }
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("src="), "{html}");
    let form = form_value(&html);

    // 404 unknown, 400 malformed, 410 expired: a page each, nothing stored.
    let (code, html) = curl(&["-k", &link(&inst, &kt::org::new_token())]);
    assert_eq!(code, 404, "{html}");
    assert!(html.contains("not known"), "{html}");
    for bad in ["abc", "not-a-token-but-long-enough-to-look-like-one!", &format!("{token}x")] {
        let (code, html) = curl(&["-k", &link(&inst, bad)]);
        assert_eq!(code, 400, "{bad}: {html}");
    }
    let (code, _) = post(&inst, "short", &good, &form, &[]);
    assert_eq!(code, 400);
    // A disabled organization's links read as unknown and store nothing.
    let set_state = |state: &str| inst.psql("keytrustee", &format!("UPDATE organizations SET state = '{state}' WHERE name = '{ORG}'")).expect(0);
    set_state("disabled");
    let (code, html) = curl(&["-k", &link(&inst, &token)]);
    assert_eq!(code, 404, "{html}");
    let (code, _) = post(&inst, &token, &good, &form, &[]);
    assert_eq!(code, 404);
    set_state("active");
    let expired = issue(&inst, CONTACT, -1);
    let (code, html) = curl(&["-k", &link(&inst, &expired)]);
    assert_eq!(code, 410, "{html}");
    assert!(html.contains("expired"), "{html}");
    let (code, _) = post(&inst, &expired, &good, &form_value_for(&inst, &token), &[]);
    assert_eq!(code, 410);
    // A token that expires between the form and the post: the clock moved
    // through the database.
    let late = issue(&inst, CONTACT, 12);
    let late_form = form_value_for(&inst, &late);
    inst.psql("keytrustee", &format!("UPDATE contact_tokens SET expires = now() - interval '1 second' WHERE token_sha256 = sha256(convert_to('{late}', 'UTF8'))")).expect(0);
    let (code, html) = post(&inst, &late, &good, &late_form, &[]);
    assert_eq!(code, 410, "{html}");
    assert_eq!(stored(&inst), "|0");

    // 400 bad keys: garbage, two keys, an expired key, a revoked key, a
    // key without an encryption subkey (mail could not be encrypted to
    // it); the form comes back with the reason, nothing is stored.
    let garbage = inst.dir.join("garbage.asc");
    std::fs::write(&garbage, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n").unwrap();
    keys.make("Jake <jake@acme.example.com>", &[], "1y");
    let two = keys.export(&[CONTACT, "jake@acme.example.com"], &inst.dir.join("two.asc"));
    keys.make("Old <old@acme.example.com>", &["--faked-system-time", "20200101T000000!"], "1d");
    let old = keys.export(&["old@acme.example.com"], &inst.dir.join("old.asc"));
    let revoked_fpr = keys.make("Gone <gone@acme.example.com>", &[], "1y");
    keys.revoke(&revoked_fpr);
    let revoked = keys.export(&["gone@acme.example.com"], &inst.dir.join("revoked.asc"));
    keys.gpg.gpg(&["--passphrase", "", "--quick-gen-key", "Sig <sig@acme.example.com>", "ed25519", "sign", "1y"]).expect(0);
    let sign_only = keys.export(&["sig@acme.example.com"], &inst.dir.join("sign-only.asc"));
    let incomplete = inst.dir.join("incomplete.asc");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&incomplete, &text[..text.find("-----END").unwrap()]).unwrap();
    for (file, why) in [
        (&garbage, "cannot be read"),
        (&two, "more than one key"),
        (&old, "expired"),
        (&revoked, "revoked"),
        (&sign_only, "cannot be encrypted to"),
        (&incomplete, "including the BEGIN and END"),
    ] {
        let (code, html) = post(&inst, &token, file, &form, &[]);
        assert_eq!(code, 400, "{}: {html}", file.display());
        assert!(html.contains(why) && html.contains("<textarea"), "{why}: {html}");
    }
    assert_eq!(stored(&inst), "|0");

    // 403: cross-site posts and forms this server did not render.
    for extra in [
        &["-H", "Origin: https://evil.example"][..],
        &["-H", "Sec-Fetch-Site: cross-site"][..],
        &["-H", "Origin: null"][..],
        &["-H", "Origin: null", "-H", "Sec-Fetch-Site: same-site"][..],
    ] {
        let (code, html) = post(&inst, &token, &good, &form, extra);
        assert_eq!(code, 403, "{extra:?}: {html}");
    }
    let (code, _) = post(&inst, &token, &good, "forged", &[]);
    assert_eq!(code, 403);
    let other = issue(&inst, CONTACT, 12);
    let (code, _) = post(&inst, &token, &good, &form_value_for(&inst, &other), &[]);
    assert_eq!(code, 403, "another token's form value");
    assert_eq!(stored(&inst), "|0");

    // 200: the key is stored; the page shows its fingerprint and user ID.
    let origin = format!("Origin: {}", inst.url());
    let (code, html) = post(&inst, &token, &good, &form, &["-H", &origin, "-H", "Sec-Fetch-Site: same-origin"]);
    assert_eq!(code, 200, "{html}");
    let grouped: Vec<String> = fpr.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    assert!(html.contains(&grouped.join(" ")), "{fpr}: {html}");
    assert!(html.contains("Finn &lt;finn@acme.example.com&gt;"), "{html}");
    assert_eq!(stored(&inst), format!("{CONTACT}={fpr}|1"));

    // kt org list: key_info by contact.
    let list: serde_json::Value = serde_json::from_str(&inst.kt(&["org", "list"]).expect(0).stdout).unwrap();
    let info = &list[ORG]["key_info"][CONTACT];
    assert_eq!(info["fingerprint"], fpr.as_str(), "{list}");
    assert_eq!(info["user_ids"], serde_json::json!([format!("Finn <{CONTACT}>")]), "{list}");
    // The stored key is the whole key: GnuPG reads it back to the same fingerprint.
    let armored = inst.psql("keytrustee", "SELECT armored FROM contact_keys").expect(0).stdout;
    let back = inst.dir.join("back.asc");
    std::fs::write(&back, armored).unwrap();
    let shown = keys.gpg.gpg(&["--with-colons", "--show-keys", back.to_str().unwrap()]).expect(0).stdout;
    assert!(shown.contains(&format!("fpr:::::::::{fpr}:")), "{shown}");

    // The registered key is instance data: a backup holds it.
    let out_dir = TestDir::new("contact-backup");
    let made = inst.kt(&["backup", "--cleartext", "--quiet", "--output", out_dir.path.to_str().unwrap()]).expect(0);
    let tarball = PathBuf::from(made.stdout.trim());
    run(Command::new("tar").arg("xf").arg(&tarball).arg("-C").arg(&out_dir.path)).expect(0);
    let stem = tarball.file_name().unwrap().to_str().unwrap().trim_end_matches(".tar");
    let manifest = out_dir.path.join(inst.home.strip_prefix("/").unwrap()).join(format!("{stem}.manifest.json"));
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(manifest["row_counts"]["contact_keys"], 1, "{manifest}");

    // 410: the link worked once.
    let (code, html) = curl(&["-k", &link(&inst, &token)]);
    assert_eq!(code, 410, "{html}");
    assert!(html.contains("already used"), "{html}");
    let (code, _) = post(&inst, &token, &two, &form, &[]);
    assert_eq!(code, 410);

    // A new link replaces the contact's key.
    let jake = keys.export(&["jake@acme.example.com"], &inst.dir.join("jake.asc"));
    let (code, html) = post(&inst, &other, &jake, &form_value_for(&inst, &other), &[]);
    assert_eq!(code, 200, "{html}");
    assert_eq!(stored(&inst), format!("{CONTACT}={}|2", keys.fingerprint("jake@acme.example.com")));

    // A method the page has no use for.
    let (code, _) = curl(&["-k", "-X", "PUT", &link(&inst, &token)]);
    assert_eq!(code, 405);
    // The documented queries still answer as before.
    let (code, body) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200, "{body}");
}

/// The form value the server renders for `token` (from its page).
fn form_value_for(inst: &Instance, token: &str) -> String {
    let (code, html) = curl(&["-k", &link(inst, token)]);
    assert!(code == 200 || code == 410, "{code}: {html}");
    if code == 200 {
        form_value(&html)
    } else {
        "none".into()
    }
}

#[test]
fn one_token_one_key_even_when_posted_twice_at_once_and_failures_are_limited() {
    let inst = setup("contact-race");
    let keys = Keys::new();
    keys.make(&format!("Finn <{CONTACT}>"), &[], "1y");
    let good = keys.export(&[CONTACT], &inst.dir.join("good.asc"));

    // Two posts at once with the same token: one stores, the other is told
    // the link was used.
    let token = issue(&inst, CONTACT, 12);
    let form = form_value_for(&inst, &token);
    let codes: Vec<u16> = std::thread::scope(|s| {
        let posts: Vec<_> = (0..2).map(|_| s.spawn(|| post(&inst, &token, &good, &form, &[]).0)).collect();
        posts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, [200, 410], "{codes:?}");
    assert_eq!(inst.psql("keytrustee", "SELECT count(*) FROM contact_keys").expect(0).stdout.trim(), "1");

    // Failed posts are limited per token: past the limit within the hour
    // a post is refused without a look at the key; other tokens go on.
    let token = issue(&inst, CONTACT, 12);
    let form = form_value_for(&inst, &token);
    let garbage = inst.dir.join("garbage.asc");
    std::fs::write(&garbage, "not a key").unwrap();
    for i in 0..kt::registration::form::MAX_FAILURES {
        let (code, _) = post(&inst, &token, &garbage, &form, &[]);
        assert_eq!(code, 400, "attempt {i}");
    }
    let (code, html) = post(&inst, &token, &good, &form, &[]);
    assert_eq!(code, 429, "{html}");
    let fresh = issue(&inst, CONTACT, 12);
    let (code, _) = post(&inst, &fresh, &good, &form_value_for(&inst, &fresh), &[]);
    assert_eq!(code, 200);
}

#[test]
fn a_passive_serves_the_page_and_refuses_the_post() {
    let inst = setup("contact-passive");
    let keys = Keys::new();
    keys.make(&format!("Finn <{CONTACT}>"), &[], "1y");
    let good = keys.export(&[CONTACT], &inst.dir.join("good.asc"));
    let token = issue(&inst, CONTACT, 12);
    let form = form_value_for(&inst, &token);
    // The server as a passive names its active (HA_ROLE, HA_PEER), as
    // `kt ha init-passive` leaves them.
    inst.kt(&["server", "stop"]).expect(0);
    inst.set_config("HA_ROLE", "passive".into());
    inst.set_config("HA_PEER", "kts-active.example.com:11381".into());
    inst.kt(&["server", "start"]).expect(0);
    let (code, html) = curl(&["-k", &link(&inst, &token)]);
    assert_eq!(code, 200, "{html}");
    assert_eq!(form_value(&html), form, "the same form on either server");
    let (code, html) = post(&inst, &token, &good, &form, &[]);
    assert_eq!(code, 503, "{html}");
    assert!(html.contains("passive") && html.contains("kts-active.example.com"), "{html}");
    assert_eq!(stored(&inst), "|0");
}

/// chromedriver on a free port in a process group of its own. On drop,
/// also when a test panics mid-session: the browser session is ended
/// (chromedriver quits Chromium), then the whole group is killed, so no
/// chromedriver or Chromium outlives the test.
struct Driver {
    child: Child,
    port: u16,
    dir: TestDir,
    session: std::cell::RefCell<Option<String>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = self.session.borrow_mut().take() {
            self.call("DELETE", &format!("/session/{session}"), None);
        }
        // SAFETY: kill(2) on the group this driver's child leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Driver {
        for tool in ["chromium", "chromedriver"] {
            let found = run(Command::new("sh").arg("-c").arg(format!("command -v {tool}"))).code == 0;
            assert!(found, "{tool} is missing: scripts/install-deps --for test installs it (Debian: chromium chromium-driver)");
        }
        let port = free_port();
        let dir = TestDir::new("chromium");
        let child = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let driver = Driver { child, port, dir, session: Default::default() };
        for _ in 0..100 {
            if driver.call("GET", "/status", None).get("value").is_some() {
                return driver;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("chromedriver did not answer on port {port}");
    }

    /// One WebDriver call (JSON over HTTP), through curl.
    fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let file = self.dir.join("request.json");
        std::fs::write(&file, body.unwrap_or(serde_json::json!({})).to_string()).unwrap();
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "60", "-X", method, "-H", "Content-Type: application/json"]);
        if method != "GET" {
            cmd.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        let out = run(cmd.arg(&url));
        serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn session(&self) -> String {
        let profile = self.dir.join("profile");
        let answer = self.call(
            "POST",
            "/session",
            Some(serde_json::json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                // A submitted form's answer may still be loading when the
                // next element is asked for: finding one waits up to 15 s.
                "timeouts": {"implicit": 15000},
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--ignore-certificate-errors", "--window-size=1000,900",
                             format!("--user-data-dir={}", profile.display())]
                }
            }}})),
        );
        let id = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {answer}")).to_string();
        *self.session.borrow_mut() = Some(id.clone());
        id
    }

    fn element(&self, session: &str, css: &str) -> String {
        let answer = self.call("POST", &format!("/session/{session}/element"), Some(serde_json::json!({"using": "css selector", "value": css})));
        match answer["value"]["element-6066-11e4-a52e-4f735466cecf"].as_str() {
            Some(id) => id.to_string(),
            None => {
                let source = self.call("GET", &format!("/session/{session}/source"), None);
                panic!("no {css}: {answer}\nthe page:\n{}", source["value"].as_str().unwrap_or_default())
            }
        }
    }

    fn text(&self, session: &str, css: &str) -> String {
        let id = self.element(session, css);
        self.call("GET", &format!("/session/{session}/element/{id}/text"), None)["value"].as_str().unwrap_or_default().to_string()
    }

    /// A screenshot of the page as PNG bytes, checked to be a PNG of the
    /// window's size with something drawn on it.
    fn screenshot(&self, session: &str, file: &Path) -> Vec<u8> {
        use base64::Engine;
        let answer = self.call("GET", &format!("/session/{session}/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD.decode(answer["value"].as_str().unwrap_or_default()).unwrap();
        std::fs::write(file, &png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert!((600..=2000).contains(&width) && (400..=2000).contains(&height), "{width}x{height}");
        // A blank page of this size compresses to a few hundred bytes.
        assert!(png.len() > 8_000, "the screenshot looks blank: {} bytes", png.len());
        png
    }
}

/// Follows a registration link in headless Chromium as a contact would:
/// the form names `contact`; the key is pasted and submitted; the result
/// page's inline style applies (the Content-Security-Policy's hash matches
/// it); both pages are screenshot into `dir` and checked to differ.
/// Returns the fingerprint and user IDs the result page shows.
pub(crate) fn register_in_browser(url: &str, contact: &str, armored: &str, dir: &Path) -> (String, String) {
    let driver = Driver::start();
    let session = driver.session();
    driver.call("POST", &format!("/session/{session}/url"), Some(serde_json::json!({"url": url})));
    assert_eq!(driver.text(&session, "#contact"), contact);
    let form_png = driver.screenshot(&session, &dir.join("form.png"));
    let textarea = driver.element(&session, "#key");
    driver.call("POST", &format!("/session/{session}/element/{textarea}/value"), Some(serde_json::json!({"text": armored})));
    let submit = driver.element(&session, "#submit");
    driver.call("POST", &format!("/session/{session}/element/{submit}/click"), None);
    let shown = driver.text(&session, "#fingerprint");
    let user_ids = driver.text(&session, "#user-ids");
    let result = driver.element(&session, "#result");
    let background = driver.call("GET", &format!("/session/{session}/element/{result}/css/background-color"), None);
    assert_eq!(background["value"], "rgba(236, 253, 236, 1)", "{background}");
    let result_png = driver.screenshot(&session, &dir.join("result.png"));
    assert_ne!(form_png, result_png, "the result page looks like the form");
    (shown, user_ids)
}

/// A fingerprint as the result page groups it: blocks of four.
pub(crate) fn grouped(fingerprint: &str) -> String {
    fingerprint.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

#[test]
fn a_browser_registers_a_key() {
    let inst = setup("contact-browser");
    let keys = Keys::new();
    let fpr = keys.make(&format!("Finn <{CONTACT}>"), &[], "1y");
    let armored = std::fs::read_to_string(keys.export(&[CONTACT], &inst.dir.join("good.asc"))).unwrap();
    let token = issue(&inst, CONTACT, 12);
    let (shown, user_ids) = register_in_browser(&link(&inst, &token), CONTACT, &armored, &inst.dir.path);
    assert_eq!(shown, grouped(&fpr));
    assert!(user_ids.contains(CONTACT), "{user_ids}");
    assert_eq!(stored(&inst), format!("{CONTACT}={fpr}|1"));
}

/// The consuming statement itself, on two connections: while one
/// transaction holds the token (used, not yet committed), the other's
/// statement waits for it and then finds the token used; one key stored.
#[test]
fn the_consuming_statement_lets_one_of_two_concurrent_uses_through() {
    let inst = Instance::new("contact-lock");
    inst.kt(&["db", "start"]).expect(0);
    inst.kt(&["org", "add", "-n", ORG, "-c", CONTACT]).expect(0);
    let token = issue(&inst, CONTACT, 12);
    let hash = kt::registration::token::hash(&token).to_vec();
    let connect = || inst.db_client();
    let sql = kt::registration::token::CONSUME_SQL;
    let (first_fpr, second_fpr) = ("A".repeat(40), "B".repeat(40));
    let ids: Vec<String> = vec!["x".into()];
    let mut first = connect();
    let mut tx = first.transaction().unwrap();
    let row = tx.query_one(sql, &[&hash, &first_fpr, &"armored one", &ids]).unwrap();
    assert!(row.get::<_, bool>(0), "the first use stores");
    let second = std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let mut c = connect();
            let row = c.query_one(sql, &[&hash, &second_fpr, &"armored two", &ids]).unwrap();
            (row.get::<_, bool>(0), row.get::<_, bool>(4))
        });
        // The second statement must be seen waiting on the token row's
        // lock: only then does its outcome show that the lock serialises
        // the two uses (a second use that merely started late would see
        // the committed "used" without any lock).
        let blocked = eventually(30, || {
            inst.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'keytrustee' AND wait_event_type = 'Lock'") == "1"
        });
        assert!(blocked && !waiting.is_finished(), "the second use did not wait for the first");
        tx.commit().unwrap();
        waiting.join().unwrap()
    });
    assert_eq!(second, (false, true), "the second use is refused as used");
    let keys = inst.psql("keytrustee", "SELECT string_agg(fingerprint, ',') FROM contact_keys").expect(0).stdout;
    assert_eq!(keys.trim(), first_fpr);
}
