//! The database schema, built by migrations embedded in the binary.
//!
//! Each migration runs in its own transaction together with the row that
//! records it in `schema_version`, so a database is always at a well-defined
//! version: a failed migration leaves it at the previous one.

use crate::error::{Error, Result};

/// A schema change: its version, a one-line description, and its SQL.
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only: never edit a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "organizations, clients, deposits",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "recorded answers to writes with a request id",
        sql: include_str!("migrations/0002_write_requests.sql"),
    },
    Migration {
        version: 3,
        description: "documented organization ids, client host names",
        sql: include_str!("migrations/0003_documented_org_ids.sql"),
    },
];

/// The schema version this kt builds and expects.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The tables whose rows make up the instance's data, in dependency order.
pub const DATA_TABLES: &[&str] = &["organizations", "clients", "deposits"];

/// The version the database is at (0: no schema yet).
pub fn current_version(client: &mut postgres::Client) -> Result<i32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('public.schema_version') IS NOT NULL", &[])
        .map_err(|e| Error::env("cannot read the schema version").because_err(&e))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_version", &[])
        .map_err(|e| Error::env("cannot read the schema version").because_err(&e))?
        .get(0);
    Ok(version.unwrap_or(0))
}

/// Whether this database is older than this kt (an instance made by an
/// earlier kt) and may be brought up to date here: not on a standby,
/// which gets the change from its primary.
pub fn needs_upgrade(client: &mut postgres::Client) -> Result<bool> {
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .map_err(|e| Error::env("cannot read whether the database is a standby").because_err(&e))?
        .get(0);
    Ok(!in_recovery && current_version(client)? < latest_version())
}

/// Brings an older instance's schema up to this kt's (at `kt db start` and
/// `kt serve`); returns the versions applied (none on a standby, which
/// gets them from its primary, or when up to date). The commit is local:
/// with synchronous replication a passive that is down must not hold up
/// the start; it gets the change by replication when it is back.
pub fn upgrade(client: &mut postgres::Client) -> Result<Vec<i32>> {
    if !needs_upgrade(client)? {
        return Ok(Vec::new());
    }
    client
        .batch_execute("SET synchronous_commit TO local")
        .map_err(|e| Error::env("cannot prepare the schema upgrade").because_err(&e))?;
    migrate(client)
}

/// Brings the schema up to [`latest_version`]; returns the versions applied.
/// A database newer than this kt is refused rather than touched.
pub fn migrate(client: &mut postgres::Client) -> Result<Vec<i32>> {
    migrate_to(client, latest_version())
}

/// Brings the schema up to `target` (at most [`latest_version`]): the
/// reference a restored database is compared with (`storage::shape`).
pub fn migrate_to(client: &mut postgres::Client, target: i32) -> Result<Vec<i32>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version     integer PRIMARY KEY,
                 description text NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(|e| Error::env("cannot create the schema_version table").because_err(&e))?;
    let current = current_version(client)?;
    if current > latest_version() {
        return Err(Error::env(format!(
            "the database schema is at version {current}, newer than this kt knows ({})",
            latest_version()
        ))
        .with_hint("run a kt at least as new as the one that last wrote this database"));
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current && m.version <= target) {
        let failed = |e: postgres::Error| {
            Error::env(format!("schema migration {} ({}) failed", migration.version, migration.description))
                .because_err(&e)
        };
        let mut tx = client.transaction().map_err(failed)?;
        tx.batch_execute(migration.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
            &[&migration.version, &migration.description],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        applied.push(migration.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_strictly_increasing_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
        }
    }
}
