//! `kt backup`: GnuPG decrypts it, tar lists it, psql loads its dump; every
//! refusal writes nothing; --roll, the lock and kill -9 leave no partial
//! file under a backup's name.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::*;

/// A GnuPG keyring shared by the backup tests (keys are slow to make):
/// John Doe (RSA 3072 + RSA encryption subkey), Jane (ed25519 + cv25519),
/// a sign-only key, an expired and a revoked key, and two keys that both
/// match "example.org". Its agent is stopped once the keys exist.
pub struct Keyring {
    pub home: PathBuf,
    pub john: String,
    pub jane: String,
}

extern "C" fn remove_keyring() {
    if let Some(k) = KEYRING.get() {
        let _ = Command::new("gpgconf").arg("--homedir").arg(&k.home).args(["--kill", "all"]).status();
        let _ = std::fs::remove_dir_all(&k.home);
    }
}

static KEYRING: OnceLock<Keyring> = OnceLock::new();

fn gpg_in(home: &Path, args: &[&str]) -> Run {
    run(Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args))
}

fn primary_fpr(home: &Path, name: &str) -> String {
    let out = gpg_in(home, &["--with-colons", "--list-keys", "--", name]).expect(0);
    out.stdout.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string()
}

pub fn keyring() -> &'static Keyring {
    KEYRING.get_or_init(|| {
        let home = std::env::temp_dir().join(format!("kt-gpg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_keyring) };
        let gen = |uid: &str, algo: &str, sub: Option<&str>| {
            gpg_in(&home, &["--quick-gen-key", uid, algo, "sign", "never"]).expect(0);
            let fpr = primary_fpr(&home, uid);
            if let Some(sub) = sub {
                gpg_in(&home, &["--quick-add-key", &fpr, sub, "encr", "never"]).expect(0);
            }
            fpr
        };
        let john = gen("John Doe <john@example.com>", "rsa3072", Some("rsa3072"));
        let jane = gen("Jane Roe <jane@example.net>", "ed25519", Some("cv25519"));
        gen("Sign Only <signer@example.com>", "ed25519", None);
        gen("Ann <ann@example.org>", "ed25519", Some("cv25519"));
        gen("Bob <bob@example.org>", "ed25519", Some("cv25519"));
        // Expired: made with a clock in the past and a one-day lifetime.
        gpg_in(&home, &["--faked-system-time", "20200101T000000", "--quick-gen-key", "Old Key <old@example.com>", "ed25519", "sign,cert", "1d"]).expect(0);
        let old = primary_fpr(&home, "old@example.com");
        gpg_in(&home, &["--faked-system-time", "20200101T000000", "--quick-add-key", &old, "cv25519", "encr", "1d"]).expect(0);
        // Revoked: its revocation certificate imported.
        let revoked = gen("Revoked Key <revoked@example.com>", "ed25519", Some("cv25519"));
        let rev = std::fs::read_to_string(home.join("openpgp-revocs.d").join(format!("{revoked}.rev"))).unwrap();
        let rev_file = home.join("revoke.asc");
        std::fs::write(&rev_file, rev.replace(":-----BEGIN", "-----BEGIN")).unwrap();
        gpg_in(&home, &["--import", rev_file.to_str().unwrap()]).expect(0);
        let _ = Command::new("gpgconf").arg("--homedir").arg(&home).args(["--kill", "all"]).status();
        Keyring { home, john, jane }
    })
}

/// A GnuPG home holding only `fpr`'s secret key, to prove that recipient
/// alone can decrypt.
pub fn decrypt_home(fpr: &str) -> GnupgHome {
    let k = keyring();
    let secret = Command::new("gpg")
        .arg("--homedir")
        .arg(&k.home)
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", fpr])
        .output()
        .unwrap();
    assert!(!secret.stdout.is_empty());
    let _ = Command::new("gpgconf").arg("--homedir").arg(&k.home).args(["--kill", "all"]).status();
    let home = GnupgHome::new();
    let file = home.dir.join("secret.gpg");
    std::fs::write(&file, &secret.stdout).unwrap();
    gpg_in(&home.dir.path, &["--import", file.to_str().unwrap()]).expect(0);
    home
}

/// `kt -c CONFDIR backup ARGS...` with the shared keyring as GNUPGHOME.
pub fn backup(inst: &Instance, args: &[&str]) -> Run {
    run(kt().env("GNUPGHOME", &keyring().home).arg("-c").arg(&inst.confdir).arg("backup").args(args))
}

/// An instance with data: two organizations, three clients, `deposits` deposits.
pub fn instance_with_data(name: &str, deposits: u32) -> Instance {
    let inst = Instance::new(name);
    inst.kt(&["db", "start"]).expect(0);
    inst.psql(
        "keytrustee",
        &format!(
            "INSERT INTO organizations (name, auth_secret, contacts) VALUES ('acme', 's', '{{a@acme.com}}'), ('globex', '', '{{}}');
             INSERT INTO clients (fingerprint, organization, public_key)
               SELECT upper(md5(g::text) || substr(md5((g+100)::text), 1, 8)), (SELECT uuid FROM organizations WHERE name = 'acme'), '\\x00'
               FROM generate_series(1, 3) g;
             INSERT INTO deposits (owner, name, content)
               SELECT (SELECT fingerprint FROM clients ORDER BY fingerprint LIMIT 1 OFFSET g % 3), 'k' || g,
                      decode(md5(g::text) || md5((g * 7)::text), 'hex') || '\\x00ff0a5c'::bytea
               FROM generate_series(1, {deposits}) g;"
        ),
    )
    .expect(0);
    inst
}

/// Files in `dir` with a backup's final name.
fn final_backups(dir: &Path) -> Vec<PathBuf> {
    kt::backup::naming::list(dir, None).unwrap().into_iter().map(|b| b.path).collect()
}

fn digest(inst: &Instance, db: &str) -> String {
    inst.psql(
        db,
        "SELECT (SELECT count(*) FROM organizations) || '/' || (SELECT count(*) FROM clients) || '/' || (SELECT count(*) FROM deposits) || '/' ||
                (SELECT md5(string_agg(uuid::text || name || encode(content, 'hex'), ',' ORDER BY uuid)) FROM deposits) || '/' ||
                (SELECT md5(string_agg(name || auth_secret || array_to_string(contacts, ';'), ',' ORDER BY name)) FROM organizations)",
    )
    .expect(0)
    .stdout
    .trim()
    .to_string()
}

#[test]
fn each_recipient_decrypts_and_the_dump_loads() {
    let k = keyring();
    let inst = instance_with_data("backup", 500);
    let out_dir = TestDir::new("out");
    let out = backup(&inst, &["--gpg-recipient=John Doe", "--gpg-recipient", "jane@example.net", "--output", out_dir.path.to_str().unwrap(), "--quiet"]).expect(0);
    // --quiet: exactly one line, the path.
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let path = PathBuf::from(out.stdout.trim());
    assert_eq!(final_backups(&out_dir.path), vec![path.clone()]);
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("kts_bak_localhost_") && name.ends_with(".tar.gpg"), "{name}");
    assert_eq!(mode(&path), 0o600);

    let live = digest(&inst, "keytrustee");
    for fpr in [&k.john, &k.jane] {
        let home = decrypt_home(fpr);
        let tarball = home.dir.join("backup.tar");
        home.gpg(&["--pinentry-mode", "loopback", "--passphrase", "", "-d", "-o", tarball.to_str().unwrap(), path.to_str().unwrap()]).expect(0);
        let listing = run(Command::new("tar").arg("tvf").arg(&tarball)).expect(0).stdout;
        let confdir = inst.confdir.to_str().unwrap().trim_start_matches('/');
        let home_rel = inst.home.to_str().unwrap().trim_start_matches('/');
        for member in ["keytrustee.conf", "secring.gpg", "pubring.gpg", ".ssl/ssl-cert-keytrustee.pem", ".ssl/ssl-cert-keytrustee-pk.pem"] {
            assert!(listing.contains(&format!("{confdir}/{member}")), "{member} missing:\n{listing}");
        }
        let stem = name.trim_end_matches(".tar.gpg");
        assert!(listing.contains(&format!("{home_rel}/{stem}.sql")), "{listing}");
        assert!(listing.contains(&format!("{home_rel}/{stem}.manifest.json")), "{listing}");
        assert!(listing.lines().all(|l| !l.contains(" /")), "absolute member paths:\n{listing}");
        assert!(listing.contains("-rw------- "), "{listing}");

        // The dump loads with psql -f into a fresh database and holds the same rows.
        let extract = home.dir.join("x");
        std::fs::create_dir(&extract).unwrap();
        run(Command::new("tar").arg("xf").arg(&tarball).arg("-C").arg(&extract)).expect(0);
        let sql = extract.join(format!("{home_rel}/{stem}.sql"));
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(extract.join(format!("{home_rel}/{stem}.manifest.json"))).unwrap()).unwrap();
        assert_eq!(manifest["row_counts"]["deposits"], 500);
        assert_eq!(manifest["row_counts"]["organizations"], 2);
        assert_eq!(manifest["hostname"], "localhost");
        assert_eq!(manifest["server_fingerprint"], inst.kt(&["fingerprint"]).expect(0).stdout.trim());
        assert_eq!(manifest["schema_version"], kt::storage::schema::latest_version());
        let dump_entry = manifest["members"].as_array().unwrap().iter().find(|m| m["path"].as_str().unwrap().ends_with(".sql")).unwrap();
        let sha = run(Command::new("sha256sum").arg(&sql)).expect(0).stdout;
        assert_eq!(sha.split_whitespace().next().unwrap(), dump_entry["sha256"].as_str().unwrap());
        inst.psql("postgres", "DROP DATABASE IF EXISTS restored").expect(0);
        inst.psql("postgres", "CREATE DATABASE restored").expect(0);
        // psql reads the file as the invoking user (root here): make it readable.
        std::fs::set_permissions(&sql, std::fs::Permissions::from_mode(0o644)).unwrap();
        run(Command::new("psql")
            .env("PGPASSFILE", inst.confdir.join(".pgpass"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &inst.db_port.to_string(), "-U", "keytrustee", "-d", "restored", "-f"])
            .arg(&sql))
        .expect(0);
        assert_eq!(digest(&inst, "restored"), live);
    }

    // list: newest first, with both recipients' key IDs.
    let list = inst.kt(&["backup", "list", "--output", out_dir.path.to_str().unwrap(), "--json"]).expect(0);
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["encrypted"], true);
    assert_eq!(list[0]["recipient_key_ids"].as_array().unwrap().len(), 2);
}

