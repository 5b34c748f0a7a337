//! `kt restore` into an external database (README, "External database"):
//! the same trust order, checks, safety copy and rollback as the local
//! path, within the rights kt's role has there. That role is no superuser
//! and may not create databases or roles, so where the local path loads a
//! scratch database and renames databases, this one works with schemas of
//! kt's own database:
//!
//! 1. [`load`] (after the backup was checked and the restore confirmed,
//!    while the servers still serve): takes the restore lock (one restore
//!    per database), drops the scratch schemas a killed restore left
//!    (only names kt makes, owned by kt's role, carrying kt's marker
//!    comment), creates the scratch schema `kt_restore_load_<pid>` and
//!    loads the dump into it as kt's role, through the statement filter
//!    with every `public.` mapped into that schema (`load::requalify`),
//!    then compares it with kt's migrations built in a second scratch
//!    schema (`shape::check_schema`), which goes again.
//! 2. [`swap_in`] (after the local server was stopped and the restored
//!    confdir put in place): in ONE transaction, refused while another
//!    `kt serve` is connected, creates `kt_restore_prev_<pid>`, moves kt's
//!    live tables from `public` into it and the loaded ones from the
//!    scratch schema into `public` (`ALTER TABLE ... SET SCHEMA`: the
//!    role owns the tables and has CREATE on both schemas; `public`
//!    itself is never renamed, as PostgreSQL 15 gives it to
//!    `pg_database_owner`), and drops the emptied scratch schema. DDL is
//!    transactional: a failure leaves every table where it was. Undone
//!    (a later step failed) in one transaction too: the restored tables
//!    are dropped and the previous ones moved back.
//! 3. After the whole restore succeeded, the previous tables (the safety
//!    copy, like the local path's database set aside) are dropped: the
//!    backup is the copy of record then.
//!
//! The restore lock is a session lock of the control session [`load`]
//! opens, and that session lives until the restore is over: the swap's
//! undo runs on it and [`Aside`] drops the safety copy on it, so the lock
//! goes only when the journal has committed (and the copy is dropped) or
//! undone the swap. Released any earlier, a second restore could swap in
//! between, and this one's undo would drop the tables it put in place. A schema `kt_restore_prev_*`
//!    that a killed restore left is never dropped by kt: it may hold the
//!    only copy of the data.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::journal::Journal;
use crate::progress::Progress;
use crate::storage::endpoint::Endpoint;
use crate::storage::load::{self, LoadReport};
use crate::storage::pgpass::Password;
use crate::storage::{db_error_text, schema, shape};

/// The schemas a restore loads into, and builds its reference in.
pub const LOAD_PREFIX: &str = "kt_restore_load_";
pub const REFERENCE_PREFIX: &str = "kt_restore_ref_";
/// The previous tables, until the restore succeeded.
pub const PREVIOUS_PREFIX: &str = "kt_restore_prev_";
/// The comment kt puts on the scratch schemas it makes: the sweep drops
/// only schemas that carry it.
const SCRATCH_MARKER: &str = "kt restore scratch schema: dropped by the next kt restore";
const PREVIOUS_MARKER: &str = "kt restore: the tables before a restore (a safety copy)";
/// The advisory lock that serializes restores of one database: ASCII
/// "ktrestor".
const RESTORE_LOCK: i64 = 0x6b74_7265_7374_6f72;
/// The application name of `kt serve`'s sessions.
const SERVE_APPLICATION: &str = "kt serve";
/// How long the swap waits for the local server's sessions to end.
const NODES_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The control session, which holds the restore lock: shared by
/// [`Loaded`], the swap's undo and [`Aside`]; the lock goes with the last
/// of them.
type Session = Rc<RefCell<postgres::Client>>;

/// A dump loaded into a scratch schema, not yet in place. Dropped before
/// the swap, the scratch schema goes (and the restore lock with its
/// session).
pub struct Loaded {
    endpoint: Endpoint,
    password: Password,
    control: Session,
    pub schema: String,
    pub report: LoadReport,
    swapped: bool,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaded({} in {})", self.schema, self.endpoint.address())
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if !self.swapped {
            let _ = drop_schema(&mut self.control.borrow_mut(), &self.schema);
        }
    }
}

/// The previous tables, set aside in a schema by [`swap_in`]; holds the
/// restore lock (with its session) until dropped.
pub struct Aside {
    control: Session,
    pub schema: String,
}

