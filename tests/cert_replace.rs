//! `kt cert replace` and `kt cert rollback` against running servers, with
//! openssl as the CA and curl and openssl s_client as the clients that
//! must not notice: a CA-signed swap with a client loop running, every
//! refusal leaving the confdir unchanged, a reload that fails in the server
//! rolled back, PKCS#12 bundles, a stopped server, and a server run in the
//! foreground (as systemd runs it) with no pid file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

/// A CA made by openssl: `name.pem` and `name-key.pem` in `dir`, signed by
/// `issuer` (an intermediate) or self-signed (a root).
fn make_ca(dir: &Path, name: &str, issuer: Option<(&Path, &Path)>) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let subj = format!("/CN=kt test {name}");
    match issuer {
        None => {
            openssl(&[
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", &subj,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap(),
            ])
            .expect(0);
        }
        Some((ca, ca_key)) => {
            let csr = dir.join(format!("{name}.csr"));
            openssl(&[
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", &subj,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", key.to_str().unwrap(), "-out", csr.to_str().unwrap(),
            ])
            .expect(0);
            openssl(&[
                "x509", "-req", "-in", csr.to_str().unwrap(), "-CA", ca.to_str().unwrap(), "-CAkey", ca_key.to_str().unwrap(),
                "-CAcreateserial", "-days", "30", "-copy_extensions", "copyall", "-out", cert.to_str().unwrap(),
            ])
            .expect(0);
        }
    }
    (cert, key)
}

/// A certificate for `names` (the first is the CN) on `key`, signed by the CA.
fn sign(dir: &Path, name: &str, key: &Path, names: &[&str], ca: (&Path, &Path)) -> PathBuf {
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    let sans: Vec<String> =
        names.iter().map(|n| if n.parse::<std::net::IpAddr>().is_ok() { format!("IP:{n}") } else { format!("DNS:{n}") }).collect();
    openssl(&[
        "req", "-new", "-key", key.to_str().unwrap(), "-subj", &format!("/CN={}", names[0]),
        "-addext", &format!("subjectAltName={}", sans.join(",")), "-addext", "extendedKeyUsage=serverAuth",
        "-out", csr.to_str().unwrap(),
    ])
    .expect(0);
    openssl(&[
        "x509", "-req", "-in", csr.to_str().unwrap(), "-CA", ca.0.to_str().unwrap(), "-CAkey", ca.1.to_str().unwrap(),
        "-CAcreateserial", "-days", "20", "-copy_extensions", "copyall", "-out", cert.to_str().unwrap(),
    ])
    .expect(0);
    cert
}

fn cat(out: &Path, parts: &[&Path]) {
    let text: String = parts.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    std::fs::write(out, text).unwrap();
}

fn ssl(inst: &Instance, name: &str) -> PathBuf {
    inst.confdir.join(".ssl").join(name)
}

fn config(inst: &Instance) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(inst.confdir.join("keytrustee.conf")).unwrap()).unwrap()
}

/// curl against https://localhost:PORT trusting only `ca`.
fn curl_trusting(inst: &Instance, ca: &Path) -> (u16, String) {
    curl(&[
        "--cacert", ca.to_str().unwrap(), "--resolve", &format!("localhost:{}:127.0.0.1", inst.server_port),
        &format!("https://localhost:{}/?a=fingerprint", inst.server_port),
    ])
}

