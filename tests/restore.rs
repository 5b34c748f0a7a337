//! `kt restore`: the disaster drill, backups made outside kt, and every
//! refusal or failure leaving the live instance exactly as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backup::{backup, keyring};
use crate::harness::*;
use crate::server::{client, org_with_secret, register};

/// A digest of every table: equal digests mean equal data.
fn tables_digest(inst: &Instance) -> String {
    inst.psql(
        "keytrustee",
        "SELECT md5(coalesce((SELECT string_agg(o::text, ',' ORDER BY o.uuid) FROM organizations o), '')) || \
                md5(coalesce((SELECT string_agg(c::text, ',' ORDER BY c.fingerprint) FROM clients c), '')) || \
                md5(coalesce((SELECT string_agg(d::text, ',' ORDER BY d.uuid) FROM deposits d), ''))",
    )
    .expect(0)
    .stdout
    .trim()
    .to_string()
}

fn restore(inst: &Instance, args: &[&str]) -> Run {
    run(kt().env("GNUPGHOME", &keyring().home).arg("-c").arg(&inst.confdir).arg("restore").args(args))
}

/// A serving instance with one client and three deposits.
fn with_deposits(name: &str) -> (Instance, PathBuf, Vec<(String, String)>) {
    deposits_on(Instance::serving(name))
}

/// One client and three deposits on `inst`.
fn deposits_on(inst: Instance) -> (Instance, PathBuf, Vec<(String, String)>) {
    inst.kt(&["server", "start"]).expect(0);
    org_with_secret(&inst, "acme", "");
    let (dir, out) = register(&inst, "alice", "acme", "");
    out.expect(0);
    let mut stored = Vec::new();
    for i in 0..3 {
        let file = inst.dir.join(&format!("d{i}"));
        let content = format!("key material {i}");
        std::fs::write(&file, &content).unwrap();
        let uuid = client(&dir, &["put", &format!("k{i}"), file.to_str().unwrap()]).expect(0).stdout.trim().to_string();
        stored.push((uuid, content));
    }
    (inst, dir, stored)
}

#[test]
fn the_disaster_drill() {
    // A host name of its own: the backup is foreign to this host, whatever
    // this host is called, so the foreign-host refusal is always tested.
    let (inst, alice, stored) = deposits_on(Instance::serving_as("drill", "kts-drill.example.test"));
    let fingerprint = inst.kt(&["fingerprint"]).expect(0).stdout.trim().to_string();
    let out_dir = TestDir::new("backups");
    let made = backup(&inst, &["--output", out_dir.path.to_str().unwrap(), "--gpg-recipient", "John Doe", "-q"]).expect(0);
    let file = made.stdout.trim().to_string();

    // Disaster: the server, the database and the whole instance are gone.
    inst.kt(&["server", "stop"]).expect(0);
    inst.kt(&["db", "stop"]).expect(0);
    std::fs::remove_dir_all(&inst.home).unwrap();

    // Without a terminal and without --yes: refused, nothing created.
    let out = restore(&inst, &[&file, "--force-foreign"]).expect(2);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(!inst.home.exists());
    // The backup is of kts-drill.example.test: foreign until accepted.
    assert_ne!(kt::hostname::fqdn().unwrap(), "kts-drill.example.test", "this test needs a host of another name");
    let out = restore(&inst, &[&file, "--yes"]).expect(2);
    assert!(out.stderr.contains("foreign"), "{}", out.stderr);
    assert!(!inst.home.exists());
    // --dry-run shows the plan and changes nothing.
    let plan = restore(&inst, &[&file, "--force-foreign", "--dry-run"]).expect(0);
    assert!(plan.stdout.contains(&fingerprint), "{}", plan.stdout);
    assert!(plan.stdout.contains("deposits 3"), "{}", plan.stdout);
    // kts-drill.example.test does not resolve (RFC 6761 .test): the
    // documented restore wants the same host name and address.
    assert!(
        plan.stderr.contains("warning: the host name kts-drill.example.test does not resolve"),
        "{}",
        plan.stderr
    );
    assert!(!inst.home.exists());

    // A fresh host knows no server key: --yes needs the operator to name it.
    let out = restore(&inst, &[&file, "--force-foreign", "--yes"]).expect(2);
    assert!(out.stderr.contains("--expect-fingerprint"), "{}", out.stderr);
    assert!(!inst.home.exists());
    let other = "255E/0000000000000000000000000000000000000000";
    let out = restore(&inst, &[&file, "--force-foreign", "--yes", "--expect-fingerprint", other]).expect(2);
    assert!(out.stderr.contains("not the expected"), "{}", out.stderr);
    assert!(!inst.home.exists());

    let out = restore(&inst, &[&file, "--force-foreign", "--yes", "--expect-fingerprint", &fingerprint]).expect(0);
    assert!(out.stderr.contains("restored"), "{}", out.stderr);
    assert_eq!(mode(&inst.confdir), 0o700);
    assert_eq!(mode(&inst.confdir.join("secring.gpg")), 0o600);
    inst.kt(&["db", "start"]).expect(0);
    inst.kt(&["server", "start"]).expect(0);
    let (code, served) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
    assert_eq!((code, served.as_str()), (200, fingerprint.as_str()));
    for (uuid, content) in &stored {
        assert_eq!(&client(&alice, &["get", uuid]).expect(0).stdout, content);
    }
    inst.kt(&["verify"]).expect(0);
}

