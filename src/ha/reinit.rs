//! `kt restore` on an HA active, and what it means for the passive.
//!
//! A restore replaces the active's database (and, on a fresh host, its
//! whole cluster): the passive's copy is no longer one to trust. When a
//! restore completes on an instance whose `HA_ROLE` is `active` it writes
//! a marker, `ha-reinit-needed` in the instance home (next to the confdir,
//! not in it: `kt ha sync` must not carry it to the passive and a backup
//! must not bring an old one back), with the restore's time, the peer, and
//! the active's WAL position once the restore was in place.
//!
//! While it is there, `kt ha status` (and the ha line of `kt verify`) on
//! the active is degraded (exit 1): "passive must be re-initialised" until
//! a standby streams from this host and has replayed past that position,
//! then "the passive has caught up with the restore" (it holds the
//! restored database, whether `kt ha init-passive --force` rebuilt it or,
//! same cluster, it replayed the restore itself) until the marker is
//! cleared. Status and verify only read ([`pending`]): the marker goes in
//! a command allowed to write, [`clear_if_caught_up`], run by `kt ha
//! enable-sync` (the documented step after `init-passive --force`) and by
//! `kt ha status --clear-reinit` (for a pair that stays asynchronous, or
//! whose synchronous replication stayed on). Neither removes a marker
//! whose standby has not caught up. A marker that cannot be read is a
//! problem line of the status, not a failure of it.
//!
//! Also the restore's gate: with synchronous replication on and no
//! standby connected, every commit of the restore would wait without end,
//! so the restore is refused before it changes anything (the question
//! `kt org` asks: [`ha::syncrep::refuse_waiting_write`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::ha::{self, STANDBY_NAME};
use crate::instance::{Instance, Layout};
use crate::storage::cluster::{Cluster, State};

/// The marker's file name in the instance home.
pub const MARKER: &str = "ha-reinit-needed";

/// What the marker holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    /// When the restore completed (RFC 3339, UTC).
    pub restored_at: String,
    /// The passive to re-initialise (`HA_PEER`).
    pub peer: Option<String>,
    /// The active's WAL position after the restore (`pg_current_wal_lsn()`).
    pub wal_lsn: String,
}

pub fn marker_path(layout: &Layout) -> PathBuf {
    layout.home.join(MARKER)
}

/// Writes the marker (atomically, 0600, as `account`).
pub fn write(layout: &Layout, marker: &Marker, account: &Account) -> Result<PathBuf> {
    let path = marker_path(layout);
    let text = serde_json::to_string_pretty(marker).map_err(|e| Error::env("cannot encode the HA marker").because(e))?;
    fsutil::write_atomic(&path, format!("{text}\n").as_bytes(), 0o600, Some(account))?;
    Ok(path)
}

/// The marker, if there is one (one that cannot be read or parsed is an
/// error naming the file: [`pending`] makes it a problem line).
pub fn read(layout: &Layout) -> Result<Option<Marker>> {
    let path = marker_path(layout);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::problem(format!("cannot read {}", path.display())).because(e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::env(format!("cannot read {}", path.display())).because_err(&e)),
    }
}

/// The marker for a restore that just completed on an HA active: the
/// active's WAL position now (the restored database is in place).
pub fn marker_now(admin: &mut postgres::Client, peer: Option<String>) -> Result<Marker> {
    let row = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .map_err(|e| ha::sql_failed("cannot read the WAL position", &e))?;
    Ok(Marker { restored_at: crate::clock::rfc3339_now(), peer, wal_lsn: row.get(0) })
}

/// Whether a standby streams from this host and has replayed past
/// `marker`'s WAL position.
pub fn passive_caught_up(admin: &mut postgres::Client, marker: &Marker) -> Result<bool> {
    let row = admin
        .query_opt(
            "SELECT pg_wal_lsn_diff(replay_lsn, $1::text::pg_lsn) >= 0 FROM pg_stat_replication \
             WHERE application_name = $2 AND state = 'streaming' AND replay_lsn IS NOT NULL \
             ORDER BY backend_start DESC LIMIT 1",
            &[&marker.wal_lsn, &STANDBY_NAME],
        )
        .map_err(|e| ha::sql_failed("cannot read pg_stat_replication", &e))?;
    Ok(row.map(|r| r.get::<_, bool>(0)).unwrap_or(false))
}