#[test]
fn a_ca_signed_certificate_replaces_the_served_one_with_no_failed_request_and_rolls_back() {
    let inst = Instance::serving("cert-replace");
    inst.kt(&["server", "start"]).expect(0);
    let pid = inst.server_pid();
    let dir = &inst.dir.path;
    let fingerprint = inst.kt(&["fingerprint"]).expect(0).stdout.trim().to_string();
    let old_cert = std::fs::read(ssl(&inst, "ssl-cert-keytrustee.pem")).unwrap();
    let old_ssl = snapshot(&inst.confdir.join(".ssl"));

    // kt's own CSR for the instance's key, signed by an openssl
    // intermediate under an openssl root; the chain file lists root first.
    let (root, root_key) = make_ca(dir, "root", None);
    let (int, int_key) = make_ca(dir, "intermediate", Some((&root, &root_key)));
    let csr = dir.join("kt.csr");
    inst.kt(&["cert", "generate", "--csr", csr.to_str().unwrap(), "--subject", "/O=Example/OU=Ops"]).expect(0);
    openssl(&["req", "-verify", "-noout", "-in", csr.to_str().unwrap()]).expect(0);
    let leaf = dir.join("leaf.pem");
    openssl(&[
        "x509", "-req", "-in", csr.to_str().unwrap(), "-CA", int.to_str().unwrap(), "-CAkey", int_key.to_str().unwrap(),
        "-CAcreateserial", "-days", "20", "-copy_extensions", "copyall", "-out", leaf.to_str().unwrap(),
    ])
    .expect(0);
    let chain = dir.join("chain.pem");
    cat(&chain, &[&root, &int]);

    // Clients trusting either certificate keep asking during the replace.
    let both = dir.join("both.pem");
    cat(&both, &[&inst.ca(), &root]);
    let stop = Arc::new(AtomicBool::new(false));
    // The clients stop however this test ends.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_clients = StopOnDrop(stop.clone());
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let port = inst.server_port;
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, both, fingerprint) = (stop.clone(), ok.clone(), failed.clone(), both.clone(), fingerprint.clone());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    let (code, body) = curl(&[
                        "--cacert", both.to_str().unwrap(), "--resolve", &format!("localhost:{port}:127.0.0.1"),
                        &format!("https://localhost:{port}/?a=fingerprint"),
                    ]);
                    if code == 200 && body == fingerprint {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let warmup = std::time::Instant::now() + Duration::from_secs(30);
    while ok.load(Ordering::Relaxed) < 5 {
        assert!(std::time::Instant::now() < warmup, "the clients got no answer before the replace ({} failed)", failed.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
    }

    // The plan first: nothing changes.
    let before = snapshot(&inst.confdir);
    let plan = inst.kt(&["cert", "replace", "--cert", leaf.to_str().unwrap(), "--ca", chain.to_str().unwrap(), "--dry-run"]).expect(0);
    assert!(plan.stdout.contains("verified to the root"), "{}", plan.stdout);
    assert!(plan.stdout.contains(&format!("running (pid {pid})")), "{}", plan.stdout);
    assert_eq!(snapshot(&inst.confdir), before, "--dry-run changed the confdir");

    let out = inst.kt(&["cert", "replace", "--cert", leaf.to_str().unwrap(), "--ca", chain.to_str().unwrap()]).expect(0);
    assert!(out.stderr.contains("now serves"), "{}", out.stderr);
    let during = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "a client request failed during the replace");
    assert!(ok.load(Ordering::Relaxed) > during, "no request after the replace");

    // Served with no restart, trusted by curl through the new root alone.
    assert_eq!(inst.server_pid(), pid, "the server was restarted");
    assert_eq!(served_cert(&inst), file_cert(&leaf));
    assert_eq!(curl_trusting(&inst, &root), (200, fingerprint.clone()));
    // The files: leaf, the same key, the chain intermediate first; 0600,
    // the service account's; the configuration points at them.
    assert_eq!(file_cert(&ssl(&inst, "ssl-cert-keytrustee.pem")), file_cert(&leaf));
    let ca_text = std::fs::read_to_string(ssl(&inst, "ssl-cert-keytrustee-ca.pem")).unwrap();
    let int_text = std::fs::read_to_string(&int).unwrap();
    assert!(ca_text.starts_with(int_text.trim_end()), "the intermediate comes first in the CA file");
    openssl(&["verify", "-CAfile", root.to_str().unwrap(), "-untrusted", int.to_str().unwrap(), ssl(&inst, "ssl-cert-keytrustee.pem").to_str().unwrap()]).expect(0);
    for name in ["ssl-cert-keytrustee.pem", "ssl-cert-keytrustee-pk.pem", "ssl-cert-keytrustee-ca.pem"] {
        assert_eq!(mode(&ssl(&inst, name)), 0o600, "{name}");
        if is_root() {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata(ssl(&inst, name)).unwrap().uid();
            assert_eq!(Some(uid), service_uid(), "{name} is not the service account's");
        }
    }
    let conf = config(&inst);
    assert_eq!(conf["SSL_CERTIFICATE"], ssl(&inst, "ssl-cert-keytrustee.pem").to_str().unwrap());
    assert_eq!(conf["SSL_CA"], ssl(&inst, "ssl-cert-keytrustee-ca.pem").to_str().unwrap());
    assert_eq!(conf["HOSTNAME"], "localhost", "other keys are kept");
    // .ssl.bak holds the old files exactly, and what they were configured as.
    let bak = inst.confdir.join(".ssl.bak");
    assert_eq!(std::fs::read(bak.join("ssl-cert-keytrustee.pem")).unwrap(), old_cert);
    let mut bak_files = snapshot(&bak);
    assert!(bak_files.remove(Path::new("kt-cert-previous.json")).is_some());
    assert_eq!(bak_files, old_ssl, ".ssl.bak is not a copy of the old .ssl");
    assert_eq!(mode(&bak), 0o700);
    assert!(!inst.server_log().contains("reload failed"));

    // A second replace keeps the first .ssl.bak under a timestamped name.
    let leaf2 = sign(dir, "leaf2", &ssl(&inst, "ssl-cert-keytrustee-pk.pem"), &["localhost", "127.0.0.1"], (&int, &int_key));
    inst.kt(&["cert", "replace", "--cert", leaf2.to_str().unwrap(), "--ca", chain.to_str().unwrap()]).expect(0);
    assert_eq!(served_cert(&inst), file_cert(&leaf2));
    let kept: Vec<_> = std::fs::read_dir(&inst.confdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".ssl.bak."))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(inst.confdir.join(&kept[0]).join("ssl-cert-keytrustee.pem")).unwrap(), old_cert);

    // Rollback puts the previous certificate (leaf) back, checked and reloaded.
    inst.kt(&["cert", "rollback"]).expect(0);
    assert_eq!(served_cert(&inst), file_cert(&leaf));
    assert_eq!(file_cert(&bak.join("ssl-cert-keytrustee.pem")), file_cert(&leaf2));
    assert_eq!(inst.server_pid(), pid);
}

