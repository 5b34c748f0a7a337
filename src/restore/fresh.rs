//! Disaster recovery on a fresh host: the new cluster is made in the
//! staging area while the backup is decrypted, the dump is loaded there
//! after every check and the operator's confirmation, and only the loaded
//! cluster is moved into place.
//!
//! Why: on a fresh host initdb, the first start and the load are on the
//! critical path of the recovery. initdb and the start run nothing of the
//! backup (the cluster gets a password of kt's own, switched to the
//! restored one at the end, and any free port: it serves only the load),
//! so they run while GnuPG decrypts. The load follows the live path's
//! trust rule exactly: no SQL of the backup runs before GnuPG's verdict,
//! the manifest, its signature, the identity check and the confirmation,
//! and then only in a scratch database loaded by a role without superuser
//! rights, through the statement filter and the shape check
//! (`super::preload`, `storage::scratch`). Nothing is in place until the
//! loaded cluster is: a kill at any moment before leaves only the staging
//! directory `.kt-restore-<pid>.db` (with, perhaps, its server running),
//! which the next restore stops and removes ([`sweep`]).
//!
//! The staged cluster is nobody's yet, so it loads without durability
//! (`fsync = off`, no full-page writes, no checkpoints, minimal WAL): a
//! crash there loses only the staging area. Before the move the server is
//! stopped cleanly, those settings are removed and the whole data
//! directory is flushed (`syncfs`), as pg_upgrade does.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::account::Account;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::instance::{DB_NAME, DB_USER};
use crate::progress::Progress;
use crate::storage::cluster::find_bindir;
use crate::storage::load::{LoadReport, Sharing};
use crate::storage::pgpass::Password;
use crate::storage::{roles, Cluster, State};

/// The staged cluster of the restore run by process `<pid>`:
/// `.kt-restore-<pid>` + this.
pub const SUFFIX: &str = ".db";

/// Settings of the staged cluster while it loads (none survives the move):
/// no flushes and no checkpoint during the load; at the clean shutdown the
/// WAL of the load is removed, not recycled, so neither the flush before
/// the move nor the restored cluster carry gigabytes of spent segments.
const LOAD_SETTINGS: &str = "\n# kt restore: loading in the staging area (removed before the move)\n\
    fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nwal_level = minimal\nmax_wal_senders = 0\n\
    max_wal_size = '64GB'\ncheckpoint_timeout = '1d'\nwal_recycle = off\nautovacuum = off\n";

/// A cluster made in the staging area (`<dir>/data`, its log in `<dir>/log`),
/// owned by the service account, with a password of kt's own for the
/// database user. Dropped before it was moved: stopped and removed.
#[derive(Debug)]
pub struct StagedCluster {
    dir: PathBuf,
    cluster: Cluster,
    password: Password,
    /// `postgresql.auto.conf` as initdb wrote it.
    auto_conf: Vec<u8>,
    /// A start was tried (the Drop stops what may run).
    started: bool,
    /// The server runs, on `cluster.port`.
    running: bool,
}

impl StagedCluster {
    fn create(dir: PathBuf, account: Account) -> Result<StagedCluster> {
        let bindir = find_bindir()?;
        std::fs::create_dir(&dir).map_err(|e| Error::env(format!("cannot create {}", dir.display())).because_err(&e))?;
        // kt's own directory (the sweep of killed runs removes only those:
        // [`sweep`]), which the service account may only pass through to
        // its data directory and log.
        if account.is_other_than_current() {
            std::os::unix::fs::lchown(&dir, None, Some(account.gid))
                .map_err(|e| Error::env(format!("cannot give {} to the group of {}", dir.display(), account.name)).because_err(&e))?;
            fsutil::set_mode(&dir, 0o710)?;
        } else {
            fsutil::set_mode(&dir, 0o700)?;
        }
        let data_dir = dir.join("data");
        let log_file = dir.join("log").join("postgres.log");
        let cluster = Cluster { data_dir: data_dir.clone(), port: 0, log_file, account: account.clone(), bindir };
        let mut staged = StagedCluster { dir, cluster, password: Password::generate(), auto_conf: Vec::new(), started: false, running: false };
        std::fs::create_dir(&data_dir).map_err(|e| Error::env(format!("cannot create {}", data_dir.display())).because_err(&e))?;
        fsutil::set_mode(&data_dir, 0o700)?;
        account.chown(&data_dir)?;
        staged.cluster.initdb(&staged.password, &staged.dir)?;
        let auto = data_dir.join("postgresql.auto.conf");
        staged.auto_conf = std::fs::read(&auto).map_err(|e| Error::env(format!("cannot read {}", auto.display())).because_err(&e))?;
        Ok(staged)
    }

