//! How library operations report progress without printing: the
//! command-line layer decides whether and where to show it.

/// Receives human-readable progress from long operations.
pub trait Progress {
    /// A step has begun or finished ("generating the server OpenPGP key").
    fn step(&self, message: &str);

    /// Bytes done of a long transfer (`total` when known).
    fn bytes(&self, _what: &str, _done: u64, _total: Option<u64>) {}

    /// The transfer reported by `bytes` is over.
    fn finish(&self) {}
}

/// Discards progress.
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _message: &str) {}
}
