//! `kt restore` on an HA active, and what it means for the passive.
//!
//! A restore replaces the active's database (and, on a fresh host, its
//! whole cluster): the passive's copy is no longer one to trust. When a
//! restore completes on an instance whose `HA_ROLE` is `active` it writes
//! a marker, `ha-reinit-needed` in the instance home (next to the confdir,
//! not in it: `kt ha sync` must not carry it to the passive and a backup
//! must not bring an old one back), with the restore's time, the peer, and
//! the active's WAL position once the restore was in place. `kt ha status`
//! on the active reports "passive must be re-initialised" (exit 1) while
//! it is there, and removes it when a standby streams from this host and
//! has replayed past that position: it then holds the restored database,
//! whether `kt ha init-passive --force` rebuilt it or (same cluster) it
//! replayed the restore itself.
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
    let text = serde_json::to_string_pretty(marker).map_err(|e| Error::problem("cannot encode the HA marker").because(e))?;
    fsutil::write_atomic(&path, format!("{text}\n").as_bytes(), 0o600, Some(account))?;
    Ok(path)
}

/// The marker, if there is one (one that does not parse is reported).
pub fn read(layout: &Layout) -> Result<Option<Marker>> {
    let path = marker_path(layout);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::env(format!("cannot read {}", path.display())).because(e).with_hint("remove it once the passive was re-initialised")),
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

/// The status line while the marker is there.
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
