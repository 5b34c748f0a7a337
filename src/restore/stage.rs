//! Staging: decrypt (through GnuPG) and extract a backup into a private
//! directory, checking every member before it is written: relative paths
//! only, no `..`, no links, no devices. Nothing outside the staging
//! directory is touched here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path};
use std::process::{Child, Command, Stdio};

pub use crate::gnupg::PrivateDir as StagingDir;

use sha2::{Digest, Sha256};

use crate::backup::dump::DumpDigest;
use crate::error::{Error, Result};

/// What was extracted.
#[derive(Debug, Default)]
pub struct Staged {
    /// member path -> (size, sha256)
    pub files: BTreeMap<String, (u64, String)>,
    pub manifest: Option<serde_json::Value>,
    /// The `.sql` member and its row counts.
    pub dump: Option<(String, BTreeMap<String, u64>)>,
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
    if let Err(why) = crate::verify::backup::walk_message(file) {
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

/// Extracts the tar into `root`, refusing unsafe members.
pub fn extract(source: Box<dyn Read>, root: &Path) -> Result<Staged> {
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
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&target)
                .map_err(|e| Error::env(format!("cannot create {}", target.display())).because_err(&e))?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!("member {path:?} is a link or a device ({:?}): refused", kind)));
        }
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::env(format!("cannot create {}", parent.display())).because_err(&e))?;
        }
        let mode = entry.header().mode().unwrap_or(0o600) & 0o700;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.max(0o600))
            .open(&target)
            .map_err(|e| bad(format!("member {path:?} appears twice or cannot be written: {e}")))?;
        let is_sql = path.ends_with(".sql");
        let mut digest = is_sql.then(DumpDigest::default);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| bad(format!("{path}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(d) = digest.as_mut() {
                d.update(&buf[..n]);
            }
            out.write_all(&buf[..n]).map_err(|e| Error::env(format!("cannot write {}", target.display())).because_err(&e))?;
            size += n as u64;
        }
        if path.ends_with(".manifest.json") {
            let text = std::fs::read_to_string(&target).map_err(|e| bad(e.to_string()))?;
            staged.manifest = Some(serde_json::from_str(&text).map_err(|e| bad(format!("the manifest is not JSON: {e}")))?);
            continue;
        }
        if let Some(d) = digest {
            if staged.dump.is_some() {
                return Err(bad("the archive holds more than one .sql dump".into()));
            }
            staged.dump = Some((path.clone(), d.finish().row_counts));
        }
        staged.files.insert(path, (size, crate::auth::hex(&hasher.finalize())));
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
    if let (Some((_, rows)), Some(expected)) = (&staged.dump, manifest["row_counts"].as_object()) {
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

