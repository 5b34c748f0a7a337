//! `kt cert generate`: openssl accepts every request and certificate kt
//! makes and reads every key it writes; every refusal exits 2 and writes
//! nothing.

use std::path::Path;

use crate::harness::*;

const HOST: &str = "kts01.example.com";

/// `kt cert generate --hostname kts01.example.com ARGS...`, no instance.
fn generate(args: &[&str]) -> Run {
    run(kt().args(["cert", "generate", "--hostname", HOST]).args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// openssl's verdict on a CSR: the self-signature verifies.
#[track_caller]
fn assert_csr_verifies(csr: &Path) {
    let out = openssl(&["req", "-verify", "-noout", "-in", s(csr)]);
    assert_eq!(out.code, 0, "openssl req -verify {}: {}", csr.display(), out.stderr);
    assert!(out.stderr.contains("verify OK") || out.stderr.contains("self-signature ok"), "{}", out.stderr);
}

/// openssl reads the key kt wrote, and only its owner may.
#[track_caller]
fn assert_private_key_file(key: &Path) {
    let out = openssl(&["pkey", "-in", s(key), "-noout"]);
    assert_eq!(out.code, 0, "openssl pkey {}: {}", key.display(), out.stderr);
    assert_eq!(mode(key), 0o600, "{}", key.display());
}

/// `openssl verify -CAfile CA CERT` succeeds.
#[track_caller]
fn assert_verifies(ca: &Path, cert: &Path) {
    let out = openssl(&["verify", "-CAfile", s(ca), s(cert)]);
    assert_eq!(out.code, 0, "openssl verify -CAfile {} {}: {}{}", ca.display(), cert.display(), out.stdout, out.stderr);
    assert!(out.stdout.contains(": OK"), "{}", out.stdout);
}

fn x509_text(cert: &Path) -> String {
    openssl(&["x509", "-in", s(cert), "-noout", "-text"]).expect(0).stdout
}

/// A CA made by openssl, the documented way.
fn openssl_ca(dir: &TestDir, name: &str, ca_true: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(&format!("{name}.pem"));
    let key = dir.join(&format!("{name}-key.pem"));
    let constraints = if ca_true { "basicConstraints=critical,CA:TRUE" } else { "basicConstraints=critical,CA:FALSE" };
    openssl(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", s(&key), "-out", s(&cert), "-days", "30",
        "-subj", &format!("/C=US/O=Lab/CN={name}"), "-addext", constraints,
    ])
    .expect(0);
    (cert, key)
}

#[test]
fn every_new_key_kind_makes_a_csr_openssl_accepts() {
    let dir = TestDir::new("gen-kinds");
    for kind in ["rsa2048", "rsa3072", "rsa4096", "ec-p256", "ec-p384"] {
        let key = dir.join(&format!("{kind}-key.pem"));
        let csr = dir.join(&format!("{kind}.csr"));
        let out = generate(&["--new-key", kind, "--key-out", s(&key), "--csr", s(&csr), "--san", "10.0.0.7", "--san", "kt.example.com", "--subject", "/C=US/O=Example/OU=Ops"])
            .expect(0);
        assert_eq!(out.stdout.trim(), s(&csr));
        assert_csr_verifies(&csr);
        assert_private_key_file(&key);
        let text = openssl(&["req", "-in", s(&csr), "-noout", "-text"]).expect(0).stdout;
        assert!(text.contains(&format!("Subject: C = US, O = Example, OU = Ops, CN = {HOST}")), "{text}");
        assert!(text.contains(&format!("DNS:{HOST}, IP Address:10.0.0.7, DNS:kt.example.com")), "{text}");
        // The key in the CSR is the key written.
        let csr_pub = openssl(&["req", "-in", s(&csr), "-noout", "-pubkey"]).expect(0).stdout;
        let key_pub = openssl(&["pkey", "-in", s(&key), "-pubout"]).expect(0).stdout;
        assert_eq!(csr_pub, key_pub, "{kind}");
        let bits = openssl(&["pkey", "-in", s(&key), "-noout", "-text"]).expect(0).stdout;
        let want = match kind {
            "rsa2048" => "2048 bit",
            "rsa3072" => "3072 bit",
            "rsa4096" => "4096 bit",
            "ec-p256" => "P-256",
            _ => "P-384",
        };
        assert!(bits.contains(want), "{kind}: {bits}");
    }
}

#[test]
fn encrypted_keys_with_a_password_file_or_script() {
    let dir = TestDir::new("gen-encrypted");
    let key = dir.join("enc-key.pem");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes-256-cbc", "-pass", "pass:s3cret pw", "-out", s(&key)])
        .expect(0);
    assert!(std::fs::read_to_string(&key).unwrap().contains("BEGIN ENCRYPTED PRIVATE KEY"));
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, "s3cret pw\n").unwrap();

    let csr = dir.join("file.csr");
    generate(&["--key", s(&key), "--key-password-file", s(&pwfile), "--csr", s(&csr)]).expect(0);
    assert_csr_verifies(&csr);
    let csr2 = dir.join("script.csr");
    let script = format!("cat {}", s(&pwfile));
    generate(&["--key", s(&key), "--key-password-script", &script, "--csr", s(&csr2)]).expect(0);
    assert_csr_verifies(&csr2);
    let key_pub = openssl(&["pkey", "-in", s(&key), "-passin", "pass:s3cret pw", "-pubout"]).expect(0).stdout;
    assert_eq!(openssl(&["req", "-in", s(&csr2), "-noout", "-pubkey"]).expect(0).stdout, key_pub);

    // Wrong or missing password: exit 2, nothing written.
    let before = snapshot(&dir.path);
    let out = generate(&["--key", s(&key), "--key-password-script", "printf wrong", "--csr", s(&dir.join("x.csr"))]).expect(2);
    assert!(out.stderr.contains("cannot decrypt"), "{}", out.stderr);
    assert!(!out.stderr.contains("s3cret") && !out.stderr.contains("wrong\n"), "{}", out.stderr);
    let out = generate(&["--key", s(&key), "--csr", s(&dir.join("x.csr"))]).expect(2);
    assert!(out.stderr.contains("is encrypted"), "{}", out.stderr);
    assert_eq!(snapshot(&dir.path), before);
}

