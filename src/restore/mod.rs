//! `kt restore`: disaster recovery that never makes things worse.
//!
//! 1. [`prepare`]: decrypt into a private staging directory next to the
//!    instance home and check everything: GnuPG's integrity verdict (MDC),
//!    the tar (one reader and one policy with `kt verify backup`:
//!    `backup::read`), the manifest against every member, its signature by
//!    the server key, and the identity (host name and server key against
//!    the instance being replaced, or `--expect-fingerprint`; see
//!    `backup::trust`; a warning when the host name does not resolve to an
//!    address of this host, `hostaddr`). Nothing from the backup is executed or put in
//!    place here, and nothing live changes.
//! 2. The caller shows the [`Plan`] and asks for confirmation.
//! 3. [`execute`]: load the dump into a scratch database as a role that is
//!    no superuser, through the statement filter, and check that it holds
//!    exactly kt's schema ([`preload`], `storage::scratch`,
//!    `storage::shape`); only when it did: stop the server, move the current confdir aside into a
//!    safety directory, put the restored confdir in place, rename the
//!    current database aside and the loaded one into its place, check rows
//!    and key, start the server again. On a fresh host the cluster is
//!    created first and the dump loaded the same way. Any failure puts the
//!    previous state back: the old state or the new one, never a mix.
//!
//! On an external database (kt's role there creates no databases or
//! roles) the load goes into a scratch schema of kt's database and the
//! swap moves kt's tables in one transaction: [`external`].

pub mod external;
pub mod fresh;
pub mod preload;
pub mod stage;

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::account::Account;
use crate::backup::read::Contents;
use crate::backup::trust::{self, Identity};
use crate::config::{self, Config};
use crate::daemon::{ServerProcess, ServerState};
use crate::error::{Error, Kind, Result};
use crate::fsutil;
use crate::instance::{Instance, Layout, DB_NAME, DB_USER};
use crate::journal::{self, Journal};
use crate::progress::Progress;
use crate::storage::pgpass::Password;
use crate::storage::cluster::Started;
use crate::storage::{databases, load, roles, schema, Cluster};
use stage::StagingDir;

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The backup: one `.tar.gpg`/`.tar`, or the zip pair.
    pub files: Vec<PathBuf>,
    /// The zip pair's password.
    pub zip_password: Option<Password>,
    pub secret_key: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    /// Restore the confdir here instead of its recorded path.
    pub confdir: Option<PathBuf>,
    pub force_foreign: bool,
    /// The server key the backup must carry (on a fresh host, where there
    /// is no instance key to compare with).
    pub expect_fingerprint: Option<String>,
    /// Accept a backup without kt's signature.
    pub allow_unsigned: bool,
    /// The account PostgreSQL runs as when root (created when missing).
    pub service_user: Option<String>,
}

/// What a restore would do, for the operator to confirm.
#[derive(Debug)]
pub struct Plan {
    pub target: Layout,
    pub recorded_confdir: PathBuf,
    pub hostname: String,
    pub fingerprint: String,
    pub created: Option<String>,
    pub row_counts: BTreeMap<String, u64>,
    pub replaces_confdir: bool,
    /// The manifest's signature verified with the archived server key.
    pub signed: bool,
    /// How that key relates to the keys this host trusts.
    pub identity: Identity,
    /// Why the backup looks foreign (accepted with --force-foreign).
    pub foreign: Option<String>,
    /// The external database restored in place (`HOST:PORT/DB`), when the
    /// instance has one.
    pub external_db: Option<String>,
    /// The backup's host name does not resolve to an address of this host
    /// (a warning: the documented restore wants the same name and address).
    pub address_warning: Option<String>,
    /// Held for its Drop: the staging area goes when the plan does.
    _staging: StagingDir,
    /// On what may be a fresh host: the cluster made while decrypting.
    cluster: Option<fresh::Speculation>,
    staged_confdir: PathBuf,
    dump: PathBuf,
}

impl Plan {
    /// Whether the backup's server key is one this host trusted before:
    /// the instance's, or the one `--expect-fingerprint` named.
    pub fn key_known(&self) -> bool {
        matches!(self.identity, Identity::Instance | Identity::Expected)
    }
}

