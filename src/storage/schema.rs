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
    Migration {
        version: 4,
        description: "contact registration tokens and contacts' OpenPGP keys",
        sql: include_str!("migrations/0004_contact_registration.sql"),
    },
    Migration {
        version: 5,
        description: "the mail outbox",
        sql: include_str!("migrations/0005_mail_outbox.sql"),
    },
    Migration {
        version: 6,
        description: "the shared replay guard's nonces",
        sql: include_str!("migrations/0006_replay_nonces.sql"),
    },
];

/// The schema version this kt builds and expects.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The tables whose rows make up the instance's data, in dependency order.
/// (Backups hold every table of the dump whatever this list says: their
/// row counts come from the dump itself.) Registration tokens are not
/// data: they expire within hours.
pub const DATA_TABLES: &[&str] = &["organizations", "clients", "deposits", "contact_keys"];

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

/// How this database's schema stands against this kt's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Current,
    /// Older than this kt: `kt db start` or `kt serve` on the active brings
    /// it up (a standby gets it from its primary).
    Behind(i32),
    /// Newer than this kt: a kt at least as new as the last one that
    /// migrated it must be used.
    Ahead(i32),
}

/// Where the database's schema stands against this kt's.
pub fn standing(client: &mut postgres::Client) -> Result<Standing> {
    let current = current_version(client)?;
    Ok(standing_of(current))
}

/// [`standing`] for a version already read.
pub fn standing_of(current: i32) -> Standing {
    match current.cmp(&latest_version()) {
        std::cmp::Ordering::Equal => Standing::Current,
        std::cmp::Ordering::Less => Standing::Behind(current),
        std::cmp::Ordering::Greater => Standing::Ahead(current),
    }
}

/// The refusal for a database newer than this kt: nothing of it is
/// touched, since this kt cannot know what a later migration changed.
pub fn newer_than_this_kt(current: i32) -> Error {
    Error::env(format!(
        "this kt is older than the database: its schema is at version {current}, this kt knows up to {}",
        latest_version()
    ))
    .with_hint("run a kt at least as new as the one that last upgraded this database")
}

/// For the commands that read and write the data directly (`kt org`): the
/// schema must be this kt's. They do not upgrade it themselves: that is
/// the active's `kt db start` or `kt serve`, one place, under the migration
/// lock, and never on a standby.
pub fn require_current(client: &mut postgres::Client) -> Result<()> {
    match standing(client)? {
        Standing::Current => Ok(()),
        Standing::Behind(v) => Err(Error::env(format!(
            "the database schema is at version {v}, older than this kt's ({})",
            latest_version()
        ))
        .with_hint("run `kt db start` or restart `kt serve` to upgrade the schema (on the active of an HA pair)")),
        Standing::Ahead(v) => Err(newer_than_this_kt(v)),
    }
}

/// Whether this database is older than this kt (an instance made by an
/// earlier kt) and may be brought up to date here: not on a standby,
/// which gets the change from its primary. A database newer than this kt
/// is refused.
pub fn needs_upgrade(client: &mut postgres::Client) -> Result<bool> {
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .map_err(|e| Error::env("cannot read whether the database is a standby").because_err(&e))?
        .get(0);
    match standing(client)? {
        Standing::Ahead(v) => Err(newer_than_this_kt(v)),
        Standing::Behind(_) => Ok(!in_recovery),
        Standing::Current => Ok(false),
    }
}

/// Brings an older instance's schema up to this kt's (at `kt db start` and
/// `kt serve`); returns the versions applied (none on a standby, which
/// gets them from its primary, or when up to date). A database newer than
/// this kt is refused. The commit is local: with synchronous replication a
/// passive that is down must not hold up the start; it gets the change by
/// replication when it is back.
pub fn upgrade(client: &mut postgres::Client) -> Result<Vec<i32>> {
    if !needs_upgrade(client)? {
        return Ok(Vec::new());
    }
    client
        .batch_execute("SET synchronous_commit TO local")
        .map_err(|e| Error::env("cannot prepare the schema upgrade").because_err(&e))?;
    migrate(client)
}

/// The advisory lock key that serializes migrations (`kt db start`, `kt
/// serve`, restore and init on one database): ASCII "ktschema".
const MIGRATION_LOCK: i64 = 0x6b74_7363_6865_6d61;
/// How long a migration waits for another one to finish.
const MIGRATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Holds [`MIGRATION_LOCK`] on this session; the other kt waits, then finds
/// the schema already up to date. Released explicitly, or with the session.
fn lock_migrations(client: &mut postgres::Client) -> Result<()> {
    let failed = |e: postgres::Error| Error::env("cannot take the schema migration lock").because_err(&e);
    let until = std::time::Instant::now() + MIGRATION_LOCK_WAIT;
    loop {
        let got: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(failed)?.get(0);
        if got {
            return Ok(());
        }
        if std::time::Instant::now() >= until {
            return Err(Error::env("another kt has been migrating this database's schema for a minute")
                .with_hint("wait for the other `kt db start` or `kt serve` to finish, then try again"));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Brings the schema up to [`latest_version`]; returns the versions applied.
/// A database newer than this kt is refused rather than touched.
pub fn migrate(client: &mut postgres::Client) -> Result<Vec<i32>> {
    migrate_to(client, latest_version())
}

/// Brings the schema up to `target` (at most [`latest_version`]): the
/// reference a restored database is compared with (`storage::shape`).
pub fn migrate_to(client: &mut postgres::Client, target: i32) -> Result<Vec<i32>> {
    lock_migrations(client)?;
    let result = migrate_locked(client, target);
    // A failed unlock leaves the lock to the session's end.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

fn migrate_locked(client: &mut postgres::Client, target: i32) -> Result<Vec<i32>> {
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
        return Err(newer_than_this_kt(current));
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

    #[test]
    fn standing_against_this_kt() {
        let latest = latest_version();
        assert_eq!(standing_of(latest), Standing::Current);
        assert_eq!(standing_of(latest - 1), Standing::Behind(latest - 1));
        assert_eq!(standing_of(latest + 1), Standing::Ahead(latest + 1));
        assert!(newer_than_this_kt(latest + 1).to_string().contains("this kt is older than the database"));
    }
}
