//! `kt ha enable-sync` and `kt ha disable-sync` on the active:
//! synchronous replication to the passive through `ALTER SYSTEM` (kept in
//! `postgresql.auto.conf`, removed again by `ALTER SYSTEM RESET`, so the
//! file returns to what it was).
//!
//! `synchronous_commit = remote_apply`: a commit returns when the passive
//! has applied it, so a deposit acknowledged by the active is readable on
//! the passive at once (the documented "reads from either server").

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ha::{self, STANDBY_NAME};
use crate::instance::Instance;
use crate::progress::Progress;
use crate::settings::HaRole;
use crate::storage::cluster::Cluster;

/// The `synchronous_commit` level kt sets.
pub const SYNC_COMMIT: &str = "remote_apply";

/// True when a write here would wait for a passive that is not there:
/// synchronous replication configured on this primary and no synchronous
/// standby streaming. The server's write gate and the admin commands ask
/// the same question.
pub const WRITES_WOULD_WAIT_SQL: &str = "SELECT current_setting('synchronous_standby_names') <> '' AND NOT pg_is_in_recovery() \
     AND NOT EXISTS (SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum'))";

/// Refuses an admin write (`kt org ...`) that would wait without end for
/// a passive that is not there, and commit anyway if interrupted: exit 3,
/// nothing changed.
pub fn refuse_waiting_write(db: &mut postgres::Client) -> Result<()> {
    let row = db.query_one(WRITES_WOULD_WAIT_SQL, &[]).map_err(|e| ha::sql_failed("cannot read the replication state", &e))?;
    if row.get::<_, bool>(0) {
        return Err(Error::env("the passive is not connected, and synchronous replication makes every write wait for it")
            .because("nothing was changed")
            .with_hint("start the passive's database (kt db start there), or turn synchronous replication off: kt ha disable-sync"));
    }
    Ok(())
}

/// Whether `synchronous_standby_names` is set (writes wait for a standby).
pub fn configured(admin: &mut postgres::Client) -> Result<bool> {
    let row = admin
        .query_one("SELECT current_setting('synchronous_standby_names')", &[])
        .map_err(|e| ha::sql_failed("cannot read synchronous_standby_names", &e))?;
    Ok(!row.get::<_, String>(0).trim().is_empty())
}

/// The passive's `sync_state` in `pg_stat_replication` (None: not connected).
fn sync_state(admin: &mut postgres::Client) -> Result<Option<String>> {
    let row = admin
        .query_opt(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming' LIMIT 1",
            &[&STANDBY_NAME],
        )
        .map_err(|e| ha::sql_failed("cannot read pg_stat_replication", &e))?;
    Ok(row.map(|r| r.get::<_, Option<String>>(0).unwrap_or_default()))
}

fn set(admin: &mut postgres::Client, on: bool) -> Result<()> {
    // One statement at a time: ALTER SYSTEM refuses to run in the implicit
    // transaction of a multi-statement query.
    let statements = if on {
        vec![
            format!("ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"),
            format!("ALTER SYSTEM SET synchronous_commit = '{SYNC_COMMIT}'"),
        ]
    } else {
        vec!["ALTER SYSTEM RESET synchronous_standby_names".into(), "ALTER SYSTEM RESET synchronous_commit".into()]
    };
    for sql in statements.iter().map(String::as_str).chain(["SELECT pg_reload_conf()"]) {
        admin.batch_execute(sql).map_err(|e| ha::sql_failed("cannot change the replication settings", &e))?;
    }
    Ok(())
}

fn active_admin(instance: &Instance) -> Result<postgres::Client> {
    match instance.settings.ha_role {
        Some(HaRole::Active) => {}
        Some(HaRole::Passive) => {
            return Err(Error::usage("this host is the passive of an HA pair").with_hint("run this on the active"))
        }
        None => return Err(Error::usage("HA is not enabled on this host").with_hint("run `kt ha enable --peer PASSIVE` first")),
    }
    let cluster = Cluster::for_instance(instance)?;
    ha::admin(instance, &cluster)
}

/// Turns synchronous replication on and waits (up to `wait`) until the
/// passive is the synchronous standby; else turns it off again and fails.
pub fn enable(instance: &Instance, wait: Duration, progress: &dyn Progress) -> Result<()> {
    let mut admin = active_admin(instance)?;
    if sync_state(&mut admin)?.is_none() {
        return Err(Error::env("the passive is not streaming from this host")
            .with_hint("check `kt ha status` on both hosts; start the passive's database (`kt db start`) or run `kt ha init-passive` there"));
    }
    set(&mut admin, true)?;
    progress.step(&format!("waiting up to {}s for the passive to become synchronous", wait.as_secs()));
    let confirmed = ha::wait_until(wait, || Ok(sync_state(&mut admin)?.as_deref() == Some("sync")));
    match confirmed {
        Ok(true) => Ok(()),
        other => {
            let undone = set(&mut admin, false);
            let mut err = match other {
                Err(e) => e,
                _ => Error::env(format!("the passive did not become the synchronous standby within {}s", wait.as_secs())),
            };
            err = match undone {
                Ok(()) => err.because("synchronous replication was turned off again"),
                Err(e) => err.because(format!("NOT UNDONE: synchronous replication is still on: {e}")),
            };
            Err(err.with_hint("check `kt ha status` on both hosts"))
        }
    }
}

/// Turns synchronous replication off (writes no longer wait for the passive).
pub fn disable(instance: &Instance) -> Result<bool> {
    let mut admin = active_admin(instance)?;
    let was_on = configured(&mut admin)?;
    set(&mut admin, false)?;
    Ok(was_on)
}
