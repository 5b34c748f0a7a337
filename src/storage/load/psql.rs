//! The load by psql itself, for dumps that use psql features kt's loader
//! does not run: `psql -f -` in one transaction, stopping at the first
//! error. kt feeds psql's standard input itself so it can report progress;
//! psql still interprets every line, meta-commands included, exactly as
//! `psql -f` would.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::instance::DB_USER;
use crate::progress::Progress;
use crate::storage::Cluster;

pub fn load(cl: &Cluster, pgpass: &Path, database: &str, sql: &Path, progress: &dyn Progress) -> Result<()> {
    let total = std::fs::metadata(sql).map(|m| m.len()).unwrap_or(0);
    let mut input = std::fs::File::open(sql).map_err(|e| Error::env("cannot open the staged dump").because_err(&e))?;
    let mut child = Command::new(cl.bindir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-h", "127.0.0.1", "-p", &cl.port.to_string()])
        .args(["-U", DB_USER, "-d", database, "-f", "-"])
        .env("PGPASSFILE", pgpass)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::env("cannot run psql").because_err(&e))?;
    let mut stdin = child.stdin.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // Drain psql's errors on the side so it can never block on them.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|e| Error::env("cannot read the staged dump").because_err(&e))?;
        if n == 0 {
            break;
        }
        // psql stops reading at the first error (ON_ERROR_STOP): its
        // message, not the broken pipe, is the cause to report.
        if stdin.write_all(&buf[..n]).is_err() {
            break;
        }
        done += n as u64;
        progress.bytes("loading the dump", done, Some(total));
    }
    drop(stdin);
    let status = child.wait().map_err(|e| Error::env("psql did not finish").because_err(&e))?;
    progress.finish();
    let stderr = errors.join().unwrap_or_default();
    if !status.success() {
        let mut err = Error::env("loading the dump failed (psql)");
        for line in stderr.lines().filter(|l| !l.trim().is_empty()).take(3) {
            err = err.because(line.trim().to_string());
        }
        return Err(err);
    }
    Ok(())
}
