//! `kt ha status` and the HA line of `kt verify`: this host's role, its
//! peer, and what PostgreSQL says about the replication between them.
//!
//! On the active: `pg_stat_replication` (the passive's connection, its
//! sync state, how far behind its replay is, in bytes and seconds). On the
//! passive: `pg_stat_wal_receiver` and the last WAL received and replayed.
//! Healthy means the passive streams (and, with synchronous replication
//! on, is the synchronous standby); anything else is degraded, with the
//! reasons in `problems`.

use serde::Serialize;

use crate::error::Result;
use crate::ha::{self, STANDBY_NAME};
use crate::instance::Instance;
use crate::settings::HaRole;
use crate::storage::cluster::Cluster;

/// The HA state of one host.
#[derive(Debug, Clone, Serialize)]
pub struct HaStatus {
    /// `active`, `passive` or `standalone` (no HA configured).
    pub role: String,
    pub peer: Option<String>,
    /// The database's own view: in recovery (a standby) or not.
    pub in_recovery: bool,
    /// `streaming`, `catchup`, ... or `disconnected`.
    pub replication: String,
    /// Synchronous replication configured on the active (`None` on the passive).
    pub synchronous: Option<bool>,
    /// The passive's sync state as the active sees it (`sync`, `async`, ...).
    pub sync_state: Option<String>,
    pub lag_bytes: Option<i64>,
    pub lag_seconds: Option<f64>,
    /// On the active: the passive's received (flushed) and replayed WAL;
    /// on the passive: its own.
    pub last_wal_received: Option<String>,
    pub last_wal_replayed: Option<String>,
    pub healthy: bool,
    /// `kt restore` ran here and no standby has the restored database yet.
    pub reinit_needed: bool,
    /// `kt restore` ran here, a standby has caught up with it, and its
    /// marker waits to be cleared (`kt ha status --clear-reinit`).
    pub reinit_caught_up: bool,
    pub problems: Vec<String>,
}

/// Reads the state of this host's database (which must be running).
pub fn read(instance: &Instance) -> Result<HaStatus> {
    let cluster = Cluster::for_instance(instance)?;
    let mut admin = ha::admin(instance, &cluster)?;
    let fail = |what: &str| {
        let what = what.to_string();
        move |e: postgres::Error| ha::sql_failed(&what, &e)
    };
    let in_recovery: bool =
        admin.query_one("SELECT pg_is_in_recovery()", &[]).map_err(fail("cannot ask the database its role"))?.get(0);
    let role = instance.settings.ha_role;
    let mut status = HaStatus {
        role: role.map(|r| r.name()).unwrap_or("standalone").to_string(),
        peer: instance.settings.ha_peer.clone(),
        in_recovery,
        replication: "disconnected".into(),
        synchronous: None,
        sync_state: None,
        lag_bytes: None,
        lag_seconds: None,
        last_wal_received: None,
        last_wal_replayed: None,
        healthy: false,
        reinit_needed: false,
        reinit_caught_up: false,
        problems: Vec::new(),
    };
    match role {
        None => {
            status.problems.push("HA is not enabled on this host".into());
            if in_recovery {
                status.problems.push("the database is in recovery (a standby) without HA settings".into());
            } else {
                let found: Vec<&str> =
                    ha::enable::pieces_found(instance, Some(&mut admin))?.into_iter().filter(|(_, there)| *there).map(|(name, _)| name).collect();
                if !found.is_empty() {
                    status.problems.push(format!(
                        "parts of an HA setup are here ({}): an interrupted kt ha enable or disable; run `kt ha enable --peer PASSIVE` to complete it, or `kt ha disable` to remove them",
                        found.join(", ")
                    ));
                }
            }
            reinit_needed(instance, &mut admin, &mut status)?;
        }
        Some(HaRole::Active) => {
            if in_recovery {
                status.problems.push("HA_ROLE says active but the database is a standby".into());
            } else {
                let missing: Vec<&str> =
                    ha::enable::pieces_found(instance, Some(&mut admin))?.into_iter().filter(|(_, there)| !*there).map(|(name, _)| name).collect();
                if !missing.is_empty() {
                    status.problems.push(format!(
                        "the HA setup is incomplete ({} missing): an interrupted kt ha enable or disable; run `kt ha enable --peer {}` to complete it, or `kt ha disable` to remove it",
                        missing.join(", "),
                        status.peer.as_deref().unwrap_or("PASSIVE")
                    ));
                }
            }
            reinit_needed(instance, &mut admin, &mut status)?;
            if let Some(problem) = stale_ca_copy(instance) {
                status.problems.push(problem);
            }
            let synchronous = ha::syncrep::configured(&mut admin)?;
            status.synchronous = Some(synchronous);
            let row = admin
                .query_opt(
                    "SELECT coalesce(state, ''), coalesce(sync_state, ''), flush_lsn::text, replay_lsn::text, \
                     pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, \
                     extract(epoch FROM replay_lag)::float8 \
                     FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1",
                    &[&STANDBY_NAME],
                )
                .map_err(fail("cannot read pg_stat_replication"))?;
            match row {
                None => status.problems.push("the passive is not connected".into()),
                Some(r) => {
                    status.replication = r.get(0);
                    status.sync_state = Some(r.get(1));
                    status.last_wal_received = r.get(2);
                    status.last_wal_replayed = r.get(3);
                    status.lag_bytes = r.get(4);
                    // No lag figure while idle: nothing is waiting to be replayed.
                    status.lag_seconds = Some(r.get::<_, Option<f64>>(5).unwrap_or(0.0));
                    if status.replication != "streaming" {
                        status.problems.push(format!("the passive is {}, not streaming", status.replication));
                    }
                    if synchronous && status.sync_state.as_deref() != Some("sync") {
                        status.problems.push(format!(
                            "synchronous replication is on but the passive is {}",
                            status.sync_state.as_deref().unwrap_or("?")
                        ));
                    }
                }
            }
        }
        Some(HaRole::Passive) => {
            if !in_recovery {
                status.problems.push("HA_ROLE says passive but the database is not a standby".into());
            }
            let receiver = admin
                .query_opt("SELECT status FROM pg_stat_wal_receiver", &[])
                .map_err(fail("cannot read pg_stat_wal_receiver"))?;
            status.replication = receiver.map(|r| r.get::<_, String>(0)).unwrap_or_else(|| "disconnected".into());
            if status.replication != "streaming" {
                status.problems.push(format!("the standby is {}, not streaming from the active", status.replication));
            }
            let r = admin
                .query_one(
                    "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
                     pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint, \
                     CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                          ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8",
                    &[],
                )
                .map_err(fail("cannot read the standby's WAL positions"))?;
            status.last_wal_received = r.get(0);
            status.last_wal_replayed = r.get(1);
            status.lag_bytes = r.get(2);
            status.lag_seconds = r.get(3);
        }
    }
    status.healthy = status.problems.is_empty();
    Ok(status)
}

