//! One backup at a time per output directory: an advisory lock on
//! `<output>/.kt-backup.lock` holding the owner's pid. The kernel drops the
//! lock when its process dies, so a lock left by a killed run is simply
//! taken over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub const LOCK_FILE: &str = ".kt-backup.lock";

/// Held while the value lives.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

/// Takes the lock, waiting up to `wait` (None: not at all).
pub fn acquire(dir: &Path, wait: Option<Duration>) -> Result<OutputLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::env(format!("cannot create the lock file {}", path.display())).because_err(&e))?;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if deadline.is_some_and(|d| Instant::now() < d) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { "another process".to_string() } else { format!("pid {holder}") };
                return Err(Error::env(format!("another backup ({who}) holds the lock on {}", dir.display()))
                    .with_hint("wait for it, or let this run wait with --lock-wait=DURATION (e.g. 10m)"));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::env(format!("cannot lock {}", path.display())).because_err(&e));
            }
        }
    }
    let pid = format!("{}\n", std::process::id());
    let write = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(pid.as_bytes()));
    write.map_err(|e| Error::env(format!("cannot write {}", path.display())).because_err(&e))?;
    Ok(OutputLock { _file: file })
}