/// Stages and checks the backup. Refusals here change nothing.
pub fn prepare(options: &RestoreOptions, progress: &dyn Progress) -> Result<Plan> {
    for file in &options.files {
        if !file.is_file() {
            return Err(Error::usage(format!("{} is not a file", file.display())));
        }
    }
    let zips = options.files.iter().any(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")));
    match (zips, options.files.len()) {
        (false, 1) | (true, 2) => {}
        (false, _) => return Err(Error::usage("give one backup file (or the two zips of a manual backup)")),
        (true, _) => return Err(Error::usage("a zip restore needs both keytrustee-db.zip and keytrustee-conf.zip")),
    }
    // The staging area sits where the confdir will go, so the final move is
    // a rename on one file system (never a world-readable temp directory,
    // which may be another file system, or memory); it is private (0700)
    // and removed on drop. What killed restores left there goes first.
    let staging_parent = staging_parent(options)?;
    sweep_stagings(&staging_parent);
    let staging = StagingDir::create(staging_parent.join(format!("{STAGING_PREFIX}{}", std::process::id())))?;
    // What may be a fresh host (no instance, or no cluster, where the
    // restore goes, as far as known before the archive is read): the new
    // cluster is made in the staging area meanwhile (`fresh`; nothing of
    // the backup is involved).
    let no_cluster = match Layout::new(options.confdir.as_deref()).and_then(|l| l.load()) {
        Err(_) => true,
        Ok(inst) => Cluster::for_instance(&inst).is_ok_and(|c| !c.exists()),
    };
    let cluster = if no_cluster { fresh::Speculation::start(&staging.0, options.service_user.as_deref()) } else { None };
    let gnupg_home = match &options.secret_key {
        Some(key) => Some(staging.import_secret_key(key)?),
        None => None,
    };
    progress.step("decrypting and checking the backup");
    let root = staging.0.join("root");
    std::fs::create_dir(&root).map_err(|e| Error::env("cannot create the staging root").because_err(&e))?;
    let contents = if zips {
        let password = options
            .zip_password
            .as_ref()
            .ok_or_else(|| Error::usage("the zips are encrypted: give --zip-password-file (or run on a terminal)"))?;
        stage::extract_zips(&options.files, password.expose(), &root)?
    } else {
        stage_backup(options, gnupg_home.as_deref(), &root, progress)?
    };

    let conf_member = contents.confdir()?.to_string();
    let Some((dump_member, dump_facts)) = &contents.dump else {
        return Err(Error::usage("the backup holds no .sql database dump"));
    };
    let target = target_layout(options, &conf_member)?;
    let existing = target.clone().load().ok();
    let instance_key = existing.as_ref().and_then(|inst| crate::pgp::load_public_key(&inst.layout.pubring()).ok());
    let assessment = trust::assess(
        &contents,
        &trust::Expected {
            fingerprint: options.expect_fingerprint.as_deref(),
            instance_key: instance_key.as_ref(),
            allow_unsigned: options.allow_unsigned,
        },
    )?;
    dump_facts.check_loadable()?;

    let recorded_confdir = recorded_confdir(&conf_member);
    let staged_confdir = root.join(&conf_member);
    let staged_config = crate::hostconf::load_merged(&staged_confdir)?;
    let hostname = staged_config.string(config::HOSTNAME)?.to_string();
    check_external(existing.as_ref(), &target, &staged_confdir, staged_config.optional_string(config::DB_MODE)? == Some("external"))?;

    // Identity: the instance being replaced, or this host.
    let foreign = match (&assessment.identity, &existing) {
        (Identity::Foreign(why), _) => Some(why.clone()),
        (_, Some(inst)) => {
            let here = inst.hostname().unwrap_or("").to_string();
            (here != hostname).then(|| format!("the backup is of host {hostname}, this instance is {here}"))
        }
        (_, None) => {
            let fqdn = crate::hostname::fqdn().unwrap_or_default();
            (fqdn != hostname).then(|| format!("the backup is of host {hostname}, this host is {fqdn}"))
        }
    };
    if let (Some(why), false) = (&foreign, options.force_foreign) {
        return Err(Error::usage(format!("refusing a foreign backup: {why}"))
            .with_hint("restore on the host it came from, or pass --force-foreign if this host replaces it"));
    }
    let address_warning = crate::hostaddr::warning(&hostname);
    let row_counts = match &assessment.manifest {
        Some(m) => m.row_counts.clone(),
        None => dump_facts.row_counts.clone(),
    };
    Ok(Plan {
        replaces_confdir: target.confdir.exists(),
        target,
        recorded_confdir,
        hostname,
        fingerprint: assessment.fingerprint.clone(),
        created: assessment.manifest.as_ref().map(|m| m.created.clone()),
        row_counts,
        signed: assessment.signed,
        identity: assessment.identity,
        foreign,
        address_warning,
        external_db: existing
            .as_ref()
            .filter(|i| i.settings.external_db.is_some())
            .map(|i| crate::storage::endpoint::Endpoint::for_instance(i).address()),
        dump: root.join(dump_member),
        staged_confdir,
        cluster,
        _staging: staging,
    })
}

/// An external database is restored in place only: the instance being
/// replaced uses it, and the backup's configuration names the same server,
/// database and role (`external`). Anything else that involves one (a
/// local backup over an external instance, an external one over a local
/// instance or onto a fresh host) is refused before anything changes: the
/// restore would have to move the data between servers, which it does not.
fn check_external(existing: Option<&Instance>, target: &Layout, staged_confdir: &Path, staged_external: bool) -> Result<()> {
    let live_external = existing.filter(|i| i.settings.external_db.is_some());
    if live_external.is_none() && !staged_external {
        return Ok(());
    }
    let restored = Instance::new(target.clone(), crate::hostconf::load_merged(staged_confdir)?)?;
    let named = crate::storage::endpoint::Endpoint::for_instance(&restored);
    match live_external {
        Some(live) if external::same_database(live, &restored) => Ok(()),
        Some(live) => {
            let here = crate::storage::endpoint::Endpoint::for_instance(live);
            Err(Error::usage(format!(
                "the backup's database ({}) is not this instance's external database ({} as {}): refused",
                named.describe(),
                here.address(),
                here.user
            ))
            .with_hint("kt restores an external database in place only; load another instance's data by hand (README, \"External database\")"))
        }
        None => Err(Error::usage(format!(
            "the backup is of an instance on the external database {}, and there is no such instance at {}: refused",
            named.address(),
            target.confdir.display()
        ))
        .with_hint("run kt init --external-db against that database first, or restore where the instance's confdir is (-c CONFDIR)")),
    }
}

/// A failed load, told as one that changed nothing.
fn nothing_changed(e: Error) -> Error {
    did_not_load(e, "in a scratch database")
}

/// A load that failed `tried` somewhere private, told as such with every
/// cause and the hint kept.
fn did_not_load(e: Error, tried: &str) -> Error {
    let mut told = Error::new(e.kind(), format!("the dump does not load (tried {tried}): nothing was changed")).because(e.message());
    for cause in e.causes() {
        told = told.because(cause);
    }
    match e.hint() {
        Some(hint) => told.with_hint(hint),
        None => told,
    }
}

/// The staging directory of the restore run by process `<pid>`.
const STAGING_PREFIX: &str = ".kt-restore-";

/// Where the staging directory goes: the home of the confdir being
/// restored (`--confdir`, else the default one, as the recorded path is
/// only known once the archive is read), or, on a fresh host where it does
/// not exist yet, its nearest existing ancestor (the same file system in
/// all likelihood, and nothing is created before the plan is confirmed).
fn staging_parent(options: &RestoreOptions) -> Result<PathBuf> {
    let home = Layout::new(options.confdir.as_deref())?.home;
    let mut dir = home.as_path();
    while !dir.is_dir() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return Err(Error::env(format!("no directory to stage the backup in near {}", home.display()))),
        }
    }
    Ok(dir.to_path_buf())
}