impl std::fmt::Debug for Aside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aside({})", self.schema)
    }
}

impl Aside {
    /// Drops the previous tables (after the restore succeeded), still
    /// under the restore lock.
    pub fn drop_copy(&self) -> Result<()> {
        drop_schema(&mut self.control.borrow_mut(), &self.schema)
    }
}

fn sql_failed(what: &str) -> impl Fn(postgres::Error) -> Error + '_ {
    move |e| Error::env(format!("cannot {what}")).because(db_error_text(&e))
}

/// Whether the restored configuration `restored` names the same external
/// database as the instance `live`: the only case restored here.
pub fn same_database(live: &Instance, restored: &Instance) -> bool {
    let (a, b) = (Endpoint::for_instance(live), Endpoint::for_instance(restored));
    b.external && (a.host.as_str(), a.port, a.dbname.as_str(), a.user.as_str()) == (b.host.as_str(), b.port, b.dbname.as_str(), b.user.as_str())
}

/// Refuses (before anything changes) a restored confdir whose password
/// does not log in to the database: the restored servers could not reach
/// it.
pub fn check_restored_login(restored: &Instance, staged_confdir: &Path) -> Result<()> {
    let endpoint = Endpoint::for_instance(restored);
    let password = endpoint.password(&staged_confdir.join(".pgpass"))?;
    endpoint.connect(&password, "kt restore").map(drop).map_err(|e| {
        Error::usage(format!("the backup's database password does not log in to {}: nothing was changed", endpoint.address()))
            .because(e.message())
            .with_hint("the role's password changed since the backup: set it back, or put the current one in the backup's .pgpass")
    })
}

/// What kt's role needs for a restore, beyond what `kt init` checked:
/// CREATE on the database (for the scratch schemas).
fn check_rights(db: &mut postgres::Client, endpoint: &Endpoint) -> Result<()> {
    let grants = crate::storage::grants::read(db)?;
    if let Some(problem) = grants.problem() {
        return Err(Error::env(problem));
    }
    let create: bool = db
        .query_one("SELECT has_database_privilege(current_database(), 'CREATE')", &[])
        .map_err(sql_failed("read the role's rights"))?
        .get(0);
    if !create {
        return Err(Error::env(format!("the role {} may not create schemas in the database {}: a restore loads into a scratch schema", grants.role, endpoint.dbname))
            .with_hint(format!("as the database's administrator: GRANT CREATE ON DATABASE {} TO {} (the database's owner has it)", endpoint.dbname, grants.role)));
    }
    Ok(())
}

/// Loads the staged `dump` into a new scratch schema of `instance`'s
/// external database and checks its shape.
pub fn load(instance: &Instance, dump: &Path, progress: &dyn Progress) -> Result<Loaded> {
    let endpoint = Endpoint::for_instance(instance);
    let password = endpoint.password(&instance.layout.pgpass())?;
    let mut control = endpoint.connect(&password, "kt restore")?;
    check_rights(&mut control, &endpoint)?;
    lock(&mut control, &endpoint)?;
    sweep(&mut control)?;
    let name = format!("{LOAD_PREFIX}{}", std::process::id());
    create_schema(&mut control, &name, SCRATCH_MARKER)?;
    let control = Rc::new(RefCell::new(control));
    let mut loaded = Loaded { endpoint, password, control, schema: name, report: LoadReport::default(), swapped: false };
    let connect = || loaded.endpoint.connect(&loaded.password, "kt restore");
    let report = load::load_into(&load::Target { connect: &connect, owner: &loaded.endpoint.user, schema: Some(&loaded.schema), sharing: load::Sharing::Shared }, dump, progress)?;
    progress.step("checking that the loaded schema holds kt's schema and nothing else");
    let reference = format!("{REFERENCE_PREFIX}{}", std::process::id());
    create_schema(&mut loaded.control.borrow_mut(), &reference, SCRATCH_MARKER)?;
    let checked = shape::check_schema(&connect, &loaded.schema, &reference);
    let dropped = drop_schema(&mut loaded.control.borrow_mut(), &reference);
    checked?;
    dropped?;
    loaded.report = report;
    Ok(loaded)
}

