//! The database dump: `pg_dump` in plain format (SQL with COPY blocks that
//! `psql -f` loads into an empty database), taken from one snapshot while
//! the server goes on writing. pg_dump writes a private temp file (a tar
//! member needs its size before its data) which kt reads right behind it,
//! computing its SHA-256 and the rows of every table on the way, so they
//! cost no time after pg_dump ends and memory stays flat.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::endpoint::Endpoint;

/// What the dump turned out to hold, learned while it is archived.
#[derive(Debug, Clone)]
pub struct DumpFacts {
    pub size: u64,
    pub sha256: String,
    pub row_counts: BTreeMap<String, u64>,
    /// The psql meta-commands outside COPY data (`\restrict KEY`), each
    /// once, and the client encoding the dump sets: what decides whether
    /// kt loads it at all (`storage::load::check_dump`).
    pub meta_commands: Vec<String>,
    pub client_encoding: Option<String>,
}

impl DumpFacts {
    /// Refuses a dump kt does not load (see `storage::load::check_dump`).
    pub fn check_loadable(&self) -> crate::error::Result<()> {
        crate::storage::load::check_dump(&self.meta_commands, self.client_encoding.as_deref())
    }
}

/// Runs pg_dump against the instance's database (local, or external over
/// TLS as DB_SSLMODE says) with the instance's password file, writing
/// into `out` (created here, 0600, before pg_dump opens it), and reads the
/// file behind it as it grows, hashing it and counting its rows: by the
/// time pg_dump ends, everything the manifest says about the dump is
/// known, and only the archive (the encryption) is left to do.
///
/// Following the file rather than piping pg_dump's output through kt saves
/// a copy of every byte (pipe in, pipe out, file write become one read of
/// the page cache), and pg_dump never waits for kt. The hash is of the
/// file's bytes; the archive reads the same file back (a tar member needs
/// its size before its data) and every reader of the backup checks those
/// bytes against the manifest.
pub fn dump(bindir: &Path, endpoint: &Endpoint, pgpass: &Path, out: &Path, progress: &dyn Progress) -> Result<DumpFacts> {
    let cannot_read = |e: std::io::Error| Error::env(format!("cannot read {}", out.display())).because_err(&e);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Error::env(format!("cannot create {}", out.display())).because_err(&e))?;
    let mut file = File::open(out).map_err(cannot_read)?;
    let pg_dump = bindir.join("pg_dump");
    let mut command = Command::new(&pg_dump);
    endpoint.libpq_env(&mut command, pgpass);
    let mut child = command
        .args(["--no-password", "--format", "plain", "--encoding", "UTF8"])
        .arg("--file")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::env(format!("cannot run {}", pg_dump.display())).because_err(&e))?;
    let mut stderr = child.stderr.take().expect("piped");
    // Drained on the side, so pg_dump never waits on a full stderr pipe.
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let followed = follow(&mut file, &mut child, progress);
    if followed.is_err() {
        let _ = child.kill(); // our own child, by its handle
    }
    let status = child.wait().map_err(|e| Error::env(format!("cannot run {}", pg_dump.display())).because_err(&e));
    let stderr = errors.join().unwrap_or_default();
    let status = status?;
    if !status.success() {
        let mut err = Error::env(format!("pg_dump failed ({status})"));
        for line in String::from_utf8_lossy(&stderr).lines().filter(|l| !l.trim().is_empty()).take(5) {
            err = err.because(line.trim().to_string());
        }
        return Err(err.with_hint("is the database running, is the disk full? `kt db status`, `df`"));
    }
    let digest = followed?;
    // The file must be what was hashed: nothing but pg_dump wrote to it,
    // and the path still names it (the archive reads it by its path).
    let meta = file.metadata().map_err(cannot_read)?;
    let named = std::fs::metadata(out).map_err(cannot_read)?;
    if (named.dev(), named.ino()) != (meta.dev(), meta.ino()) {
        return Err(Error::env(format!("{} was replaced while it was read", out.display())));
    }
    let size = meta.len();
    if size != digest.size {
        return Err(Error::env(format!("{} changed while it was read ({size} bytes, {} hashed)", out.display(), digest.size)));
    }
    // No fsync: this temp file is read back at once and then removed; the
    // archive made from it is what gets fsynced.
    Ok(digest.finish())
}

/// How long to wait when the reader has caught up with pg_dump.
const CAUGHT_UP: std::time::Duration = std::time::Duration::from_millis(2);