/// Where the re-initialisation after a restore stands on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// No marker: no restore waits for the passive.
    Nothing,
    /// No standby has the restored database yet.
    Reinit(Marker),
    /// A standby streams and has replayed past the restore: the marker
    /// only waits for [`clear_if_caught_up`].
    CaughtUp(Marker),
    /// The marker is there but cannot be read (the message says why).
    Unreadable(String),
}

impl Pending {
    /// The status's problem line, if any.
    pub fn problem(&self) -> Option<String> {
        match self {
            Pending::Nothing => None,
            Pending::Reinit(marker) => Some(problem(marker)),
            Pending::CaughtUp(marker) => Some(format!(
                "the passive has caught up with the restore of {}: clear the marker with `kt ha status --clear-reinit` (`kt ha enable-sync` clears it too)",
                marker.restored_at
            )),
            Pending::Unreadable(why) => Some(format!(
                "{why}: the restore marker is unreadable; once the passive was re-initialised (kt ha init-passive --force there), remove it"
            )),
        }
    }
}

/// Reads the marker and asks the database whether a standby has caught
/// up with it. Never writes: `kt ha status` and `kt verify` call it.
pub fn pending(layout: &Layout, admin: &mut postgres::Client) -> Result<Pending> {
    let marker = match read(layout) {
        Ok(Some(marker)) => marker,
        Ok(None) => return Ok(Pending::Nothing),
        Err(e) => return Ok(Pending::Unreadable(e.to_string())),
    };
    Ok(if passive_caught_up(admin, &marker)? { Pending::CaughtUp(marker) } else { Pending::Reinit(marker) })
}

/// Removes the marker when a standby has caught up with the restore it
/// records (see the module doc for who calls this). Returns what it found:
/// `CaughtUp` (now removed), `Reinit` or `Unreadable` (left in place), or
/// `Nothing`.
pub fn clear_if_caught_up(instance: &Instance) -> Result<Pending> {
    if marker_path(&instance.layout).symlink_metadata().is_err() {
        return Ok(Pending::Nothing);
    }
    let cluster = Cluster::for_instance(instance)?;
    let mut admin = ha::admin(instance, &cluster)?;
    let pending = pending(&instance.layout, &mut admin)?;
    if let Pending::CaughtUp(_) = pending {
        let path = marker_path(&instance.layout);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::env(format!("cannot remove {}", path.display())).because_err(&e)),
        }
    }
    Ok(pending)
}

/// The status line while no standby has the restored database.
pub fn problem(marker: &Marker) -> String {
    format!(
        "passive must be re-initialised (this database was restored at {}): run kt ha init-passive --force on {}",
        marker.restored_at,
        marker.peer.as_deref().map(|p| format!("the passive {p}")).unwrap_or_else(|| "the passive".into())
    )
}

/// Refuses a restore of `instance` (exit 3, nothing changed) when its
/// commits would wait for a passive that is not there: the running
/// database says so, or (stopped) its `postgresql.auto.conf` names
/// synchronous standbys, which the restore's start would bring into force.
pub fn refuse_waiting_restore(instance: &Instance) -> Result<()> {
    let Ok(cluster) = Cluster::for_instance(instance) else { return Ok(()) };
    if !cluster.exists() {
        return Ok(());
    }
    let hint = "run `kt ha disable-sync` on this host first (the passive is re-initialised after the restore anyway), then kt restore again";
    match cluster.state()? {
        State::Running { .. } => {
            // A database kt cannot reach here is the restore's own
            // business (it reports that better): only a definite answer refuses.
            let Ok(mut admin) = ha::admin(instance, &cluster) else { return Ok(()) };
            ha::syncrep::refuse_waiting_write(&mut admin).map_err(|e| e.with_hint(hint))
        }
        _ => {
            let auto = std::fs::read_to_string(cluster.data_dir.join("postgresql.auto.conf")).unwrap_or_default();
            let sync = auto.lines().any(|l| {
                let l = l.trim();
                l.starts_with("synchronous_standby_names") && !l.ends_with("''")
            });
            if sync {
                return Err(Error::env("synchronous replication is on and the database is stopped: the restore's writes would wait for the passive")
                    .because("nothing was changed")
                    .with_hint("start the database (kt db start) and the passive's, or turn synchronous replication off with kt ha disable-sync, then kt restore again"));
            }
            Ok(())
        }
    }
}
