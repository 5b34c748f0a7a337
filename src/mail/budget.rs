//! The bound on client notices: how much mail an unauthenticated caller
//! can make an organization's contacts receive.
//!
//! Anyone who knows an organization's name can ask to register a client
//! (`POST /register` needs only a key the caller makes), and every new
//! client, admitted or held for approval, queues a notice to every
//! contact; a held client's repeated requests queue a reminder an hour.
//! Without a bound, fresh keys (and the up to `MAX_PENDING_CLIENTS` held
//! ones, each reminding hourly) turn the server into a mail cannon aimed
//! at the contacts, signed with its own key. So each organization's
//! contacts get at most [`MAX_NOTICES`] client notices within
//! [`WINDOW_SECONDS`]; registrations beyond that are stored and answered as
//! always, their notices are not queued (the server logs it, and `kt org
//! clients` lists every client).
//!
//! The count is per server and in memory: only the active queues mail,
//! and a restart at worst allows one more window's worth. It is keyed by
//! organization uuid, and only organizations that exist reach it, so it
//! stays as small as the list of organizations.

use std::collections::HashMap;
use std::sync::Mutex;

/// Client notices per organization within [`WINDOW_SECONDS`].
pub const MAX_NOTICES: u32 = 10;
/// The window, in seconds.
pub const WINDOW_SECONDS: u64 = 3600;

/// Notices queued per organization in the current window.
#[derive(Debug, Default)]
pub struct NoticeBudget {
    spent: Mutex<HashMap<String, (u32, u64)>>,
}

impl NoticeBudget {
    /// Whether a notice to `organization`'s contacts may be queued at `now`
    /// (seconds).
    pub fn available(&self, organization: &str, now: u64) -> bool {
        let spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        match spent.get(organization) {
            Some(&(count, since)) => count < MAX_NOTICES || now.saturating_sub(since) >= WINDOW_SECONDS,
            None => true,
        }
    }

    /// Counts a notice queued to `organization`'s contacts at `now`.
    pub fn spend(&self, organization: &str, now: u64) {
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        let entry = spent.entry(organization.to_string()).or_insert((0, now));
        if now.saturating_sub(entry.1) >= WINDOW_SECONDS {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_bounded_per_organization_and_window() {
        let budget = NoticeBudget::default();
        for _ in 0..MAX_NOTICES {
            assert!(budget.available("a", 100));
            budget.spend("a", 100);
        }
        assert!(!budget.available("a", 100 + WINDOW_SECONDS - 1));
        assert!(budget.available("b", 100), "another organization is not held up");
        assert!(budget.available("a", 100 + WINDOW_SECONDS), "the window passed");
        budget.spend("a", 100 + WINDOW_SECONDS);
        assert!(budget.available("a", 100 + WINDOW_SECONDS), "counting starts again");
    }
}
