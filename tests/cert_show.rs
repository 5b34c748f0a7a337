//! `kt cert show` and `kt cert check`: what kt shows agrees with openssl,
//! for the instance's files, any file and a live server; every problem
//! `kt cert check` looks for is found, named, and exits 1.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::harness::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What openssl says of the first certificate of a PEM file.
#[derive(Debug, PartialEq)]
struct Facts {
    sha256: String,
    subject: String,
    dns: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
    /// `YYYY-MM-DDTHH:MM:SSZ`
    not_after: String,
}

fn openssl_facts(cert: &Path) -> Facts {
    let out = openssl(&["x509", "-in", s(cert), "-noout", "-fingerprint", "-sha256", "-subject", "-ext", "subjectAltName", "-enddate", "-dateopt", "iso_8601"])
        .expect(0)
        .stdout;
    let field = |prefix: &str| {
        out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{out}")).trim().to_string()
    };
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let sans = out.lines().skip_while(|l| !l.contains("Subject Alternative Name")).nth(1).unwrap_or_default();
    for san in sans.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(name) = san.strip_prefix("DNS:") {
            dns.insert(name.to_string());
        } else if let Some(ip) = san.strip_prefix("IP Address:") {
            ips.insert(ip.parse().unwrap());
        } else {
            panic!("unexpected SAN {san}");
        }
    }
    Facts {
        sha256: field("sha256 Fingerprint="),
        // openssl's default name format puts spaces around '='.
        subject: field("subject=").replace(" = ", "="),
        dns,
        ips,
        not_after: field("notAfter=").replace(' ', "T"),
    }
}

