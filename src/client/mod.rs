//! The reference client (`kt client`): its key and settings in a private
//! directory, registration, signed deposit requests with fail-over across
//! servers, and the load generator used by the benchmarks.

pub mod bench;
pub mod https;
pub mod store;

pub use store::ClientDir;
