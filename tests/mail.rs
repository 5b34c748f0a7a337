//! Contact mail end to end: `kt org add -c` and client registrations queue
//! mail in the database; the running server signs it with its OpenPGP key
//! (PGP/MIME), encrypts it to a contact's registered key, and delivers it
//! to an MTA with retries. Witnesses: a recording SMTP listener written
//! here (std::net, the MTA stand-in whose transcript the test reads), real
//! Postfix delivering to a local mailbox, gpg (--verify, --decrypt) and psql.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::*;

/// A message as the recording listener got it (DATA, un-dot-stuffed, CRLF).
#[derive(Clone, Debug)]
struct Received {
    recipients: Vec<String>,
    data: String,
}

/// A tiny SMTP server on loopback that records what it accepts: every
/// recipient but [`UNKNOWN_USER`], which it refuses permanently (550).
/// It offers no STARTTLS and no AUTH: plain SMTP, as a local MTA may.
const UNKNOWN_USER: &str = "nosuchuser@example.com";

struct Recorder {
    port: u16,
    mails: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    fn start() -> Recorder {
        Recorder::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn on(listener: TcpListener) -> Recorder {
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let shared = mails.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = session(stream, &shared);
                });
            }
        });
        Recorder { port, mails }
    }

    fn mails(&self) -> Vec<Received> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits up to `secs` for `n` messages.
    fn wait_for(&self, n: usize, secs: u64, inst: &Instance) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.mails().len() >= n {
                return self.mails();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{} of {n} messages arrived in {secs} s; server log:\n{}", self.mails().len(), inst.server_log());
    }
}

fn session(stream: TcpStream, mails: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 recorder ESMTP\r\n")?;
    let mut recipients = Vec::new();
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => out.write_all(b"250-recorder\r\n250 8BITMIME\r\n")?,
            "RCPT" => {
                let to = line.split(['<', '>']).nth(1).unwrap_or("").to_string();
                if to == UNKNOWN_USER {
                    out.write_all(b"550 5.1.1 <nosuchuser@example.com>: Recipient address rejected: User unknown\r\n")?;
                    continue;
                }
                recipients.push(to);
                out.write_all(b"250 2.1.5 Ok\r\n")?;
            }
            "DATA" => {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if lines.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').filter(|_| l.starts_with("..")).unwrap_or(&l));
                }
                let n = {
                    let mut all = mails.lock().unwrap();
                    all.push(Received { recipients: std::mem::take(&mut recipients), data });
                    all.len()
                };
                out.write_all(format!("250 2.0.0 Ok: queued as REC{n}\r\n").as_bytes())?;
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"250 2.0.0 Ok\r\n")?,
        }
    }
}

/// Splits a MIME entity (CRLF) into its header block and, for a multipart,
/// its parts exactly as written between the boundaries.
fn mime_parts(entity: &str) -> (String, Vec<String>) {
    let (headers, body) = entity.split_once("\r\n\r\n").expect("headers end");
    let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
    let Some(b) = unfolded.split("boundary=\"").nth(1) else { return (headers.to_string(), Vec::new()) };
    let boundary = b.split('"').next().unwrap();
    let delimiter = format!("\r\n--{boundary}");
    let body = format!("\r\n{body}");
    let mut parts: Vec<String> = body.split(&delimiter).map(str::to_string).collect();
    parts.remove(0); // the preamble
    parts.pop(); // "--" and the epilogue
    let parts = parts.into_iter().map(|p| p.strip_prefix("\r\n").unwrap_or(&p).to_string()).collect();
    (headers.to_string(), parts)
}