#[test]
fn refusals_write_no_backup_and_record_why() {
    let inst = instance_with_data("refuse", 10);
    let out_dir = TestDir::new("out");
    let o = out_dir.path.to_str().unwrap();
    for (args, code, needle) in [
        (vec!["--output", o], 2, "no recipient"),
        (vec!["--output", o, "--gpg-recipient", "nobody@nowhere.example"], 2, "no key for recipient"),
        (vec!["--output", o, "--gpg-recipient", "example.org"], 2, "ambiguous"),
        (vec!["--output", o, "--gpg-recipient", "signer@example.com"], 2, "no encryption subkey"),
        (vec!["--output", o, "--gpg-recipient", "old@example.com"], 2, "expired"),
        (vec!["--output", o, "--gpg-recipient", "revoked@example.com"], 2, "revoked"),
        (vec!["--output", o, "--gpg-recipient", "John Doe", "--cleartext"], 2, "exclude each other"),
        (vec!["--output", o, "--cleartext", "--roll=0"], 2, "roll"),
    ] {
        let out = backup(&inst, &args);
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        // No backup, no lock, no temp file: only the status record, which
        // says why (a scheduled run that stops on an expired key shows in
        // kt verify --max-age with its reason).
        let names: Vec<_> = std::fs::read_dir(&out_dir.path).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, [".kt-backup-status.localhost.json"], "{args:?} wrote something else");
        let status: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join(".kt-backup-status.localhost.json")).unwrap()).unwrap();
        // (--roll=0 is refused by the command line parser, before kt runs.)
        if needle != "roll" {
            assert!(status["last_failure"]["error"].as_str().unwrap().contains(needle), "{args:?}: {status}");
        }
    }
    // Both candidates are named when a recipient is ambiguous.
    let out = backup(&inst, &["--output", o, "--gpg-recipient", "example.org"]);
    assert!(out.stderr.contains("ann@example.org") && out.stderr.contains("bob@example.org"), "{}", out.stderr);

    // Environment failures: exit 3, no backup file.
    let missing = out_dir.join("missing");
    let out = backup(&inst, &["--output", missing.to_str().unwrap(), "--cleartext"]).expect(3);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    inst.kt(&["db", "stop"]).expect(0);
    let out = backup(&inst, &["--output", o, "--gpg-recipient", "John Doe"]).expect(3);
    assert!(out.stderr.contains("cannot connect to the database"), "{}", out.stderr);
    assert!(final_backups(&out_dir.path).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir.path).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.iter().all(|n| n == ".kt-backup.lock" || n == ".kt-backup-status.localhost.json"), "{leftovers:?}");
    // The failure is recorded, with the error's first line.
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join(".kt-backup-status.localhost.json")).unwrap()).unwrap();
    assert!(status["last_failure"]["error"].as_str().unwrap().contains("cannot connect to the database"), "{status}");
}