/// Removes the staging directories (`.kt-restore-<pid>`) of restores that
/// were killed: only real directories of that exact name, owned by this
/// user, whose process is gone. Anything else (a running restore, a
/// safety copy `.kt-restore-safety-*`, a link) is left alone.
fn sweep_stagings(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else { continue };
        // `.kt-restore-<pid>.db`: the cluster a killed fresh-host restore
        // was loading (`fresh`), its server perhaps still running.
        let (digits, cluster) = match rest.strip_suffix(fresh::SUFFIX) {
            Some(digits) => (digits, true),
            None => (rest, false),
        };
        let Some(pid) = Some(digits).filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
        // A staged cluster's directory is kt's too (only what is inside is
        // the service account's): one that is not was made by someone else.
        if !meta.is_dir() || meta.uid() != me || pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if cluster {
            fresh::sweep(&entry.path());
        } else {
            // Its Drop stops a GnuPG agent left running there, then removes it.
            drop(StagingDir(entry.path()));
        }
    }
}

/// Decrypts (when encrypted) and extracts one backup file into `root`.
/// GnuPG's verdict (wrong key, failed integrity check) comes before the
/// archive's: a message that does not decrypt whole reads as a damaged tar.
fn stage_backup(options: &RestoreOptions, gnupg_home: Option<&Path>, root: &Path, progress: &dyn Progress) -> Result<Contents> {
    let (source, child) = stage::open(&options.files[0], gnupg_home, options.passphrase_file.as_deref())?;
    let total = std::fs::metadata(&options.files[0]).map(|m| m.len()).unwrap_or(0);
    let done = std::cell::Cell::new(0);
    let source = ProgressReader { inner: source, done: &done, total, progress };
    let contents = crate::backup::read::read(source, Some(root));
    // The last bytes, which the 8 MiB steps miss (tar stops before EOF).
    progress.bytes(ProgressReader::WHAT, done.get(), Some(total.max(done.get())));
    progress.finish();
    stage::finish_decryption(child)?;
    contents
}

/// The confdir's path on the host it was backed up from, from its member
/// path (`var/lib/keytrustee/.keytrustee`).
fn recorded_confdir(conf_member: &str) -> PathBuf {
    PathBuf::from(format!("/{conf_member}"))
}

/// Where the confdir goes: `--confdir`, else its recorded path.
fn target_layout(options: &RestoreOptions, conf_member: &str) -> Result<Layout> {
    Layout::new(Some(options.confdir.as_deref().unwrap_or(&recorded_confdir(conf_member))))
}

/// What a restore did.
#[derive(Debug)]
pub struct Outcome {
    pub confdir: PathBuf,
    pub safety_dir: Option<PathBuf>,
    pub restarted_server: bool,
}

/// What the change did that outlives it: kept for the clean-up after a
/// success (the undo journal has the rest).
struct Changed {
    /// The previous confdir was moved into the safety directory.
    kept_confdir: bool,
    /// The previous database, renamed aside (or an external database's
    /// previous tables, moved into a schema): dropped once the restore
    /// succeeded (the backup is the copy of record then).
    renamed_db: Option<SetAside>,
    restarted_server: bool,
}

/// Where the previous database went during the restore.
enum SetAside {
    Database(Cluster, Password, String),
    Schema(external::Aside),
}