/// Takes the restore lock on `db`'s session (held until the session
/// ends). Refused, the message names the session holding it, as far as
/// kt's role may see it: any session of the database can take an
/// advisory lock, not only a kt restore.
fn lock(db: &mut postgres::Client, endpoint: &Endpoint) -> Result<()> {
    let locked: bool = db.query_one("SELECT pg_try_advisory_lock($1)", &[&RESTORE_LOCK]).map_err(sql_failed("take the restore lock"))?.get(0);
    if locked {
        return Ok(());
    }
    let holder = db
        .query_opt(
            "SELECT l.pid, COALESCE(a.usename::text, ''), COALESCE(a.application_name, ''), COALESCE(a.client_addr::text, 'local') \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid::int8 = ($1::int8 >> 32) AND l.objid::int8 = ($1::int8 & 4294967295) LIMIT 1",
            &[&RESTORE_LOCK],
        )
        .ok()
        .flatten();
    let (what, hint) = match holder {
        Some(row) => {
            let (pid, user, application, from): (i32, String, String, String) = (row.get(0), row.get(1), row.get(2), row.get(3));
            let user = if user.is_empty() { "a role kt cannot see".to_string() } else { format!("role {user}") };
            (
                format!("the restore lock is held by the session {pid} ({user}, application {application:?}, from {from})"),
                format!("wait for that restore to finish, then try again; if the session is no kt restore, its owner (or the database's administrator: SELECT pg_terminate_backend({pid})) ends it"),
            )
        }
        None => ("the restore lock is held by a session kt's role cannot see".to_string(), "wait for it to finish, then try again".to_string()),
    };
    Err(Error::env(format!("another kt restore is running on {}", endpoint.address())).because(what).with_hint(hint))
}

fn create_schema(db: &mut postgres::Client, name: &str, marker: &str) -> Result<()> {
    plain(name)?;
    db.batch_execute(&format!("CREATE SCHEMA \"{name}\"; COMMENT ON SCHEMA \"{name}\" IS '{marker}'"))
        .map_err(sql_failed(&format!("create the schema {name}")))
}

fn drop_schema(db: &mut postgres::Client, name: &str) -> Result<()> {
    plain(name)?;
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")).map_err(sql_failed(&format!("drop the schema {name}")))
}

fn plain(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(Error::env(format!("{name:?} is not a schema name kt makes")));
    }
    Ok(())
}

/// Drops the scratch schemas of killed restores: names kt makes
/// (`kt_restore_load_<n>`, `kt_restore_ref_<n>`), owned by kt's role,
/// with kt's marker comment. Runs under the restore lock, so none of them
/// belongs to a running restore. Never a `kt_restore_prev_*` schema.
fn sweep(db: &mut postgres::Client) -> Result<()> {
    let rows = db
        .query(
            "SELECT n.nspname::text FROM pg_namespace n \
             WHERE pg_get_userbyid(n.nspowner) = current_user \
               AND pg_catalog.obj_description(n.oid, 'pg_namespace') = $1 \
               AND (n.nspname ~ ('^' || $2 || '[0-9]+$') OR n.nspname ~ ('^' || $3 || '[0-9]+$'))",
            &[&SCRATCH_MARKER, &LOAD_PREFIX, &REFERENCE_PREFIX],
        )
        .map_err(sql_failed("list the scratch schemas of earlier restores"))?;
    for row in rows {
        let name: String = row.get(0);
        drop_schema(db, &name)?;
    }
    Ok(())
}

/// The sessions of `kt serve` nodes on this database (kt's role), other
/// than this one.
fn serve_sessions(db: &mut impl postgres::GenericClient) -> Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = current_user \
             AND application_name = $1 AND pid <> pg_backend_pid()",
            &[&SERVE_APPLICATION],
        )
        .map_err(sql_failed("list the database's sessions"))?
        .get(0))
}