#[test]
fn cleartext_and_recipient_files() {
    let k = keyring();
    let inst = instance_with_data("clear", 20);
    let out_dir = TestDir::new("out");
    let o = out_dir.path.to_str().unwrap();
    let out = backup(&inst, &["--output", o, "--cleartext"]).expect(0);
    assert!(out.stderr.contains("NOT encrypted"), "{}", out.stderr);
    let path = PathBuf::from(out.stdout.trim());
    assert!(path.to_str().unwrap().ends_with(".tar"));
    run(Command::new("tar").arg("tf").arg(&path)).expect(0);

    let key_file = out_dir.join("jane.asc");
    let export = Command::new("gpg").arg("--homedir").arg(&k.home).args(["--batch", "--armor", "--export", &k.jane]).output().unwrap();
    std::fs::write(&key_file, &export.stdout).unwrap();
    let other = TestDir::new("out2");
    let out = backup(&inst, &["--output", other.path.to_str().unwrap(), "--gpg-recipient-file", key_file.to_str().unwrap(), "--verbose"]).expect(0);
    let path = PathBuf::from(out.stdout.trim());
    let said = out.stderr.to_ascii_uppercase();
    assert!(said.contains(&format!("KEY {}, ENCRYPTION SUBKEY ", k.jane.to_ascii_uppercase())), "{}", out.stderr);
    let home = decrypt_home(&k.jane);
    home.gpg(&["--pinentry-mode", "loopback", "--passphrase", "", "-d", "-o", home.dir.join("b.tar").to_str().unwrap(), path.to_str().unwrap()]).expect(0);
}