/// Puts the staged backup in place. Every step is recorded in an undo
/// journal right after it succeeded; any failure undoes all of them, in
/// reverse order, whatever fails on the way, and the error lists each
/// step undone and each one that could not be (DESIGN.md, "Trust before
/// action").
pub fn execute(mut plan: Plan, options: &RestoreOptions, progress: &dyn Progress) -> Result<Outcome> {
    let target = plan.target.clone();
    let speculation = plan.cluster.take();
    // On an HA active whose passive is gone, with synchronous replication
    // on, every write of the restore would wait without end: refused
    // before anything changes (exit 3).
    if let Ok(inst) = target.clone().load() {
        crate::ha::reinit::refuse_waiting_restore(&inst)?;
    }
    // Rewrite the recorded paths when the confdir is re-rooted (in staging:
    // nothing live yet).
    if target.confdir != plan.recorded_confdir {
        rewrite_paths(&plan.staged_confdir.join("keytrustee.conf"), &plan.recorded_confdir, &target.confdir)?;
        let host_file = crate::hostconf::path(&plan.staged_confdir);
        if host_file.is_file() {
            rewrite_paths(&host_file, &plan.recorded_confdir, &target.confdir)?;
        }
    }
    // The load first, into a scratch database (or a scratch schema of an
    // external database), while the live instance goes on serving: a dump
    // that does not load changes nothing.
    let external_loaded = match target.clone().load().ok().filter(|i| i.settings.external_db.is_some()) {
        Some(live) => {
            let restored = Instance::new(target.clone(), crate::hostconf::load_merged(&plan.staged_confdir)?)?;
            external::check_restored_login(&restored, &plan.staged_confdir)?;
            progress.step("loading the dump into a scratch schema of the external database");
            let loaded = external::load(&live, &plan.dump, progress).map_err(nothing_changed)?;
            check_rows(&plan, &loaded.report)?;
            Some(loaded)
        }
        None => None,
    };
    let preloaded = match preload::live_cluster(&target, &plan.staged_confdir) {
        Some((cluster, password)) => {
            progress.step("loading the dump into a scratch database");
            let loaded = preload::load(&cluster, &password, &plan.dump, load::Sharing::Shared, progress).map_err(nothing_changed)?;
            check_rows(&plan, &loaded.report)?;
            Some(loaded)
        }
        None => None,
    };
    let staged_config = Config::load(&plan.staged_confdir.join("keytrustee.conf"))?;
    let service_name = options
        .service_user
        .clone()
        .or_else(|| staged_config.string(config::SERVICE_USER).ok().map(str::to_string))
        .unwrap_or_else(|| "keytrustee".into());
    // On a fresh host, the cluster made while decrypting is loaded now, in
    // the staging area: a dump that does not load leaves nothing in place.
    let loaded = match (external_loaded, preloaded, speculation.and_then(|s| s.take())) {
        (Some(e), _, _) => Loaded::External(e),
        (None, Some(p), _) => Loaded::Scratch(p),
        (None, None, Some(mut staged)) => match fresh_target(&plan, &target, &service_name, &staged)? {
            Some((port, password)) => {
                fresh::load(&mut staged, port, &password, &plan.dump, |report| check_rows(&plan, report), progress).map_err(|e| did_not_load(e, "in the new cluster, in the staging area"))?;
                Loaded::Staged(staged)
            }
            None => Loaded::Not,
        },
        (None, None, None) => Loaded::Not,
    };

    let mut journal = Journal::new();
    let created_home = fsutil::create_dirs(&target.home, 0o755)?;
    // Outermost first, so undone innermost first. Only while empty: logs of
    // a failed start (evidence) may have landed there.
    for dir in created_home.clone() {
        journal.record(format!("created {}", dir.display()), move || remove_dir_if_empty(&dir));
    }
    let safety_dir = match new_safety_dir(&target) {
        Ok(dir) => dir,
        Err(e) => return Err(rolled_back(e, journal.roll_back(), None)),
    };
    // The journal also goes to a file in the safety directory: after a
    // `kill -9` it tells what this run had done.
    let result = journal.log_to(&safety_dir.join("journal")).and_then(|()| {
        let account = Account::service(&service_name, &target.home)?;
        if created_home.last() == Some(&target.home) {
            account.chown(&target.home)?;
        }
        change(&plan, loaded, &target, &account, &safety_dir, &mut journal, progress)
    });
    match result {
        Ok(changed) => {
            journal.commit();
            match &changed.renamed_db {
                // Best effort: `kt verify` points at a database left aside.
                Some(SetAside::Database(cl, password, name)) => {
                    if let Ok(mut admin) = cl.connect(password, "postgres") {
                        let _ = databases::drop(&mut admin, name);
                    }
                }
                Some(SetAside::Schema(aside)) => {
                    if let Err(e) = aside.drop_copy() {
                        progress.step(&format!("could not drop the previous tables in the schema {}: {e}", aside.schema));
                    }
                }
                None => {}
            }
            if !changed.kept_confdir {
                let _ = std::fs::remove_dir_all(&safety_dir);
            }
            Ok(Outcome {
                confdir: target.confdir.clone(),
                safety_dir: changed.kept_confdir.then_some(safety_dir),
                restarted_server: changed.restarted_server,
            })
        }
        Err(e) => {
            progress.step("the restore failed: putting the previous state back");
            let report = journal.roll_back();
            Err(rolled_back(e, report, Some(&safety_dir)))
        }
    }
}

