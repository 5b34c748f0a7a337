//! The instance's own PostgreSQL: the cluster (initdb, start, stop,
//! status), the connection, and the schema with its embedded migrations.

pub mod cluster;
pub mod load;
pub mod pgpass;
pub mod schema;

pub use cluster::{Cluster, State};
