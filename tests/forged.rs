//! Forged backups: a dump that runs `COPY ... TO PROGRAM`, encrypted to the
//! right recipient, in every disguise an attacker who has the recipient's
//! public key can make. `kt restore` (answered "no", --dry-run, --yes) and
//! `kt verify backup --restore-test` refuse each one, the program never
//! runs, and the live instance is untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backup::{backup, keyring};
use crate::harness::*;

/// Rewrites a kt backup's tar: a hostile statement goes into the dump;
/// `manifest_out` (when given) receives a manifest re-made to match the new
/// dump, put into the tar in place of the old one; `sig_in` (when given)
/// replaces the manifest's signature.
const FORGE: &str = r#"
import hashlib, io, json, sys, tarfile
src, dst, marker, manifest_out, sig_in, payload = sys.argv[1:7]
tin = tarfile.open(src)
members = [(m, tin.extractfile(m).read() if m.isfile() else None) for m in tin.getmembers()]
dump_name = None
for i, (m, d) in enumerate(members):
    if m.name.endswith('.sql'):
        if payload == '-':
            evil = ("COPY (SELECT 1) TO PROGRAM 'touch %s';\n" % marker).encode()
            at = d.index(b'CREATE TABLE')
        else:
            evil = payload.encode()
            at = d.index(b'ALTER TABLE ONLY')
        d = d[:at] + evil + d[at:]
        members[i] = (m, d)
        dump_name = m.name
        dump = d
for i, (m, d) in enumerate(members):
    if m.name.endswith('.manifest.json') and manifest_out != '-':
        man = json.loads(d)
        for e in man['members']:
            if e['path'] == dump_name:
                e['sha256'] = hashlib.sha256(dump).hexdigest()
                e['size'] = len(dump)
        d = (json.dumps(man, indent=2) + '\n').encode()
        open(manifest_out, 'wb').write(d)
        members[i] = (m, d)
    if m.name.endswith('.manifest.json.sig') and sig_in != '-':
        members[i] = (m, open(sig_in, 'rb').read())
out = tarfile.open(dst, 'w', format=tarfile.GNU_FORMAT)
for m, d in members:
    if d is not None:
        m.size = len(d)
    out.addfile(m, io.BytesIO(d) if d is not None else None)
out.close()
"#;

/// `payload`: SQL put before the dump's constraints instead of the
/// `COPY ... TO PROGRAM` put before its tables.
fn forge_with(src: &Path, dst: &Path, marker: &Path, manifest_out: Option<&Path>, sig_in: Option<&Path>, payload: &str) {
    let arg = |p: Option<&Path>| p.map(|p| p.to_str().unwrap().to_string()).unwrap_or_else(|| "-".into());
    run(Command::new("python3")
        .arg("-c")
        .arg(FORGE)
        .arg(src)
        .arg(dst)
        .arg(marker)
        .arg(arg(manifest_out))
        .arg(arg(sig_in))
        .arg(payload))
    .expect(0);
}

fn forge(src: &Path, dst: &Path, marker: &Path, manifest_out: Option<&Path>, sig_in: Option<&Path>) {
    forge_with(src, dst, marker, manifest_out, sig_in, "-")
}

fn gpg(home: &Path, args: &[&str]) -> Run {
    run(Command::new("gpg").arg("--homedir").arg(home).args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]).args(args))
}