#[test]
fn roll_keeps_the_newest_of_this_host_only() {
    let inst = instance_with_data("roll", 5);
    let out_dir = TestDir::new("out");
    let o = out_dir.path.to_str().unwrap();
    let old: Vec<PathBuf> = ["2020-01-01_00-00-01", "2020-01-02_00-00-01", "2020-01-03_00-00-01", "2020-01-04_00-00-01"]
        .iter()
        .map(|s| out_dir.join(&format!("kts_bak_localhost_{s}.tar.gpg")))
        .collect();
    for p in &old {
        std::fs::write(p, "old").unwrap();
    }
    let foreign = out_dir.join("kts_bak_other_host_2019-01-01_00-00-01.tar.gpg");
    let unrelated = out_dir.join("notes.txt");
    std::fs::write(&foreign, "x").unwrap();
    std::fs::write(&unrelated, "x").unwrap();
    let out = backup(&inst, &["--output", o, "--cleartext", "--roll=3", "-q"]).expect(0);
    let new = PathBuf::from(out.stdout.trim());
    assert!(new.exists());
    assert!(old[3].exists() && old[2].exists(), "the two newest old ones stay");
    assert!(!old[1].exists() && !old[0].exists(), "older ones go");
    assert!(foreign.exists() && unrelated.exists(), "other hosts' backups and other files are never touched");
    // --verbose: the members written and the roll decisions.
    let out = backup(&inst, &["--output", o, "--cleartext", "--roll=1", "--verbose"]).expect(0);
    let newest = PathBuf::from(out.stdout.trim());
    let said = &out.stderr;
    assert!(said.contains(&format!("kept {}", newest.display())), "{said}");
    assert!(said.contains(&format!("removed old backup {}", new.display())), "{said}");
    assert!(said.contains("keeping the 1 newest backups"), "{said}");
    for member in ["keytrustee.conf (", ".sql (", ".manifest.json\n", ".manifest.json.sig\n", "dumping the database"] {
        assert!(said.contains(member), "{member}: {said}");
    }
    let mine: Vec<_> = kt::backup::naming::list(&out_dir.path, Some("localhost")).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].path, newest);
    assert!(foreign.exists() && unrelated.exists());
}