/// The failure `e` of a restore, told with what its rollback did. After a
/// complete rollback the safety directory (empty but for the journal) goes;
/// otherwise it stays, with the journal, for the operator.
fn rolled_back(e: Error, report: journal::Report, safety_dir: Option<&Path>) -> Error {
    let hint = e.hint().map(str::to_string);
    if report.is_complete() {
        if let Some(dir) = safety_dir {
            let _ = std::fs::remove_file(dir.join("journal"));
            let _ = std::fs::remove_dir(dir);
        }
        let message = format!("the restore failed and was rolled back: {}", e.message());
        let err = report.explain(e.restate(Kind::Environment, message));
        return match hint {
            Some(h) => err.with_hint(h),
            None => err,
        };
    }
    let message = format!("the restore failed and was only partly rolled back: {}", e.message());
    let err = report.explain(e.restate(Kind::Environment, message));
    match safety_dir {
        Some(dir) => err.with_hint(format!(
            "undo the steps marked NOT UNDONE by hand; the safety copy and the journal of every step are in {}",
            dir.display()
        )),
        None => err.with_hint("undo the steps marked NOT UNDONE by hand"),
    }
}

/// A new, private safety directory in the home (a new name each time: two
/// restores may fall in one second).
fn new_safety_dir(target: &Layout) -> Result<PathBuf> {
    let stamp = crate::backup::naming::stamp_now();
    let mut n = 0;
    loop {
        let dir = target.home.join(match n {
            0 => format!(".kt-restore-safety-{stamp}"),
            n => format!(".kt-restore-safety-{stamp}.{n}"),
        });
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                fsutil::set_mode(&dir, 0o700)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(Error::env(format!("cannot create {}", dir.display())).because_err(&e)),
        }
    }
}

fn remove_dir_if_empty(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
        Err(e) => Err(Error::env(format!("cannot remove {}", dir.display())).because_err(&e)),
    }
}

/// The change itself: the previous state set aside, then the new one put
/// in place, the server started again. Each step goes into `journal`.
///
/// The order of the steps is the order of their undoing, reversed, and
/// matters: the database steps come after the restored confdir is in
/// place, so they are undone while the cluster that confdir names is still
/// running with the password they were done with (each undo captures that
/// password), and the server, stopped first, is started last, when the old
/// confdir is back.
#[allow(clippy::too_many_arguments)]
fn change(
    plan: &Plan,
    loaded: Loaded,
    target: &Layout,
    account: &Account,
    safety_dir: &Path,
    journal: &mut Journal,
    progress: &dyn Progress,
) -> Result<Changed> {
    let exe = std::env::current_exe().map_err(|e| Error::env("cannot find kt").because_err(&e))?;
    let mut restarted_server = false;
    let mut old_password = None;
    let existing = target.clone().load().ok();
    if let Some(inst) = &existing {
        progress.step("taking a safety copy of the current database and confdir");
        if let Ok(server) = ServerProcess::for_instance(inst) {
            if let ServerState::Running { .. } = server.state()? {
                server.stop()?;
                restarted_server = true;
                let (server, exe) = (server.clone(), exe.clone());
                journal.record(format!("stopped the server on {}", server.listen), move || server.start(&exe).map(|_| ()));
            }
        }
        if let Ok(cl) = Cluster::for_instance(inst) {
            if cl.exists() {
                let password = Password::read(&inst.layout.pgpass(), DB_USER)?;
                if let Loaded::Scratch(p) = &loaded {
                    // Dropped by the preload itself when the restore ends
                    // before the swap, unless the password was switched
                    // under it; this step drops it (and its loading role)
                    // in any case.
                    let (cl, pw, name) = (p.scratch.cluster().clone(), password.clone(), p.scratch.name.clone());
                    journal.record(format!("loaded the backup into the scratch database {name}"), move || {
                        let mut admin = cl.connect(&pw, "postgres")?;
                        databases::drop(&mut admin, &name)?;
                        admin
                            .batch_execute(&format!("DROP ROLE IF EXISTS {}", crate::storage::scratch::role_of(&name)))
                            .map_err(|e| Error::env("cannot drop the loading role").because_err(&e))
                    });
                }
                old_password = Some(password);
            }
        }
    }
    let mut kept_confdir = false;
    if target.confdir.exists() {
        let aside = safety_dir.join("confdir");
        std::fs::rename(&target.confdir, &aside)
            .map_err(|e| Error::env(format!("cannot move {} aside", target.confdir.display())).because_err(&e))?;
        kept_confdir = true;
        let back = target.confdir.clone();
        journal.record(format!("moved the confdir {} aside to {}", back.display(), aside.display()), move || {
            std::fs::rename(&aside, &back)
                .map_err(|e| Error::env(format!("cannot move {} back to {}", aside.display(), back.display())).because_err(&e))
        });
    }
    let was_active = existing.as_ref().is_some_and(|i| i.settings.ha_role == Some(crate::settings::HaRole::Active));
    let old_peer = existing.as_ref().and_then(|i| i.settings.ha_peer.clone());
    let renamed_db = put_in_place(plan, loaded, target, account, old_password, journal, progress)?;
    mark_reinit_needed(target, account, was_active, old_peer, journal)?;
    // The server's restart is part of the change: a restored instance whose
    // server does not start is a failed restore, not a success with a
    // footnote.
    if restarted_server {
        progress.step("starting the server again");
        let inst = target.clone().load()?;
        ServerProcess::for_instance(&inst)?.start(&exe)?;
    }
    Ok(Changed { kept_confdir, renamed_db, restarted_server })
}