/// Reads `file` behind pg_dump (`child`) until pg_dump has exited and the
/// file's end is reached, hashing and counting every byte once.
fn follow(file: &mut File, child: &mut std::process::Child, progress: &dyn Progress) -> Result<DumpDigest> {
    let mut digest = DumpDigest::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut reported = 0u64;
    let mut exited = false;
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::env("cannot read the dump").because_err(&e)),
        };
        if n > 0 {
            digest.update(&buf[..n]);
            if digest.size - reported >= 8 << 20 {
                reported = digest.size;
                progress.count("rows", digest.rows());
            }
            continue;
        }
        if exited {
            break; // pg_dump is gone and its last byte has been read
        }
        // Caught up: once pg_dump has exited, whatever it wrote is in the
        // file, and one more pass reads the rest.
        match child.try_wait() {
            Ok(Some(_)) => exited = true,
            Ok(None) => std::thread::sleep(CAUGHT_UP),
            Err(e) => return Err(Error::env("cannot watch pg_dump").because_err(&e)),
        }
    }
    progress.count("rows", digest.rows());
    Ok(digest)
}

/// Hashes and counts the dump's bytes as they pass on their way into the
/// archive, so each byte is read once.
#[derive(Default)]
pub struct DumpDigest {
    hasher: Sha256,
    counter: RowCounter,
    size: u64,
}

impl DumpDigest {
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.counter.feed(chunk);
        self.size += chunk.len() as u64;
    }

    /// Data rows seen so far, all tables together (for progress).
    pub fn rows(&self) -> u64 {
        self.counter.rows
    }

    pub fn finish(self) -> DumpFacts {
        DumpFacts {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
            row_counts: self.counter.counts,
            meta_commands: self.counter.meta_commands,
            client_encoding: self.counter.client_encoding,
        }
    }
}

/// Counts the rows of every `COPY ... FROM stdin;` block of a plain dump,
/// fed in arbitrary chunks. Only line starts matter, so at most a few bytes
/// of each data row are looked at.
#[derive(Default)]
struct RowCounter {
    table: Option<String>,
    /// The start of the current line (capped).
    line: Vec<u8>,
    line_len: usize,
    counts: BTreeMap<String, u64>,
    /// The sum of `counts`, kept as it grows.
    rows: u64,
    meta_commands: Vec<String>,
    client_encoding: Option<String>,
}

/// COPY header lines are short; data rows only need their first bytes.
const HEADER_CAP: usize = 4096;
const ROW_CAP: usize = 4;

