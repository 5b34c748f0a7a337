//! Staging: decrypt (through GnuPG) and extract a backup into a private
//! directory, checking every member before it is written: relative paths
//! only, no `..`, no links, no devices. Nothing outside the staging
//! directory is touched here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub use crate::gnupg::PrivateDir as StagingDir;

use sha2::{Digest, Sha256};

use crate::backup::dump::{DumpDigest, DumpFacts};
use crate::error::{Error, Result};
use super::stream::Tap;

/// What was extracted.
#[derive(Debug, Default)]
pub struct Staged {
    /// member path -> (size, sha256)
    pub files: BTreeMap<String, (u64, String)>,
    pub manifest: Option<serde_json::Value>,
    /// The `.sql` member and what its scan found (row counts, psql
    /// meta-commands).
    pub dump: Option<(String, DumpFacts)>,
    /// The dump went to a [`Tap`], not to a file.
    pub dump_streamed: bool,
}

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
    cmd.args(["--batch", "--no-tty", "--quiet"]);
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

/// Waits for the decrypting gpg: a failure (wrong or missing key, bad
/// passphrase, failed integrity check) is bad input, exit 2.
pub fn finish_decryption(child: Option<Child>) -> Result<()> {
    let Some(mut child) = child else { return Ok(()) };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(|e| Error::env("gpg did not finish").because_err(&e))?;
    if !status.success() {
        let mut err = Error::usage("the backup cannot be decrypted (wrong or missing key, bad passphrase, or damaged data)");
        for line in stderr.lines().filter(|l| !l.trim().is_empty()).take(4) {
            err = err.because(line.trim().trim_start_matches("gpg: ").to_string());
        }
        return Err(err.with_hint("give the recipient's key with --secret-key FILE (and --passphrase-file), or import it into GnuPG"));
    }
    Ok(())
}

/// Called when the dump member starts, with what was staged before it: a
/// returned [`Tap`] gets the dump's bytes instead of a staging file (a
/// loader takes them as they are decrypted; the dump is still hashed and
/// scanned here, and [`Staged::dump_streamed`] says it has no file).
pub type OnDump<'h> = &'h mut dyn FnMut(&Staged) -> Option<Tap>;

/// Extracts the tar into `root`, refusing unsafe members.
pub fn extract<'a>(source: Box<dyn Read + 'a>, root: &Path, on_dump: OnDump<'_>) -> Result<Staged> {
    let bad = |why: String| Error::usage("the backup is not a safe, whole archive").because(why);
    let mut archive = tar::Archive::new(source);
    let mut staged = Staged::default();
    let entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the tar is damaged: {e}")))?;
        let path = entry.path().map_err(|e| bad(format!("unreadable member name: {e}")))?.to_string_lossy().into_owned();
        let rel = Path::new(&path);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(bad(format!("member {path:?} would escape the extraction root")));
        }
        let kind = entry.header().entry_type();
        let target = root.join(rel);
        if kind.is_dir() {
            private_dirs(&target)?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!("member {path:?} is a link or a device ({:?}): refused", kind)));
        }
        let mode = (entry.header().mode().unwrap_or(0o600) & 0o700).max(0o600);
        // A dump is hashed by its DumpDigest (which also counts rows), any
        // other member by a plain SHA-256: each byte is hashed once.
        let mut dump_digest = path.ends_with(".sql").then(DumpDigest::default);
        let tap = match &dump_digest {
            Some(_) if staged.dump.is_none() => on_dump(&staged),
            _ => None,
        };
        let mut plain = Sha256::new();
        let mut each = |chunk: &[u8]| match dump_digest.as_mut() {
            Some(d) => d.update(chunk),
            None => plain.update(chunk),
        };
        let size = match tap {
            Some(tap) => {
                let size = stream_member(&mut entry, bad, &tap, each)?;
                tap.finish();
                staged.dump_streamed = true;
                size
            }
            None => copy_member(&mut entry, &target, mode, bad, &mut each)?,
        };
        let (sha, digest) = match dump_digest.map(DumpDigest::finish) {
            Some(facts) => (facts.sha256.clone(), Some(facts)),
            None => (hex::encode(plain.finalize()), None),
        };
        if path.ends_with(".manifest.json") {
            let text = std::fs::read_to_string(&target).map_err(|e| bad(e.to_string()))?;
            staged.manifest = Some(serde_json::from_str(&text).map_err(|e| bad(format!("the manifest is not JSON: {e}")))?);
            continue;
        }
        if let Some(facts) = digest {
            if staged.dump.is_some() {
                return Err(bad("the archive holds more than one .sql dump".into()));
            }
            staged.dump = Some((path.clone(), facts));
        }
        staged.files.insert(path, (size, sha));
    }
    Ok(staged)
}