/// After `kt restore` here (the marker of [`ha::reinit`]): degraded while
/// the marker is there, whether or not a standby has caught up with the
/// restore. Only reads (see [`ha::reinit`] for what clears the marker).
fn reinit_needed(instance: &Instance, admin: &mut postgres::Client, status: &mut HaStatus) -> Result<()> {
    let pending = ha::reinit::pending(&instance.layout, admin)?;
    status.reinit_needed = matches!(pending, ha::reinit::Pending::Reinit(_) | ha::reinit::Pending::Unreadable(_));
    status.reinit_caught_up = matches!(pending, ha::reinit::Pending::CaughtUp(_));
    status.problems.extend(pending.problem());
    Ok(())
}

/// The passive verifies the active's database certificate with the copy
/// of the active's CA that `kt ha enable` put in the confdir: after `kt
/// cert replace` with another CA, the copy (and the passive's, until the
/// next `kt ha sync`) no longer matches, and the passive's next connection
/// would fail its TLS check.
fn stale_ca_copy(instance: &Instance) -> Option<String> {
    let (cert, _, ca) = instance.tls_files();
    let anchor = if ca.is_file() { ca } else { cert };
    let copy = ha::active_ca(instance);
    match (std::fs::read(&copy), std::fs::read(&anchor)) {
        (Ok(a), Ok(b)) if a == b => None,
        (Err(_), _) => Some(format!("{} is missing: the passive cannot verify this database's certificate", copy.display())),
        _ => Some(format!(
            "{} differs from {} (a certificate change?): copy it over, `kt ha sync` the confdir to the passive, and restart this database (`kt db stop`, `kt db start`) so that it serves the new certificate",
            copy.display(),
            anchor.display()
        )),
    }
}

impl HaStatus {
    /// One line for `kt verify`.
    pub fn summary(&self) -> String {
        let mut s = format!("{}, peer {}, {}", self.role, self.peer.as_deref().unwrap_or("none"), self.replication);
        if let Some(state) = &self.sync_state {
            s.push_str(&format!(" ({state})"));
        }
        if let Some(bytes) = self.lag_bytes {
            s.push_str(&format!(", lag {bytes} bytes"));
        }
        if !self.problems.is_empty() {
            s.push_str(&format!(": {}", self.problems.join("; ")));
        }
        s
    }
}