#[test]
fn one_backup_at_a_time_per_output_directory() {
    use std::io::Write;
    let inst = instance_with_data("lock", 5);
    let out_dir = TestDir::new("out");
    let o = out_dir.path.to_str().unwrap().to_string();
    let lock_path = out_dir.join(".kt-backup.lock");
    let mut lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).unwrap();
    lock.lock().unwrap();
    writeln!(lock, "{}", std::process::id()).unwrap();
    let out = backup(&inst, &["--output", &o, "--cleartext"]).expect(3);
    assert!(out.stderr.contains(&format!("pid {}", std::process::id())), "{}", out.stderr);
    assert!(final_backups(&out_dir.path).is_empty());
    // With --lock-wait it waits for the holder to finish.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(lock);
    });
    backup(&inst, &["--output", &o, "--cleartext", "--lock-wait=20s", "-q"]).expect(0);
    releaser.join().unwrap();
    assert_eq!(final_backups(&out_dir.path).len(), 1);
}

#[test]
fn kill_9_never_leaves_a_file_under_a_backup_name() {
    let inst = instance_with_data("kill", 60_000);
    let out_dir = TestDir::new("out");
    let o = out_dir.path.to_str().unwrap().to_string();
    for delay_ms in [50u64, 300, 900] {
        let mut child = kt()
            .env("GNUPGHOME", &keyring().home)
            .arg("-c")
            .arg(&inst.confdir)
            .args(["backup", "--gpg-recipient", "John Doe", "--output", &o, "-q"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever it left, nothing carries a final backup name unless complete.
        for b in final_backups(&out_dir.path) {
            let home = decrypt_home(&keyring().john);
            home.gpg(&["--pinentry-mode", "loopback", "--passphrase", "", "-d", "-o", "/dev/null", b.to_str().unwrap()]).expect(0);
            std::fs::remove_file(&b).unwrap();
        }
    }
    // The next run succeeds and removes what the killed runs left.
    let out = backup(&inst, &["--output", &o, "--gpg-recipient", "John Doe"]).expect(0);
    let names: Vec<String> = std::fs::read_dir(&out_dir.path).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".kt-tmp-")), "temp files left: {names:?}\n{}", out.stderr);
    assert_eq!(final_backups(&out_dir.path).len(), 1);
}

#[test]
fn the_ktbackup_sh_shim_takes_the_documented_command_line() {
    let inst = instance_with_data("shim", 5);
    let out_dir = TestDir::new("out");
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ktbackup.sh");
    let out = run(Command::new(&shim)
        .env("KT", KT)
        .env("GNUPGHOME", &keyring().home)
        .arg("-c")
        .arg(&inst.confdir)
        .arg(format!("--database-port={}", inst.db_port))
        .arg("--gpg-recipient=John Doe")
        .arg(format!("--output={}", out_dir.path.display()))
        .arg("--roll=10")
        .arg("--quiet"))
    .expect(0);
    assert_eq!(out.stdout.lines().count(), 1);
    assert_eq!(final_backups(&out_dir.path).len(), 1);
}