#[test]
fn instance_key_and_host_name_by_default() {
    let inst = Instance::new("gen-instance");
    let csr = inst.dir.join("instance.csr");
    inst.kt(&["cert", "generate", "--csr", s(&csr), "--subject", "O=Example, OU=Key Trustee"]).expect(0);
    assert_csr_verifies(&csr);
    let text = openssl(&["req", "-in", s(&csr), "-noout", "-text"]).expect(0).stdout;
    assert!(text.contains("Subject: O = Example, OU = Key Trustee, CN = localhost"), "{text}");
    assert!(text.contains("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"), "{text}");
    let key_pub = openssl(&["pkey", "-in", s(&inst.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem")), "-pubout"]).expect(0).stdout;
    assert_eq!(openssl(&["req", "-in", s(&csr), "-noout", "-pubkey"]).expect(0).stdout, key_pub);

    // The instance's key encrypted, its password from the instance's
    // SSL_PRIVATE_KEY_PASSWORD_SCRIPT.
    let enc = inst.dir.join("enc-pk.pem");
    openssl(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:pw1", "-in", s(&inst.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem")), "-out", s(&enc)])
        .expect(0);
    inst.set_config("SSL_PRIVATE_KEY", serde_json::json!(s(&enc)));
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!("echo pw1"));
    let csr2 = inst.dir.join("instance2.csr");
    inst.kt(&["cert", "generate", "--csr", s(&csr2)]).expect(0);
    assert_csr_verifies(&csr2);
    assert_eq!(openssl(&["req", "-in", s(&csr2), "-noout", "-pubkey"]).expect(0).stdout, key_pub);

    // kt init's own certificate comes from the same code.
    let cert = inst.confdir.join(".ssl/ssl-cert-keytrustee.pem");
    assert_verifies(&cert, &cert);
    let text = x509_text(&cert);
    assert!(text.contains("TLS Web Server Authentication") && text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("Subject: O = Key Trustee Server, CN = localhost"), "{text}");
}

