//! Client approval: the rule that decides whether a registration is
//! accepted, held for an administrator, or refused. The organization's
//! contacts are told about a held one (and an admitted one) by mail queued
//! with the registration itself (src/server/db.rs, src/mail/).
//!
//! The documented flow: an organization with an auth secret admits a
//! client that gives that secret; a client that names the organization but
//! gives no secret asks for approval instead, and waits (`pending`) until
//! an administrator runs `kt org enable-client --fingerprint FPR` (or
//! refuses it with `kt org deny-client`). A wrong secret is a refusal, as
//! it is a guess rather than a request.

/// What a registration becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Stored `active`: the organization approves automatically (empty
    /// secret) or the client gave the right secret.
    Admit,
    /// Stored `pending` until an administrator decides.
    Hold,
    /// Nothing is stored.
    Refuse,
}

/// Decides a registration with an existing, active organization.
/// `matches` compares the given secret with the organization's (the caller
/// does it in constant time).
pub fn decide(org_secret: &str, given: &str, matches: impl FnOnce() -> bool) -> Decision {
    if org_secret.is_empty() {
        Decision::Admit
    } else if given.is_empty() {
        Decision::Hold
    } else if matches() {
        Decision::Admit
    } else {
        Decision::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_rule() {
        assert_eq!(decide("", "", || false), Decision::Admit);
        assert_eq!(decide("", "anything", || false), Decision::Admit);
        assert_eq!(decide("s3cret", "", || panic!("no secret given: nothing to compare")), Decision::Hold);
        assert_eq!(decide("s3cret", "s3cret", || true), Decision::Admit);
        assert_eq!(decide("s3cret", "guess", || false), Decision::Refuse);
    }
}
