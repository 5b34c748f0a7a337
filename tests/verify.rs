//! `kt verify`: a healthy instance passes quickly; each check fails with its
//! own message and the right exit code.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use crate::backup::{backup, keyring};
use crate::harness::*;

/// Replaces files in the confdir as an operator would, keeping them owned
/// by the account the server runs as.
fn replace_files(inst: &Instance, files: &[(&str, &[u8])]) {
    let meta = std::fs::metadata(&inst.confdir).unwrap();
    for (name, bytes) in files {
        let path = inst.confdir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).unwrap();
    }
}

fn failed_check(out: &Run, name: &str) -> String {
    let line = out.stdout.lines().find(|l| l.starts_with("FAIL") && l.contains(&format!(" {name}: "))).unwrap_or_else(|| panic!("no failed {name} check:\n{}", out.stdout));
    line.to_string()
}

fn healthy() -> Instance {
    let inst = Instance::serving("verify");
    inst.kt(&["server", "start"]).expect(0);
    inst
}

#[test]
fn a_healthy_instance_passes_quickly() {
    let inst = healthy();
    let started = std::time::Instant::now();
    let out = inst.kt(&["verify"]).expect(0);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "verify took {took:?}");
    assert!(out.stdout.ends_with("verdict: sound\n"), "{}", out.stdout);
    for name in ["config", "permissions", "server key", "tls certificate", "database", "server"] {
        assert!(out.stdout.lines().any(|l| l.starts_with("ok") && l.contains(&format!(" {name}: "))), "{name}:\n{}", out.stdout);
    }
    let json: serde_json::Value = serde_json::from_str(&inst.kt(&["verify", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(json["verdict"], "sound");
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), out.stdout.lines().count() - 1, "one JSON entry per check");
    assert!(checks.iter().all(|c| c["name"].is_string() && c["status"].is_string() && c["detail"].is_string()));
}