/// The tables of `schema` that kt's role owns.
fn tables(db: &mut impl postgres::GenericClient, schema: &str) -> Result<Vec<String>> {
    let rows = db
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tableowner = current_user ORDER BY 1", &[&schema])
        .map_err(sql_failed("list the tables"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Puts the loaded tables in place of kt's live ones (see the module
/// documentation), records the undo, and brings the restored schema up to
/// this kt's.
pub fn swap_in(mut loaded: Loaded, journal: &mut Journal, progress: &dyn Progress) -> Result<Aside> {
    progress.step("putting the loaded tables in place of kt's tables");
    let previous = format!("{PREVIOUS_PREFIX}{}", std::process::id());
    plain(&previous)?;
    let session = loaded.control.clone();
    let mut control = session.borrow_mut();
    // The local server was stopped; its sessions end a moment later.
    let until = std::time::Instant::now() + NODES_WAIT;
    while serve_sessions(&mut *control)? > 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let owner = control
        .query_opt("SELECT pg_get_userbyid(nspowner)::text, pg_get_userbyid(nspowner) = current_user FROM pg_namespace WHERE nspname = $1", &[&previous])
        .map_err(sql_failed("list the schemas"))?;
    if let Some(row) = owner {
        let (owner, ours): (String, bool) = (row.get(0), row.get(1));
        let whose = if ours { format!("owned by kt's role {owner}: an earlier restore's safety copy") } else { format!("owned by the role {owner}, not kt's") };
        return Err(Error::env(format!("the schema {previous} exists already ({whose}): not touching it"))
            .with_hint(format!("check what it holds, drop it (DROP SCHEMA {previous} CASCADE, as {owner}) when it is not needed, then restore again")));
    }
    let scratch = loaded.schema.clone();
    {
        let mut tx = control.transaction().map_err(sql_failed("start the swap"))?;
        let nodes = serve_sessions(&mut tx)?;
        if nodes > 0 {
            return Err(Error::env(format!("{nodes} session(s) of kt serve on other nodes use the database: the tables cannot be swapped under them"))
                .with_hint("stop kt serve on every other node of this instance, then restore again (they read the restored tables when started again)"));
        }
        let live = tables(&mut tx, "public")?;
        let restored = tables(&mut tx, &scratch)?;
        let mut sql = format!("CREATE SCHEMA \"{previous}\"; COMMENT ON SCHEMA \"{previous}\" IS '{PREVIOUS_MARKER}';");
        for t in &live {
            sql.push_str(&format!("ALTER TABLE public.\"{t}\" SET SCHEMA \"{previous}\";"));
        }
        for t in &restored {
            sql.push_str(&format!("ALTER TABLE \"{scratch}\".\"{t}\" SET SCHEMA public;"));
        }
        sql.push_str(&format!("DROP SCHEMA \"{scratch}\";"));
        tx.batch_execute(&sql).map_err(sql_failed("swap the loaded tables in"))?;
        tx.commit().map_err(sql_failed("commit the swap"))?;
    }
    loaded.swapped = true;
    {
        // The undo runs on the locked session: no other restore can have
        // swapped in since (its tables are not the ones it drops).
        let (session, endpoint, password, previous) = (session.clone(), loaded.endpoint.clone(), loaded.password.clone(), previous.clone());
        journal.record(format!("moved kt's tables into the schema {previous} and the restored ones into public"), move || {
            let mut db = session.borrow_mut();
            if db.is_closed() {
                // The session broke, and the lock went with it: a new
                // one, if no other restore took the lock meanwhile.
                *db = endpoint.connect(&password, "kt restore")?;
                lock(&mut db, &endpoint).map_err(|e| e.with_hint(format!("the tables before this restore are in the schema {previous}")))?;
            }
            swap_back(&mut db, &previous)
        });
    }
    // A node that connected after the check would keep statements
    // prepared against the previous tables: its sessions end, and it
    // reconnects to the restored ones.
    let _ = control.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND usename = current_user \
         AND application_name = $1 AND pid <> pg_backend_pid()",
        &[&SERVE_APPLICATION],
    );
    schema::migrate(&mut control)?;
    drop(control);
    Ok(Aside { control: session, schema: previous })
}

/// The undo of [`swap_in`], in one transaction: the tables in `public`
/// (all made by this restore: the previous ones are in `previous`) are
/// dropped, the previous ones moved back, the schema dropped.
fn swap_back(db: &mut postgres::Client, previous: &str) -> Result<()> {
    plain(previous)?;
    let mut tx = db.transaction().map_err(sql_failed("start the undo of the swap"))?;
    let restored = tables(&mut tx, "public")?;
    let kept = tables(&mut tx, previous)?;
    let mut sql = String::new();
    if !restored.is_empty() {
        let list: Vec<String> = restored.iter().map(|t| format!("public.\"{t}\"")).collect();
        sql.push_str(&format!("DROP TABLE {};", list.join(", ")));
    }
    for t in &kept {
        sql.push_str(&format!("ALTER TABLE \"{previous}\".\"{t}\" SET SCHEMA public;"));
    }
    sql.push_str(&format!("DROP SCHEMA \"{previous}\";"));
    tx.batch_execute(&sql).map_err(sql_failed("put kt's previous tables back"))?;
    tx.commit().map_err(sql_failed("commit the undo of the swap"))
}
