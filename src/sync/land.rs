//! Making received files durable, a batch at a time, off the receiving
//! thread.
//!
//! Every file lands by temp file, and its data must be on disk before its
//! rename (the guarantee of the `sync` module doc). An `fsync` per file
//! gives that but costs one device cache flush per file: on ext4 an fsync
//! whose journal transaction is already committed still flushes the
//! device cache, so a batch of 256 fsyncs was 256 flushes, and with other
//! I/O on the machine a first copy of 2,001 files spent 5-10 s there
//! (BENCHMARKS.md, round 6). A batch is instead made durable with one
//! `syncfs` per filesystem it is on (writeback of every dirty page, one
//! journal commit, one flush: the guarantee of an fsync of each file and
//! of each directory), after which each file's writeback is checked with
//! `sync_file_range(WAIT_BEFORE | WAIT_AFTER)`, which reports that file's
//! write errors on any kernel (`syncfs` itself reports them only from
//! Linux 5.8).
//!
//! The price: `syncfs` also writes out other processes' dirty data on
//! the same filesystem, so a batch may wait for their writeback too (as
//! `sync -f` after rsync would); an fsync per file waited for a device
//! cache flush per file, which cost far more on the machine measured.
//!
//! This runs on a thread of its own ([`Durable`]), so the receiving thread
//! keeps reading the pipe (and the sender keeps sending) while a batch is
//! flushed (a batch is handed over as soon as this thread is idle, so a
//! slow flush gathers a bigger next batch instead of stalling the
//! receiver); the receiving thread renames a batch only once it comes back
//! from here durable. At most one batch is in flight, so at most two
//! batches of temp files are open.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::error::{Context, Error, Result};

/// A received and verified temp file waiting for its flush and rename.
pub(super) struct PendingFile {
    pub file: File,
    pub tmp: PathBuf,
    pub path: PathBuf,
    pub index: usize,
}

/// A batch and whether it is on disk.
pub(super) type Flushed = (Vec<PendingFile>, Result<()>);

/// The flushing thread: batches in, flushed batches out.
type Worker = (mpsc::Sender<Vec<PendingFile>>, mpsc::Receiver<Flushed>, JoinHandle<()>);

/// The flushing thread and its one batch in flight.
pub(super) struct Durable {
    worker: Option<Worker>,
    in_flight: bool,
    /// A batch flushed on this thread because the flushing thread was gone.
    returned: Option<Flushed>,
}

impl Durable {
    pub fn new() -> Durable {
        Durable { worker: None, in_flight: false, returned: None }
    }

    /// Hands `batch` to the flushing thread (started on first use). The
    /// batch in flight, if any, must have been taken back with
    /// [`Durable::take`] first.
    pub fn submit(&mut self, batch: Vec<PendingFile>) {
        debug_assert!(!self.in_flight, "one batch in flight at a time");
        let (tx, _, _) = self.worker.get_or_insert_with(|| {
            let (tx, jobs) = mpsc::channel::<Vec<PendingFile>>();
            let (done, rx) = mpsc::channel::<Flushed>();
            let handle = std::thread::spawn(move || {
                for batch in jobs {
                    let result = flush(&batch);
                    if done.send((batch, result)).is_err() {
                        break;
                    }
                }
            });
            (tx, rx, handle)
        });
        match tx.send(batch) {
            Ok(()) => self.in_flight = true,
            // The thread is gone only if it panicked: flush here instead.
            Err(mpsc::SendError(batch)) => {
                let result = flush(&batch);
                self.returned = Some((batch, result));
                self.in_flight = true;
            }
        }
    }

    /// Whether a batch is in flight (not yet taken back).
    pub fn busy(&self) -> bool {
        self.in_flight
    }

    /// The batch in flight once it is flushed: waits for it when `wait`,
    /// else only takes it if it is already done.
    pub fn take(&mut self, wait: bool) -> Option<Flushed> {
        if !self.in_flight {
            return None;
        }
        if let Some(done) = self.returned.take() {
            self.in_flight = false;
            return Some(done);
        }
        let (_, rx, _) = self.worker.as_ref()?;
        let got = if wait { rx.recv().ok() } else { rx.try_recv().ok() };
        if got.is_some() {
            self.in_flight = false;
        }
        got
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        if let Some((tx, rx, handle)) = self.worker.take() {
            drop(tx);
            drop(rx);
            let _ = handle.join();
        }
    }
}

/// Puts every file of `batch` on disk, data and metadata: one `syncfs`
/// per filesystem, then each file's writeback checked for errors.
fn flush(batch: &[PendingFile]) -> Result<()> {
    let mut devs = HashSet::new();
    for p in batch {
        let dev = p.file.metadata().env_context(|| format!("cannot stat the temp file of {}", p.path.display()))?.dev();
        if devs.insert(dev) {
            syncfs(&p.file).map_err(|err| {
                Error::env(format!("cannot flush the filesystem of {}", p.path.display())).because_err(&err)
            })?;
        }
    }
    for p in batch {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: a valid open fd; the call only waits for writeback.
        if unsafe { libc::sync_file_range(p.file.as_raw_fd(), 0, 0, flags) } != 0 {
            let err = std::io::Error::last_os_error();
            return Err(Error::env(format!("cannot write the temp file of {}", p.path.display())).because_err(&err));
        }
    }
    Ok(())
}

/// Makes the entries of `dirs` (renames, new names) durable: one `syncfs`
/// per filesystem instead of an fsync (a device cache flush) per
/// directory. A directory that no longer exists (removed by `--delete`)
/// has nothing to make durable.
pub(super) fn sync_dirs<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    let mut devs = HashSet::new();
    for dir in dirs {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir);
        let handle = match opened {
            Ok(handle) => handle,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => continue,
            Err(e) => return Err(Error::env(format!("cannot open directory {}", dir.display())).because_err(&e)),
        };
        let meta = handle.metadata().env_context(|| format!("cannot stat directory {}", dir.display()))?;
        if devs.insert(meta.dev()) {
            syncfs(&handle)
                .map_err(|err| Error::env(format!("cannot flush the filesystem of {}", dir.display())).because_err(&err))?;
        }
    }
    Ok(())
}

fn syncfs(file: &File) -> std::io::Result<()> {
    // SAFETY: a valid open fd.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn batches_come_back_flushed_in_order_and_one_at_a_time() {
        let dir = tempdir();
        let mut durable = Durable::new();
        assert!(durable.take(false).is_none(), "nothing in flight");
        for round in 0..2 {
            let batch: Vec<PendingFile> = (0..3)
                .map(|i| {
                    let tmp = dir.join(format!("t{round}{i}"));
                    let mut file = File::options().read(true).write(true).create_new(true).open(&tmp).unwrap();
                    file.write_all(b"data").unwrap();
                    PendingFile { file, tmp, path: dir.join(format!("f{round}{i}")), index: round * 3 + i }
                })
                .collect();
            durable.submit(batch);
            let (back, flushed) = durable.take(true).expect("the batch in flight");
            flushed.unwrap();
            assert_eq!(back.iter().map(|p| p.index).collect::<Vec<_>>(), vec![round * 3, round * 3 + 1, round * 3 + 2]);
            assert!(durable.take(true).is_none(), "one batch was in flight");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directories_gone_or_replaced_are_skipped() {
        let dir = tempdir();
        std::fs::write(dir.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("link")).unwrap();
        let paths = [dir.clone(), dir.join("missing"), dir.join("file"), dir.join("link")];
        sync_dirs(paths.iter().map(PathBuf::as_path)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("kt-land-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir).unwrap();
        dir
    }
}