#[test]
fn forged_backups_never_run_their_sql() {
    let inst = Instance::new("forged");
    inst.kt(&["db", "start"]).expect(0);
    inst.psql("keytrustee", "INSERT INTO organizations (name) VALUES ('acme')").expect(0);
    let k = keyring();
    let work = TestDir::new("forge");
    let made = backup(&inst, &["--output", work.path.to_str().unwrap(), "--gpg-recipient", "John Doe", "-q"]).expect(0);
    let good = PathBuf::from(made.stdout.trim());
    let plain = work.join("good.tar");
    gpg(&k.home, &["-o", plain.to_str().unwrap(), "-d", good.to_str().unwrap()]).expect(0);
    let marker = work.join("PWNED");
    let encrypt = |tar: &Path| -> PathBuf {
        let out = tar.with_extension("tar.gpg");
        gpg(&k.home, &["--trust-model", "always", "-r", &k.john, "-o", out.to_str().unwrap(), "--encrypt", tar.to_str().unwrap()]).expect(0);
        out
    };

    // 1. The dump changed, the manifest and its signature kept.
    let changed_dump = work.join("changed-dump.tar");
    forge(&plain, &changed_dump, &marker, None, None);
    // 2. The manifest re-made to match, the old signature kept.
    let changed_manifest = work.join("changed-manifest.tar");
    let manifest2 = work.join("manifest2.json");
    forge(&plain, &changed_manifest, &marker, Some(&manifest2), None);
    // A forgery whose re-made manifest is signed with the key in `signer`.
    let signed_forgery = |name: &str, signer: &Path, payload: &str| -> (PathBuf, PathBuf, PathBuf) {
        let manifest = work.join(&format!("{name}.manifest.json"));
        let sig = work.join(&format!("{name}.manifest.json.sig"));
        forge_with(&plain, &work.join(&format!("{name}-unsigned.tar")), &marker, Some(&manifest), None, payload);
        gpg(signer, &["-o", sig.to_str().unwrap(), "--detach-sign", manifest.to_str().unwrap()]).expect(0);
        let tar = work.join(&format!("{name}.tar"));
        forge_with(&plain, &tar, &marker, Some(&work.join(&format!("{name}.again.json"))), Some(&sig), payload);
        (tar, manifest, sig)
    };
    // 3. The manifest re-made and validly signed by another key.
    let forger = TestDir::new("forger-gpg");
    gpg(&forger.path, &["--quick-gen-key", "Forger <forger@example.net>", "ed25519", "sign", "never"]).expect(0);
    let (other_signer, _, _) = signed_forgery("other-signer", &forger.path, "-");
    // 4. Signed by the server's own key (its secret key stolen, or a backup
    //    of a compromised server): the role and the statement filter hold.
    let server_gpg = TestDir::new("server-gpg");
    gpg(&server_gpg.path, &["--import", inst.confdir.join("secring.gpg").to_str().unwrap()]).expect(0);
    let (server_signed, manifest4, sig4) = signed_forgery("server-signed", &server_gpg.path, "-");
    // gpg --verify, as an outside witness, accepts that signature.
    gpg(&server_gpg.path, &["--verify", sig4.to_str().unwrap(), manifest4.to_str().unwrap()]).expect(0);
    // 5. Signed by the server's key, with statements the filter lets
    //    through whose expressions would run later, as the database's
    //    owner: a function and a column default calling it. The shape check
    //    refuses what kt's migrations do not make.
    let payload = format!(
        "CREATE FUNCTION public.evil() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;\n\
         ALTER TABLE ONLY public.deposits ALTER COLUMN name SET DEFAULT public.evil();\n-- {}\n",
        marker.display()
    );
    let (planted, _, _) = signed_forgery("planted", &server_gpg.path, &payload);

    let before = inst.psql("keytrustee", "SELECT count(*) FROM organizations").expect(0).stdout;
    let restore = |file: &Path, extra: &[&str], stdin: &str| -> Run {
        let mut child = kt()
            .env("GNUPGHOME", &k.home)
            .arg("-c")
            .arg(&inst.confdir)
            .arg("restore")
            .arg(file)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        Run::from(child.wait_with_output().unwrap())
    };
    for (tar, needle) in [
        (&changed_dump, "does not match its manifest"),
        (&changed_manifest, "signature does not verify"),
        (&other_signer, "signature does not verify"),
        (&server_signed, "COPY"),
        (&planted, "not kt's schema"),
    ] {
        let encrypted = encrypt(tar);
        for (extra, stdin) in [(&["--dry-run"][..], ""), (&["--yes"][..], ""), (&[][..], "no\n")] {
            let out = restore(&encrypted, extra, stdin);
            let what = format!("{} {extra:?}", tar.display());
            let judged_at_load = needle == "COPY" || needle == "not kt's schema";
            if extra == ["--dry-run"] && judged_at_load {
                // The plan holds nothing to refuse yet: nothing runs in a dry run.
                assert_eq!(out.code, 0, "{what}: {}", out.stderr);
            } else {
                assert_eq!(out.code, 2, "{what}: {}", out.stderr);
                // Without a terminal, the unconfirmed run stops before
                // reading anything; with --yes the check names the cause.
                if !extra.is_empty() {
                    assert!(out.stderr.contains(needle), "{what}: {}", out.stderr);
                }
            }
            assert!(!marker.exists(), "{what}: the forged SQL ran");
        }
        let out = run(kt()
            .env("GNUPGHOME", &k.home)
            .arg("-c")
            .arg(&inst.confdir)
            .args(["verify", "backup", "--restore-test"])
            .arg(&encrypted));
        assert_eq!(out.code, 1, "{}: {}", tar.display(), out.stdout);
        assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
        assert!(!marker.exists(), "{}: verify --restore-test ran the forged SQL", tar.display());
    }
    let after = inst.psql("keytrustee", "SELECT count(*) FROM organizations").expect(0).stdout;
    assert_eq!(before, after);
    let leftovers = inst.psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'kt\\_%' UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE 'kt\\_%'").expect(0);
    assert_eq!(leftovers.stdout.trim(), "", "scratch databases or loading roles left behind");
    for home in [&forger.path, &server_gpg.path, &k.home] {
        let _ = Command::new("gpgconf").arg("--homedir").arg(home).args(["--kill", "all"]).status();
    }
}
