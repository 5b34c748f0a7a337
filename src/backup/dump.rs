//! The database dump: `pg_dump` in plain format (SQL with COPY blocks that
//! `psql -f` loads into an empty database), taken from one snapshot while
//! the server goes on writing. Streamed to a private temp file while its
//! SHA-256 and the rows of every table are counted, so each byte is read
//! once and memory stays flat.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// What the dump step produced.
#[derive(Debug, Clone)]
pub struct Dump {
    pub size: u64,
    pub sha256: String,
    pub row_counts: BTreeMap<String, u64>,
}

/// Runs pg_dump against 127.0.0.1:`port` with the instance's password file
/// and writes its output to `out` (created, 0600).
pub fn dump(bindir: &Path, port: u16, pgpass: &Path, out: &Path, progress: &dyn Progress) -> Result<Dump> {
    let pg_dump = bindir.join("pg_dump");
    let mut child = Command::new(&pg_dump)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--username", crate::instance::DB_USER])
        .args(["--no-password", "--dbname", crate::instance::DB_NAME, "--format", "plain", "--encoding", "UTF8"])
        .env("PGPASSFILE", pgpass)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::env(format!("cannot run {}", pg_dump.display())).because_err(&e))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // Drain stderr on the side so a chatty pg_dump can never block.
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Error::env(format!("cannot create {}", out.display())).because_err(&e))?;
    let copied = copy_counting(BufReader::with_capacity(1 << 20, stdout), file, progress);
    let status = child.wait();
    let stderr_text = err_thread.join().unwrap_or_default();
    let status = status.map_err(|e| Error::env("pg_dump did not finish").because_err(&e))?;
    if !status.success() {
        let mut err = Error::env(format!("pg_dump failed ({status})"));
        for line in stderr_text.lines().filter(|l| !l.trim().is_empty()).take(5) {
            err = err.because(line.trim().to_string());
        }
        return Err(err.with_hint("is the database running? `kt db status`"));
    }
    let (size, sha256, row_counts) =
        copied.map_err(|e| Error::env(format!("cannot write the dump to {}", out.display())).because_err(&e))?;
    Ok(Dump { size, sha256, row_counts })
}

type Counted = (u64, String, BTreeMap<String, u64>);

fn copy_counting(mut input: impl BufRead, file: File, progress: &dyn Progress) -> std::io::Result<Counted> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut counts = BTreeMap::new();
    let mut table: Option<String> = None;
    let mut line = Vec::with_capacity(64 * 1024);
    let mut size = 0u64;
    let mut reported = 0u64;
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        out.write_all(&line)?;
        size += n as u64;
        match &table {
            Some(name) => {
                if line == b"\\.\n" {
                    table = None;
                } else {
                    *counts.entry(name.clone()).or_insert(0) += 1;
                }
            }
            None => {
                if line.starts_with(b"COPY ") && line.ends_with(b" FROM stdin;\n") {
                    let text = String::from_utf8_lossy(&line);
                    let qualified = text.split_whitespace().nth(1).unwrap_or("");
                    let name = qualified.rsplit('.').next().unwrap_or(qualified).trim_matches('"').to_string();
                    counts.entry(name.clone()).or_insert(0);
                    table = Some(name);
                }
            }
        }
        if size - reported >= 8 << 20 {
            progress.bytes("dumping the database", size, None);
            reported = size;
        }
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok((size, crate::auth::hex(&hasher.finalize()), counts))
}
