//! Draining: a server told to stop (SIGTERM) first answers 503 on
//! `/health` while it still takes connections and requests, for
//! `DRAIN_SECONDS`, so that a load balancer takes it out of rotation
//! before its listener closes; then it stops accepting and lets the
//! requests in flight finish (`SHUTDOWN_GRACE` in mod.rs). A second SIGTERM,
//! or SIGINT, skips what is left of the grace.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this node is on its way out: read by `/health` on every call.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
}

impl Drain {
    /// From now on `/health` answers 503 `draining`.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_is_one_way() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        drain.begin();
        drain.begin();
        assert!(drain.is_draining());
    }
}