    pub fn account(&self) -> &Account {
        &self.cluster.account
    }

    /// The file system the cluster is on (the move is one rename).
    pub fn device(&self) -> Option<u64> {
        std::fs::metadata(&self.dir).ok().map(|m| m.dev())
    }

    /// Starts the cluster on `port` with the load settings.
    fn start(&mut self, port: u16) -> Result<Cluster> {
        let mut text = self.auto_conf.clone();
        text.extend_from_slice(LOAD_SETTINGS.as_bytes());
        fsutil::write_atomic(&self.cluster.data_dir.join("postgresql.auto.conf"), &text, 0o600, Some(&self.cluster.account))?;
        self.cluster.port = port;
        self.started = true;
        self.cluster.start()?;
        self.running = true;
        Ok(self.cluster.clone())
    }

    /// Starts the cluster on a free port of 127.0.0.1 (any will do: it
    /// serves only this restore's load), best effort: when this fails,
    /// [`load`] starts it later.
    fn start_early(&mut self) {
        let port = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port());
        if let Ok(port) = port {
            let _ = self.start(port);
        }
    }

    /// Stops the cluster, puts initdb's `postgresql.auto.conf` back and
    /// flushes the data directory to disk.
    fn stop_and_sync(&mut self) -> Result<()> {
        self.cluster.stop()?;
        self.started = false;
        self.running = false;
        fsutil::write_atomic(&self.cluster.data_dir.join("postgresql.auto.conf"), &self.auto_conf, 0o600, Some(&self.cluster.account))?;
        syncfs(&self.cluster.data_dir)
    }

    /// Moves the (stopped, loaded) data directory to `data_dir`, whose
    /// parent exists on the same file system, and makes the rename durable.
    pub fn move_to(&self, data_dir: &Path) -> Result<()> {
        std::fs::rename(&self.cluster.data_dir, data_dir)
            .map_err(|e| Error::env(format!("cannot move the loaded cluster to {}", data_dir.display())).because_err(&e))?;
        fsutil::sync_dir(fsutil::parent_dir(data_dir))
    }
}

impl Drop for StagedCluster {
    fn drop(&mut self) {
        if self.started && self.cluster.exists() {
            let _ = self.cluster.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Flushes the file system holding `dir` (every file the load wrote).
fn syncfs(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).map_err(|e| Error::env(format!("cannot open {}", dir.display())).because_err(&e))?;
    // SAFETY: syncfs on a descriptor this function owns.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(Error::env(format!("cannot flush {} to disk", dir.display())).because_err(&std::io::Error::last_os_error()));
    }
    Ok(())
}

/// initdb of the staged cluster, running while the backup is decrypted.
/// Dropped: waits for it and removes what it made.
#[derive(Debug)]
pub struct Speculation(Option<JoinHandle<Result<StagedCluster>>>);

impl Speculation {
    /// Starts initdb in `<staging>.db` when this may be a fresh host: no
    /// instance at the confdir the restore goes to (as far as known before
    /// the archive is read), and the account PostgreSQL will run as exists
    /// already and can reach the staging area. Otherwise `None`: the
    /// restore then creates the cluster in place, after the checks.
    pub fn start(staging: &Path, service_user: Option<&str>) -> Option<Speculation> {
        let account = if crate::account::is_root() {
            Account::lookup(service_user.unwrap_or("keytrustee")).ok().flatten().filter(|a| a.uid != 0)?
        } else {
            Account::current().ok()?
        };
        let parent = fsutil::parent_dir(staging);
        if account.first_untraversable(parent).is_some() {
            return None;
        }
        let dir = PathBuf::from(format!("{}{SUFFIX}", staging.display()));
        let handle = std::thread::Builder::new()
            .name("initdb".into())
            .spawn(move || {
                let mut staged = StagedCluster::create(dir, account)?;
                staged.start_early();
                Ok(staged)
            })
            .ok()?;
        Some(Speculation(Some(handle)))
    }

