//! The load by psql itself, for dumps in a client encoding other than
//! UTF-8 (which kt's loader does not convert): `psql -f -` in one
//! transaction, stopping at the first error, as the loading role (never
//! the cluster's superuser). kt feeds psql's standard input itself so it
//! can report progress. Before psql sees a dump, the restore has refused
//! every psql meta-command other than `\restrict`, `\unrestrict` and
//! `\connect` to the same database (`super::check_meta_commands`: psql's
//! `\!` would run a shell command as kt's own user) and the statement
//! filter has read every statement (`super::check_statements`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::storage::scratch::Login;
use crate::storage::Cluster;

pub fn load(cl: &Cluster, login: &Login, private_dir: &Path, database: &str, sql: &Path, progress: &dyn Progress) -> Result<()> {
    let pgpass = private_dir.join("loader.pgpass");
    let _ = std::fs::remove_file(&pgpass);
    crate::fsutil::write_atomic(
        &pgpass,
        format!("127.0.0.1:{}:{database}:{}", cl.port, login.password.pgpass_line(&login.user).trim_start_matches("*:*:*:")).as_bytes(),
        0o600,
        None,
    )?;
    let total = std::fs::metadata(sql).map(|m| m.len()).unwrap_or(0);
    let mut input = std::fs::File::open(sql).map_err(|e| Error::env("cannot open the staged dump").because_err(&e))?;
    let mut child = Command::new(cl.bindir.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-h", "127.0.0.1", "-p", &cl.port.to_string()])
        .args(["-U", &login.user, "-d", database, "-f", "-"])
        .env("PGPASSFILE", &pgpass)
        .env_remove("PGPASSWORD")
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