#[test]
fn a_backup_is_one_snapshot_while_writes_go_on() {
    let inst = instance_with_data("live", 40_000);
    let out_dir = TestDir::new("out");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A writer that keeps inserting deposits for the whole backup.
    let writer = {
        let stop = stop.clone();
        let pgpass = inst.confdir.join(".pgpass");
        let port = inst.db_port.to_string();
        std::thread::spawn(move || {
            let mut ok = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = run(Command::new("psql")
                    .env("PGPASSFILE", &pgpass)
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port, "-U", "keytrustee", "-d", "keytrustee", "-c"])
                    .arg("INSERT INTO deposits (owner, name, content) SELECT fingerprint, 'live', '\\x01' FROM clients LIMIT 1"));
                assert_eq!(out.code, 0, "a write failed during the backup: {}", out.stderr);
                ok += 1;
            }
            ok
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = backup(&inst, &["--output", out_dir.path.to_str().unwrap(), "--cleartext", "-q"]).expect(0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes > 0);
    let tarball = PathBuf::from(out.stdout.trim());
    let extract = out_dir.join("x");
    std::fs::create_dir(&extract).unwrap();
    run(Command::new("tar").arg("xf").arg(&tarball).arg("-C").arg(&extract)).expect(0);
    let find = |suffix: &str| -> PathBuf {
        let home_rel = inst.home.to_str().unwrap().trim_start_matches('/');
        std::fs::read_dir(extract.join(home_rel)).unwrap().flatten().map(|e| e.path()).find(|p| p.to_str().unwrap().ends_with(suffix)).unwrap()
    };
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(find(".manifest.json")).unwrap()).unwrap();
    let in_manifest = manifest["row_counts"]["deposits"].as_u64().unwrap();
    assert!(in_manifest >= 40_000);
    // The dump holds exactly the rows the manifest counted, and loads.
    let sql = find(".sql");
    std::fs::set_permissions(&sql, std::fs::Permissions::from_mode(0o644)).unwrap();
    inst.psql("postgres", "CREATE DATABASE snapshot").expect(0);
    run(Command::new("psql")
        .env("PGPASSFILE", inst.confdir.join(".pgpass"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &inst.db_port.to_string(), "-U", "keytrustee", "-d", "snapshot", "-f"])
        .arg(&sql))
    .expect(0);
    let loaded: u64 = inst.psql("snapshot", "SELECT count(*) FROM deposits").expect(0).stdout.trim().parse().unwrap();
    assert_eq!(loaded, in_manifest);
}

#[test]
fn a_full_disk_fails_cleanly_and_keeps_older_backups() {
    // Fails loudly rather than passing unchecked (CI runs as root).
    assert!(is_root(), "this test mounts a small tmpfs and must run as root");
    let inst = instance_with_data("full", 30_000);
    let out_dir = TestDir::new("out");
    let mnt = out_dir.join("small");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"]).arg(&mnt)).expect(0);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let older = mnt.join("kts_bak_localhost_2020-01-01_00-00-00.tar.gpg");
    std::fs::write(&older, "an older backup").unwrap();
    let out = backup(&inst, &["--output", mnt.to_str().unwrap(), "--gpg-recipient", "John Doe", "--roll=1"]).expect(3);
    assert!(out.stderr.contains("No space left on device"), "{}", out.stderr);
    let names: Vec<String> = std::fs::read_dir(&mnt).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains(".kt-tmp-")), "temp files left: {names:?}");
    assert_eq!(std::fs::read_to_string(&older).unwrap(), "an older backup", "--roll must not run after a failure");
    assert_eq!(final_backups(&mnt), vec![older]);
}

