//! A session's progress, files and bytes as they are done, for a
//! [`Progress`]. The side of the session running in the caller's thread
//! reports: the receiver of a local session or a pull (file data written
//! into the temp files, files verified), the sender of a push (file data
//! sent, files sent), so that every kind of session shows the same
//! figures: the sizes of the files synced, not the bytes on the wire.

use crate::progress::{Progress, Silent};

/// The transfer's name on the progress display.
pub const SYNCING: &str = "syncing";

/// Running totals of one side of a session, passed on as they grow.
pub struct Meter<'a> {
    progress: &'a dyn Progress,
    files: u64,
    bytes: u64,
}

impl<'a> Meter<'a> {
    pub fn new(progress: &'a dyn Progress) -> Meter<'a> {
        Meter { progress, files: 0, bytes: 0 }
    }

    /// A side whose progress nobody shows (the other thread of a local
    /// session, the remote side).
    pub fn silent() -> Meter<'static> {
        Meter::new(&Silent)
    }

    /// `n` more bytes of file data done (a segment, a chunk copy).
    pub fn bytes(&mut self, n: u64) {
        if n > 0 {
            self.bytes += n;
            self.progress.bytes(SYNCING, self.bytes, None);
        }
    }

    /// One more file done. The bytes go first: they start the transfer
    /// the count belongs to.
    pub fn file(&mut self) {
        self.files += 1;
        self.progress.bytes(SYNCING, self.bytes, None);
        self.progress.count("files", self.files);
    }
}