/// On an HA active (before or after the restore), the marker that has
/// `kt ha status` ask for the passive to be re-initialised
/// (`ha::reinit`), with the WAL position of the restored database.
fn mark_reinit_needed(target: &Layout, account: &Account, was_active: bool, old_peer: Option<String>, journal: &mut Journal) -> Result<()> {
    let inst = target.clone().load()?;
    if !was_active && inst.settings.ha_role != Some(crate::settings::HaRole::Active) {
        return Ok(());
    }
    let cl = Cluster::for_instance(&inst)?;
    let password = Password::read(&inst.layout.pgpass(), DB_USER)?;
    let mut admin = cl.connect(&password, "postgres")?;
    let marker = crate::ha::reinit::marker_now(&mut admin, inst.settings.ha_peer.clone().or(old_peer))?;
    let path = crate::ha::reinit::marker_path(target);
    let previous = std::fs::read(&path).ok();
    crate::ha::reinit::write(target, &marker, account)?;
    let account = account.clone();
    journal.record(format!("wrote {}", path.display()), move || match previous {
        Some(bytes) => fsutil::write_atomic(&path, &bytes, 0o600, Some(&account)),
        None => std::fs::remove_file(&path).map_err(|e| Error::env(format!("cannot remove {}", path.display())).because_err(&e)),
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn put_in_place(
    plan: &Plan,
    loaded: Loaded,
    target: &Layout,
    account: &Account,
    old_password: Option<Password>,
    journal: &mut Journal,
    progress: &dyn Progress,
) -> Result<Option<SetAside>> {
    progress.step(&format!("putting the confdir in place at {}", target.confdir.display()));
    chown_tree(&plan.staged_confdir, account)?;
    match std::fs::rename(&plan.staged_confdir, &target.confdir) {
        Ok(()) => {}
        // Staging on another file system (no home yet when it was chosen).
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) && !target.confdir.exists() => {
            if let Err(copy) = copy_tree(&plan.staged_confdir, &target.confdir, account) {
                let _ = std::fs::remove_dir_all(&target.confdir);
                return Err(copy);
            }
        }
        Err(e) => return Err(Error::env(format!("cannot put the confdir in place at {}", target.confdir.display())).because_err(&e)),
    }
    {
        let (confdir, home) = (target.confdir.clone(), target.home.clone());
        journal.record(format!("put the restored confdir in place at {}", confdir.display()), move || {
            // Out of the way in one rename, then removed: it came from
            // staging, it is ours.
            let away = home.join(format!(".kt-restore-failed-{}", std::process::id()));
            std::fs::rename(&confdir, &away)
                .map_err(|e| Error::env(format!("cannot move the restored confdir {} away", confdir.display())).because_err(&e))?;
            std::fs::remove_dir_all(&away).map_err(|e| Error::env(format!("cannot remove {}", away.display())).because_err(&e))
        });
    }
    fsutil::sync_dir(&target.home)?;
    let inst: Instance = target.clone().load()?;
    if inst.settings.external_db.is_some() {
        let Loaded::External(loaded) = loaded else {
            return Err(Error::env("the restored configuration names an external database the dump was not loaded into"));
        };
        let aside = external::swap_in(loaded, journal, progress)?;
        check_key(plan, &inst)?;
        return Ok(Some(SetAside::Schema(aside)));
    }
    let mut cl = Cluster::for_instance(&inst)?;
    cl.account = account.clone();
    let password = Password::read(&inst.layout.pgpass(), DB_USER)?;
    if let Loaded::Staged(staged) = &loaded {
        // The loaded cluster from the staging area, in one rename; undone
        // like a cluster created here (stopped and removed).
        progress.step(&format!("putting the loaded database cluster in place at {}", cl.data_dir.display()));
        if cl.exists() || cl.data_dir.exists() {
            return Err(Error::env(format!("{} exists: not touching it", cl.data_dir.display())));
        }
        let created = fsutil::create_dirs(fsutil::parent_dir(&cl.data_dir), 0o700)?;
        for dir in &created {
            account.chown(dir)?;
        }
        staged.move_to(&cl.data_dir)?;
        // The directories made for it are durable too (the cluster is
        // flushed already, and its own entry by the move).
        for dir in &created {
            fsutil::sync_dir(fsutil::parent_dir(dir))?;
        }
        {
            let (cl, outermost) = (cl.clone(), created.first().cloned().unwrap_or_else(|| cl.data_dir.clone()));
            journal.record(format!("put the loaded database cluster in place at {}", cl.data_dir.display()), move || {
                if cl.exists() {
                    cl.stop()?;
                }
                std::fs::remove_dir_all(&outermost).map_err(|e| Error::env(format!("cannot remove {}", outermost.display())).because_err(&e))
            });
        }
        for dir in fsutil::create_dirs(&inst.layout.log_dir(), 0o700)? {
            account.chown(&dir)?;
        }
    } else if !cl.exists() {
        progress.step(&format!("creating the database cluster in {}", cl.data_dir.display()));
        if cl.data_dir.exists() && std::fs::read_dir(&cl.data_dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(Error::env(format!("{} exists but holds no cluster: not touching it", cl.data_dir.display())));
        }
        let created = fsutil::create_dirs(&cl.data_dir, 0o700)?;
        {
            // A cluster this run creates on a fresh host: stopped (as its
            // account) and removed on undo; an empty data directory that
            // was there before is emptied again, not removed.
            let (cl, created) = (cl.clone(), created.clone());
            journal.record(format!("created the database cluster in {}", cl.data_dir.display()), move || {
                if cl.exists() {
                    cl.stop()?;
                }
                match created.first() {
                    Some(outermost) => std::fs::remove_dir_all(outermost)
                        .map_err(|e| Error::env(format!("cannot remove {}", outermost.display())).because_err(&e)),
                    None => empty_dir(&cl.data_dir),
                }
            });
        }
        for dir in &created {
            account.chown(dir)?;
        }
        for dir in fsutil::create_dirs(&inst.layout.log_dir(), 0o700)? {
            account.chown(&dir)?;
        }
        cl.initdb(&password, &inst.layout.confdir)?;
    }
    if let Started::Now { .. } = cl.start()? {
        let cl = cl.clone();
        journal.record(format!("started the database cluster on port {}", cl.port), move || cl.stop().map(|_| ()));
    }
    // The cluster's password is the old instance's when the cluster stays:
    // switch it to the restored one (as a SCRAM verifier: no plaintext in
    // SQL), keeping the old verifier to put back.
    let mut admin = match cl.connect(&password, "postgres") {
        Ok(c) => c,
        Err(e) => match &old_password {
            Some(old) => {
                let mut c = cl.connect(old, "postgres")?;
                let previous = roles::current_verifier(&mut c, DB_USER)?
                    .ok_or_else(|| Error::env(format!("the database role {DB_USER} has no password")))?;
                roles::set_verifier(&mut c, DB_USER, &roles::scram_verifier(&password))?;
                let (cl, pw) = (cl.clone(), password.clone());
                journal.record("switched the database password to the restored one", move || {
                    let mut admin = cl.connect(&pw, "postgres")?;
                    roles::set_verifier(&mut admin, DB_USER, &previous)
                });
                c
            }
            None => return Err(e),
        },
    };
    // The database undo steps connect with the password of their moment:
    // the restored one from here on.
    let undo_db = |sql_step: fn(&mut postgres::Client, &str, &str) -> Result<()>, a: String, b: String| {
        let (cl, pw) = (cl.clone(), password.clone());
        move || {
            let mut admin = cl.connect(&pw, "postgres")?;
            sql_step(&mut admin, &a, &b)
        }
    };
    // The preload checked that the restored configuration names this
    // cluster; should that have changed since, there is no dump to load.
    if let Loaded::Scratch(p) = &loaded {
        if p.scratch.cluster().data_dir != cl.data_dir || p.scratch.cluster().port != cl.port {
            return Err(Error::env("the database was loaded into another cluster than the restored configuration names"));
        }
    }
    let preloaded = match loaded {
        Loaded::Scratch(p) => p,
        // Loaded, checked and named in the staging area already.
        Loaded::Staged(_) => return finish_database(plan, &cl, &password, &inst, None),
        Loaded::External(_) => {
            return Err(Error::env("the dump was loaded into an external database, but the restored configuration names a local cluster"))
        }
        Loaded::Not => {
            progress.step("loading the dump");
            let p = preload::load(&cl, &password, &plan.dump, load::Sharing::Shared, progress)?;
            check_rows(plan, &p.report)?;
            p
        }
    };
    progress.step("putting the loaded database in place of the keytrustee database");
    let exists = database_exists(&mut admin, DB_NAME)?;
    let mut renamed_db = None;
    if exists {
        let aside = free_safety_name(&mut admin)?;
        databases::rename(&mut admin, DB_NAME, &aside).map_err(|e| Error::env("cannot set the current database aside").because(e.to_string()))?;
        journal.record(
            format!("set the database {DB_NAME} aside as {aside}"),
            undo_db(databases::rename, aside.clone(), DB_NAME.to_string()),
        );
        renamed_db = Some(SetAside::Database(cl.clone(), password.clone(), aside));
    }
    let drop_new = undo_db(|c, name, _| databases::drop(c, name), DB_NAME.to_string(), String::new());
    let scratch = preloaded.scratch.name.clone();
    preloaded.scratch.adopt_as(&mut admin, DB_NAME)?;
    journal.record(format!("renamed the loaded database {scratch} to {DB_NAME}"), drop_new);
    finish_database(plan, &cl, &password, &inst, renamed_db)
}

/// The restored database in place: kt's migrations, and the restored key
/// against the backup's.
fn finish_database(
    plan: &Plan,
    cl: &Cluster,
    password: &Password,
    inst: &Instance,
    renamed_db: Option<SetAside>,
) -> Result<Option<SetAside>> {
    let mut db = cl.connect(password, DB_NAME)?;
    schema::migrate(&mut db)?;
    check_key(plan, &inst)?;
    Ok(renamed_db)
}

/// The restored confdir's server key is the backup's.
fn check_key(plan: &Plan, inst: &Instance) -> Result<()> {
    let key = crate::pgp::load_public_key(&inst.layout.pubring())?;
    if crate::pgp::wire_fingerprint(&key) != plan.fingerprint {
        return Err(Error::env("the restored key does not match the backup's"));
    }
    Ok(())
}

/// Where the dump is loaded.
enum Loaded {
    /// Into a scratch database of the live cluster, before anything changed.
    Scratch(preload::Preloaded),
    /// Into the new cluster in the staging area (a fresh host), which is
    /// moved into place.
    Staged(fresh::StagedCluster),
    /// Into a scratch schema of the external database, before anything
    /// changed.
    External(external::Loaded),
    /// Not yet: into the cluster in place, once it is there.
    Not,
}

/// Whether the cluster staged while decrypting can become the restored
/// instance's: a fresh host (no instance at the target, or one whose
/// cluster is gone), the restored data
/// directory absent, on the staging area's file system, run by the same
/// account. Gives the restored database port and password then.
fn fresh_target(plan: &Plan, target: &Layout, service_name: &str, staged: &fresh::StagedCluster) -> Result<Option<(u16, Password)>> {
    if let Ok(inst) = target.clone().load() {
        if Cluster::for_instance(&inst).map_or(true, |c| c.exists()) {
            return Ok(None);
        }
    }
    let restored = Instance::new(target.clone(), crate::hostconf::load_merged(&plan.staged_confdir)?)?;
    let data_dir = restored.pg_rootdir()?;
    if data_dir.exists() || std::fs::symlink_metadata(&data_dir).is_ok() {
        return Ok(None);
    }
    let account_uid = if crate::account::is_root() {
        match Account::lookup(service_name)? {
            Some(a) => a.uid,
            None => return Ok(None),
        }
    } else {
        Account::current()?.uid
    };
    if account_uid != staged.account().uid {
        return Ok(None);
    }
    let mut ancestor = fsutil::parent_dir(&data_dir);
    while !ancestor.is_dir() {
        match ancestor.parent() {
            Some(p) => ancestor = p,
            None => return Ok(None),
        }
    }
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(ancestor).map(|m| m.dev()).ok() != staged.device() {
        return Ok(None);
    }
    let password = Password::read(&plan.staged_confdir.join(crate::instance::PGPASS), DB_USER)?;
    Ok(Some((restored.db_port()?, password)))
}

/// The rows the load put into each table, as the server counted them
/// while loading, against the backup's.
fn check_rows(plan: &Plan, report: &load::LoadReport) -> Result<()> {
    for (table, expected) in &plan.row_counts {
        let n = report.rows.get(table).copied().unwrap_or(0);
        if n != *expected {
            return Err(Error::env(format!("table {table} has {n} rows after loading, the backup {expected}")));
        }
    }
    Ok(())
}

fn database_exists(admin: &mut postgres::Client, name: &str) -> Result<bool> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(|e| Error::env("cannot read the database list").because_err(&e))?
        .is_some())
}

