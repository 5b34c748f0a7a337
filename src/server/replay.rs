//! Replay protection: every (client, nonce) pair is accepted once within
//! the freshness window. Requests outside the window are refused as stale
//! before they get here, so a pair only needs remembering for the window;
//! memory is bounded by the request rate times the window, and a hard cap
//! refuses new requests (503) rather than forgetting pairs early.
//!
//! This is the node's own guard, in memory: the fast first check, which
//! refuses a replay to the same node without a database round trip. The
//! authority across nodes and restarts is the shared guard, the
//! `replay_nonces` table (`server::db`, `api::claim_shared`). On a
//! passive, which cannot write that table, this guard is the only one: a
//! restart of a passive forgets the pairs, so a request captured in the
//! last window could be replayed to it once right after. Requests travel
//! only inside TLS, which makes such a capture impractical.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 16;

pub struct ReplayGuard {
    shards: Vec<Mutex<HashMap<u64, i64>>>,
    hasher: std::collections::hash_map::RandomState,
    cap_per_shard: usize,
}

/// The verdict on one nonce.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    First,
    Replayed,
    /// The guard is full: refuse the request for now.
    Full,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            cap_per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Records `nonce` of `client`, valid until `expires` (Unix seconds).
    pub fn check(&self, client: &str, nonce: &str, now: i64, expires: i64) -> Seen {
        // A keyed 64-bit hash of the pair: collisions need ~2^32 pairs in one
        // window, and the random key keeps them out of an attacker's hands.
        let key = self.hasher.hash_one((client, nonce));
        let mut shard = self.shards[(key as usize) % SHARDS].lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.cap_per_shard {
            shard.retain(|_, exp| *exp >= now);
            if shard.len() >= self.cap_per_shard {
                return Seen::Full;
            }
        }
        match shard.get(&key) {
            Some(exp) if *exp >= now => Seen::Replayed,
            _ => {
                shard.insert(key, expires);
                Seen::First
            }
        }
    }

    /// Forgets expired pairs (called periodically).
    pub fn purge(&self, now: i64) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, exp| *exp >= now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_per_client() {
        let guard = ReplayGuard::new(1000);
        assert_eq!(guard.check("A", "n1", 100, 200), Seen::First);
        assert_eq!(guard.check("A", "n1", 150, 250), Seen::Replayed);
        assert_eq!(guard.check("B", "n1", 150, 250), Seen::First);
        // After expiry the pair may be forgotten (its request is stale anyway).
        guard.purge(201);
        assert_eq!(guard.check("A", "n1", 201, 300), Seen::First);
    }

    #[test]
    fn a_full_guard_refuses_instead_of_forgetting() {
        let guard = ReplayGuard::new(16);
        let mut full = 0;
        for i in 0..200 {
            if guard.check("A", &format!("n{i}"), 0, 100) == Seen::Full {
                full += 1;
            }
        }
        assert!(full > 0);
    }
}
