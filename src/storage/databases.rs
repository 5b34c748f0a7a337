//! Whole databases of the instance's cluster, through an admin connection
//! (to the `postgres` database): create, drop, rename. Dropping and
//! renaming wait for the database's last sessions, which take a moment to
//! end after their clients hung up (and end them).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Creates `name` (UTF-8, from template0: empty, whatever template1 holds).
pub fn create(admin: &mut postgres::Client, name: &str) -> Result<()> {
    admin
        .batch_execute(&format!("CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"))
        .map_err(|e| Error::env(format!("cannot create the database {name}")).because_err(&e))
}

/// Creates `name` like [`create`], owned by `owner`.
pub fn create_owned(admin: &mut postgres::Client, name: &str, owner: &str) -> Result<()> {
    admin
        .batch_execute(&format!("CREATE DATABASE {name} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0"))
        .map_err(|e| Error::env(format!("cannot create the database {name}")).because_err(&e))
}

/// Drops `name` if it exists.
pub fn drop(admin: &mut postgres::Client, name: &str) -> Result<()> {
    when_free(admin, name, &format!("DROP DATABASE IF EXISTS {name}"))
}

pub fn rename(admin: &mut postgres::Client, from: &str, to: &str) -> Result<()> {
    when_free(admin, from, &format!("ALTER DATABASE {from} RENAME TO {to}"))
}

/// Runs `sql` once nobody else is connected to `database`, ending other
/// sessions and retrying for up to ten seconds.
fn when_free(admin: &mut postgres::Client, database: &str, sql: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        );
        match admin.batch_execute(sql) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline && e.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(Error::env(format!("cannot {sql}")).because_err(&e)),
        }
    }
}
