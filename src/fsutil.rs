//! Small, careful file-system helpers: atomic writes, private modes,
//! ownership hand-over to the service account.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::account::Account;
use crate::error::{Context, Result};

/// Writes `contents` to `path` atomically: a temp file beside it (created
/// with `mode`, so secrets are never readable by others, not even briefly),
/// fsync, rename over the target, fsync the directory. Readers see either
/// the old file or the new one, never a torn write.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: Option<&Account>) -> Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.kt-tmp-{}", std::process::id()));
    let result = write_temp(&tmp, contents, mode, owner).and_then(|()| {
        fs::rename(&tmp, path).env_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        sync_dir(dir)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `contents` to a new file at `path`, never over an existing one:
/// a temp file beside it (created with `mode`), fsync, then link(2) to the
/// final name, which fails when the name exists, so a file created there
/// meanwhile (by the operator, by another run) is never clobbered, then
/// the directory is fsynced. Readers never see a partial file. An existing
/// `path` is a usage error (exit 2); other failures are environment errors.
pub fn write_new(path: &Path, contents: &[u8], mode: u32, owner: Option<&Account>) -> Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.kt-new-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let result = write_temp(&tmp, contents, mode, owner).and_then(|()| {
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                crate::Error::usage(format!("{} exists", path.display()))
                    .with_hint("kt never writes over a file: remove it or give another name")
            } else {
                crate::Error::env(format!("cannot create {}", path.display())).because_err(&e)
            }
        })
    });
    // The temp name goes in every case: after the link it is a second name
    // of the new file, before it a file nobody else knows.
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(dir)
}

/// Creates `tmp` (it must not exist) with exactly `mode` (so secrets are
/// never readable by others, not even briefly), writes and fsyncs
/// `contents`, and hands it to `owner`.
fn write_temp(tmp: &Path, contents: &[u8], mode: u32, owner: Option<&Account>) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .env_context(|| format!("cannot create {}", tmp.display()))?;
    // The umask may have narrowed the mode further; make it exact.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .env_context(|| format!("cannot set the mode of {}", tmp.display()))?;
    file.write_all(contents).env_context(|| format!("cannot write {}", tmp.display()))?;
    file.sync_all().env_context(|| format!("cannot fsync {}", tmp.display()))?;
    if let Some(account) = owner {
        account.chown(tmp)?;
    }
    Ok(())
}

/// A lock on a directory itself (flock on its fd; no lock file is left
/// behind), held until the returned file is dropped. `exclusive` for a
/// change (`kt cert replace`), shared for a reader that must not see one
/// half done (`kt backup` reading the confdir). Shared waits up to a
/// minute (a change takes seconds; a lock held longer is an error, not a
/// cron job hanging forever); exclusive does not wait and returns None
/// when the lock is taken.
pub fn lock_dir(dir: &Path, exclusive: bool) -> Result<Option<File>> {
    let file = File::open(dir).env_context(|| format!("cannot open {}", dir.display()))?;
    if exclusive {
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(crate::Error::env(format!("cannot lock {}", dir.display())).because_err(&e)),
        }
    } else {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match file.try_lock_shared() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(crate::Error::env(format!("{} stayed locked for a minute", dir.display()))
                        .because("a kt cert replace or rollback holds it")
                        .with_hint("run this again when it has finished"))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(crate::Error::env(format!("cannot lock {}", dir.display())).because_err(&e))
                }
            }
        }
    }
}

/// fsyncs a directory so that a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .env_context(|| format!("cannot fsync directory {}", dir.display()))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and any missing parents with `mode`, returning the
/// directories this call created, outermost first, so that a failed run can
/// remove exactly what it made and nothing else.
pub fn create_dirs(dir: &Path, mode: u32) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(p) = cursor {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cursor = p.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for p in missing {
        match fs::DirBuilder::new().mode(mode).create(&p) {
            Ok(()) => {
                fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                    .env_context(|| format!("cannot set the mode of {}", p.display()))?;
                created.push(p);
            }
            Err(e) => {
                // Undo our own partial work before reporting.
                for c in created.iter().rev() {
                    let _ = fs::remove_dir(c);
                }
                return Err(crate::Error::env(format!("cannot create directory {}", p.display()))
                    .because_err(&e));
            }
        }
    }
    Ok(created)
}

/// Makes a relative path absolute against the current directory, without
/// resolving symlinks (the operator's spelling of the path is kept).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).env_context(|| format!("cannot resolve {}", path.display()))
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).env_context(|| format!("cannot set the mode of {}", path.display()))
}


/// A file writer that starts the kernel's writeback of every few MiB as
/// soon as they are written (`sync_file_range`), so the final fsync only
/// waits for the tail, and the disk works while the CPU produces the rest.
pub struct WritebackFile {
    file: File,
    written: u64,
    flushed_to: u64,
}

const WRITEBACK_STEP: u64 = 16 << 20;

impl WritebackFile {
    pub fn new(file: File) -> WritebackFile {
        WritebackFile { file, written: 0, flushed_to: 0 }
    }

    /// Waits until everything is on disk and returns the file.
    pub fn finish(self) -> std::io::Result<File> {
        self.file.sync_all()?;
        Ok(self.file)
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed_to >= WRITEBACK_STEP {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid fd and a range inside the file; this only
            // schedules writeback and cannot corrupt anything.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.flushed_to as libc::off64_t,
                    (self.written - self.flushed_to) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed_to = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_lock_excludes_changes_and_admits_readers() {
        let dir = std::env::temp_dir().join(format!("kt-lockdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let change = lock_dir(&dir, true).unwrap().expect("free");
        assert!(lock_dir(&dir, true).unwrap().is_none(), "a second change must not get the lock");
        drop(change);
        let reader = lock_dir(&dir, false).unwrap().expect("a reader waits, then gets it");
        let other_reader = lock_dir(&dir, false).unwrap().expect("readers share it");
        assert!(lock_dir(&dir, true).unwrap().is_none(), "no change while reading");
        drop((reader, other_reader));
        assert!(lock_dir(&dir, true).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_new_never_replaces_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("kt-fsutil-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let path = dir.join("key.pem");
        write_new(&path, b"one", 0o600, None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        let err = write_new(&path, b"two", 0o600, None).unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Usage, "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("key.pem")]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
