//! A scratch database for loading a dump that is not trusted to run as a
//! superuser: the first wall around a backup's SQL (the second is the
//! statement filter, `load::filter`).
//!
//! The database is created by the instance's database user (the cluster's
//! superuser) and owned by a role made for this one load: `LOGIN
//! NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`, member
//! of nothing (so none of `pg_execute_server_program`,
//! `pg_read_server_files`, `pg_write_server_files`), with a random password
//! set as a SCRAM verifier (no plaintext in any SQL text or server log).
//! Such a role can create tables in its own database and load rows, but
//! cannot run programs, read or write server files, create functions in
//! untrusted languages, or change the cluster's configuration: whatever a
//! dump runs while it loads runs with no more than that. A dump that needs
//! more fails to load.
//!
//! What the dump leaves behind could still run later, as whoever owns the
//! database then (a function called by a column default, say): so
//! [`ScratchDb::load`] ends with the shape check (`super::shape`), and
//! only a database holding exactly kt's schema is ever handed on.
//! [`ScratchDb::adopt_as`] then gives every object to the instance's
//! database user, drops the role and renames the database into place.
//! Dropped before that, the database and the role go.

use std::path::Path;

use crate::error::{Error, Result};
use crate::instance::DB_USER;
use crate::progress::Progress;
use crate::storage::load::{self, LoadReport};
use crate::storage::pgpass::Password;
use crate::storage::{databases, Cluster};

/// A role and its password, to connect as.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Password,
}

/// The role names of loads: `<database>_loader`.
const ROLE_SUFFIX: &str = "_loader";

/// The loading role of the scratch database `database`.
pub fn role_of(database: &str) -> String {
    format!("{database}{ROLE_SUFFIX}")
}

pub struct ScratchDb {
    cluster: Cluster,
    admin_password: Password,
    pub name: String,
    login: Login,
    adopted: bool,
}

impl std::fmt::Debug for ScratchDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScratchDb({} on port {}, loaded by {})", self.name, self.cluster.port, self.login.user)
    }
}

impl ScratchDb {
    /// A new scratch database `<prefix><pid>` of `cluster` (after dropping
    /// those of killed runs with the same prefix), loaded with the staged
    /// dump `sql` and checked ([`ScratchDb::load`]).
    pub fn load_new(
        cluster: &Cluster,
        admin_password: &Password,
        prefix: &str,
        sql: &Path,
        sharing: load::Sharing,
        progress: &dyn Progress,
    ) -> Result<(ScratchDb, LoadReport)> {
        let mut admin = cluster.connect(admin_password, "postgres")?;
        drop_abandoned(&mut admin, prefix);
        let scratch = ScratchDb::create(cluster, admin_password, &mut admin, &format!("{prefix}{}", std::process::id()))?;
        drop(admin);
        let report = scratch.load(sql, sharing, progress)?;
        Ok((scratch, report))
    }

