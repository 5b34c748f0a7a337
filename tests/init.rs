//! `kt init`: a complete instance, checked by openssl, gpg and psql; and
//! every refusal leaves the machine as it was.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::harness::*;

#[test]
fn creates_a_complete_instance() {
    let inst = Instance::new("complete");
    let confdir = &inst.confdir;
    let fingerprint = inst.init.stdout.trim().to_string();
    assert!(fingerprint.starts_with("255E/"), "{fingerprint}");

    // Modes: private directories and files.
    assert_eq!(mode(confdir), 0o700);
    assert_eq!(mode(&confdir.join(".ssl")), 0o700);
    assert_eq!(mode(&inst.pg_rootdir()), 0o700);
    for file in [
        "keytrustee.conf",
        "secring.gpg",
        "pubring.gpg",
        ".pgpass",
        ".ssl/ssl-cert-keytrustee.pem",
        ".ssl/ssl-cert-keytrustee-pk.pem",
        ".ssl/ssl-cert-keytrustee-ca.pem",
    ] {
        assert_eq!(mode(&confdir.join(file)), 0o600, "{file}");
    }
    // Owned by the service account (root) or the current user.
    let owner = std::fs::metadata(confdir).unwrap().uid();
    if is_root() {
        assert_ne!(owner, 0, "the confdir must belong to the service account");
        let keytrustee = run(std::process::Command::new("id").args(["-u", "keytrustee"])).expect(0);
        assert_eq!(keytrustee.stdout.trim(), owner.to_string());
    } else {
        assert_eq!(owner, unsafe { libc::geteuid() });
    }

    // The configuration names everything with the documented keys.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(confdir.join("keytrustee.conf")).unwrap()).unwrap();
    assert_eq!(config["HOSTNAME"], "localhost");
    assert_eq!(config["LISTEN"], "0.0.0.0:11371");
    assert_eq!(config["DB_PORT"], inst.db_port);
    assert_eq!(config["PG_ROOTDIR"], inst.pg_rootdir().display().to_string());
    assert_eq!(config["SSL_CERTIFICATE"], confdir.join(".ssl/ssl-cert-keytrustee.pem").display().to_string());
    assert_eq!(config["SSL_PRIVATE_KEY"], confdir.join(".ssl/ssl-cert-keytrustee-pk.pem").display().to_string());
    assert_eq!(config["SSL_CA"], confdir.join(".ssl/ssl-cert-keytrustee-ca.pem").display().to_string());
    assert_eq!(config["TLS_MIN_VERSION"], "tlsv1.2");
    assert!(config["CIPHERS"].as_str().unwrap().contains("TLS_AES_256_GCM_SHA384"));

    // GnuPG reads the key pair kt wrote, with the fingerprint kt reports.
    let gpg = GnupgHome::new();
    let listing = gpg.gpg(&["--with-colons", "--show-keys", confdir.join("pubring.gpg").to_str().unwrap()]).expect(0);
    let fpr = listing.stdout.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap();
    assert_eq!(format!("255E/{fpr}"), fingerprint);
    assert!(listing.stdout.contains("Key Trustee Server <keytrustee@localhost>"), "{}", listing.stdout);
    assert!(listing.stdout.lines().any(|l| l.starts_with("sub:") && l.split(':').nth(11) == Some("e")));
    let secret = gpg.gpg(&["--with-colons", "--show-keys", confdir.join("secring.gpg").to_str().unwrap()]).expect(0);
    assert!(secret.stdout.starts_with("sec:"), "{}", secret.stdout);
    assert_eq!(inst.kt(&["fingerprint"]).expect(0).stdout.trim(), fingerprint);

    // openssl reads the certificate, with the host name in its SANs, and
    // the private key belongs to it.
    let cert = confdir.join(".ssl/ssl-cert-keytrustee.pem");
    let text = openssl(&["x509", "-noout", "-text", "-in", cert.to_str().unwrap()]).expect(0);
    assert!(text.stdout.contains("DNS:localhost"), "{}", text.stdout);
    assert!(text.stdout.contains("CN = localhost"), "{}", text.stdout);
    let cert_pub = openssl(&["x509", "-noout", "-pubkey", "-in", cert.to_str().unwrap()]).expect(0);
    let key = confdir.join(".ssl/ssl-cert-keytrustee-pk.pem");
    let key_pub = openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()]).expect(0);
    assert_eq!(cert_pub.stdout, key_pub.stdout);
    openssl(&["x509", "-noout", "-checkend", "86400", "-in", cert.to_str().unwrap()]).expect(0);

    // init leaves the database stopped; started, psql sees the schema.
    inst.kt(&["db", "status"]).expect(1);
    inst.kt(&["db", "start"]).expect(0);
    let tables = inst.psql("keytrustee", "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'").expect(0);
    assert_eq!(tables.stdout.trim(), "clients,contact_keys,contact_tokens,deposits,mail_outbox,organizations,replay_nonces,schema_version,write_requests");
    assert_eq!(
        inst.psql("keytrustee", "SELECT max(version) FROM schema_version").expect(0).stdout.trim(),
        kt::storage::schema::latest_version().to_string()
    );
    assert_eq!(inst.psql("keytrustee", "SHOW server_encoding").expect(0).stdout.trim(), "UTF8");
    assert_eq!(inst.psql("keytrustee", "SHOW listen_addresses").expect(0).stdout.trim(), "127.0.0.1");
    // The schema enforces what it promises.
    inst.psql("keytrustee", "INSERT INTO clients (fingerprint, organization, public_key) VALUES ('nothex', gen_random_uuid(), '')").expect(1);
}

