//! Loading the dump into a scratch database, before anything live changes.
//!
//! Only after the backup was checked (signature, integrity, manifest,
//! identity) and the restore confirmed does any of its SQL reach a
//! database, and then only a scratch database of the cluster
//! (`kt_restore_load_<pid>`), loaded by a role without superuser rights
//! through the statement filter (see `storage::scratch`,
//! `storage::load::filter`). When the instance being replaced has its
//! cluster running (and the restored configuration names that cluster),
//! this happens before the server is stopped: a dump that does not load
//! is refused with nothing live changed, and the restore then swaps
//! databases by renaming, so the server is down for seconds, not for the
//! load. On a fresh host the restore creates the cluster first and loads
//! the same way. Whatever is not swapped in is dropped, with its role.

use std::path::Path;

use crate::error::Result;
use crate::instance::{Instance, Layout, DB_USER};
use crate::progress::Progress;
use crate::storage::load::{LoadReport, Sharing};
use crate::storage::pgpass::Password;
use crate::storage::scratch::ScratchDb;
use crate::storage::{Cluster, State};

/// The scratch databases of restores: `kt_restore_load_<pid>`.
pub const SCRATCH_PREFIX: &str = "kt_restore_load_";

/// A dump loaded into a scratch database, not yet in place.
#[derive(Debug)]
pub struct Preloaded {
    pub scratch: ScratchDb,
    pub report: LoadReport,
}

/// The running cluster of the instance at `target`, when it is the one the
/// restored configuration (staged in `staged_confdir`) names, with its
/// superuser password; `None` when there is none to load into yet.
pub fn live_cluster(target: &Layout, staged_confdir: &Path) -> Option<(Cluster, Password)> {
    let inst = target.clone().load().ok()?;
    let cluster = Cluster::for_instance(&inst).ok()?;
    let restored = Instance::new(target.clone(), crate::hostconf::load_merged(staged_confdir).ok()?).ok()?;
    if restored.pg_rootdir().ok()? != cluster.data_dir || restored.db_port().ok()? != cluster.port {
        return None;
    }
    if !matches!(cluster.state().ok()?, State::Running { .. }) {
        return None;
    }
    let password = Password::read(&inst.layout.pgpass(), DB_USER).ok()?;
    Some((cluster, password))
}

/// Loads the staged `dump` into a new scratch database of `cluster` (first
/// dropping those of killed restores); `sharing` says whether the cluster
/// serves anyone else.
pub fn load(
    cluster: &Cluster,
    password: &Password,
    dump: &Path,
    sharing: Sharing,
    progress: &dyn Progress,
) -> Result<Preloaded> {
    let (scratch, report) = ScratchDb::load_new(cluster, password, SCRATCH_PREFIX, dump, sharing, progress)?;
    Ok(Preloaded { scratch, report })
}

/// The scratch database of this run.
pub fn scratch_name() -> String {
    format!("{SCRATCH_PREFIX}{}", std::process::id())
}
