//! Staging: decrypt a backup through GnuPG (its integrity verdict read
//! from GnuPG's status lines), or open the documented zip pair, into a
//! private directory. Tars are read by `backup::read`, under the policy
//! `kt verify backup` uses too. Nothing outside the staging directory is
//! touched here.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub use crate::gnupg::PrivateDir as StagingDir;

use sha2::{Digest, Sha256};

use crate::backup::dump::DumpDigest;
use crate::backup::read::{copy_member, private_dirs, Contents, Found};
use crate::error::{Error, Result};

/// Opens the backup's plaintext: the file itself for a tar, else a gpg
/// child decrypting it (with `gnupg_home` when a secret key file is used).
pub fn open(file: &Path, gnupg_home: Option<&Path>, passphrase_file: Option<&Path>) -> Result<(Box<dyn Read>, Option<Child>)> {
    let mut head = [0u8; 1];
    std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Error::usage(format!("cannot read {}", file.display())).because_err(&e))?;
    if head[0] & 0x80 == 0 {
        let f = std::fs::File::open(file).map_err(|e| Error::usage("cannot open the backup").because_err(&e))?;
        return Ok((Box::new(f), None));
    }
    if let Err(why) = crate::backup::message::walk(file) {
        return Err(Error::usage(format!("{} is damaged", file.display())).because(why));
    }
    let mut cmd = Command::new("gpg");
    // Status lines on stderr: the integrity verdict is read from them.
    cmd.args(["--batch", "--no-tty", "--quiet", "--status-fd", "2"]);
    if let Some(home) = gnupg_home {
        cmd.arg("--homedir").arg(home);
    }
    if let Some(pass) = passphrase_file {
        cmd.args(["--pinentry-mode", "loopback", "--passphrase-file"]).arg(pass);
    }
    let mut child = cmd
        .arg("--decrypt")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::env("cannot run gpg to decrypt").because_err(&e).with_hint("install GnuPG (gpg)"))?;
    let out = child.stdout.take().expect("piped");
    // A 1 MiB pipe instead of 64 KiB: fewer wake-ups of gpg and kt for
    // gigabytes of plaintext (best effort; the default works too).
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor this function owns; no memory passed.
        unsafe { libc::fcntl(out.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    }
    Ok((Box::new(out), Some(child)))
}

/// Waits for the decrypting gpg and reads its verdict: exit 0 and the
/// status lines `DECRYPTION_OKAY` and `GOODMDC` (the message's integrity
/// check held). Anything else (wrong or missing key, bad passphrase, a
/// failed or missing integrity check) is bad input, exit 2.
pub fn finish_decryption(child: Option<Child>) -> Result<()> {
    let Some(mut child) = child else { return Ok(()) };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(|e| Error::env("gpg did not finish").because_err(&e))?;
    let said = |what: &str| stderr.lines().any(|l| l.trim_end() == format!("[GNUPG:] {what}"));
    if !status.success() || !said("DECRYPTION_OKAY") || !said("GOODMDC") {
        let mut err = Error::usage("the backup cannot be decrypted (wrong or missing key, bad passphrase, or damaged data)");
        if status.success() {
            err = err.because("GnuPG did not confirm the message's integrity check (MDC)");
        }
        let messages = stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("[GNUPG:]"));
        for line in messages.take(4) {
            err = err.because(line.trim().trim_start_matches("gpg: ").to_string());
        }
        return Err(err.with_hint("give the recipient's key with --secret-key FILE (and --passphrase-file), or import it into GnuPG"));
    }
    Ok(())
}

