//! Loading the dump while the backup is still being decrypted.
//!
//! When the instance being replaced has a running cluster, the dump is
//! loaded into a scratch database of that cluster (`kt_restore_load_<pid>`)
//! as it is staged: decryption and loading overlap, and a dump that does
//! not load is refused before anything live has changed. After the plan is
//! confirmed, the restore swaps databases by renaming (the live one aside,
//! the scratch one in), so the server is down for seconds, not for the
//! load. Whatever is not swapped in is dropped: a scratch database is
//! never left behind by a refusal, a `no` at the prompt, or a failure.
//!
//! The dump goes from decryption straight to the loader (it is never
//! written to disk on this path). Without a running cluster (a fresh host,
//! a database that is down), or when the restored configuration names
//! another cluster, there is nothing to load into yet: the restore stages
//! the dump and loads it afterwards. A dump that needs psql (see
//! `storage::load::needs_psql`) is decrypted a second time for that.

use std::path::Path;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::instance::{Instance, Layout, DB_USER};
use crate::progress::Silent;
use crate::storage::load::{self, LoadReport};
use crate::storage::pgpass::Password;
use crate::storage::{databases, Cluster, State};

use super::stream::{Canceller, Tap};

pub struct Preload {
    pub cluster: Cluster,
    password: Password,
    pub database: String,
    thread: Option<JoinHandle<Result<LoadReport>>>,
    canceller: Canceller,
    /// Renamed into place: no longer ours to drop.
    taken: bool,
}

impl std::fmt::Debug for Preload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Preload({} on port {})", self.database, self.cluster.port)
    }
}

impl Preload {
    /// Starts loading into a scratch database of the cluster of the
    /// instance at `target`, when that cluster is up and is the one the
    /// restored configuration (staged in `staged_confdir`) names. The dump
    /// comes through the returned [`Tap`]. `None` (never an error): the
    /// restore then stages the dump and loads it afterwards.
    pub fn start(target: &Layout, staged_confdir: &Path) -> Option<(Preload, Tap)> {
        let inst = target.clone().load().ok()?;
        let cluster = Cluster::for_instance(&inst).ok()?;
        // The restored configuration, as it will be at `target`.
        let restored = Instance::new(target.clone(), Config::load(&staged_confdir.join("keytrustee.conf")).ok()?).ok()?;
        if restored.pg_rootdir().ok()? != cluster.data_dir || restored.db_port().ok()? != cluster.port {
            return None;
        }
        if !matches!(cluster.state().ok()?, State::Running { .. }) {
            return None;
        }
        let password = Password::read(&inst.layout.pgpass(), DB_USER).ok()?;
        let database = scratch_name();
        let mut admin = cluster.connect(&password, "postgres").ok()?;
        drop_abandoned(&mut admin);
        databases::drop(&mut admin, &database).ok()?;
        databases::create(&mut admin, &database).ok()?;
        let (tap, follower) = Tap::new();
        let canceller = tap.canceller();
        let (cl, pw, db) = (cluster.clone(), password.clone(), database.clone());
        let thread = std::thread::Builder::new()
            .name("kt-preload".into())
            .spawn(move || load::load_from(&cl, &pw, &db, follower, None, &Silent))
            .ok()?;
        Some((Preload { cluster, password, database, thread: Some(thread), canceller, taken: false }, tap))
    }

    /// Waits for the load to end (the dump is whole by now).
    pub fn wait(&mut self) -> Result<LoadReport> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(Error::env("the load thread failed"))),
            None => Err(Error::env("the load was already waited for")),
        }
    }

    /// Renames the loaded database to `name` through `admin` (a connection
    /// to the same cluster, as whoever may rename it).
    pub fn rename_into(mut self, admin: &mut postgres::Client, name: &str) -> Result<()> {
        databases::rename(admin, &self.database, name)?;
        self.taken = true;
        Ok(())
    }
}

impl Drop for Preload {
    fn drop(&mut self) {
        self.canceller.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.taken {
            if let Ok(mut admin) = self.cluster.connect(&self.password, "postgres") {
                let _ = databases::drop(&mut admin, &self.database);
            }
        }
    }
}

/// Drops the scratch databases of earlier restores whose process is gone
/// (killed half way): kt made them, nothing else uses them, and each holds
/// a whole copy of the data. Only `kt_restore_load_<pid>`: a
/// `kt_restore_safety_<pid>` may hold the only copy of the old database
/// after a crash and is left for the operator.
fn drop_abandoned(admin: &mut postgres::Client) {
    let Ok(rows) = admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'kt\\_restore\\_load\\_%'", &[]) else { return };
    for row in rows {
        let name: String = row.get(0);
        let Some(pid) = name.strip_prefix("kt_restore_load_").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = databases::drop(admin, &name);
        }
    }
}

/// The scratch database of this run.
pub fn scratch_name() -> String {
    format!("kt_restore_load_{}", std::process::id())
}