/// The value of header `name` in a header block (unfolded).
fn header(headers: &str, name: &str) -> Option<String> {
    let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Decodes a quoted-printable body.
fn qp_decode(text: &str) -> String {
    let bytes = text.replace("=\r\n", "").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        if let (b'=', Some(byte)) = (bytes[i], hex) {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// Checks the PGP/MIME signature of a multipart/signed entity with gpg and
/// the server's public key; returns the signed text, decoded.
fn verify_signed(entity: &str, inst: &Instance, gpg: &GnupgHome) -> String {
    let (headers, parts) = mime_parts(entity);
    let ctype = header(&headers, "Content-Type").unwrap();
    assert!(ctype.starts_with("multipart/signed"), "{ctype}");
    assert!(ctype.contains("protocol=\"application/pgp-signature\""), "{ctype}");
    assert_eq!(parts.len(), 2, "{entity}");
    let signed = gpg.dir.join("signed.txt");
    let sig = gpg.dir.join("signature.asc");
    std::fs::write(&signed, &parts[0]).unwrap();
    let (sig_headers, armored) = parts[1].split_once("\r\n\r\n").unwrap();
    assert!(sig_headers.contains("application/pgp-signature"), "{sig_headers}");
    std::fs::write(&sig, armored).unwrap();
    gpg.gpg(&["--import", inst.confdir.join("pubring.gpg").to_str().unwrap()]).expect(0);
    let out = gpg.gpg(&["--status-fd", "1", "--verify", sig.to_str().unwrap(), signed.to_str().unwrap()]).expect(0);
    let fpr = inst.kt(&["fingerprint"]).expect(0).stdout.trim().rsplit('/').next().unwrap().to_string();
    assert!(out.stdout.contains(&format!("VALIDSIG {fpr}")), "{}", out.stdout);
    // A changed byte breaks it.
    std::fs::write(&signed, format!("{}.", parts[0])).unwrap();
    gpg.gpg(&["--verify", sig.to_str().unwrap(), signed.to_str().unwrap()]).expect(1);
    let (_, text) = parts[0].split_once("\r\n\r\n").unwrap();
    qp_decode(text)
}

fn use_recorder(inst: &Instance, port: u16) {
    inst.set_config("MAIL_SMTP_HOST", "127.0.0.1".into());
    inst.set_config("MAIL_SMTP_PORT", port.into());
    inst.set_config("MAIL_RETRY_SECONDS", 1.into());
}

/// The registration link's token in a message text.
fn link_token(text: &str, base: &str) -> String {
    let start = text.find(&format!("{base}/?q=")).unwrap_or_else(|| panic!("no link to {base} in:\n{text}"));
    text[start + base.len() + 4..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

#[test]
fn a_new_contact_gets_the_documented_signed_registration_mail() {
    let smtp = Recorder::start();
    let inst = Instance::serving("mail-reg");
    use_recorder(&inst, smtp.port);
    // Queued with the change, before any server runs.
    inst.kt(&["org", "add", "-n", "acme", "-c", "alice@example.com"]).expect(0);
    assert_eq!(inst.sql("SELECT kind, recipient, state FROM mail_outbox"), "contact-registration|alice@example.com|queued");
    let queue: serde_json::Value = serde_json::from_str(&inst.kt(&["mail", "queue", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 1, "{queue}");
    assert_eq!(queue[0]["subject"], "KeyTrustee Contact Registration");
    assert_eq!(queue[0]["organization"], "acme");
    assert!(!queue.to_string().contains("?q="), "the queue listing shows no body: {queue}");
    // The token row: hashed, 12 hours.
    assert_eq!(inst.sql("SELECT count(*), min(extract(epoch FROM expires - created)) FROM contact_tokens"), "1|43200.000000");
    assert_eq!(inst.sql("SELECT abs(extract(epoch FROM expires - now()) - 43200) < 300 FROM contact_tokens"), "t");

    inst.kt(&["server", "start"]).expect(0);
    let mails = smtp.wait_for(1, 30, &inst);
    let mail = &mails[0];
    assert_eq!(mail.recipients, ["alice@example.com"]);
    let (headers, _) = mime_parts(&mail.data);
    assert_eq!(header(&headers, "Subject").as_deref(), Some("KeyTrustee Contact Registration"));
    assert_eq!(header(&headers, "From").as_deref(), Some("keytrustee@localhost"));
    assert_eq!(header(&headers, "To").as_deref(), Some("alice@example.com"));
    let gpg = GnupgHome::new();
    let text = verify_signed(&mail.data, &inst, &gpg);
    let base = format!("https://localhost:{}", inst.server_port);
    let token = link_token(&text, &base);
    assert_eq!(token.len(), 43, "{text}");
    // Only the token's hash is stored, and it is this token's.
    assert_eq!(inst.sql("SELECT encode(token_sha256, 'hex') FROM contact_tokens"), hex::encode(Sha256::digest(token.as_bytes())));
    let expires = inst.sql("SELECT to_char(expires AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM contact_tokens");
    assert!(text.contains(&format!("will expire in 12 hours, at {expires} UTC")), "{text}");
    assert!(text.contains("including the BEGIN and END strings"), "{text}");
    assert!(text.contains("\"acme\""), "{text}");
    // The link as mailed opens the registration page (GET uses nothing).
    let (status, page) = curl(&["--cacert", inst.ca().to_str().unwrap(), &format!("{base}/?q={token}")]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("alice@example.com"), "{page}");

    // Sent: the body (and with it the token) is gone from the database.
    assert!(eventually(10, || inst.sql("SELECT state FROM mail_outbox") == "sent"), "{}", inst.server_log());
    assert_eq!(inst.sql("SELECT body IS NULL, mta_reply LIKE '250 % queued as REC1%' FROM mail_outbox"), "t|t");
    assert!(!inst.server_log().contains(&token), "the token is never logged");
    assert!(inst.kt(&["mail", "queue"]).expect(0).stderr.contains("empty"));
    let all = inst.kt(&["mail", "queue", "--all"]).expect(0).stdout;
    assert!(all.contains("sent") && all.contains("queued as REC1"), "{all}");

    // An existing contact is not mailed again; a new one is.
    inst.kt(&["org", "add", "-n", "acme", "-c", "alice@example.com,bob@example.com"]).expect(0);
    let mails = smtp.wait_for(2, 30, &inst);
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[1].recipients, ["bob@example.com"]);
    assert_eq!(inst.sql("SELECT count(*) FROM contact_tokens"), "2");
    assert_eq!(link_token(&verify_signed(&mails[1].data, &inst, &gpg), &base).len(), 43);

    // A permanent refusal (550: no such user) is given up at the first
    // attempt, its body erased, not retried for MAIL_GIVE_UP_HOURS.
    inst.kt(&["org", "add", "-n", "acme", "-c", UNKNOWN_USER]).expect(0);
    let outcome = format!("SELECT state, attempts, body IS NULL, last_error LIKE '%550%' FROM mail_outbox WHERE recipient = '{UNKNOWN_USER}'");
    assert!(eventually(30, || inst.sql(&outcome) == "failed|1|t|t"), "{}\n{}", inst.sql(&outcome), inst.server_log());
}

/// The pages of an expired or used link tell the contact to ask the
/// administrator for a new one: `kt org invite` queues it, and the
/// contact's older unused link stops working. Only the organization's
/// contacts can be invited; a refused invitation changes nothing.
#[test]
fn an_administrator_sends_a_contact_a_new_link() {
    let inst = Instance::serving("mail-invite");
    let q = |query: &str| inst.psql("keytrustee", query).expect(0).stdout.trim().to_string();
    inst.kt(&["org", "add", "-n", "acme", "-c", "alice@example.com,bob@example.com"]).expect(0);
    let first = q("SELECT encode(token_sha256, 'hex') FROM contact_tokens WHERE contact = 'alice@example.com'");
    inst.kt(&["org", "invite", "-n", "acme", "-c", "Alice@Example.com"]).expect(0);
    assert_eq!(
        q("SELECT count(*) FROM mail_outbox WHERE kind = 'contact-registration' AND recipient = 'alice@example.com'"),
        "2"
    );
    assert_eq!(q("SELECT count(*) FROM contact_tokens WHERE contact = 'alice@example.com'"), "2");
    assert_eq!(
        q(&format!("SELECT expires <= now() FROM contact_tokens WHERE encode(token_sha256, 'hex') = '{first}'")),
        "t",
        "the older link stopped working"
    );
    assert_eq!(q("SELECT count(*) FROM contact_tokens WHERE expires > now()"), "2", "alice's new link and bob's");
    let out = inst.kt(&["org", "invite", "-n", "acme", "-c", "mallory@example.com"]).expect(2);
    assert!(out.stderr.contains("not a contact of acme"), "{}", out.stderr);
    inst.kt(&["org", "invite", "-n", "nope", "-c", "alice@example.com"]).expect(2);
    assert_eq!(q("SELECT count(*) FROM mail_outbox"), "3", "refused invitations queue nothing");
}

#[test]
fn mail_to_a_contact_with_a_registered_key_is_encrypted_to_it() {
    let smtp = Recorder::start();
    let inst = Instance::serving("mail-enc");
    use_recorder(&inst, smtp.port);
    inst.kt(&["server", "start"]).expect(0);
    inst.kt(&["org", "add", "-n", "acme", "-c", "alice@example.com"]).expect(0);
    smtp.wait_for(1, 30, &inst);

    // Bob's key, made by gpg, stored as the registration page would.
    let bob = GnupgHome::new();
    bob.gpg(&["--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Bob <bob@example.com>", "ed25519", "sign", "never"])
        .expect(0);
    let listing = bob.gpg(&["--with-colons", "--list-keys", "bob@example.com"]).expect(0).stdout;
    let fpr = listing.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string();
    bob.gpg(&["--pinentry-mode", "loopback", "--passphrase", "", "--quick-add-key", &fpr, "cv25519", "encr", "never"]).expect(0);
    let armored = bob.gpg(&["--armor", "--export", &fpr]).expect(0).stdout;
    assert!(armored.contains("BEGIN PGP PUBLIC KEY BLOCK"));
    inst.sql(&format!(
            "INSERT INTO contact_keys (organization, contact, fingerprint, armored) \
             SELECT uuid, 'bob@example.com', '{fpr}', $k${armored}$k$ FROM organizations WHERE name = 'acme'"
        ),
    );
    inst.kt(&["org", "add", "-n", "acme", "-c", "bob@example.com"]).expect(0);
    let mails = smtp.wait_for(2, 30, &inst);
    let mail = &mails[1];
    assert_eq!(mail.recipients, ["bob@example.com"]);
    assert!(!mail.data.contains("?q="), "the link is not in clear");
    let (headers, parts) = mime_parts(&mail.data);
    let ctype = header(&headers, "Content-Type").unwrap();
    assert!(ctype.starts_with("multipart/encrypted") && ctype.contains("application/pgp-encrypted"), "{ctype}");
    assert_eq!(parts.len(), 2);
    assert!(parts[0].contains("Version: 1"), "{}", parts[0]);
    let (_, message) = parts[1].split_once("\r\n\r\n").unwrap();
    let file = bob.dir.join("msg.asc");
    std::fs::write(&file, message).unwrap();
    let out = bob.dir.join("msg.eml");
    bob.gpg(&["--pinentry-mode", "loopback", "--passphrase", "", "-o", out.to_str().unwrap(), "--decrypt", file.to_str().unwrap()])
        .expect(0);
    // Inside: the signed entity, which the server's key verifies.
    let inner = std::fs::read_to_string(&out).unwrap();
    let text = verify_signed(&inner, &inst, &bob);
    assert!(text.contains(&format!("https://localhost:{}/?q=", inst.server_port)), "{text}");
    assert!(eventually(10, || inst.sql("SELECT count(*) FROM mail_outbox WHERE state = 'sent'") == "2"));
}

#[test]
fn contacts_are_told_of_a_pending_client_once_an_hour() {
    let smtp = Recorder::start();
    let inst = Instance::serving("mail-pending");
    use_recorder(&inst, smtp.port);
    inst.kt(&["server", "start"]).expect(0);
    crate::server::org_with_secret(&inst, "acme", "s3cret-value");
    smtp.wait_for(1, 30, &inst);
    let web01 = inst.dir.join("web01");
    let ask = || {
        crate::server::client(&web01, &["register", "--server", &inst.url(), "--org", "acme", "--ca", inst.ca().to_str().unwrap()])
            .expect(1)
    };
    let fpr = ask().stdout.trim().to_string();
    let mails = smtp.wait_for(2, 30, &inst);
    let mail = &mails[1];
    assert_eq!(mail.recipients, ["ops@acme.example.com"]);
    let (headers, _) = mime_parts(&mail.data);
    assert!(header(&headers, "Subject").unwrap().contains("awaiting approval"), "{headers}");
    let gpg = GnupgHome::new();
    let text = verify_signed(&mail.data, &inst, &gpg);
    assert!(text.contains(&format!("kt org enable-client --fingerprint {fpr}")), "{text}");
    assert!(text.contains(&format!("Fingerprint:  {fpr}")), "{text}");
    assert!(text.contains("(the client's own claim, not verified)"), "{text}");
    assert!(text.contains(" UTC"), "{text}");
    // Asking again within the hour: no second mail. The reminder is
    // queued (or not) before the answer; once the queue is empty, anything
    // queued has reached the recorder.
    ask();
    assert_eq!(inst.sql(&format!("SELECT count(*) FROM mail_outbox WHERE about_client = '{fpr}'")), "1");
    assert!(eventually(30, || inst.sql("SELECT count(*) FROM mail_outbox WHERE state = 'queued'") == "0"), "{}", inst.server_log());
    assert_eq!(smtp.mails().len(), 2);
    // An hour later (the clock moved through the database), once more.
    inst.sql("UPDATE mail_outbox SET created = created - interval '61 minutes' WHERE kind = 'client-pending'");
    ask();
    smtp.wait_for(3, 30, &inst);
}

/// Anyone who knows an organization's name can ask to register clients
/// (a fresh key each time): the registrations are stored as always, but
/// the notices to the organization's contacts are bounded
/// (src/mail/budget.rs), so the server is no mail cannon.
#[test]
fn client_notices_to_contacts_are_bounded() {
    let inst = Instance::serving("mail-flood");
    inst.set_config("MAIL_TRANSPORT", "off".into());
    inst.kt(&["server", "start"]).expect(0);
    crate::server::org_with_secret(&inst, "acme", "s3cret-value");
    let limit = kt::mail::budget::MAX_NOTICES as usize;
    for i in 0..limit + 3 {
        let dir = inst.dir.join(&format!("asker{i}"));
        crate::server::client(&dir, &["register", "--server", &inst.url(), "--org", "acme", "--ca", inst.ca().to_str().unwrap()])
            .expect(1);
    }
    let count = |query: &str| inst.psql("keytrustee", query).expect(0).stdout.trim().to_string();
    assert_eq!(count("SELECT count(*) FROM clients WHERE state = 'pending'"), (limit + 3).to_string());
    assert_eq!(count("SELECT count(*) FROM mail_outbox WHERE kind = 'client-pending'"), limit.to_string());
    let log = inst.server_log();
    assert!(log.contains("were not told of client"), "{log}");
}

#[test]
fn an_mta_that_is_down_delays_mail_and_a_restart_loses_none() {
    let port = free_port();
    let inst = Instance::serving("mail-down");
    use_recorder(&inst, port);
    inst.kt(&["server", "start"]).expect(0);
    let started = Instant::now();
    inst.kt(&["org", "add", "-n", "acme", "-c", "alice@example.com"]).expect(0);
    assert!(started.elapsed() < Duration::from_secs(10), "kt org add waited for the MTA");
    // Retried with backoff (1 s, 2 s, ...) and the reason shown.
    assert!(
        eventually(30, || inst.sql("SELECT attempts >= 2 AND last_error IS NOT NULL FROM mail_outbox") == "t"),
        "{}",
        inst.server_log()
    );
    let queue = inst.kt(&["mail", "queue"]).expect(0).stdout;
    assert!(queue.contains("queued") && queue.contains("last error") && queue.contains("next attempt"), "{queue}");
    assert!(queue.contains(&format!("127.0.0.1:{port}")), "{queue}");
    let test = inst.kt(&["mail", "test", "--to", "alice@example.com"]).expect(3);
    assert!(test.stderr.contains("not accepted"), "{}", test.stderr);
    // A message older than MAIL_GIVE_UP_HOURS (72) is given up at its next
    // attempt: failed, its body (the link) erased, listed with its reason.
    inst.kt(&["org", "add", "-n", "acme", "-c", "old@example.com"]).expect(0);
    inst.sql("UPDATE mail_outbox SET created = created - interval '73 hours' WHERE recipient = 'old@example.com'");
    assert!(
        eventually(30, || inst.sql("SELECT state, body IS NULL FROM mail_outbox WHERE recipient = 'old@example.com'") == "failed|t"),
        "{}",
        inst.server_log()
    );
    let queue = inst.kt(&["mail", "queue"]).expect(0).stdout;
    assert!(queue.contains("failed  contact-registration  to old@example.com"), "{queue}");
    assert!(inst.server_log().contains("mail: gave up"), "{}", inst.server_log());

    // Stopped while queued; the MTA comes up; the new server delivers.
    inst.kt(&["server", "stop"]).expect(0);
    assert_eq!(inst.sql("SELECT state, body IS NOT NULL FROM mail_outbox WHERE recipient = 'alice@example.com'"), "queued|t");
    let smtp = Recorder::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    inst.sql("UPDATE mail_outbox SET next_attempt = now()");
    inst.kt(&["server", "start"]).expect(0);
    let mails = smtp.wait_for(1, 30, &inst);
    assert_eq!(mails[0].recipients, ["alice@example.com"]);
    assert!(eventually(10, || inst.sql("SELECT state FROM mail_outbox WHERE recipient = 'alice@example.com'") == "sent"));
    // And `kt mail test` reports the MTA's answer.
    let out = inst.kt(&["mail", "test", "--to", "carol@example.com"]).expect(0);
    assert!(out.stdout.starts_with("250 ") && out.stdout.contains("queued as REC2"), "{}", out.stdout);
    assert_eq!(smtp.mails()[1].recipients, ["carol@example.com"]);
    verify_signed(&smtp.mails()[1].data, &inst, &GnupgHome::new());
}

/// The test user Postfix delivers to, in /var/mail/<user>.
const MAILBOX_USER: &str = "ktmailtest";
const SBIN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Postfix as [`postfix_on_loopback`] set it up for one test; on drop
/// everything the test changed on the machine is put back: main.cf byte
/// for byte, Postfix running (with that configuration) or stopped as it
/// was, and the mailbox user with its mbox removed when the test made it.
/// A developer's own Postfix is left as it was found.
struct PostfixGuard {
    main_cf: std::path::PathBuf,
    saved: Vec<u8>,
    was_running: bool,
    made_user: bool,
}

impl Drop for PostfixGuard {
    fn drop(&mut self) {
        let postfix = |arg: &str| run(Command::new("/usr/sbin/postfix").env("PATH", SBIN_PATH).arg(arg));
        postfix("stop");
        if let Err(e) = std::fs::write(&self.main_cf, &self.saved) {
            eprintln!("WARNING: cannot put back {}: {e}", self.main_cf.display());
        }
        if self.was_running {
            postfix("start");
        }
        if self.made_user {
            let _ = run(Command::new("userdel").env("PATH", SBIN_PATH).arg(MAILBOX_USER));
            let _ = std::fs::remove_file(format!("/var/mail/{MAILBOX_USER}"));
        }
    }
}

/// Postfix on loopback, delivering to the local mailbox of
/// [`MAILBOX_USER`]. Postfix must be installed (scripts/install-deps --for
/// test): its absence fails the test.
fn postfix_on_loopback() -> PostfixGuard {
    let postfix = "/usr/sbin/postfix";
    assert!(Path::new(postfix).exists(), "Postfix is not installed: run scripts/install-deps --for test (as root)");
    let confdir = run(Command::new("postconf").env("PATH", SBIN_PATH).args(["-h", "config_directory"])).expect(0).stdout;
    let main_cf = Path::new(confdir.trim()).join("main.cf");
    let saved = std::fs::read(&main_cf).unwrap_or_else(|e| panic!("cannot read {}: {e}", main_cf.display()));
    let made_user = run(Command::new("id").arg(MAILBOX_USER)).code != 0;
    if made_user {
        run(Command::new("useradd").env("PATH", SBIN_PATH).args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MAILBOX_USER]))
            .expect(0);
    }
    // The guard exists before the first change, so a failure below undoes it.
    let was_running = run(Command::new(postfix).env("PATH", SBIN_PATH).arg("status")).code == 0;
    let guard = PostfixGuard { main_cf, saved, was_running, made_user };
    run(Command::new("postconf").env("PATH", SBIN_PATH).args([
        "-e",
        "inet_interfaces = loopback-only",
        "mydestination = localhost, localhost.localdomain",
        "mynetworks = 127.0.0.0/8 [::1]/128",
        "default_transport = error:outside mail is not sent by the test MTA",
        "relay_transport = error:outside mail is not sent by the test MTA",
    ]))
    .expect(0);
    // inet_interfaces takes a restart, not a reload.
    if was_running {
        run(Command::new(postfix).env("PATH", SBIN_PATH).arg("stop")).expect(0);
    }
    let out = run(Command::new(postfix).env("PATH", SBIN_PATH).arg("start"));
    assert_eq!(out.code, 0, "postfix start failed: {}", out.stderr);
    assert!(
        eventually(20, || TcpStream::connect(("127.0.0.1", 25)).is_ok()),
        "Postfix does not listen on 127.0.0.1:25"
    );
    guard
}

#[test]
fn through_postfix_to_a_local_mailbox() {
    assert!(is_root(), "this test runs Postfix and adds a mailbox user: it must run as root (as CI does)");
    let _postfix = postfix_on_loopback();
    let inst = Instance::serving("mail-postfix");
    // The documented setup: SMTP to localhost:25 (the defaults), with
    // STARTTLS when Postfix offers it.
    inst.set_config("MAIL_RETRY_SECONDS", 1.into());
    let org = format!("pf{}", std::process::id());
    let to = format!("{MAILBOX_USER}@localhost");
    inst.kt(&["org", "add", "-n", &org, "-c", &to]).expect(0);
    inst.kt(&["server", "start"]).expect(0);
    let mbox = format!("/var/mail/{MAILBOX_USER}");
    let marker = format!("organization \"{org}\"");
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && found.is_none() {
        let text = std::fs::read_to_string(&mbox).unwrap_or_default();
        // The mbox holds LF lines; messages start with "From ".
        found = text
            .split("\nFrom ")
            .map(|m| m.replace('\n', "\r\n"))
            .find(|m| qp_decode(m).contains(&marker));
        std::thread::sleep(Duration::from_millis(500));
    }
    let message = found.unwrap_or_else(|| {
        panic!(
            "no message for {org} in {mbox} after 60 s; queue:\n{}\nserver log:\n{}",
            inst.kt(&["mail", "queue", "--all"]).stdout,
            inst.server_log()
        )
    });
    // Without the mbox's "From " line (the only first line that is no header).
    let (first, rest) = message.split_once("\r\n").unwrap();
    let message = if first.split_once(':').is_none_or(|(name, _)| name.contains(' ')) { rest.to_string() } else { message.clone() };
    let (headers, _) = mime_parts(&message);
    assert_eq!(header(&headers, "Subject").as_deref(), Some("KeyTrustee Contact Registration"));
    // Postfix offers STARTTLS (Debian's snakeoil certificate): kt took it.
    let received = header(&headers, "Received").unwrap();
    assert!(received.contains("with ESMTPS"), "{received}");
    let text = verify_signed(&message, &inst, &GnupgHome::new());
    let base = format!("https://localhost:{}", inst.server_port);
    let token = link_token(&text, &base);
    assert_eq!(token.len(), 43);
    let reply = inst.sql("SELECT mta_reply FROM mail_outbox");
    assert!(reply.starts_with("250 "), "{reply}");

    // The contact follows the delivered link in a real browser and
    // registers a key made by GnuPG; kt org list then shows it.
    let keys = crate::registration::Keys::new();
    let fpr = keys.make(&format!("Mailbox <{to}>"), &[], "1y");
    let armored = std::fs::read_to_string(keys.export(&[&to], &inst.dir.join("contact.asc"))).unwrap();
    let (shown, user_ids) = crate::registration::register_in_browser(&format!("{base}/?q={token}"), &to, &armored, &inst.dir.path);
    assert_eq!(shown, crate::registration::grouped(&fpr));
    assert!(user_ids.contains(&to), "{user_ids}");
    let list = inst.kt(&["org", "list"]).expect(0).stdout;
    assert!(list.contains(&fpr), "kt org list does not show the registered key:\n{list}");
}

#[test]
fn the_sendmail_transport_and_mail_test() {
    let inst = Instance::new("mail-sendmail");
    inst.kt(&["db", "start"]).expect(0);
    // A sendmail stand-in that records its arguments and the message.
    let out = inst.dir.join("sent.eml");
    let args = inst.dir.join("args.txt");
    let script = inst.dir.join("fake-sendmail");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" > {}\ncat > {}\n", args.display(), out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    inst.set_config("MAIL_TRANSPORT", "sendmail".into());
    inst.set_config("MAIL_SENDMAIL", script.to_str().unwrap().into());
    inst.set_config("MAIL_FROM", "kms@example.org".into());
    let run = inst.kt(&["mail", "test", "--to", "dave@example.com"]).expect(0);
    assert!(run.stdout.contains("accepted the message"), "{}", run.stdout);
    assert!(std::fs::read_to_string(&args).unwrap().contains("dave@example.com"));
    let message = std::fs::read_to_string(&out).unwrap().replace("\r\n", "\n").replace('\n', "\r\n");
    let (headers, _) = mime_parts(&message);
    assert_eq!(header(&headers, "From").as_deref(), Some("kms@example.org"));
    let text = verify_signed(&message, &inst, &GnupgHome::new());
    assert!(text.contains("kt mail test"), "{text}");
    // Off: refused, nothing sent. A bad address: exit 2.
    inst.set_config("MAIL_TRANSPORT", "off".into());
    assert!(inst.kt(&["mail", "test", "--to", "dave@example.com"]).expect(2).stderr.contains("MAIL_TRANSPORT is off"));
    inst.kt(&["mail", "test", "--to", "not an address"]).expect(2);
    inst.set_config("MAIL_TRANSPORT", "pigeon".into());
    assert!(inst.kt(&["mail", "queue"]).expect(2).stderr.contains("MAIL_TRANSPORT"));
}

/// Sets `key` in the keytrustee.conf of `confdir` (a passive's, which
/// `kt ha sync` copied from its active).
fn set_conf(confdir: &Path, key: &str, value: serde_json::Value) {
    let path = confdir.join("keytrustee.conf");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

#[test]
fn in_an_ha_pair_only_the_active_sends() {
    let smtp = Recorder::start();
    let (a, b) = crate::ha::synchronous_pair("mail-ha", 5);
    // Both hosts could reach the MTA; both servers run and see the queue.
    for confdir in [&a.confdir, &b.confdir] {
        set_conf(confdir, "MAIL_SMTP_HOST", "127.0.0.1".into());
        set_conf(confdir, "MAIL_SMTP_PORT", smtp.port.into());
        set_conf(confdir, "MAIL_RETRY_SECONDS", 1.into());
    }
    a.kt(&["server", "restart"]).expect(0);
    b.kt(&["server", "restart"]).expect(0);
    a.kt(&["org", "add", "-n", "acme", "-c", "alice@example.com,bob@example.com"]).expect(0);
    // The queue replicated to the passive, which leaves it alone.
    assert!(eventually(10, || b.psql("SELECT count(*) FROM mail_outbox").expect(0).stdout.trim() == "2"));
    smtp.wait_for(2, 30, &a);
    std::thread::sleep(Duration::from_secs(5));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "each message once: {mails:?}");
    let passive_log = std::fs::read_to_string(b.home.join("logs/kt-server.log")).unwrap_or_default();
    assert!(passive_log.contains("serving https://"), "the passive's server ran: {passive_log}");
    assert!(!passive_log.contains("mail: sent"), "{passive_log}");
    assert_eq!(a.server_log().matches("mail: sent").count(), 2, "{}", a.server_log());
}