/// The same facts from one certificate of `kt cert show --json`.
fn kt_facts(cert: &serde_json::Value) -> Facts {
    let strings = |key: &str| cert[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>();
    Facts {
        sha256: cert["sha256"].as_str().unwrap().to_string(),
        subject: cert["subject"].as_str().unwrap().to_string(),
        dns: strings("dns_names").into_iter().collect(),
        ips: strings("ip_addresses").iter().map(|ip| ip.parse().unwrap()).collect(),
        not_after: cert["not_after"].as_str().unwrap().to_string(),
    }
}

fn show_json(inst: &Instance, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["cert", "show", "--json"];
    all.extend(args);
    let out = inst.kt(&all).expect(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// A certificate without the field that says where it came from.
fn without_source(cert: &serde_json::Value) -> serde_json::Value {
    let mut cert = cert.clone();
    cert.as_object_mut().unwrap().remove("source");
    cert
}

#[test]
fn show_agrees_with_openssl_for_the_instance_a_file_and_the_server() {
    let inst = Instance::serving("certshow");
    let cert = inst.confdir.join(".ssl/ssl-cert-keytrustee.pem");
    let witness = openssl_facts(&cert);
    assert!(witness.dns.contains("localhost") && witness.ips.contains(&"127.0.0.1".parse().unwrap()), "{witness:?}");

    // The instance's certificate, by default.
    let json = show_json(&inst, &[]);
    assert_eq!(json["source"], s(&cert));
    let certs = json["certificates"].as_array().unwrap();
    assert_eq!(certs[0]["role"], "leaf");
    assert_eq!(kt_facts(&certs[0]), witness);
    assert_eq!(certs[0]["key"], "EC P-256");
    assert_eq!(certs[0]["is_ca"], false);
    assert!((360..=366).contains(&certs[0]["days_left"].as_i64().unwrap()), "{}", certs[0]);
    let text = inst.kt(&["cert", "show"]).expect(0).stdout;
    assert!(text.contains(&format!("SHA-256:     {}\n", witness.sha256)), "{text}");
    let human_date = witness.not_after.replace('T', " ").replace('Z', " UTC");
    assert!(text.contains(&format!("not after:   {human_date} (")), "{text}");
    assert!(text.contains("names:       DNS:localhost, IP:127.0.0.1"), "{text}");

    // The same file named on the command line, in PEM and in DER.
    let file = show_json(&inst, &[s(&cert)]);
    assert_eq!(without_source(&file["certificates"][0]), without_source(&certs[0]));
    let der = inst.dir.join("cert.der");
    openssl(&["x509", "-in", s(&cert), "-outform", "DER", "-out", s(&der)]).expect(0);
    assert_eq!(without_source(&show_json(&inst, &[s(&der)])["certificates"][0]), without_source(&certs[0]));

    // A file carrying its chain: every certificate, leaf first.
    let ca_key = inst.dir.join("ca.key");
    let ca = inst.dir.join("ca.pem");
    openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes", "-days", "30", "-subj", "/CN=Show Test CA/O=kt tests", "-keyout", s(&ca_key), "-out", s(&ca)])
        .expect(0);
    let bundle = inst.dir.join("bundle.pem");
    std::fs::write(&bundle, [std::fs::read(&cert).unwrap(), std::fs::read(&ca).unwrap()].concat()).unwrap();
    let json = show_json(&inst, &[s(&bundle)]);
    let chain = json["certificates"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "{json}");
    assert_eq!((chain[0]["role"].as_str(), chain[1]["role"].as_str()), (Some("leaf"), Some("chain")));
    assert_eq!(kt_facts(&chain[1]), openssl_facts(&ca));
    assert_eq!((chain[1]["is_ca"].as_bool(), chain[1]["key"].as_str()), (Some(true), Some("EC P-384")));

    // Bad files are bad input.
    let garbage = inst.dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64 !\n-----END CERTIFICATE-----\n").unwrap();
    let out = inst.kt(&["cert", "show", s(&garbage)]).expect(2);
    assert!(out.stderr.contains("kt: error:"), "{}", out.stderr);
    inst.kt(&["cert", "show", s(&inst.dir.join("missing.pem"))]).expect(2);

    // A live server shows what the file holds, by address and by host name.
    inst.kt(&["server", "start"]).expect(0);
    for address in [format!("127.0.0.1:{}", inst.server_port), format!("localhost:{}", inst.server_port)] {
        let served = show_json(&inst, &["--server", &address]);
        assert_eq!(without_source(&served["certificates"][0]), without_source(&certs[0]), "{address}");
        assert_eq!(kt_facts(&served["certificates"][0]), witness);
    }
    let text = inst.kt(&["cert", "show", "--server", &format!("127.0.0.1:{}", inst.server_port)]).expect(0).stdout;
    assert!(text.contains(&witness.sha256), "{text}");

    // Nobody listening: exit 3. A malformed address: exit 2.
    let out = inst.kt(&["cert", "show", "--server", &format!("127.0.0.1:{}", free_port())]).expect(3);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    inst.kt(&["cert", "show", "--server", "127.0.0.1:port"]).expect(2);
}

/// An openssl CA, `openssl ca`'s bookkeeping, and the instance's key, to
/// make certificates for the instance as an operator would.
struct Forge {
    dir: PathBuf,
    key: PathBuf,
    csr: PathBuf,
    ca: PathBuf,
    ca_key: PathBuf,
    config: PathBuf,
    serial: std::cell::Cell<u32>,
}

impl Forge {
    fn new(inst: &Instance) -> Forge {
        let dir = inst.dir.join("forge");
        std::fs::create_dir_all(dir.join("issued")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        let config = dir.join("ca.cnf");
        std::fs::write(
            &config,
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\nnew_certs_dir = {0}/issued\nserial = {0}/serial\n\
                 default_md = sha256\npolicy = p\ncopy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n",
                dir.display()
            ),
        )
        .unwrap();
        let ca = dir.join("ca.pem");
        let ca_key = dir.join("ca.key");
        openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650", "-subj", "/CN=Check Test CA", "-keyout", s(&ca_key), "-out", s(&ca)])
            .expect(0);
        let key = inst.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem");
        let forge = Forge { csr: dir.join("localhost.csr"), dir, key, ca, ca_key, config, serial: 1.into() };
        forge.request("localhost", "DNS:localhost,IP:127.0.0.1", &forge.csr);
        forge
    }

    fn request(&self, cn: &str, sans: &str, out: &Path) {
        openssl(&["req", "-new", "-key", s(&self.key), "-subj", &format!("/CN={cn}"), "-addext", &format!("subjectAltName={sans}"), "-out", s(out)])
            .expect(0);
    }

    fn next(&self, name: &str) -> (PathBuf, String) {
        self.serial.set(self.serial.get() + 1);
        (self.dir.join(name), self.serial.get().to_string())
    }

    /// Signed by the CA for `days` days (`openssl x509 -req`).
    fn signed(&self, name: &str, csr: &Path, days: u32) -> PathBuf {
        let (out, serial) = self.next(name);
        let ext = self.dir.join("ext.cnf");
        std::fs::write(&ext, "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
        openssl(&[
            "x509", "-req", "-in", s(csr), "-CA", s(&self.ca), "-CAkey", s(&self.ca_key), "-set_serial", &serial,
            "-days", &days.to_string(), "-copy_extensions", "copy", "-extfile", s(&ext), "-out", s(&out),
        ])
        .expect(0);
        out
    }

    /// Self-signed with the instance's key for fixed dates (`openssl ca
    /// -selfsign -startdate -enddate`: dates in the past or the future).
    fn self_signed_between(&self, name: &str, start: &str, end: &str) -> PathBuf {
        let (out, _) = self.next(name);
        openssl(&[
            "ca", "-batch", "-config", s(&self.config), "-selfsign", "-keyfile", s(&self.key), "-in", s(&self.csr),
            "-startdate", start, "-enddate", end, "-notext", "-out", s(&out),
        ])
        .expect(0);
        out
    }
}

/// Puts a certificate (and the CA file clients are given) where the
/// configuration points, as an operator would, keeping each file's owner.
fn install(inst: &Instance, cert: &Path, ca: &Path) {
    std::fs::write(inst.confdir.join(".ssl/ssl-cert-keytrustee.pem"), std::fs::read(cert).unwrap()).unwrap();
    std::fs::write(inst.ca(), std::fs::read(ca).unwrap()).unwrap();
}

/// The findings `kt cert check` reported as problems.
fn failures(out: &Run) -> Vec<String> {
    out.stdout.lines().filter(|l| l.starts_with("FAIL")).map(str::to_string).collect()
}

/// `kt cert check --warn-days 30` exits 1 and names exactly the finding
/// `name` as a problem, with a detail containing `says`.
#[track_caller]
fn only_problem(inst: &Instance, name: &str, says: &str) -> String {
    let out = inst.kt(&["cert", "check", "--warn-days", "30"]).expect(1);
    let failed = failures(&out);
    assert_eq!(failed.len(), 1, "{}", out.stdout);
    assert!(failed[0].starts_with(&format!("FAIL  {name}: ")) && failed[0].contains(says), "want {name}: {says}\n{}", out.stdout);
    assert!(out.stdout.ends_with("verdict: PROBLEM (1 of 5 checks failed)\n"), "{}", out.stdout);
    failed[0].clone()
}

#[test]
fn check_exit_codes_name_each_problem() {
    let inst = Instance::serving("certcheck");
    let key_file = inst.confdir.join(".ssl/ssl-cert-keytrustee-pk.pem");

    // Fine: the self-signed certificate kt init made.
    let out = inst.kt(&["cert", "check"]).expect(0);
    assert!(out.stdout.contains("ok    host name: names localhost"), "{}", out.stdout);
    assert!(out.stdout.contains("skip  served: the server is not running"), "{}", out.stdout);
    assert!(out.stdout.ends_with("verdict: sound\n"), "{}", out.stdout);

    // Fine: signed by a CA whose certificate is the CA file.
    let forge = Forge::new(&inst);
    let good = forge.signed("good.pem", &forge.csr, 400);
    install(&inst, &good, &forge.ca);
    let out = inst.kt(&["cert", "check", "--warn-days", "30"]).expect(0);
    assert!(out.stdout.contains("ok    chain: verifies to the root CN=Check Test CA"), "{}", out.stdout);
    let json: serde_json::Value = serde_json::from_str(&inst.kt(&["cert", "check", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(json["verdict"], "sound");
    assert_eq!(json["sha256"].as_str().unwrap(), openssl_facts(&good).sha256);
    assert!(json["checks"].as_array().unwrap().iter().all(|c| c["name"].is_string() && c["detail"].is_string()));

    // Expiring: valid for 10 days, under --warn-days 30.
    let expiring = forge.signed("expiring.pem", &forge.csr, 10);
    install(&inst, &expiring, &forge.ca);
    // 10 days minus the seconds since openssl signed it.
    let line = only_problem(&inst, "validity", "under --warn-days 30");
    assert!(line.contains("expires in 9 days") || line.contains("expires in 10 days"), "{line}");
    inst.kt(&["cert", "check", "--warn-days", "5"]).expect(0);

    // Expired, and not valid yet.
    let expired = forge.self_signed_between("expired.pem", "20200101000000Z", "20210101000000Z");
    install(&inst, &expired, &expired);
    only_problem(&inst, "validity", "expired");
    let early = forge.self_signed_between("early.pem", "20400101000000Z", "20410101000000Z");
    install(&inst, &early, &early);
    only_problem(&inst, "validity", "not valid yet");

    // A key that does not belong to the certificate.
    install(&inst, &good, &forge.ca);
    let own_key = std::fs::read(&key_file).unwrap();
    let other_key = inst.dir.join("other-key.pem");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s(&other_key)]).expect(0);
    std::fs::write(&key_file, std::fs::read(&other_key).unwrap()).unwrap();
    only_problem(&inst, "key", "does not belong to the certificate");
    std::fs::write(&key_file, &own_key).unwrap();

    // A certificate for another host.
    let other_csr = forge.dir.join("other.csr");
    forge.request("kts.elsewhere.example", "DNS:kts.elsewhere.example", &other_csr);
    let elsewhere = forge.signed("elsewhere.pem", &other_csr, 400);
    install(&inst, &elsewhere, &forge.ca);
    only_problem(&inst, "host name", "does not name the host localhost (names: kts.elsewhere.example)");

    // The running server serves what is configured...
    install(&inst, &good, &forge.ca);
    inst.kt(&["server", "start"]).expect(0);
    let out = inst.kt(&["cert", "check"]).expect(0);
    assert!(out.stdout.contains(&format!("ok    served: the server at https://127.0.0.1:{} serves it", inst.server_port)), "{}", out.stdout);
    // ...until the files change without a reload.
    let newer = forge.signed("newer.pem", &forge.csr, 400);
    install(&inst, &newer, &forge.ca);
    only_problem(&inst, "served", "serves another certificate");
    let out = inst.kt(&["cert", "check"]).expect(1);
    assert!(out.stdout.contains(&openssl_facts(&good).sha256) && out.stdout.contains(&openssl_facts(&newer).sha256), "{}", out.stdout);
    // kt verify says the same in its certificate line.
    let out = inst.kt(&["verify"]).expect(1);
    let line = out.stdout.lines().find(|l| l.contains(" tls certificate: ")).unwrap();
    assert!(line.starts_with("FAIL") && line.contains("serves another certificate"), "{}", out.stdout);
    inst.kt(&["server", "reload"]).expect(0);
    let mut fixed = false;
    for _ in 0..50 {
        if inst.kt(&["cert", "check"]).code == 0 {
            fixed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(fixed, "still not served after a reload:\n{}", inst.kt(&["cert", "check"]).stdout);

    // An encrypted key, decrypted by the password script as the server
    // decrypts it.
    let encrypted = inst.confdir.join(".ssl/encrypted-pk.pem");
    openssl(&["pkcs8", "-topk8", "-in", s(&key_file), "-out", s(&encrypted), "-passout", "pass:correct horse"]).expect(0);
    inst.set_config("SSL_PRIVATE_KEY", serde_json::json!(s(&encrypted)));
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!("echo correct horse"));
    let out = inst.kt(&["cert", "check"]).expect(0);
    assert!(out.stdout.contains("matches the certificate, decrypted by SSL_PRIVATE_KEY_PASSWORD_SCRIPT"), "{}", out.stdout);
    // The wrong password: a problem, and the password is never printed.
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!("echo wrong-password-123"));
    only_problem(&inst, "key", "cannot decrypt");
    let out = inst.kt(&["cert", "check", "--json"]).expect(1);
    assert!(!out.stdout.contains("wrong-password-123") && !out.stderr.contains("wrong-password-123"), "{}", out.stdout);
    // A script that fails: the key cannot be checked.
    inst.set_config("SSL_PRIVATE_KEY_PASSWORD_SCRIPT", serde_json::json!("exit 4"));
    let out = inst.kt(&["cert", "check"]).expect(3);
    assert!(out.stderr.contains("SSL_PRIVATE_KEY_PASSWORD_SCRIPT failed"), "{}", out.stderr);

    // Cannot check: exit 3.
    let out = run(kt().args(["-c", s(&inst.dir.join("nowhere")), "cert", "check"])).expect(3);
    assert!(out.stderr.contains("kt: error:"), "{}", out.stderr);
    std::fs::remove_file(inst.confdir.join(".ssl/ssl-cert-keytrustee.pem")).unwrap();
    let out = inst.kt(&["cert", "check"]).expect(3);
    assert!(out.stderr.contains("cannot read the certificate"), "{}", out.stderr);
}