impl RowCounter {
    fn feed(&mut self, chunk: &[u8]) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            self.push(&chunk[start..=nl]);
            self.end_line();
            start = nl + 1;
        }
        self.push(&chunk[start..]);
    }

    fn push(&mut self, part: &[u8]) {
        let cap = if self.table.is_some() { ROW_CAP } else { HEADER_CAP };
        if self.line.len() < cap {
            let take = part.len().min(cap - self.line.len());
            self.line.extend_from_slice(&part[..take]);
        }
        self.line_len += part.len();
    }

    fn end_line(&mut self) {
        let whole = self.line_len == self.line.len();
        match &self.table {
            Some(name) => {
                if whole && self.line == b"\\.\n" {
                    self.table = None;
                } else {
                    *self.counts.entry(name.clone()).or_insert(0) += 1;
                    self.rows += 1;
                }
            }
            None if whole && self.line.starts_with(b"\\") => {
                let meta = String::from_utf8_lossy(self.line.trim_ascii()).into_owned();
                // A bound on what a hostile dump can make kt remember; past
                // it, a marker no loader understands (so the dump is refused).
                if !self.meta_commands.contains(&meta) {
                    match self.meta_commands.len() {
                        0..64 => self.meta_commands.push(meta),
                        64 => self.meta_commands.push("\\... (more meta-commands)".into()),
                        _ => {}
                    }
                }
            }
            None if whole && self.line.starts_with(b"SET client_encoding = '") => {
                let text = String::from_utf8_lossy(&self.line);
                self.client_encoding = text.split('\'').nth(1).map(str::to_string);
            }
            None => {
                if whole && self.line.starts_with(b"COPY ") && self.line.ends_with(b" FROM stdin;\n") {
                    let text = String::from_utf8_lossy(&self.line);
                    let qualified = text.split_whitespace().nth(1).unwrap_or("");
                    let name = qualified.rsplit('.').next().unwrap_or(qualified).trim_matches('"').to_string();
                    self.counts.entry(name.clone()).or_insert(0);
                    self.table = Some(name);
                }
            }
        }
        self.line.clear();
        self.line_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with a `pg_dump` that runs `script` (sh) with the
    /// file kt names in `$F`, standing in for the real one: what `dump`
    /// does when the file grows in pieces, is cut short, replaced or
    /// truncated under it.
    fn fake_pg_dump(script: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("kt-dump-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir).unwrap();
        let bin = dir.join("pg_dump");
        let text = format!("#!/bin/sh\nwhile [ \"$1\" != --file ]; do shift; done\nF=\"$2\"\n{script}\n");
        std::fs::write(&bin, text).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn run_fake(script: &str) -> (Result<DumpFacts>, std::path::PathBuf) {
        let dir = fake_pg_dump(script);
        let out = dir.join("dump.sql");
        let facts = dump(&dir, &Endpoint::local(1), &dir.join("pgpass"), &out, &crate::progress::Silent);
        (facts, dir)
    }

    const PIECES: &str = "printf 'COPY public.deposits (a) FROM stdin;\\nx\\n' >> \"$F\"; sleep 0.2; printf 'y' >> \"$F\"; sleep 0.2; printf '\\nz\\n\\\\.\\n' >> \"$F\"";

    #[test]
    fn follows_the_file_to_its_end() {
        let (facts, dir) = run_fake(&format!("{PIECES}; sleep 0.1"));
        let facts = facts.unwrap();
        let bytes = std::fs::read(dir.join("dump.sql")).unwrap();
        assert_eq!(bytes, b"COPY public.deposits (a) FROM stdin;\nx\ny\nz\n\\.\n");
        assert_eq!(facts.size, bytes.len() as u64);
        assert_eq!(facts.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(facts.row_counts.get("deposits"), Some(&3));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pg_dump_failing_half_way_fails_the_dump() {
        let (facts, dir) = run_fake(&format!("{PIECES}; echo 'pg_dump: error: connection lost' >&2; exit 1"));
        let err = facts.unwrap_err().to_string();
        assert!(err.contains("pg_dump failed"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_truncated_under_it_fails_the_dump() {
        let (facts, dir) = run_fake(&format!("{PIECES}; sleep 0.2; : > \"$F\"; printf 'COPY' >> \"$F\""));
        let err = facts.unwrap_err().to_string();
        assert!(err.contains("changed while it was read"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The archive is read from the path: a dump file replaced there
    /// (same size, other bytes) while pg_dump ran would go into the
    /// archive under the manifest's hash of the bytes kt followed.
    #[test]
    fn a_file_replaced_under_it_fails_the_dump() {
        let (facts, dir) = run_fake(&format!(
            "{PIECES}; sleep 0.2; tr xyz XYZ < \"$F\" > \"$F.new\"; mv \"$F.new\" \"$F\""
        ));
        let err = facts.unwrap_err().to_string();
        assert!(err.contains("replaced while it was read"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn notes_meta_commands_and_encoding() {
        let mut c = RowCounter::default();
        c.feed(b"\\restrict k1\nSET client_encoding = 'LATIN1';\nCOPY t (a) FROM stdin;\n\\N\n\\.\n\\unrestrict k1\n\\restrict k1\n");
        assert_eq!(c.meta_commands, vec!["\\restrict k1".to_string(), "\\unrestrict k1".to_string()]);
        assert_eq!(c.client_encoding.as_deref(), Some("LATIN1"));
        assert_eq!(c.counts.get("t"), Some(&1));
        assert_eq!(c.rows, 1);
    }

    #[test]
    fn counts_rows_across_any_chunking() {
        let dump = b"SET x = 1;\nCOPY public.deposits (uuid, content) FROM stdin;\na\t\\\\x00\nb\t\\\\x01\n\\.\n\nCOPY public.clients (f) FROM stdin;\n\\.\nCOPY \"public\".\"organizations\" (name) FROM stdin;\nacme\n\\.\n";
        for chunk in [1, 2, 3, 7, 1000] {
            let mut c = RowCounter::default();
            for part in dump.chunks(chunk) {
                c.feed(part);
            }
            assert_eq!(c.counts.get("deposits"), Some(&2), "chunk {chunk}");
            assert_eq!(c.counts.get("clients"), Some(&0), "chunk {chunk}");
            assert_eq!(c.counts.get("organizations"), Some(&1), "chunk {chunk}");
            assert!(c.table.is_none());
            assert!(c.meta_commands.is_empty() && c.client_encoding.is_none());
        }
    }
}