#[test]
fn the_default_key_is_rsa_4096_with_an_encryption_subkey() {
    let inst = Instance::with_args("rsa", &[]);
    let fingerprint = inst.init.stdout.trim();
    assert!(fingerprint.starts_with("4096R/"), "{fingerprint}");
    let gpg = GnupgHome::new();
    let listing = gpg.gpg(&["--with-colons", "--show-keys", inst.confdir.join("pubring.gpg").to_str().unwrap()]).expect(0);
    let pubs: Vec<&str> = listing.stdout.lines().filter(|l| l.starts_with("pub:") || l.starts_with("sub:")).collect();
    assert_eq!(pubs.len(), 2, "{}", listing.stdout);
    for line in &pubs {
        let fields: Vec<&str> = line.split(':').collect();
        assert_eq!(fields[2], "4096", "{line}");
        assert_eq!(fields[3], "1", "RSA: {line}");
    }
    let fpr = listing.stdout.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap();
    assert_eq!(fingerprint, format!("4096R/{fpr}"));
}

#[test]
fn a_second_init_refuses_and_changes_nothing() {
    let inst = Instance::new("twice");
    let before = snapshot(&inst.home);
    let out = run(kt()
        .arg("init")
        .arg("-c")
        .arg(&inst.confdir)
        .args(["--hostname", "localhost", "--key-type", "ed25519", "--database-port", &free_port().to_string()]))
    .expect(2);
    assert!(out.stderr.contains("an instance already exists"), "{}", out.stderr);
    assert!(out.stderr.contains("hint: "), "{}", out.stderr);
    assert_eq!(snapshot(&inst.home), before);

    // Also with only the database directory left over.
    let other = inst.dir.join("other/.keytrustee");
    let out = run(kt()
        .arg("init")
        .arg("-c")
        .arg(&other)
        .arg("--pg-rootdir")
        .arg(inst.pg_rootdir())
        .args(["--hostname", "localhost", "--key-type", "ed25519", "--database-port", &free_port().to_string()]))
    .expect(2);
    assert!(out.stderr.contains("already exists and is not empty"), "{}", out.stderr);
    assert!(!inst.dir.join("other").exists());
    assert_eq!(snapshot(&inst.home), before);
}

/// Runs `kt init` expected to fail and checks that nothing is left behind.
fn init_fails(dir: &TestDir, args: &[&str], code: i32) -> Run {
    let before = snapshot(&dir.path);
    let out = run(kt().arg("init").args(args)).expect(code);
    assert!(out.stderr.starts_with("kt: error: "), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(snapshot(&dir.path), before, "init left files behind");
    out
}

#[test]
fn a_bad_hostname_is_a_usage_error() {
    let dir = TestDir::new("badhost");
    let confdir = dir.join("home/.keytrustee");
    for bad in ["bad host", "-leading.example.com", "under_score", "a..b"] {
        let bad = &format!("--hostname={bad}");
        let out = init_fails(&dir, &["-c", confdir.to_str().unwrap(), bad, "--key-type", "ed25519"], 2);
        assert!(out.stderr.contains("invalid hostname"), "{}", out.stderr);
    }
    let out = init_fails(&dir, &["-c", confdir.to_str().unwrap(), "--hostname", "localhost", "--listen", "nowhere"], 2);
    assert!(out.stderr.contains("invalid listen address"), "{}", out.stderr);
}

#[test]
fn a_taken_port_is_refused_before_anything_is_created() {
    let dir = TestDir::new("port");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let confdir = dir.join("home/.keytrustee");
    let out = init_fails(
        &dir,
        &["-c", confdir.to_str().unwrap(), "--hostname", "localhost", "--key-type", "ed25519", "--database-port", &port],
        3,
    );
    assert!(out.stderr.contains(&format!("port {port} on 127.0.0.1 is not available")), "{}", out.stderr);
}

#[test]
fn an_unwritable_path_is_refused_before_anything_is_created() {
    let dir = TestDir::new("unwritable");
    std::fs::write(dir.join("a-file"), "not a directory").unwrap();
    let confdir = dir.join("a-file/home/.keytrustee");
    let out = init_fails(
        &dir,
        &["-c", confdir.to_str().unwrap(), "--hostname", "localhost", "--key-type", "ed25519", "--database-port", &free_port().to_string()],
        3,
    );
    assert!(out.stderr.contains("cannot create"), "{}", out.stderr);
    // A read-only directory: mode 0555 stops an ordinary user; root writes
    // anywhere except on a read-only file system, so it gets one.
    let ro = dir.join("read-only");
    std::fs::create_dir(&ro).unwrap();
    struct Unmount(Option<std::path::PathBuf>);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if let Some(path) = &self.0 {
                let _ = std::process::Command::new("umount").arg(path).status();
            }
        }
    }
    let _unmount = if is_root() {
        run(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "ro,size=64k,mode=0755", "tmpfs"]).arg(&ro)).expect(0);
        Unmount(Some(ro.clone()))
    } else {
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        Unmount(None)
    };
    let confdir = ro.join("home/.keytrustee");
    let out = init_fails(&dir, &["-c", confdir.to_str().unwrap(), "--hostname", "localhost", "--key-type", "ed25519"], 3);
    assert!(out.stderr.contains("cannot create"), "{}", out.stderr);
}