#[test]
fn refusals_leave_the_live_instance_untouched() {
    let (inst, _alice, _) = with_deposits("refuse");
    let out_dir = TestDir::new("backups");
    let made = backup(&inst, &["--output", out_dir.path.to_str().unwrap(), "--gpg-recipient", "jane@example.net", "-q"]).expect(0);
    let good = PathBuf::from(made.stdout.trim());
    let before = tables_digest(&inst);
    let confdir_before = snapshot(&inst.confdir);
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, data: &[u8]| -> PathBuf {
        let p = out_dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let truncated = write("truncated.tar.gpg", &bytes[..bytes.len() * 2 / 3]);
    let mut flipped_bytes = bytes.clone();
    let mid = flipped_bytes.len() / 2;
    flipped_bytes[mid] ^= 0x01;
    let flipped = write("flipped.tar.gpg", &flipped_bytes);
    // Hostile tars: a `..` member, an absolute member, a symlink escape.
    let evil = |name: &str, script: &str| -> PathBuf {
        let p = out_dir.join(name);
        run(Command::new("python3").arg("-c").arg(script).arg(&p)).expect(0);
        p
    };
    let dotdot = evil("dotdot.tar", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('../../evil');d=b'x';i.size=1;t.addfile(i,io.BytesIO(d))\nt.close()");
    let absolute = evil("abs.tar", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('/tmp/kt-evil-abs');d=b'x';i.size=1;t.addfile(i,io.BytesIO(d))\nt.close()");
    let symlink = evil("link.tar", "import tarfile,sys,io\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('a/link');i.type=tarfile.SYMTYPE;i.linkname='/etc';t.addfile(i)\ni=tarfile.TarInfo('a/link/passwd');d=b'x';i.size=1;t.addfile(i,io.BytesIO(d))\nt.close()");
    let wrong_key_dir = TestDir::new("wrongkey");
    let no_key = kt().env("GNUPGHOME", &wrong_key_dir.path).arg("-c").arg(&inst.confdir).args(["restore", good.to_str().unwrap(), "--yes"]).output().unwrap();
    assert_eq!(no_key.status.code(), Some(2), "{}", String::from_utf8_lossy(&no_key.stderr));
    for (file, needle) in [
        (&truncated, "damaged"),
        (&flipped, "cannot be decrypted"),
        (&dotdot, "escape"),
        (&absolute, "escape"),
        (&symlink, "link"),
    ] {
        let out = restore(&inst, &[file.to_str().unwrap(), "--yes"]);
        assert_eq!(out.code, 2, "{}: {}", file.display(), out.stderr);
        assert!(out.stderr.contains(needle), "{}: {}", file.display(), out.stderr);
        assert_eq!(tables_digest(&inst), before, "{} changed the database", file.display());
        assert_eq!(snapshot(&inst.confdir), confdir_before, "{} changed the confdir", file.display());
        assert_eq!(scratch_databases(&inst), Vec::<String>::new(), "{} left a scratch database", file.display());
    }
    assert!(!Path::new("/tmp/kt-evil-abs").exists());
    let _ = Command::new("gpgconf").arg("--homedir").arg(&keyring().home).args(["--kill", "all"]).status();
}

/// Databases a restore made for itself and should have removed.
fn scratch_databases(inst: &Instance) -> Vec<String> {
    let out = inst.psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'kt\\_restore\\_%' ORDER BY 1").expect(0);
    out.stdout.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

#[test]
fn a_failure_after_the_drop_puts_everything_back() {
    let (inst, alice, stored) = with_deposits("rollback");
    let before = tables_digest(&inst);
    let fingerprint = inst.kt(&["fingerprint"]).expect(0).stdout.trim().to_string();
    // A backup made outside kt (no manifest) whose SQL breaks half way.
    let work = TestDir::new("broken");
    let sql = work.join("kts_bak_localhost_2026-01-01_00-00-00.sql");
    let pg_dump = run(Command::new("pg_dump")
        .env("PGPASSFILE", inst.confdir.join(".pgpass"))
        .args(["-h", "127.0.0.1", "-p", &inst.db_port.to_string(), "-U", "keytrustee", "keytrustee"]))
    .expect(0);
    let half = pg_dump.stdout.len() / 2;
    let cut = pg_dump.stdout[..half].rfind('\n').unwrap();
    std::fs::write(&sql, format!("{}\nTHIS IS NOT SQL;\n{}", &pg_dump.stdout[..cut], &pg_dump.stdout[cut..])).unwrap();
    let tarball = work.join("broken.tar");
    documented_tar(&inst, &sql, &tarball);
    let tarball_copy = work.join("broken-copy.tar");
    std::fs::copy(&tarball, &tarball_copy).unwrap();
    let serves_as_before = |what: &str| {
        assert_eq!(tables_digest(&inst), before, "{what}: the database changed");
        let (code, served) = curl(&["-k", &format!("{}/?a=fingerprint", inst.url())]);
        assert_eq!((code, served.as_str()), (200, fingerprint.as_str()), "{what}");
        for (uuid, content) in &stored {
            assert_eq!(&client(&alice, &["get", uuid]).expect(0).stdout, content, "{what}");
        }
    };
    // On the live instance the dump is loaded into a scratch database while
    // it is decrypted: a dump that breaks is refused before anything changes.
    let out = restore(&inst, &[tarball.to_str().unwrap(), "--yes", "--allow-unsigned"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("does not load") && out.stderr.contains("nothing was changed"), "{}", out.stderr);
    // The line lands inside COPY data: the server's complaint is named.
    // (Where half way lands depends on the schema: mid-row or at a row's start.)
    let named = ["missing data for column", "invalid input syntax"].iter().any(|c| out.stderr.contains(c));
    assert!(named, "the cause is named: {}", out.stderr);
    serves_as_before("a dump that does not load");
    assert_eq!(scratch_databases(&inst), Vec::<String>::new(), "the scratch database must go");

    // A failure after the swap: the restored confdir's certificate is
    // garbage, so the server does not start again. Everything goes back.
    let good_sql = work.join("kts_bak_localhost_2026-01-01_00-00-01.sql");
    std::fs::write(&good_sql, &pg_dump.stdout).unwrap();
    let good_tar = work.join("good.tar");
    documented_tar(&inst, &good_sql, &good_tar);
    let bad_cert = work.join("bad-cert.tar");
    let cert_member = inst.confdir.join(".ssl/ssl-cert-keytrustee.pem");
    run(Command::new("python3")
        .arg("-c")
        .arg(concat!(
            "import tarfile,sys,io\n",
            "src=tarfile.open(sys.argv[1]); dst=tarfile.open(sys.argv[2],'w')\n",
            "for m in src.getmembers():\n",
            "  d=src.extractfile(m).read() if m.isfile() else None\n",
            "  if m.name==sys.argv[3]:\n",
            "    d=b'not a certificate\\n'; m.size=len(d)\n",
            "  dst.addfile(m, io.BytesIO(d) if d is not None else None)\n",
            "dst.close()\n"
        ))
        .arg(&good_tar)
        .arg(&bad_cert)
        .arg(cert_member.strip_prefix("/").unwrap()))
    .expect(0);
    let out = restore(&inst, &[bad_cert.to_str().unwrap(), "--yes", "--allow-unsigned"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    assert!(out.stderr.contains("server"), "the cause is named: {}", out.stderr);
    serves_as_before("a server that does not start after the swap");
    assert_eq!(scratch_databases(&inst), Vec::<String>::new(), "no scratch or safety database may stay");

    // On a fresh host, the failed restore removes the cluster it created.
    inst.kt(&["server", "stop"]).expect(0);
    inst.kt(&["db", "stop"]).expect(0);
    std::fs::remove_dir_all(&inst.home).unwrap();
    let out = restore(&inst, &[tarball_copy.to_str().unwrap(), "--yes", "--force-foreign", "--allow-unsigned", "--expect-fingerprint", &fingerprint]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(!inst.confdir.exists(), "the restored confdir must go");
    assert!(!inst.pg_rootdir().exists(), "the cluster this run created must go");
    let data_dir = inst.pg_rootdir().to_string_lossy().into_owned();
    let still_running = std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(&data_dir)).unwrap_or(false)
    });
    assert!(!still_running, "a postgres of the failed restore still runs");
    // The cluster it made in the staging area, loaded and refused, is gone too.
    assert!(out.stderr.contains("tried in the new cluster"), "{}", out.stderr);
    assert_eq!(stagings(&inst), Vec::<String>::new(), "the failed restore left a staging area");
    assert!(!runs_in(&inst.home.parent().unwrap().join(".kt-restore-")), "a staged cluster still runs");
}

#[test]
fn a_backup_made_the_documented_way_restores() {
    let (inst, alice, stored) = with_deposits("outside");
    let k = keyring();
    let work = TestDir::new("outside");
    // pg_dump > file, tar with the confdir, gpg --encrypt: no kt involved.
    let sql_name = "kts_bak_localhost_2026-01-01_00-00-00.sql";
    let dump = run(Command::new("pg_dump")
        .env("PGPASSFILE", inst.confdir.join(".pgpass"))
        .args(["-h", "127.0.0.1", "-p", &inst.db_port.to_string(), "-U", "keytrustee", "keytrustee"]))
    .expect(0);
    std::fs::write(work.join(sql_name), &dump.stdout).unwrap();
    let tarball = work.join("backup.tar");
    documented_tar(&inst, &work.join(sql_name), &tarball);
    let encrypted = work.join("backup.tar.gpg");
    run(Command::new("gpg")
        .arg("--homedir")
        .arg(&k.home)
        .args(["--batch", "--yes", "--trust-model", "always", "-r", &k.john, "-o"])
        .arg(&encrypted)
        .arg("--encrypt")
        .arg(&tarball))
    .expect(0);
    // Lose some data, then restore. Nothing proves who made such a backup:
    // refused until the operator says they know where it comes from.
    inst.psql("keytrustee", "DELETE FROM deposits").expect(0);
    let out = restore(&inst, &[encrypted.to_str().unwrap(), "--yes"]).expect(2);
    assert!(out.stderr.contains("not signed") && out.stderr.contains("--allow-unsigned"), "{}", out.stderr);
    let out = restore(&inst, &[encrypted.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(0);
    // localhost resolves to a loopback address of this host: no address warning.
    assert!(!out.stderr.contains("the host name localhost"), "{}", out.stderr);
    inst.kt(&["server", "status"]).expect(0);
    for (uuid, content) in &stored {
        assert_eq!(&client(&alice, &["get", uuid]).expect(0).stdout, content);
    }
    let _ = Command::new("gpgconf").arg("--homedir").arg(&k.home).args(["--kill", "all"]).status();
}

#[test]
fn the_documented_zip_pair_restores() {
    let (inst, alice, stored) = with_deposits("zips");
    let work = TestDir::new("zips");
    let password = work.join("password");
    std::fs::write(&password, "zip secret\n").unwrap();
    // keytrustee-db.zip from `pg_dump -c | zip --encrypt`, keytrustee-conf.zip
    // from `zip -r --encrypt` of the confdir (ZipCrypto, as zip 3.0 writes).
    let db_zip = work.join("keytrustee-db.zip");
    let conf_zip = work.join("keytrustee-conf.zip");
    let port = inst.db_port.to_string();
    // Verbatim as the documentation has it, as the service account over
    // the instance's Unix socket (runuser for sudo -u: no sudo here).
    run(Command::new("bash").arg("-c").arg(format!(
        "set -o pipefail; runuser -u keytrustee -- pg_dump -c -p {port} keytrustee | zip -q -P 'zip secret' '{}' -",
        db_zip.display()
    )))
    .expect(0);
    run(Command::new("zip").current_dir("/").args(["-q", "-r", "-P", "zip secret"]).arg(&conf_zip).arg(inst.confdir.strip_prefix("/").unwrap())).expect(0);
    // A wrong password changes nothing.
    let wrong = work.join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    let before = tables_digest(&inst);
    let out = restore(&inst, &[db_zip.to_str().unwrap(), conf_zip.to_str().unwrap(), "--zip-password-file", wrong.to_str().unwrap(), "--yes", "--allow-unsigned"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(tables_digest(&inst), before);
    // Data lost, then the pair restores it.
    inst.psql("keytrustee", "DELETE FROM deposits").expect(0);
    restore(&inst, &[db_zip.to_str().unwrap(), conf_zip.to_str().unwrap(), "--zip-password-file", password.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(0);
    for (uuid, content) in &stored {
        assert_eq!(&client(&alice, &["get", uuid]).expect(0).stdout, content);
    }

    // The same with AES-256 zips.
    let aes_db = work.join("aes-db.zip");
    let aes_conf = work.join("aes-conf.zip");
    let write_zip = |path: &Path, entries: &[(String, Vec<u8>)]| {
        let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().with_aes_encryption(zip::AesMode::Aes256, "zip secret");
        for (name, data) in entries {
            w.start_file(name.as_str(), opts).unwrap();
            std::io::Write::write_all(&mut w, data).unwrap();
        }
        w.finish().unwrap();
    };
    let dump = run(Command::new("pg_dump").env("PGPASSFILE", inst.confdir.join(".pgpass")).args(["-c", "-h", "127.0.0.1", "-p", &port, "-U", "keytrustee", "keytrustee"])).expect(0);
    write_zip(&aes_db, &[("-".to_string(), dump.stdout.into_bytes())]);
    let mut conf_entries = Vec::new();
    for entry in std::fs::read_dir(&inst.confdir).unwrap().flatten() {
        if entry.path().is_file() {
            let name = entry.path().strip_prefix("/").unwrap().to_string_lossy().into_owned();
            conf_entries.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    for entry in std::fs::read_dir(inst.confdir.join(".ssl")).unwrap().flatten() {
        let name = entry.path().strip_prefix("/").unwrap().to_string_lossy().into_owned();
        conf_entries.push((name, std::fs::read(entry.path()).unwrap()));
    }
    write_zip(&aes_conf, &conf_entries);
    inst.psql("keytrustee", "DELETE FROM deposits").expect(0);
    restore(&inst, &[aes_conf.to_str().unwrap(), aes_db.to_str().unwrap(), "--zip-password-file", password.to_str().unwrap(), "--yes", "--allow-unsigned"]).expect(0);
    for (uuid, content) in &stored {
        assert_eq!(&client(&alice, &["get", uuid]).expect(0).stdout, content);
    }
}

#[test]
fn confdir_links_back_up_verify_and_restore() {
    let inst = Instance::new("links");
    inst.kt(&["db", "start"]).expect(0);
    // A link inside the confdir (kept as a link) and one leaving it, as an
    // operator's link into a certificate store (archived as its file).
    let outside = TestDir::new("links-outside");
    let outside_file = outside.join("extra.pem");
    std::fs::write(&outside_file, "outside content\n").unwrap();
    std::os::unix::fs::symlink("ssl-cert-keytrustee.pem", inst.confdir.join(".ssl/current.pem")).unwrap();
    std::os::unix::fs::symlink(&outside_file, inst.confdir.join("extra.pem")).unwrap();
    let out_dir = TestDir::new("links-backups");
    let made = backup(&inst, &["--output", out_dir.path.to_str().unwrap(), "--gpg-recipient", "John Doe", "-q"]).expect(0);
    let file = made.stdout.trim().to_string();
    let out = run(kt().env("GNUPGHOME", &keyring().home).arg("-c").arg(&inst.confdir).args(["verify", "backup", "--decrypt", &file]));
    assert_eq!(out.code, 0, "{}", out.stdout);
    restore(&inst, &[&file, "--yes"]).expect(0);
    let link = inst.confdir.join(".ssl/current.pem");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("ssl-cert-keytrustee.pem"));
    let extra = inst.confdir.join("extra.pem");
    assert!(std::fs::symlink_metadata(&extra).unwrap().file_type().is_file());
    assert_eq!(std::fs::read_to_string(&extra).unwrap(), "outside content\n");
    let _ = Command::new("gpgconf").arg("--homedir").arg(&keyring().home).args(["--kill", "all"]).status();
}

/// The staging leftovers (`.kt-restore-*`) beside where the instance home was.
fn stagings(inst: &Instance) -> Vec<String> {
    let parent = inst.home.parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kt-restore-"))
        .collect();
    names.sort();
    names
}

/// Whether a process runs whose command line names `path` (a postgres of it).
fn runs_in(path: &Path) -> bool {
    let path = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(&path)).unwrap_or(false)
    })
}

/// An instance with `rows` deposits, backed up (encrypted to the test
/// keyring), then gone: its database stopped and its home removed, as on
/// a fresh host that restores it.
struct FreshHost {
    inst: Instance,
    fingerprint: String,
    /// Its tables before the backup ([`tables_digest`]).
    before: String,
    /// Its cluster's durability settings ([`durability_settings`]).
    settings: String,
    out_dir: TestDir,
    /// The backup file (in `out_dir`).
    file: String,
}

fn fresh_host(name: &str, rows: u32) -> FreshHost {
    let inst = crate::backup::instance_with_data(name, rows);
    let fingerprint = inst.kt(&["fingerprint"]).expect(0).stdout.trim().to_string();
    let before = tables_digest(&inst);
    let settings = durability_settings(&inst);
    let out_dir = TestDir::new(&format!("{name}-backups"));
    let made = backup(&inst, &["--output", out_dir.path.to_str().unwrap(), "--gpg-recipient", "John Doe", "-q"]).expect(0);
    let file = made.stdout.trim().to_string();
    inst.kt(&["db", "stop"]).expect(0);
    std::fs::remove_dir_all(&inst.home).unwrap();
    FreshHost { inst, fingerprint, before, settings, out_dir, file }
}

/// The settings a fresh host's staged cluster loads with (`restore::fresh`,
/// none of which may survive the move), as the running cluster has them,
/// and the files any setting comes from.
fn durability_settings(inst: &Instance) -> String {
    inst.psql(
        "postgres",
        "SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings WHERE name IN \
         ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'max_wal_senders', 'max_wal_size', \
          'checkpoint_timeout', 'wal_recycle', 'autovacuum') \
         UNION ALL SELECT string_agg(DISTINCT sourcefile, ',') FROM pg_file_settings",
    )
    .expect(0)
    .stdout
    .trim()
    .to_string()
}

#[test]
fn a_fresh_host_restore_killed_while_loading_leaves_nothing_in_place_and_runs_again() {
    use std::io::BufRead;
    // Enough rows for the load to take a moment.
    let FreshHost { inst, fingerprint, before, settings, out_dir, file } = fresh_host("fresh-kill", 150_000);

    // A forged backup (one bit flipped): refused, and the cluster made
    // while decrypting is gone with everything else.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let forged = out_dir.join("forged.tar.gpg");
    std::fs::write(&forged, &bytes).unwrap();
    let args = ["--yes", "--force-foreign", "--expect-fingerprint", &fingerprint];
    let out = restore(&inst, &[&[forged.to_str().unwrap()][..], &args[..]].concat());
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be decrypted"), "{}", out.stderr);
    assert!(!inst.home.exists(), "a forged backup put something in place");
    assert_eq!(stagings(&inst), Vec::<String>::new(), "a forged backup left a staging area");
    assert!(!runs_in(inst.home.parent().unwrap().join(".kt-restore-").as_path()), "a staged cluster still runs");

    // kill -9 while the dump loads into the staged cluster.
    let _stop = StopDbOnDrop(inst.confdir.clone());
    let mut child = kt()
        .env("GNUPGHOME", &keyring().home)
        .arg("-c")
        .arg(&inst.confdir)
        .arg("restore")
        .arg(&file)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let loading = line.contains("loading the dump into a scratch database of the new cluster");
        said.push(line);
        if loading {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(said.last().is_some_and(|l| l.contains("new cluster")), "the restore never loaded into a staged cluster: {said:?}");
    assert!(!inst.confdir.exists(), "a killed restore left the confdir in place");
    assert!(!inst.pg_rootdir().exists(), "a killed restore left a cluster in place");
    let staged = format!(".kt-restore-{}.db", child.id());
    assert!(stagings(&inst).contains(&staged), "the staged cluster of the killed run: {:?}", stagings(&inst));

    // The re-run cleans up after it and restores.
    let out = restore(&inst, &[&[file.as_str()][..], &args[..]].concat()).expect(0);
    assert!(out.stderr.contains("new cluster"), "{}", out.stderr);
    assert_eq!(stagings(&inst).iter().filter(|n| !n.starts_with(".kt-restore-safety-")).count(), 0, "{:?}", stagings(&inst));
    assert!(!runs_in(&inst.home.parent().unwrap().join(&staged)), "the killed run's staged cluster still runs");
    assert_eq!(tables_digest(&inst), before);
    // Durable again: the settings it loaded with (no fsync, minimal WAL)
    // are gone, the instance's back.
    assert_eq!(durability_settings(&inst), settings, "the restored cluster runs with the staged load's settings");
    let out = inst.kt(&["db", "status"]).expect(0);
    assert!(out.stdout.contains("running") || out.stderr.contains("running"), "{} {}", out.stdout, out.stderr);
}

#[test]
fn the_sweep_of_killed_stagings_leaves_what_kt_did_not_make() {
    use std::os::unix::fs::MetadataExt;
    assert!(is_root(), "this test plants directories of other accounts: run it as root");
    let FreshHost { inst, fingerprint, before, out_dir: _out_dir, file, .. } = fresh_host("fresh-plant", 50);

    // Directories named like a killed run's staged cluster (pids above
    // pid_max: no such process), none of them made by kt: one of another
    // account, one of the service account (which owns only what is inside
    // kt's), and a link to a directory of root's.
    let parent = inst.home.parent().unwrap().to_path_buf();
    let _cleanup = TestDir::new("fresh-plant-elsewhere");
    let elsewhere = _cleanup.path.join("roots");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("keep"), "root's file\n").unwrap();
    let service = Command::new("id").args(["-u", "keytrustee"]).output().unwrap();
    let service_uid: u32 = String::from_utf8_lossy(&service.stdout).trim().parse().expect("the service account keytrustee exists");
    let mut planted = Vec::new();
    for (pid, uid) in [(99001u32, 65534u32), (99002, service_uid)] {
        let dir = parent.join(format!(".kt-restore-{pid}.db"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data").join("theirs"), "not kt's\n").unwrap();
        for p in [dir.clone(), dir.join("data"), dir.join("data").join("theirs")] {
            std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
        }
        planted.push(dir);
    }
    let link = parent.join(".kt-restore-99003.db");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();

    let args = ["--yes", "--force-foreign", "--expect-fingerprint", &fingerprint];
    let _stop = StopDbOnDrop(inst.confdir.clone());
    let out = restore(&inst, &[&[file.as_str()][..], &args[..]].concat()).expect(0);
    assert!(out.stderr.contains("new cluster"), "the restore did not stage a cluster: {}", out.stderr);
    assert_eq!(tables_digest(&inst), before);
    for dir in &planted {
        let theirs = dir.join("data").join("theirs");
        assert_eq!(std::fs::read_to_string(&theirs).ok().as_deref(), Some("not kt's\n"), "the restore's sweep removed {}", dir.display());
    }
    assert!(std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()), "the link went");
    assert_eq!(std::fs::read_to_string(elsewhere.join("keep")).unwrap(), "root's file\n");
    // What kt staged is kt's own directory; the service account's are
    // only inside it.
    let ours: Vec<String> = stagings(&inst).into_iter().filter(|n| n.ends_with(".db") && !["99001", "99002", "99003"].iter().any(|p| n.contains(p))).collect();
    assert_eq!(ours, Vec::<String>::new(), "the restore left its staged cluster");
    for dir in &planted {
        assert!(std::fs::metadata(dir).map(|m| m.uid() != 0).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::remove_file(&link).unwrap();
}

#[test]
fn the_sweep_stops_no_other_server_that_reuses_a_killed_staged_clusters_pid() {
    use std::os::unix::fs::PermissionsExt;
    assert!(is_root(), "this test plants a staged cluster of the service account: run it as root");
    // Another cluster of the service account, running: its postmaster's pid
    // is what a killed run's stale postmaster.pid names after a reboot.
    let other = Instance::new("sweep-pid-other");
    other.kt(&["db", "start"]).expect(0);
    let other_pidfile = std::fs::read_to_string(other.pg_rootdir().join("postmaster.pid")).unwrap();
    let other_pid: i32 = other_pidfile.lines().next().unwrap().trim().parse().unwrap();

    // A killed fresh-host run's staged cluster, as kt makes it (root's
    // directory, the service account's data directory), its server gone.
    let dir = TestDir::new("sweep-pid");
    let planted = dir.path.join(".kt-restore-99004.db");
    let data = planted.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(other.pg_rootdir().join("PG_VERSION"), data.join("PG_VERSION")).unwrap();
    std::fs::write(data.join("postmaster.pid"), other_pidfile.replace(other.pg_rootdir().to_str().unwrap(), data.to_str().unwrap())).unwrap();
    let service = Command::new("id").args(["-g", "keytrustee"]).output().unwrap();
    let service_gid: u32 = String::from_utf8_lossy(&service.stdout).trim().parse().expect("the service account keytrustee exists");
    let service = Command::new("id").args(["-u", "keytrustee"]).output().unwrap();
    let service_uid: u32 = String::from_utf8_lossy(&service.stdout).trim().parse().unwrap();
    std::os::unix::fs::chown(&planted, None, Some(service_gid)).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o710)).unwrap();
    for p in [data.clone(), data.join("PG_VERSION"), data.join("postmaster.pid")] {
        std::os::unix::fs::chown(&p, Some(service_uid), Some(service_gid)).unwrap();
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Any restore beside it sweeps it (this one then fails on its input).
    let junk = dir.join("junk.tar");
    std::fs::write(&junk, "not a backup\n").unwrap();
    let confdir = dir.join("home").join(".keytrustee");
    let out = run(kt().arg("-c").arg(&confdir).arg("restore").arg(&junk).arg("--yes"));
    assert_ne!(out.code, 0, "{}", out.stderr);

    // SAFETY: signal 0 only checks that the process exists.
    assert_eq!(unsafe { libc::kill(other_pid, 0) }, 0, "the sweep stopped another cluster's server (pid {other_pid})");
    let status = other.kt(&["db", "status"]);
    assert!(status.stdout.contains("running") || status.stderr.contains("running"), "{} {}", status.stdout, status.stderr);
    assert!(!planted.exists(), "the dead staged cluster was not swept");
}