/// Compares the staged files with the manifest (when there is one).
pub fn check_manifest(staged: &Staged) -> Result<()> {
    let Some(manifest) = &staged.manifest else { return Ok(()) };
    let mut problems = Vec::new();
    for m in manifest["members"].as_array().into_iter().flatten() {
        if m["type"] != "file" {
            continue;
        }
        let path = m["path"].as_str().unwrap_or("");
        match staged.files.get(path) {
            Some((size, sha)) if Some(sha.as_str()) == m["sha256"].as_str() && Some(*size) == m["size"].as_u64() => {}
            Some(_) => problems.push(format!("{path} does not match its checksum")),
            None => problems.push(format!("{path} is missing")),
        }
    }
    if let (Some((_, facts)), Some(expected)) = (&staged.dump, manifest["row_counts"].as_object()) {
        let rows = &facts.row_counts;
        for (table, n) in expected {
            if rows.get(table).copied() != n.as_u64() {
                problems.push(format!("table {table}: the dump has {:?} rows, the manifest {n}", rows.get(table)));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::usage("the backup does not match its manifest").because(problems.join("; ")))
    }
}


/// The documented manual backup: `keytrustee-conf.zip` (`zip -r --encrypt`
/// of the confdir) and `keytrustee-db.zip` (`pg_dump -c | zip --encrypt`),
/// ZipCrypto or AES, one password. Extracted like a tar, with the same
/// refusals; the dump lands at `<home>/keytrustee-db.sql` beside the confdir.
pub fn extract_zips(zips: &[PathBuf], password: &str, root: &Path) -> Result<Staged> {
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
    let mut staged = Staged::default();
    let wrong_password = || Error::usage("cannot decrypt the zip backup: wrong password").with_hint("check --zip-password-file");
    let mut conf_dir_member: Option<String> = None;
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
        let size = copy_member(&mut entry, &target, 0o600, bad, |chunk| hasher.update(chunk))?;
        let sha = hex::encode(hasher.finalize());
        staged.files.insert(name, (size, sha));
    }
    let conf_dir_member = conf_dir_member.ok_or_else(|| Error::usage("keytrustee-conf.zip holds no keytrustee.conf"))?;
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
    staged.files.insert(dump_member.clone(), (facts.size, facts.sha256.clone()));
    staged.dump = Some((dump_member, facts));
    Ok(staged)
}

/// The statements `pg_dump --clean` puts before the first CREATE.
fn is_clean_statement(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    text.starts_with("DROP ") || (text.starts_with("ALTER TABLE ") && text.contains(" DROP "))
}

/// Creates `dir` and its missing parents, private (0700).
fn private_dirs(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::env(format!("cannot create {}", dir.display())).because_err(&e))
}

/// Copies one member into a new private file under its (private) parent,
/// handing every chunk to `each` (which hashes it) on the way. Read errors
/// are the archive's fault (`bad`), write errors the environment's.
fn copy_member(
    mut from: impl Read,
    target: &Path,
    mode: u32,
    bad: impl Fn(String) -> Error,
    mut each: impl FnMut(&[u8]),
) -> Result<u64> {
    if let Some(parent) = target.parent() {
        private_dirs(parent)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(target)
        .map_err(|e| bad(format!("{} appears twice or cannot be written: {e}", target.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(|e| bad(format!("{}: {e}", target.display())))?;
        if n == 0 {
            break;
        }
        each(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::env(format!("cannot write {}", target.display())).because_err(&e))?;
        size += n as u64;
    }
    Ok(size)
}

/// Hands one member to `tap` in chunks, giving each to `each` (which
/// hashes it) first. Read errors are the archive's fault (`bad`).
fn stream_member(mut from: impl Read, bad: impl Fn(String) -> Error, tap: &Tap, mut each: impl FnMut(&[u8])) -> Result<u64> {
    let mut size = 0u64;
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        let mut filled = 0;
        // Whole chunks: fewer, larger hand-overs.
        while filled < chunk.len() {
            let n = from.read(&mut chunk[filled..]).map_err(|e| bad(format!("the dump: {e}")))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(size);
        }
        chunk.truncate(filled);
        each(&chunk);
        size += filled as u64;
        tap.send(chunk);
    }
}