fn service_uid() -> Option<u32> {
    let out = run(std::process::Command::new("id").args(["-u", "keytrustee"]));
    out.stdout.trim().parse().ok()
}

/// A certificate made with rcgen for the instance's key, valid from
/// `from` to `to` (Unix seconds): openssl 3.0 cannot make one in the past.
fn dated_cert(inst: &Instance, out: &Path, names: &[&str], from: i64, to: i64) {
    let key_pem = std::fs::read_to_string(ssl(inst, "ssl-cert-keytrustee-pk.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
    std::fs::write(out, params.self_signed(&key).unwrap().pem()).unwrap();
}

#[test]
fn every_refusal_changes_nothing_and_exits_2() {
    let inst = Instance::serving("cert-refuse");
    inst.kt(&["server", "start"]).expect(0);
    let dir = &inst.dir.path;
    let served = served_cert(&inst);
    assert!(served.contains("Fingerprint"), "openssl s_client read no certificate: {served:?}");
    let before = snapshot(&inst.confdir);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let day = 86_400;

    let expired = dir.join("expired.pem");
    dated_cert(&inst, &expired, &["localhost"], now - 30 * day, now - day);
    let future = dir.join("future.pem");
    dated_cert(&inst, &future, &["localhost"], now + day, now + 30 * day);
    let other_host = dir.join("other-host.pem");
    dated_cert(&inst, &other_host, &["other.example.com"], now - day, now + 30 * day);
    let good = dir.join("good.pem");
    dated_cert(&inst, &good, &["localhost", "127.0.0.1"], now - day, now + 30 * day);
    let other_key = dir.join("other-key.pem");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other_key.to_str().unwrap()]).expect(0);
    let (root, root_key) = make_ca(dir, "root", None);
    let (unrelated, _) = make_ca(dir, "unrelated", None);
    let signed = sign(dir, "signed", &ssl(&inst, "ssl-cert-keytrustee-pk.pem"), &["localhost"], (&root, &root_key));
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n").unwrap();
    let legacy = dir.join("legacy.pem");
    openssl(&["genrsa", "-traditional", "-aes256", "-passout", "pass:old secret", "-out", legacy.to_str().unwrap(), "2048"]).expect(0);
    assert!(std::fs::read_to_string(&legacy).unwrap().contains("Proc-Type: 4,ENCRYPTED"));
    let encrypted = dir.join("encrypted.pem");
    openssl(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:right", "-in", ssl(&inst, "ssl-cert-keytrustee-pk.pem").to_str().unwrap(), "-out", encrypted.to_str().unwrap()]).expect(0);

    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![s(&expired)], "expired"),
        (vec![s(&future)], "not valid yet"),
        (vec![s(&other_host)], "does not name this host"),
        (vec![s(&good), "--key".into(), s(&other_key)], "does not belong to the certificate"),
        (vec![s(&signed), "--ca".into(), s(&unrelated)], "does not verify"),
        (vec![s(&garbage)], "holds a certificate kt cannot read"),
        (vec![s(&good), "--key".into(), s(&legacy)], "legacy encrypted PEM"),
        (vec![s(&good), "--key".into(), s(&encrypted), "--key-password-script".into(), "echo wrong".into()], "cannot decrypt"),
        (vec![s(&good), "--key".into(), s(&encrypted)], "encrypted"),
        (vec![s(&good), "--key".into(), s(&encrypted), "--key-password-file".into(), s(&dir.join("nope"))], "key-password-file"),
        (vec![s(&dir.join("missing.pem"))], "cannot read"),
    ];
    for (args, expected) in &cases {
        let mut all = vec!["cert".to_string(), "replace".into(), "--cert".into()];
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = inst.kt(&refs).expect(2);
        assert!(out.stderr.contains(expected), "{args:?}: expected {expected:?} in\n{}", out.stderr);
        assert_eq!(snapshot(&inst.confdir), before, "{args:?} changed the confdir");
    }
    // The legacy key's refusal gives the exact command that converts it.
    let out = inst.kt(&["cert", "replace", "--cert", &s(&good), "--key", &s(&legacy)]).expect(2);
    assert!(out.stderr.contains(&format!("openssl pkcs8 -topk8 -v2 aes-256-cbc -in {}", legacy.display())), "{}", out.stderr);
    assert_eq!(served_cert(&inst), served, "a refusal changed the served certificate");

    // A rollback with no .ssl.bak is refused too.
    inst.kt(&["cert", "rollback"]).expect(2);
    // --allow-hostname-mismatch installs the other host's certificate, with a warning.
    let out = inst.kt(&["cert", "replace", "--cert", &s(&other_host), "--allow-hostname-mismatch"]).expect(0);
    assert!(out.stderr.contains("warning: the certificate does not name this host"), "{}", out.stderr);
    assert_eq!(served_cert(&inst), file_cert(&other_host));
}