/// A name to set the current database aside under that no database has:
/// `kt_restore_safety_<pid>`, else with a suffix. One that exists (left by
/// an earlier restore whose pid this run now has) may hold the only copy
/// of some data: it is never dropped or reused.
fn free_safety_name(admin: &mut postgres::Client) -> Result<String> {
    let base = format!("kt_restore_safety_{}", std::process::id());
    for n in 0..1000 {
        let name = if n == 0 { base.clone() } else { format!("{base}_{n}") };
        if !database_exists(admin, &name)? {
            return Ok(name);
        }
    }
    Err(Error::env(format!("too many databases named {base}_*")).with_hint("drop the ones kt verify reports as set aside"))
}

/// Removes what is inside `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::env(format!("cannot read {}", dir.display())).because_err(&e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(|e| Error::env(format!("cannot remove {}", path.display())).because_err(&e))?;
    }
    Ok(())
}

fn rewrite_paths(config_path: &Path, from: &Path, to: &Path) -> Result<()> {
    let mut config = Config::load(config_path)?;
    let from_home = fsutil::parent_dir(from).to_path_buf();
    let to_home = fsutil::parent_dir(to).to_path_buf();
    for key in [config::SSL_CERTIFICATE, config::SSL_PRIVATE_KEY, config::SSL_CA, config::PG_ROOTDIR] {
        if let Ok(value) = config.path(key) {
            let new = if let Ok(rest) = value.strip_prefix(from) {
                to.join(rest)
            } else if let Ok(rest) = value.strip_prefix(&from_home) {
                to_home.join(rest)
            } else {
                continue;
            };
            config.set(key, new.to_string_lossy().into_owned());
        }
    }
    config.save(config_path, None)
}