    /// The staged cluster, once initdb is done (`None` when it failed: the
    /// restore creates the cluster in place then).
    pub fn take(mut self) -> Option<StagedCluster> {
        self.0.take()?.join().ok()?.ok()
    }
}

impl Drop for Speculation {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

/// Loads the dump into a scratch database of the staged cluster (started
/// while decrypting, else now on `port`, the restored instance's), checks
/// it with `check`, renames it
/// to the instance's database, switches the database user's password to
/// the restored one (`password`), and stops the cluster, flushed: ready to
/// be moved into place.
pub fn load(
    staged: &mut StagedCluster,
    port: u16,
    password: &Password,
    dump: &Path,
    check: impl FnOnce(&LoadReport) -> Result<()>,
    progress: &dyn Progress,
) -> Result<()> {
    let cl = if staged.running { staged.cluster.clone() } else { staged.start(port)? };
    progress.step("loading the dump into a scratch database of the new cluster (in the staging area)");
    let loaded = super::preload::load(&cl, &staged.password, dump, Sharing::Private, progress)?;
    check(&loaded.report)?;
    let mut admin = cl.connect(&staged.password, "postgres")?;
    loaded.scratch.adopt_as(&mut admin, DB_NAME)?;
    roles::set_verifier(&mut admin, DB_USER, &roles::scram_verifier(password))?;
    drop(admin);
    progress.step("stopping the new cluster and flushing it to disk");
    staged.stop_and_sync()
}

/// Stops and removes the staged cluster `dir` of a killed restore (its
/// server may still run). `dir` is a real directory of the name kt gives,
/// owned by this user (as kt makes it: the service account owns only what
/// is inside), whose process is gone (checked by the caller): a directory
/// of that name that anyone else made is never touched. The server named
/// in its `postmaster.pid` is stopped only when it runs in that data
/// directory: after a reboot the pid may be any other server's.
pub fn sweep(dir: &Path) {
    let data_dir = dir.join("data");
    let Ok(meta) = std::fs::symlink_metadata(&data_dir) else {
        let _ = std::fs::remove_dir_all(dir);
        return;
    };
    // Only a real directory of an ordinary account is a cluster kt staged.
    let account = Account::lookup_uid(meta.uid()).filter(|a| a.uid != 0 && meta.is_dir());
    if let (Some(account), Ok(bindir)) = (account, find_bindir()) {
        let mut cl = Cluster { data_dir, port: 0, log_file: dir.join("log").join("postgres.log"), account, bindir };
        if let Ok(State::Running { pid, port }) = cl.state() {
            match runs_in(pid, &cl.data_dir) {
                // The staged server died (a reboot, say) and its pid is
                // another process's now, perhaps the live instance's
                // postmaster: `pg_ctl stop` would signal that one.
                Some(false) => {}
                Some(true) => {
                    cl.port = port.unwrap_or(0);
                    if cl.stop().is_err() {
                        // Still running: removing its files under it helps no one.
                        return;
                    }
                }
                // Cannot tell: left alone.
                None => return,
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether process `pid` runs in `data_dir` (a PostgreSQL server's working
/// directory is its data directory); `None` when that cannot be read.
fn runs_in(pid: u32, data_dir: &Path) -> Option<bool> {
    let cwd = std::fs::metadata(format!("/proc/{pid}/cwd")).ok()?;
    let dir = std::fs::metadata(data_dir).ok()?;
    Some((cwd.dev(), cwd.ino()) == (dir.dev(), dir.ino()))
}