/// The status record sits in a directory the service account writes and
/// is printed on root's terminal: control characters come out escaped, and
/// a record dated in the future (which would hide failures) is not trusted.
#[test]
fn a_forged_status_record_neither_reaches_the_terminal_nor_hides_a_failure() {
    let inst = instance_with_data("forged-status", 5);
    let out_dir = TestDir::new("out");
    let o = out_dir.path.to_str().unwrap();
    backup(&inst, &["--output", o, "--cleartext", "-q"]).expect(0);
    let record = out_dir.join(".kt-backup-status.localhost.json");
    let forged = |unix: i64| {
        serde_json::json!({
            "last_success": {"time": "t\u{1b}[2J", "unix": 1, "file": "/x\u{1b}[32mOK", "size": 1, "duration_seconds": 1.0},
            "last_failure": {"time": "now", "unix": unix, "error": "\u{1b}[2J\rall good\u{7}"}
        })
    };
    std::fs::write(&record, forged(2).to_string()).unwrap();
    let list = inst.kt(&["backup", "list", "--output", o]).expect(0);
    let verify = inst.kt(&["verify", "--max-age", "1d", "--backup-dir", o]);
    for text in [&list.stdout, &list.stderr, &verify.stdout, &verify.stderr] {
        assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{7}'), "{text:?}");
    }
    assert!(verify.stdout.contains("\\u{1b}[2J"), "the failure is shown, escaped: {}", verify.stdout);
    // Dated in 2099: refused, reported, hides nothing.
    std::fs::write(&record, forged(4_070_908_800).to_string()).unwrap();
    let verify = inst.kt(&["verify", "--max-age", "1d", "--backup-dir", o]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(verify.stdout.contains("dated in the future"), "{}", verify.stdout);
}

/// Two hosts of a pair backing up into one directory: each has its own
/// status record, and each one's verify reports its own job only.
#[test]
fn each_host_has_its_own_status_record() {
    let inst = instance_with_data("two-hosts", 5);
    let out_dir = TestDir::new("out");
    let o = out_dir.path.to_str().unwrap();
    backup(&inst, &["--output", o, "--cleartext", "-q"]).expect(0);
    let other = serde_json::json!({
        "last_success": null,
        "last_failure": {"time": "2026-01-01T00:00:00Z", "unix": 1_767_225_600, "error": "the other host's failure"}
    });
    std::fs::write(out_dir.join(".kt-backup-status.kts02_example_com.json"), other.to_string()).unwrap();
    let verify = inst.kt(&["verify", "--max-age", "1d", "--backup-dir", o]);
    assert!(!verify.stdout.contains("the other host's failure"), "{}", verify.stdout);
    assert!(verify.stdout.contains("backup job: the last run succeeded"), "{}", verify.stdout);
    let list = inst.kt(&["backup", "list", "--output", o]).expect(0);
    assert!(list.stderr.contains("kt: localhost: last success: "), "{}", list.stderr);
    assert!(list.stderr.contains("kts02_example_com: the most recent backup run FAILED"), "{}", list.stderr);
}

/// A backup of several MiB: the encrypted and the literal packet are cut
/// into many partial-length chunks and the plaintext crosses the encryption
/// threads in several blocks (`backup::seal`). GnuPG decrypts it with a
/// clean MDC, and kt's own reader (rpgp) checks every member against the
/// signed manifest.
#[test]
fn a_multi_mebibyte_backup_decrypts_with_gnupg_and_kt() {
    let k = keyring();
    let inst = instance_with_data("big", 30_000);
    let out_dir = TestDir::new("out");
    let out = backup(&inst, &["--gpg-recipient=John Doe", "--output", out_dir.path.to_str().unwrap(), "--quiet"]).expect(0);
    let path = PathBuf::from(out.stdout.trim());
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 3 << 20, "the test needs several chunks and blocks, got {size} bytes");

    let home = decrypt_home(&k.john);
    let tarball = home.dir.join("backup.tar");
    let gpg = home.gpg(&["--pinentry-mode", "loopback", "--passphrase", "", "-d", "-o", tarball.to_str().unwrap(), path.to_str().unwrap()]).expect(0);
    assert!(!gpg.stderr.contains("WARNING"), "{}", gpg.stderr);
    let extract = home.dir.join("x");
    std::fs::create_dir(&extract).unwrap();
    run(Command::new("tar").arg("xf").arg(&tarball).arg("-C").arg(&extract)).expect(0);
    let home_rel = inst.home.to_str().unwrap().trim_start_matches('/');
    let stem = path.file_name().unwrap().to_str().unwrap().trim_end_matches(".tar.gpg");
    let sql = extract.join(format!("{home_rel}/{stem}.sql"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(extract.join(format!("{home_rel}/{stem}.manifest.json"))).unwrap()).unwrap();
    assert_eq!(manifest["row_counts"]["deposits"], 30_000);
    let dump_entry = manifest["members"].as_array().unwrap().iter().find(|m| m["path"].as_str().unwrap().ends_with(".sql")).unwrap();
    let sha = run(Command::new("sha256sum").arg(&sql)).expect(0).stdout;
    assert_eq!(sha.split_whitespace().next().unwrap(), dump_entry["sha256"].as_str().unwrap());
    assert_eq!(std::fs::metadata(&sql).unwrap().len(), dump_entry["size"].as_u64().unwrap());

    let verify = run(kt().env("GNUPGHOME", &k.home).arg("-c").arg(&inst.confdir).args(["verify", "backup", path.to_str().unwrap(), "--decrypt"])).expect(0);
    for name in ["decryption", "tar", "checksums", "row counts"] {
        assert!(verify.stdout.lines().any(|l| l.starts_with("ok") && l.contains(&format!(" {name}: "))), "{name}:\n{}", verify.stdout);
    }
    let _ = Command::new("gpgconf").arg("--homedir").arg(&k.home).args(["--kill", "all"]).status();
}