#[test]
fn an_openssl_ca_signs_kts_csr() {
    let dir = TestDir::new("gen-openssl-ca");
    let (ca, ca_key) = openssl_ca(&dir, "Lab CA", true);
    let key = dir.join("key.pem");
    let csr = dir.join("req.csr");
    generate(&["--new-key", "ec-p256", "--key-out", s(&key), "--csr", s(&csr)]).expect(0);
    let cert = dir.join("signed.pem");
    openssl(&["x509", "-req", "-in", s(&csr), "-CA", s(&ca), "-CAkey", s(&ca_key), "-CAcreateserial", "-days", "10", "-copy_extensions", "copy", "-out", s(&cert)])
        .expect(0);
    assert_verifies(&ca, &cert);
    let text = x509_text(&cert);
    assert!(text.contains(&format!("DNS:{HOST}")), "{text}");
}

#[test]
fn kt_signs_with_a_local_ca_and_self_signs() {
    let dir = TestDir::new("gen-kt-ca");
    let (ca, ca_key) = openssl_ca(&dir, "Lab CA", true);
    for kind in ["rsa2048", "ec-p384"] {
        let key = dir.join(&format!("{kind}-key.pem"));
        let cert = dir.join(&format!("{kind}.pem"));
        let out = generate(&["--new-key", kind, "--key-out", s(&key), "--ca-cert", s(&ca), "--ca-key", s(&ca_key), "--days", "20", "--out", s(&cert), "--san", "192.0.2.1"])
            .expect(0);
        assert!(out.stderr.contains("SHA-256: "), "{}", out.stderr);
        assert_verifies(&ca, &cert);
        assert_private_key_file(&key);
        assert_eq!(mode(&cert), 0o644);
        let text = x509_text(&cert);
        for want in ["Issuer: C = US, O = Lab, CN = Lab CA", "Authority Key Identifier", "TLS Web Server Authentication", "CA:FALSE", "IP Address:192.0.2.1"] {
            assert!(text.contains(want), "{kind}: no {want:?} in {text}");
        }
        assert_eq!(text.contains("Key Encipherment"), kind.starts_with("rsa"), "{text}");
        // The fingerprint kt printed is openssl's.
        let fp = openssl(&["x509", "-in", s(&cert), "-noout", "-fingerprint", "-sha256"]).expect(0).stdout;
        let fp = fp.trim().rsplit('=').next().unwrap().to_string();
        assert!(out.stderr.contains(&fp), "{fp} not in {}", out.stderr);
    }

    // Self-signed, with an existing key.
    let cert = dir.join("self.pem");
    generate(&["--key", s(&dir.join("ec-p384-key.pem")), "--self-signed", "--days", "5", "--out", s(&cert)]).expect(0);
    assert_verifies(&cert, &cert);
    let end = openssl(&["x509", "-in", s(&cert), "-noout", "-checkend", &(6 * 86_400).to_string()]);
    assert_eq!(end.code, 1, "valid for 5 days, not 6: {}", end.stdout);
    openssl(&["x509", "-in", s(&cert), "-noout", "-checkend", &(4 * 86_400).to_string()]).expect(0);
    let serial = |p: &Path| openssl(&["x509", "-in", s(p), "-noout", "-serial"]).expect(0).stdout;
    let cert2 = dir.join("self2.pem");
    generate(&["--key", s(&dir.join("ec-p384-key.pem")), "--self-signed", "--out", s(&cert2)]).expect(0);
    assert_ne!(serial(&cert), serial(&cert2), "serial numbers are random");
}