#[test]
fn each_check_fails_on_its_own() {
    let inst = healthy();
    // Wrong mode.
    let secring = inst.confdir.join("secring.gpg");
    std::fs::set_permissions(&secring, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = inst.kt(&["verify"]).expect(1);
    assert!(failed_check(&out, "permissions").contains("secring.gpg is 644"), "{}", out.stdout);
    std::fs::set_permissions(&secring, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    inst.kt(&["verify"]).expect(0);

    // A certificate that expires within --warn-days.
    let out = inst.kt(&["verify", "--warn-days", "400"]).expect(1);
    assert!(failed_check(&out, "tls certificate").contains("expires in"), "{}", out.stdout);

    // Database down.
    inst.kt(&["db", "stop"]).expect(0);
    let out = inst.kt(&["verify", "--json"]).expect(1);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["verdict"], "problem");
    let db = json["checks"].as_array().unwrap().iter().find(|c| c["name"] == "database").unwrap();
    assert_eq!(db["status"], "fail");
    assert!(db["detail"].as_str().unwrap().contains("cannot connect"), "{db}");
    inst.kt(&["db", "start"]).expect(0);

    // Server down.
    inst.kt(&["server", "stop"]).expect(0);
    let out = inst.kt(&["verify"]).expect(1);
    assert!(failed_check(&out, "server").contains("no answer"), "{}", out.stdout);

    // A server that serves another key than the confdir holds.
    inst.kt(&["server", "start"]).expect(0);
    let other = kt::pgp::generate_server_key(kt::pgp::KeySpec::Ed25519, "localhost").unwrap();
    replace_files(&inst, &[("pubring.gpg", &other.public), ("secring.gpg", &other.secret)]);
    let out = inst.kt(&["verify"]).expect(1);
    assert!(failed_check(&out, "server").contains("the confdir holds"), "{}", out.stdout);
}

#[test]
fn an_expired_certificate_fails() {
    let inst = healthy();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    replace_files(
        &inst,
        &[
            (".ssl/ssl-cert-keytrustee.pem", cert_pem.as_bytes()),
            (".ssl/ssl-cert-keytrustee-pk.pem", key_pem.as_bytes()),
            (".ssl/ssl-cert-keytrustee-ca.pem", cert_pem.as_bytes()),
        ],
    );
    let out = inst.kt(&["verify"]).expect(1);
    assert!(failed_check(&out, "tls certificate").contains("expired"), "{}", out.stdout);
}

#[test]
fn stale_and_missing_backups_fail() {
    let inst = healthy();
    let dir = TestDir::new("backups");
    let d = dir.path.to_str().unwrap();
    let out = inst.kt(&["verify", "--backup-dir", d, "--max-age", "1h"]).expect(1);
    assert!(failed_check(&out, "backup age").contains("no backup"), "{}", out.stdout);
    let made = backup(&inst, &["--output", d, "--cleartext", "-q"]).expect(0);
    inst.kt(&["verify", "--backup-dir", d, "--max-age", "1h"]).expect(0);
    run(Command::new("touch").args(["-d", "3 days ago"]).arg(made.stdout.trim())).expect(0);
    let out = inst.kt(&["verify", "--backup-dir", d, "--max-age", "2d"]).expect(1);
    assert!(failed_check(&out, "backup age").contains("old"), "{}", out.stdout);
    std::fs::set_permissions(made.stdout.trim(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = inst.kt(&["verify", "--backup-dir", d]).expect(1);
    assert!(failed_check(&out, "backup modes").contains("readable by others"), "{}", out.stdout);
}

#[test]
fn remote_checks() {
    let inst = healthy();
    let fpr = inst.kt(&["fingerprint"]).expect(0).stdout.trim().to_string();
    let url = format!("https://localhost:{}", inst.server_port);
    let ca = inst.ca();
    let out = inst.kt(&["verify", "--server", &url, "--ca", ca.to_str().unwrap(), "--expect-fingerprint", &fpr]).expect(0);
    assert_eq!(out.stdout.lines().next().unwrap(), fpr, "the fingerprint exactly as served comes first");
    let out = inst.kt(&["verify", "--server", &url, "--ca", ca.to_str().unwrap(), "--expect-fingerprint", "4096R/0000000000000000000000000000000000000000"]).expect(1);
    assert!(out.stdout.contains("FAIL") && out.stdout.contains("expected"), "{}", out.stdout);
    // A CA that did not issue the certificate: the chain check fails.
    let other = TestDir::new("ca");
    let other_ca = other.join("ca.pem");
    std::fs::write(&other_ca, kt::cert::self_signed("localhost", &[], 10).unwrap().cert_pem).unwrap();
    inst.kt(&["verify", "--server", &url, "--ca", other_ca.to_str().unwrap()]).expect(1);
    inst.kt(&["verify", "--server", &url, "--insecure"]).expect(0);
    inst.kt(&["verify", "--server", &url]).expect(2);
    // A malformed URL is bad input (2), not a finding about a server (1),
    // even beside a good one; nothing is asked.
    for bad in ["http://localhost", "https://localhost:port", "localhost:11371", "https://"] {
        let out = inst.kt(&["verify", "--server", &url, "--server", bad, "--insecure"]).expect(2);
        assert!(out.stderr.contains("invalid server URL"), "{bad}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{bad}: {}", out.stdout);
    }
    // A --ca file that is not a certificate is bad input too; one that is
    // not there is the environment.
    let not_pem = other.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    inst.kt(&["verify", "--server", &url, "--ca", not_pem.to_str().unwrap()]).expect(2);
    inst.kt(&["verify", "--server", &url, "--ca", other.join("absent.pem").to_str().unwrap()]).expect(3);
}

#[test]
fn backup_files_are_checked_whole() {
    let k = keyring();
    let inst = healthy();
    inst.psql("keytrustee", "INSERT INTO organizations (name) VALUES ('acme')").expect(0);
    let dir = TestDir::new("vb");
    let made = backup(&inst, &["--output", dir.path.to_str().unwrap(), "--gpg-recipient", "John Doe", "-q"]).expect(0);
    let file = PathBuf::from(made.stdout.trim());
    let f = file.to_str().unwrap();
    let verify = |args: &[&str]| run(kt().env("GNUPGHOME", &k.home).arg("-c").arg(&inst.confdir).args(["verify", "backup"]).args(args));
    // Without a key: structure and recipients.
    let out = verify(&[f]).expect(0);
    assert!(out.stdout.contains("whole to its last byte"), "{}", out.stdout);
    // With the keyring: contents, checksums, rows; and a restore test.
    let out = verify(&[f, "--decrypt", "--restore-test"]).expect(0);
    for name in ["decryption", "tar", "checksums", "row counts", "restore test"] {
        assert!(out.stdout.lines().any(|l| l.starts_with("ok") && l.contains(&format!(" {name}: "))), "{name}:\n{}", out.stdout);
    }
    let scratch = inst.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'kt_verify_%'").expect(0);
    assert_eq!(scratch.stdout.trim(), "0", "the scratch database must be dropped");
    // With an exported secret key file instead of the keyring.
    let key_file = dir.join("john.sec");
    let export = Command::new("gpg").arg("--homedir").arg(&k.home).args(["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", &k.john]).output().unwrap();
    let _ = Command::new("gpgconf").arg("--homedir").arg(&k.home).args(["--kill", "all"]).status();
    std::fs::write(&key_file, &export.stdout).unwrap();
    run(kt().env("GNUPGHOME", "/nonexistent").args(["verify", "backup", f, "--secret-key", key_file.to_str().unwrap()])).expect(0);

    // Truncated: caught without a key.
    let bytes = std::fs::read(&file).unwrap();
    let truncated = dir.join("truncated.tar.gpg");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let out = verify(&[truncated.to_str().unwrap()]).expect(1);
    assert!(failed_check(&out, "message").contains("truncated"), "{}", out.stdout);
    // Bit-flipped in the encrypted data: caught by decryption.
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x10;
    let flipped_file = dir.join("flipped.tar.gpg");
    std::fs::write(&flipped_file, &flipped).unwrap();
    let out = verify(&[flipped_file.to_str().unwrap(), "--decrypt"]).expect(1);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
    let _ = Command::new("gpgconf").arg("--homedir").arg(&k.home).args(["--kill", "all"]).status();
}
