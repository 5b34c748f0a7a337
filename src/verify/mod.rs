//! `kt verify`: whether the key server and its backups are sound. Every
//! check is read-only and reports one line; the verdict is the exit code
//! (0 sound, 1 a problem found, 3 could not check).

pub mod backup;

pub mod local;
pub mod remote;

// The checklist type is shared with `kt cert check` and (next) `kt ha
// status`: it lives in `crate::checks`, re-exported here for verify's users.
pub use crate::checks::{Check, Report, Status};