/// The documented manual backup: `keytrustee-conf.zip` (`zip -r --encrypt`
/// of the confdir) and `keytrustee-db.zip` (`pg_dump -c | zip --encrypt`),
/// ZipCrypto or AES, one password. Extracted like a tar, with the same
/// refusals; the dump lands at `<home>/keytrustee-db.sql` beside the confdir.
pub fn extract_zips(zips: &[PathBuf], password: &str, root: &Path) -> Result<Contents> {
    let bad = |why: String| Error::usage("the zip backup is not a safe, whole archive").because(why);
    let mut conf_zip = None;
    let mut db_zip = None;
    for path in zips {
        let file = std::fs::File::open(path).map_err(|e| Error::usage(format!("cannot open {}", path.display())).because_err(&e))?;
        let archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let names: Vec<String> = archive.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
        if names.iter().any(|n| n.ends_with("keytrustee.conf")) {
            conf_zip = Some(archive);
        } else {
            db_zip = Some(archive);
        }
    }
    let (Some(mut conf), Some(mut db)) = (conf_zip, db_zip) else {
        return Err(Error::usage("a zip restore needs both keytrustee-conf.zip (the confdir) and keytrustee-db.zip (the dump)"));
    };
    let mut staged = Contents::default();
    let wrong_password = || Error::usage("cannot decrypt the zip backup: wrong password").with_hint("check --zip-password-file");
    let mut conf_dir_member: Option<String> = None;
    let mut pubrings = Vec::new();
    for i in 0..conf.len() {
        let mut entry = conf.by_index_decrypt(i, password.as_bytes()).map_err(|e| match e {
            zip::result::ZipError::InvalidPassword => wrong_password(),
            e => bad(e.to_string()),
        })?;
        let name = entry.name().map_err(|e| bad(e.to_string()))?.into_owned();
        let rel = Path::new(&name);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(bad(format!("member {name:?} would escape the extraction root")));
        }
        if entry.is_symlink() {
            return Err(bad(format!("member {name:?} is a link: refused")));
        }
        let target = root.join(rel);
        if entry.is_dir() {
            private_dirs(&target)?;
            continue;
        }
        if name.ends_with("/keytrustee.conf") {
            conf_dir_member = Some(name.trim_end_matches("/keytrustee.conf").to_string());
        }
        let mut hasher = Sha256::new();
        let mut pubring = name.ends_with("/pubring.gpg").then(Vec::new);
        let size = copy_member(&mut entry, &target, 0o600, &mut |chunk: &[u8]| {
            hasher.update(chunk);
            if let Some(p) = pubring.as_mut() {
                p.extend_from_slice(chunk);
            }
        })?;
        let sha256 = hex::encode(hasher.finalize());
        if let Some(bytes) = pubring {
            pubrings.push((name.clone(), bytes));
        }
        if staged.members.insert(name.clone(), Found::File { size, sha256, mode: 0o600 }).is_some() {
            return Err(bad(format!("member {name:?} appears twice")));
        }
    }
    let conf_dir_member = conf_dir_member.ok_or_else(|| Error::usage("keytrustee-conf.zip holds no keytrustee.conf"))?;
    staged.pubring = pubrings.into_iter().find(|(p, _)| *p == format!("{conf_dir_member}/pubring.gpg")).map(|(_, b)| b);
    staged.confdir = Some(conf_dir_member.clone());
    if db.len() != 1 {
        return Err(bad(format!("keytrustee-db.zip should hold one dump, it holds {} entries", db.len())));
    }
    let home_member = Path::new(&conf_dir_member).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let dump_member = if home_member.is_empty() { "keytrustee-db.sql".to_string() } else { format!("{home_member}/keytrustee-db.sql") };
    let mut entry = db.by_index_decrypt(0, password.as_bytes()).map_err(|e| match e {
        zip::result::ZipError::InvalidPassword => wrong_password(),
        e => bad(e.to_string()),
    })?;
    let target = root.join(&dump_member);
    if let Some(parent) = target.parent() {
        private_dirs(parent)?;
    }
    let out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target).map_err(|e| bad(e.to_string()))?;
    let mut out = std::io::BufWriter::new(out);
    let mut digest = DumpDigest::default();
    let mut reader = std::io::BufReader::new(&mut entry);
    let mut line = Vec::new();
    let mut in_copy = false;
    let mut seen_create = false;
    loop {
        line.clear();
        let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(|e| bad(format!("the dump: {e} (wrong password or damaged)")))?;
        if n == 0 {
            break;
        }
        let text: &[u8] = &line;
        let mut owned;
        let mut piece: &[u8] = text;
        if in_copy {
            if text == b"\\.\n" {
                in_copy = false;
            }
        } else if text.starts_with(b"COPY ") && text.ends_with(b" FROM stdin;\n") {
            in_copy = true;
        } else if text.starts_with(b"CREATE ") {
            seen_create = true;
        } else if !seen_create && is_clean_statement(text) {
            // `pg_dump -c` drops objects before creating them; the database
            // is new and empty here, so those statements are kept as comments.
            owned = b"-- kt restore (fresh database): ".to_vec();
            owned.extend_from_slice(text);
            piece = &owned;
            digest.update(piece);
            out.write_all(piece).map_err(|e| Error::env("cannot write the staging area").because_err(&e))?;
            continue;
        }
        digest.update(piece);
        out.write_all(piece).map_err(|e| Error::env("cannot write the staging area").because_err(&e))?;
    }
    out.flush().map_err(|e| Error::env("cannot write the staging area").because_err(&e))?;
    let facts = digest.finish();
    staged.members.insert(dump_member.clone(), Found::File { size: facts.size, sha256: facts.sha256.clone(), mode: 0o600 });
    staged.dump = Some((dump_member, facts));
    Ok(staged)
}

/// The statements `pg_dump --clean` puts before the first CREATE.
fn is_clean_statement(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    text.starts_with("DROP ") || (text.starts_with("ALTER TABLE ") && text.contains(" DROP "))
}
