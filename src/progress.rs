//! How library operations report progress without printing: the
//! command-line layer decides whether and where to show it (on a terminal
//! it draws bars, elsewhere it prints the steps as lines and nothing else).

/// Receives human-readable progress from long operations.
pub trait Progress {
    /// A step has begun or finished ("generating the server OpenPGP key").
    fn step(&self, message: &str);

    /// Bytes done of a long transfer (`total` when known).
    fn bytes(&self, _what: &str, _done: u64, _total: Option<u64>) {}

    /// A running count of items that goes with the transfer reported by
    /// `bytes` ("rows" dumped, "files" synced): `done` so far. Shown next to
    /// the bytes; sent as often as the bytes, not per item.
    fn count(&self, _what: &str, _done: u64) {}

    /// The transfer reported by `bytes` is over.
    fn finish(&self) {}
}

/// Discards progress.
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _message: &str) {}
}
