//! The instance's PostgreSQL: its own cluster (initdb, start, stop,
//! status) or an external server, the connection (endpoint, pgtls),
//! and the schema with its embedded migrations.

pub mod cluster;
pub mod databases;
pub mod endpoint;
pub mod grants;
pub mod load;
pub mod pgpass;
pub mod pgtls;
pub mod roles;
pub mod schema;
pub mod shape;
pub mod scratch;
pub mod socket;

pub use cluster::{Cluster, State};

/// A database error as the server put it ("ERROR: ..."), or the client
/// library's own text (postgres' Display alone says "db error").
pub fn db_error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}