fn chown_tree(path: &Path, account: &Account) -> Result<()> {
    account.chown(path)?;
    if path.is_dir() {
        for e in std::fs::read_dir(path).map_err(|e| Error::env("cannot read the staged confdir").because_err(&e))?.flatten() {
            chown_tree(&e.path(), account)?;
        }
    }
    Ok(())
}

/// Fallback when the staging area is on another file system.
fn copy_tree(from: &Path, to: &Path, account: &Account) -> Result<()> {
    let out = Command::new("cp").arg("-a").arg(from).arg(to).output().map_err(|e| Error::env("cannot run cp").because_err(&e))?;
    if !out.status.success() {
        return Err(Error::env(format!("cannot copy the confdir to {}", to.display())).because(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    chown_tree(to, account)
}

/// Reports the bytes read through it (decryption and extraction).
struct ProgressReader<'p> {
    inner: Box<dyn std::io::Read>,
    done: &'p std::cell::Cell<u64>,
    total: u64,
    progress: &'p dyn Progress,
}

impl ProgressReader<'_> {
    const WHAT: &'static str = "decrypting and unpacking";
}

impl std::io::Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.done.get();
        let done = before + n as u64;
        self.done.set(done);
        if done >> 23 != before >> 23 {
            self.progress.bytes(Self::WHAT, done, Some(self.total.max(done)));
        }
        Ok(n)
    }
}