#[test]
fn a_reload_that_fails_in_the_server_puts_everything_back() {
    if !is_root() {
        panic!("this test needs root: the server must run as another account than kt cert replace");
    }
    let inst = Instance::serving("cert-reload-fails");
    inst.kt(&["server", "start"]).expect(0);
    let dir = &inst.dir.path;
    let served = served_cert(&inst);
    assert!(served.contains("Fingerprint"), "openssl s_client read no certificate: {served:?}");
    let before = snapshot(&inst.confdir);
    let conf_before = std::fs::read(inst.confdir.join("keytrustee.conf")).unwrap();

    // An encrypted key whose password script works once (the check in kt
    // cert replace) and fails after (in the server's reload).
    let encrypted = dir.join("encrypted.pem");
    openssl(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:right", "-in", ssl(&inst, "ssl-cert-keytrustee-pk.pem").to_str().unwrap(), "-out", encrypted.to_str().unwrap()]).expect(0);
    let marks = dir.join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::fs::set_permissions(&marks, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = format!(
        "if [ -e {m}/used ]; then echo 'no password for you' >&2; exit 1; fi; touch {m}/used; [ \"$(id -un)\" = keytrustee ] && echo right",
        m = marks.display()
    );
    let (root, root_key) = make_ca(dir, "root", None);
    let leaf = sign(dir, "leaf", &ssl(&inst, "ssl-cert-keytrustee-pk.pem"), &["localhost", "127.0.0.1"], (&root, &root_key));

    let out = inst
        .kt(&["cert", "replace", "--cert", leaf.to_str().unwrap(), "--key", encrypted.to_str().unwrap(), "--ca", root.to_str().unwrap(), "--key-password-script", &script])
        .expect(3);
    assert!(out.stderr.contains("everything was put back"), "{}", out.stderr);
    assert!(out.stderr.contains("reload failed"), "{}", out.stderr);
    // The failure is the script's own, in the server: the check passed.
    assert!(out.stderr.contains("no password for you"), "{}", out.stderr);
    assert!(!out.stderr.contains("NOT UNDONE"), "{}", out.stderr);
    assert_eq!(served_cert(&inst), served, "the old certificate is not served after the rollback");
    assert_eq!(std::fs::read(inst.confdir.join("keytrustee.conf")).unwrap(), conf_before);
    // Every file back byte for byte, with its mode and owner.
    assert_eq!(snapshot(&inst.confdir), before);
    assert!(!inst.confdir.join(".ssl.bak").exists());
    // And the server still serves requests.
    let (code, _) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!(code, 200);
}

#[test]
fn pkcs12_bundles_a_stopped_server_and_a_foreground_server() {
    let inst = Instance::serving("cert-p12");
    let dir = &inst.dir.path;
    let (root, root_key) = make_ca(dir, "root", None);
    let (int, int_key) = make_ca(dir, "intermediate", Some((&root, &root_key)));
    let key = dir.join("new-key.pem");
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.to_str().unwrap()]).expect(0);
    let leaf = sign(dir, "leaf", &key, &["localhost", "127.0.0.1"], (&int, &int_key));
    let chain = dir.join("chain.pem");
    cat(&chain, &[&int, &root]);
    let pw = dir.join("p12-password");
    std::fs::write(&pw, "bundle pass\n").unwrap();

    // A stopped server stays stopped; its next start serves the new files.
    for (name, legacy) in [("modern.p12", false), ("legacy.p12", true)] {
        let p12 = dir.join(name);
        let mut args = vec![
            "pkcs12", "-export", "-inkey", key.to_str().unwrap(), "-in", leaf.to_str().unwrap(), "-certfile", chain.to_str().unwrap(),
            "-passout", "pass:bundle pass", "-out", p12.to_str().unwrap(),
        ];
        if legacy {
            // What keytool and OpenSSL 1.x write: 3DES keys, RC2 certificates.
            args.extend(["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"]);
        }
        openssl(&args).expect(0);
        let out = inst.kt(&["cert", "replace", "--pkcs12", p12.to_str().unwrap(), "--pkcs12-password-file", pw.to_str().unwrap()]).expect(0);
        assert!(out.stderr.contains("not running"), "{}", out.stderr);
        inst.kt(&["server", "status"]).expect(1);
        assert_eq!(file_cert(&ssl(&inst, "ssl-cert-keytrustee.pem")), file_cert(&leaf), "{name}");
        openssl(&["pkey", "-in", ssl(&inst, "ssl-cert-keytrustee-pk.pem").to_str().unwrap(), "-noout"]).expect(0);
    }
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    let before = snapshot(&inst.confdir);
    inst.kt(&["cert", "replace", "--pkcs12", dir.join("modern.p12").to_str().unwrap(), "--pkcs12-password-file", wrong.to_str().unwrap()]).expect(2);
    assert_eq!(snapshot(&inst.confdir), before);

    inst.kt(&["server", "start"]).expect(0);
    assert_eq!(served_cert(&inst), file_cert(&leaf));
    assert_eq!(curl_trusting(&inst, &root).0, 200);
    inst.kt(&["server", "stop"]).expect(0);

    // `kt serve` in the foreground, no pid file (systemd's kt-server.service):
    // found and reloaded all the same.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let foreground_log = dir.join("foreground.log");
    let mut child = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_kt"))
            .arg("-c")
            .arg(&inst.confdir)
            .arg("serve")
            .stdout(std::fs::File::create(&foreground_log).unwrap())
            .stderr(std::fs::File::create(dir.join("foreground.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "kt serve did not answer");
        assert!(child.0.try_wait().unwrap().is_none(), "kt serve exited: {}", std::fs::read_to_string(dir.join("foreground.err")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    // kt cert check finds the foreground server too, and what it serves.
    let check = inst.kt(&["cert", "check", "--warn-days", "5"]).expect(0);
    assert!(check.stdout.contains("serves it"), "{}", check.stdout);
    assert!(!inst.home.join("kt-server.pid").exists());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let fresh = dir.join("fresh.pem");
    dated_cert(&inst, &fresh, &["localhost", "127.0.0.1"], now - 60, now + 90 * 86_400);
    inst.kt(&["cert", "replace", "--cert", fresh.to_str().unwrap()]).expect(0);
    assert_eq!(served_cert(&inst), file_cert(&fresh));
    inst.kt(&["cert", "rollback"]).expect(0);
    assert_eq!(served_cert(&inst), file_cert(&leaf));
}

#[test]
fn a_self_signed_certificate_rolls_back_to_the_one_kt_init_made() {
    let inst = Instance::serving("cert-self-rollback");
    inst.kt(&["server", "start"]).expect(0);
    let dir = &inst.dir.path;
    let original = file_cert(&ssl(&inst, "ssl-cert-keytrustee.pem"));
    // The new key and certificate sit where only root can read them: kt
    // reads them before it drops to the service account.
    let private = dir.join("root-only");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (key, cert) = (private.join("key.pem"), private.join("cert.pem"));
    openssl(&[
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "60", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap(),
    ])
    .expect(0);
    inst.kt(&["cert", "replace", "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]).expect(0);
    assert_eq!(served_cert(&inst), file_cert(&cert));
    // A self-signed certificate is its own CA file, as kt init writes it.
    assert_eq!(file_cert(&ssl(&inst, "ssl-cert-keytrustee-ca.pem")), file_cert(&cert));
    inst.kt(&["cert", "rollback"]).expect(0);
    assert_eq!(served_cert(&inst), original);
    inst.kt(&["cert", "rollback"]).expect(0);
    assert_eq!(served_cert(&inst), file_cert(&cert));
}

#[test]
fn what_the_service_account_can_write_never_runs_as_root() {
    if !is_root() {
        panic!("this test needs root: it checks what root refuses to do for the service account");
    }
    let inst = Instance::new("cert-service-root");
    let dir = &inst.dir.path;
    let marks = dir.join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::fs::set_permissions(&marks, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // An encrypted key whose script records who ran it.
    let encrypted = ssl(&inst, "encrypted.pem");
    openssl(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:pw", "-in", ssl(&inst, "ssl-cert-keytrustee-pk.pem").to_str().unwrap(), "-out", encrypted.to_str().unwrap()]).expect(0);
    run(std::process::Command::new("chown").arg("keytrustee:").arg(&encrypted)).expect(0);
    inst.set_config("SSL_PRIVATE_KEY", serde_json::json!(encrypted.to_str().unwrap()));
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!(format!("id -un >> {}/who; echo pw", marks.display())));
    inst.kt(&["cert", "check"]).expect(0);
    // Run by the check of the key, and again by the server's own loader.
    let who = std::fs::read_to_string(marks.join("who")).unwrap();
    assert!(!who.is_empty() && who.lines().all(|l| l == "keytrustee"), "{who}");
    // SERVICE_USER naming root (written by a compromised account) is refused.
    inst.set_config("SERVICE_USER", serde_json::json!("root"));
    for args in [&["cert", "check"][..], &["cert", "replace", "--cert", ssl(&inst, "ssl-cert-keytrustee.pem").to_str().unwrap()], &["verify"]] {
        let out = inst.kt(args);
        assert_ne!(out.code, 0, "{args:?}: {}", out.stderr);
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(said.contains("is root or does not own the confdir"), "{args:?}: {said}");
    }
    assert_eq!(std::fs::read_to_string(marks.join("who")).unwrap(), who, "root ran the script");
}

#[test]
fn a_staging_directory_left_by_a_killed_run_stops_the_next_one() {
    let inst = Instance::new("cert-leftover");
    let staged = inst.confdir.join(".ssl.kt-new");
    std::fs::create_dir(&staged).unwrap();
    let before = snapshot(&inst.confdir);
    let out = inst.kt(&["cert", "replace", "--cert", ssl(&inst, "ssl-cert-keytrustee.pem").to_str().unwrap()]).expect(3);
    assert!(out.stderr.contains("left from an interrupted kt cert run"), "{}", out.stderr);
    assert_eq!(snapshot(&inst.confdir), before);
}

#[test]
fn an_encrypted_key_replaces_files_kept_outside_ssl_on_a_running_server() {
    let inst = Instance::serving("cert-encrypted");
    let dir = &inst.dir.path;
    // The documented override: the certificate files somewhere else.
    let alt = inst.home.join("pki");
    std::fs::create_dir(&alt).unwrap();
    for (name, key) in [("cert.pem", "SSL_CERTIFICATE"), ("key.pem", "SSL_PRIVATE_KEY"), ("ca.pem", "SSL_CA")] {
        let from = match name {
            "cert.pem" => ssl(&inst, "ssl-cert-keytrustee.pem"),
            "key.pem" => ssl(&inst, "ssl-cert-keytrustee-pk.pem"),
            _ => inst.ca(),
        };
        std::fs::copy(&from, alt.join(name)).unwrap();
        inst.set_config(key, serde_json::json!(alt.join(name).to_str().unwrap()));
    }
    if is_root() {
        run(std::process::Command::new("chown").args(["-R", "keytrustee:"]).arg(&alt)).expect(0);
    }
    inst.kt(&["server", "start"]).expect(0);
    let original = served_cert(&inst);
    assert_eq!(original, file_cert(&alt.join("cert.pem")));

    let key = dir.join("new-key.pem");
    let encrypted = dir.join("new-key.enc.pem");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", key.to_str().unwrap()]).expect(0);
    openssl(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:right", "-in", key.to_str().unwrap(), "-out", encrypted.to_str().unwrap()]).expect(0);
    let cert = dir.join("new-cert.pem");
    openssl(&[
        "req", "-x509", "-key", key.to_str().unwrap(), "-days", "90", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-out", cert.to_str().unwrap(),
    ])
    .expect(0);
    // Too few days left: a warning, not a refusal.
    let out = inst
        .kt(&["cert", "replace", "--cert", cert.to_str().unwrap(), "--key", encrypted.to_str().unwrap(), "--key-password-script", "echo right", "--warn-days", "100"])
        .expect(0);
    assert!(out.stderr.contains("warning: the certificate expires in"), "{}", out.stderr);
    assert_eq!(served_cert(&inst), file_cert(&cert));
    let conf = config(&inst);
    assert_eq!(conf["SSL_PRIVATE_KEY_PASSWORD_SCRIPT"], "echo right");
    assert_eq!(conf["SSL_PRIVATE_KEY"], ssl(&inst, "ssl-cert-keytrustee-pk.pem").to_str().unwrap());
    assert!(std::fs::read_to_string(ssl(&inst, "ssl-cert-keytrustee-pk.pem")).unwrap().contains("ENCRYPTED PRIVATE KEY"), "the key stays encrypted at rest");
    openssl(&["pkey", "-in", ssl(&inst, "ssl-cert-keytrustee-pk.pem").to_str().unwrap(), "-passin", "pass:right", "-noout"]).expect(0);
    inst.kt(&["cert", "check"]).expect(0);
    // The files outside .ssl were not touched, and rollback goes back to them.
    assert_eq!(file_cert(&alt.join("cert.pem")), original);
    inst.kt(&["cert", "rollback"]).expect(0);
    assert_eq!(served_cert(&inst), original);
    assert_eq!(config(&inst)["SSL_PRIVATE_KEY_PASSWORD_SCRIPT"], "");
}