    /// Creates the database `name` (which must not exist: a name of this
    /// run's) and its loading role, through `admin` (a superuser
    /// connection to the same cluster).
    pub fn create(cluster: &Cluster, admin_password: &Password, admin: &mut postgres::Client, name: &str) -> Result<ScratchDb> {
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(Error::env(format!("{name:?} is not a scratch database name kt makes")));
        }
        let login = Login { user: role_of(name), password: Password::generate() };
        let role = login.user.clone();
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1 UNION ALL SELECT 1 FROM pg_database WHERE datname = $2", &[&role, &name])
            .map_err(|e| Error::env("cannot read the roles and databases").because_err(&e))?;
        if exists.is_some() {
            return Err(Error::env(format!("the database {name} or the role {role} exists already: not touching it")));
        }
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
                 CONNECTION LIMIT 16 PASSWORD '{}'",
                super::roles::scram_verifier(&login.password)
            ))
            .map_err(|e| Error::env(format!("cannot create the loading role {role}")).because_err(&e))?;
        let scratch = ScratchDb { cluster: cluster.clone(), admin_password: admin_password.clone(), name: name.to_string(), login, adopted: false };
        databases::create_owned(admin, name, &role)?;
        // Only the loading role (and superusers) may connect while it loads.
        admin
            .batch_execute(&format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"))
            .map_err(|e| Error::env(format!("cannot restrict {name}")).because_err(&e))?;
        Ok(scratch)
    }

    pub fn login(&self) -> &Login {
        &self.login
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Loads the staged dump `sql` as the loading role, through kt's
    /// loader and its statement filter, then checks that the database holds
    /// exactly kt's schema (`super::shape`): nothing of the dump's may
    /// outlive the load unless it is what kt's own migrations make.
    pub fn load(&self, sql: &Path, sharing: load::Sharing, progress: &dyn Progress) -> Result<LoadReport> {
        let report = load::load(&self.cluster, &self.login, &self.name, sql, sharing, progress)?;
        progress.step("checking that the loaded database holds kt's schema and nothing else");
        super::shape::check(&self.cluster, &self.admin_password, &self.login, &self.name)?;
        Ok(report)
    }

    /// Hands the loaded database to the instance's database user (every
    /// object the loading role made, and the database itself), drops the
    /// role, and renames the database to `name`.
    pub fn adopt_as(mut self, admin: &mut postgres::Client, name: &str) -> Result<()> {
        let role = self.login.user.clone();
        let failed = |what: &str, e: &postgres::Error| Error::env(format!("cannot {what}")).because_err(e);
        {
            // REASSIGN OWNED works in the current database: connect to it.
            let mut db = self.cluster.connect(&self.admin_password, &self.name)?;
            db.batch_execute(&format!("REASSIGN OWNED BY {role} TO {DB_USER}; DROP OWNED BY {role}"))
                .map_err(|e| failed("hand the loaded tables to the database user", &e))?;
        }
        // The database's own attributes, which its owner (the loading
        // role) could have changed and the shape check does not compare:
        // back to what a new database has.
        let db = &self.name;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {db} OWNER TO {DB_USER}; REVOKE ALL ON DATABASE {db} FROM PUBLIC; \
                 GRANT CONNECT, TEMPORARY ON DATABASE {db} TO PUBLIC; \
                 ALTER DATABASE {db} CONNECTION LIMIT -1; ALTER DATABASE {db} ALLOW_CONNECTIONS true; \
                 ALTER DATABASE {db} RESET ALL; COMMENT ON DATABASE {db} IS NULL"
            ))
            .map_err(|e| failed("hand the loaded database to the database user", &e))?;
        terminate(admin, &role);
        admin.batch_execute(&format!("DROP ROLE {role}")).map_err(|e| failed(&format!("drop the loading role {role}"), &e))?;
        databases::rename(admin, &self.name, name)?;
        self.adopted = true;
        Ok(())
    }
}

/// Ends the sessions of `role` (the loader's connections close on their
/// own, but the server notices a moment later).
fn terminate(admin: &mut postgres::Client, role: &str) {
    let _ = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", &[&role]);
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if self.adopted {
            return;
        }
        if let Ok(mut admin) = self.cluster.connect(&self.admin_password, "postgres") {
            let _ = databases::drop(&mut admin, &self.name);
            terminate(&mut admin, &self.login.user);
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.login.user));
        }
    }
}

/// Drops the scratch databases (and their loading roles) named
/// `<prefix><pid>` whose process is gone: a killed run's. Never any other
/// database.
pub fn drop_abandoned(admin: &mut postgres::Client, prefix: &str) {
    let Ok(rows) = admin.query("SELECT datname FROM pg_database", &[]) else { return };
    for row in rows {
        let name: String = row.get(0);
        let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() && databases::drop(admin, &name).is_ok() {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", role_of(&name)));
        }
    }
    // A role whose database is gone (killed between the two).
    let Ok(rows) = admin.query("SELECT rolname FROM pg_roles WHERE NOT rolsuper", &[]) else { return };
    for row in rows {
        let role: String = row.get(0);
        let Some(pid) = role.strip_prefix(prefix).and_then(|p| p.strip_suffix(ROLE_SUFFIX)).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
        }
    }
}
