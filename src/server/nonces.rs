//! The shared replay guard: every authenticated request's (client, nonce)
//! is taken in the `replay_nonces` table, which every `kt serve` node over
//! the database shares, so a request replayed to another node is refused.
//! The node's own guard (`replay`, in memory) stays the fast first check.
//!
//! Requests do not insert one row each: their claims queue here and a few
//! workers take whatever has queued as one batch, one statement and one
//! commit for all of them (`Pool::claim_nonces`, committed without waiting
//! for the disk). Under load a batch holds many claims, so a request pays
//! a fraction of a statement; idle, a claim waits for one round trip.
//!
//! A passive cannot insert: there the node's own guard is the only one
//! (a passive is one node).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::server::api::AppState;
use crate::server::db::{DbError, NonceKey};

/// Until when (Unix seconds, exclusive) the shared guard's rows may be
/// deleted by a node whose clock reads `now`. A row's `expires` is its
/// request's timestamp plus the window (plus one), but the node that
/// prunes and the node a replay is sent to read different clocks: with
/// the pruner's clock S seconds ahead, a row deleted at `expires` is gone
/// S seconds before its request turns stale on the other node, and a
/// replay sent there meanwhile would pass (it never saw the nonce). So
/// rows are kept one more window: nodes whose clocks differ by up to
/// `window` seconds stay safe, at the price of twice the rows.
pub fn prune_before(now: i64, window: i64) -> i64 {
    now - window
}

/// Claims in one statement at most.
const MAX_BATCH: usize = 512;
/// Batches in flight at once (each on a pool connection).
const WORKERS: usize = 2;
/// Claims waiting for a batch; more wait for room (backpressure).
const QUEUE: usize = 65_536;

struct Claim {
    client: String,
    nonce: String,
    expires: i64,
    answer: oneshot::Sender<Result<bool, DbError>>,
}

/// Where requests hand in their nonces.
pub struct SharedGuard {
    tx: mpsc::Sender<Claim>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Claim>>>,
}

impl Default for SharedGuard {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        SharedGuard { tx, rx: std::sync::Mutex::new(Some(rx)) }
    }
}

impl SharedGuard {
    /// Starts the workers that insert the batches through the server's
    /// pool (once; they end with the runtime).
    pub fn start(&self, state: Arc<AppState>) {
        let Some(rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            let rx = rx.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                loop {
                    batch.clear();
                    if rx.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
                        return;
                    }
                    let keys: Vec<NonceKey<'_>> =
                        batch.iter().map(|c| NonceKey { client: &c.client, nonce: &c.nonce, expires: c.expires }).collect();
                    let result = state.pool.claim_nonces(&keys).await;
                    drop(keys);
                    match result {
                        Ok(free) => {
                            for (claim, free) in batch.drain(..).zip(free) {
                                let _ = claim.answer.send(Ok(free));
                            }
                        }
                        Err(e) => {
                            let shared = describe(&e);
                            for claim in batch.drain(..) {
                                let _ = claim.answer.send(Err(shared.again()));
                            }
                        }
                    }
                }
            });
        }
    }

    /// Takes `nonce`: `Ok(false)` when another request (on any node)
    /// took it first.
    pub async fn claim(&self, nonce: NonceKey<'_>) -> Result<bool, DbError> {
        let (answer, answered) = oneshot::channel();
        let claim = Claim { client: nonce.client.to_string(), nonce: nonce.nonce.to_string(), expires: nonce.expires, answer };
        if self.tx.send(claim).await.is_err() {
            return Err(DbError::Unavailable("the replay guard's workers stopped".into()));
        }
        answered.await.unwrap_or_else(|_| Err(DbError::Unavailable("the replay guard's worker ended".into())))
    }
}

/// One batch's failure, handed to each claim of the batch.
enum Shared {
    ReadOnly,
    SchemaBehind(String),
    Unavailable(String),
    Other(String),
}

impl Shared {
    fn again(&self) -> DbError {
        match self {
            Shared::ReadOnly => DbError::ReadOnly,
            Shared::SchemaBehind(s) => DbError::SchemaBehind(s.clone()),
            Shared::Unavailable(s) => DbError::Unavailable(s.clone()),
            Shared::Other(s) => DbError::Other(s.clone()),
        }
    }
}

fn describe(e: &DbError) -> Shared {
    match e {
        DbError::ReadOnly => Shared::ReadOnly,
        DbError::SchemaBehind(s) => Shared::SchemaBehind(s.clone()),
        DbError::Unavailable(s) => Shared::Unavailable(s.clone()),
        other => Shared::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::prune_before;

    /// Whatever node accepted a request, and whatever node prunes, a row
    /// stays while any node whose clock is within one window of the
    /// pruner's could still take the request as fresh (`check_fresh`:
    /// |timestamp - now| <= window; `check_nonce`: expires = timestamp +
    /// window + 1).
    #[test]
    fn a_pruner_with_a_fast_clock_keeps_what_a_slower_node_still_accepts() {
        let window = 300;
        let pruner_now = 1_000_000;
        for skew in 0..=window {
            let acceptor_now = pruner_now - skew;
            // The oldest timestamp the slower node still takes.
            let timestamp = acceptor_now - window;
            let expires = timestamp + window + 1;
            assert!(expires >= prune_before(pruner_now, window), "skew {skew}: the row would be deleted while its request is fresh");
        }
    }
}
