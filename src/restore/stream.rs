//! The dump's bytes, handed from staging to a loader thread as they are
//! decrypted: a bounded queue of chunks (so memory stays flat and a slow
//! loader slows decryption down) with a clear end. The [`Tap`] side is
//! staging; the [`Follower`] side reads like a file, sees the end when the
//! whole member went through, and an error when staging stopped early or
//! the restore cancelled the load.
//!
//! This is what lets a restore load the dump into a scratch database while
//! the backup is still being decrypted and checked, without writing the
//! dump to disk and reading it back.

use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

/// Chunks in flight between staging and the loader (of up to 1 MiB each).
const QUEUE: usize = 8;

enum Message {
    Chunk(Vec<u8>),
    End,
}

/// The writer's side. Dropped without [`Tap::finish`], it tells the
/// follower that the dump will never be whole.
pub struct Tap {
    queue: SyncSender<Message>,
    cancelled: Arc<AtomicBool>,
}

impl Tap {
    pub fn new() -> (Tap, Follower) {
        let (queue, chunks) = mpsc::sync_channel(QUEUE);
        let cancelled = Arc::new(AtomicBool::new(false));
        (Tap { queue, cancelled: cancelled.clone() }, Follower { chunks, current: Vec::new(), at: 0, cancelled, ended: false })
    }

    /// Hands `chunk` on. A follower that stopped reading (its load failed;
    /// the restore learns why from it) is not waited for.
    pub fn send(&self, chunk: Vec<u8>) {
        let _ = self.queue.send(Message::Chunk(chunk));
    }

    /// Makes the follower's reads fail from now on: for the side that owns
    /// the follower's thread, to stop it early.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancelled.clone())
    }

    /// The dump went through whole.
    pub fn finish(self) {
        let _ = self.queue.send(Message::End);
    }
}

/// Stops a follower (see [`Tap::canceller`]).
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The reader's side: blocks until staging hands on more.
pub struct Follower {
    chunks: Receiver<Message>,
    current: Vec<u8>,
    at: usize,
    cancelled: Arc<AtomicBool>,
    ended: bool,
}

impl BufRead for Follower {
    /// The rest of the current chunk, without copying it (the loader's
    /// line reader works on it directly).
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the load was cancelled"));
        }
        while self.at == self.current.len() && !self.ended {
            match self.chunks.recv() {
                Ok(Message::Chunk(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Message::End) => self.ended = true,
                Err(_) => return Err(std::io::Error::other("staging the dump stopped before its end")),
            }
        }
        Ok(&self.current[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.current.len());
    }
}

impl Read for Follower {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_on_everything_then_the_end() {
        let (tap, mut follower) = Tap::new();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            follower.read_to_end(&mut all).map(|_| all)
        });
        for part in [&b"hello"[..], b" ", b"world"] {
            tap.send(part.to_vec());
        }
        tap.finish();
        assert_eq!(reader.join().unwrap().unwrap(), b"hello world");
    }

    #[test]
    fn a_tap_dropped_early_is_an_error() {
        let (tap, mut follower) = Tap::new();
        tap.send(b"abc".to_vec());
        drop(tap);
        let mut all = Vec::new();
        assert!(follower.read_to_end(&mut all).is_err());
    }

    #[test]
    fn a_cancelled_follower_stops_and_never_blocks_the_tap() {
        let (tap, mut follower) = Tap::new();
        tap.canceller().cancel();
        let mut buf = [0u8; 4];
        assert!(follower.read(&mut buf).is_err());
        drop(follower);
        // With the follower gone, sending more than the queue holds returns.
        for _ in 0..QUEUE * 4 {
            tap.send(vec![0; 16]);
        }
        tap.finish();
    }
}