#[test]
fn refusals_exit_2_and_write_nothing() {
    let dir = TestDir::new("gen-refusals");
    let (ca, ca_key) = openssl_ca(&dir, "Lab CA", true);
    let (not_ca, not_ca_key) = openssl_ca(&dir, "Not A CA", false);
    let key = dir.join("key.pem");
    generate(&["--new-key", "ec-p256", "--key-out", s(&key), "--self-signed", "--out", s(&dir.join("existing.pem"))]).expect(0);
    let existing = s(&dir.join("existing.pem")).to_string();
    let new_key = s(&dir.join("new-key.pem")).to_string();
    let new_out = s(&dir.join("new.pem")).to_string();
    let new_csr = s(&dir.join("new.csr")).to_string();
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, "pw\n").unwrap();
    let enc = dir.join("enc.pem");
    openssl(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:right", "-in", s(&key), "-out", s(&enc)]).expect(0);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--key", s(&key), "--self-signed", "--out", &existing], "exists"),
        (vec!["--new-key", "ec-p256", "--key-out", &existing, "--csr", &new_csr], "exists"),
        (vec!["--new-key", "ec-p256", "--key-out", &new_key, "--csr", &existing], "exists"),
        (vec!["--new-key", "ec-p256", "--key-out", &new_key, "--csr", &new_key], "the same file"),
        (vec!["--key", s(&key), "--csr", "/nonexistent-dir/x.csr"], "does not exist"),
        (vec!["--key", s(&key), "--csr", &new_csr, "--san", "not_a_name"], "invalid --san"),
        (vec!["--key", s(&key), "--csr", &new_csr, "--san", "300.1.2.3.4"], "invalid --san"),
        (vec!["--key", s(&key), "--csr", &new_csr, "--subject", "/C=US/Org=Example"], "unknown field name"),
        (vec!["--key", s(&key), "--csr", &new_csr, "--subject", "/CN=other.example.com"], "CN=other.example.com"),
        (vec!["--key", s(&enc), "--key-password-file", s(&pwfile), "--csr", &new_csr], "cannot decrypt"),
        (vec!["--new-key", "ec-p256", "--key-out", &new_key, "--ca-cert", s(&ca), "--ca-key", s(&not_ca_key), "--out", &new_out], "does not match"),
        (vec!["--new-key", "ec-p256", "--key-out", &new_key, "--ca-cert", s(&not_ca), "--ca-key", s(&not_ca_key), "--out", &new_out], "not a CA certificate"),
        (vec!["--key", s(&key), "--ca-cert", s(&ca), "--ca-key", s(&ca_key), "--days", "31", "--out", &new_out], "outlive its CA"),
        (vec!["--key", s(&key)], "nothing to generate"),
        (vec!["--key", s(&key), "--csr", &new_csr, "--out", &new_out], "--out is for a certificate"),
        (vec!["--new-key", "ec-p256", "--key-out", &new_key, "--key-password-file", s(&pwfile), "--csr", &new_csr], "for an existing key"),
    ];
    for (args, why) in cases {
        let before = snapshot(&dir.path);
        let out = generate(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(why), "{args:?}: no {why:?} in {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert_eq!(snapshot(&dir.path), before, "{args:?} changed files");
    }
}

#[test]
fn a_failed_second_write_removes_the_new_key() {
    let dir = TestDir::new("gen-undo");
    let key = dir.join("key.pem");
    // /proc exists but takes no new files, even from root: the CSR write
    // fails after the key was written.
    let out = generate(&["--new-key", "ec-p256", "--key-out", s(&key), "--csr", "/proc/kt-test.csr"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("undone: wrote the new key"), "{}", out.stderr);
    assert!(!key.exists(), "the new key is left behind");
    assert!(snapshot(&dir.path).is_empty(), "{:?}", snapshot(&dir.path));
}