/// A PostgreSQL bin directory whose initdb fails after kt has created the
/// confdir, keys and certificate: the run must remove exactly those.
#[test]
fn a_failure_half_way_removes_only_what_the_run_created() {
    let dir = TestDir::new("halfway");
    let bindir = dir.join("pgbin");
    std::fs::create_dir(&bindir).unwrap();
    let real = real_pg_bindir();
    for tool in ["pg_ctl", "postgres"] {
        std::os::unix::fs::symlink(real.join(tool), bindir.join(tool)).unwrap();
    }
    std::fs::write(bindir.join("initdb"), "#!/bin/sh\necho 'initdb: simulated disk failure' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(bindir.join("initdb"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // The home exists already with an operator's file in it: kt must keep it.
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(home.join("operator-notes.txt"), "keep me").unwrap();
    let before = snapshot(&dir.path);
    let out = run(kt()
        .env("KT_PG_BINDIR", &bindir)
        .arg("init")
        .arg("-c")
        .arg(home.join(".keytrustee"))
        .args(["--hostname", "localhost", "--key-type", "ed25519", "--database-port", &free_port().to_string()]))
    .expect(3);
    assert!(out.stderr.contains("initdb failed"), "{}", out.stderr);
    assert!(out.stderr.contains("simulated disk failure"), "{}", out.stderr);
    assert_eq!(snapshot(&dir.path), before);
    assert_eq!(std::fs::read_to_string(home.join("operator-notes.txt")).unwrap(), "keep me");
}

/// Where the real PostgreSQL server programs are, as kt finds them.
fn real_pg_bindir() -> std::path::PathBuf {
    let out = run(std::process::Command::new("pg_config").arg("--bindir"));
    let dir = std::path::PathBuf::from(out.stdout.trim());
    if dir.join("initdb").exists() {
        return dir;
    }
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql").unwrap().flatten().map(|e| e.path().join("bin")).collect();
    versions.sort();
    versions.pop().filter(|d| Path::new(d).join("initdb").exists()).expect("PostgreSQL server programs")
}

#[test]
fn an_instance_can_live_under_any_directory_with_relative_paths() {
    let dir = TestDir::new("relative");
    let port = free_port().to_string();
    let out = run(kt()
        .current_dir(&dir.path)
        .args(["init", "--confdir", "demo/.keytrustee", "--hostname", "localhost", "--key-type", "ed25519", "--database-port", &port]))
    .expect(0);
    assert!(out.stdout.starts_with("255E/"));
    let _stop = StopDbOnDrop(dir.join("demo/.keytrustee"));
    let config = std::fs::read_to_string(dir.join("demo/.keytrustee/keytrustee.conf")).unwrap();
    assert!(config.contains(&dir.join("demo/db").display().to_string()), "paths are stored absolute: {config}");
    run(kt().current_dir(&dir.path).args(["-c", "demo/.keytrustee", "db", "start"])).expect(0);
    run(kt().current_dir(&dir.path).args(["-c", "demo/.keytrustee", "db", "status"])).expect(0);
    run(kt().current_dir(&dir.path).args(["-c", "demo/.keytrustee", "db", "stop"])).expect(0);
}
