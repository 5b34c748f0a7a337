//! `kt restore`: disaster recovery that never makes things worse.
//!
//! 1. [`prepare`]: decrypt into a private staging directory and check
//!    everything (message whole, tar safe, manifest checksums and row
//!    counts, identity of host and key). Nothing live changes.
//! 2. The caller shows the [`Plan`] and asks for confirmation.
//! 3. [`execute`]: safety copy of the current confdir (moved aside) and
//!    database (dumped), server stopped, confdir put in place, database
//!    dropped, re-created and loaded in one transaction, rows and key
//!    checked, server started again. Any failure there puts the safety
//!    copy back: the old state or the new one, never a mix.

pub mod stream;
pub mod preload;
pub mod stage;

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::account::Account;
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
    /// The account PostgreSQL runs as when root (created when missing).
    pub service_user: Option<String>,
    /// Load the dump into a scratch database while staging, when the
    /// instance being replaced has a running cluster ([`preload`]). Off for
    /// a dry run, which must not touch the cluster.
    pub preload: bool,
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
    pub has_manifest: bool,
    /// Why the backup looks foreign (accepted with --force-foreign).
    pub foreign: Option<String>,
    /// Why psql rather than kt's loader loads this dump (`None`: kt's).
    pub load_by_psql: Option<String>,
    /// The dump, already loaded into a scratch database and checked.
    preloaded: Option<(preload::Preload, load::LoadReport)>,
    /// Held for its Drop: the staging area goes when the plan does.
    _staging: StagingDir,
    staged_confdir: PathBuf,
    dump: PathBuf,
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
    let gnupg_home = match &options.secret_key {
        Some(key) => Some(staging.import_secret_key(key)?),
        None => None,
    };
    progress.step("decrypting and checking the backup");
    let root = staging.0.join("root");
    let (staged, preloading) = if zips {
        let password = options
            .zip_password
            .as_ref()
            .ok_or_else(|| Error::usage("the zips are encrypted: give --zip-password-file (or run on a terminal)"))?;
        std::fs::create_dir(&root).map_err(|e| Error::env("cannot create the staging root").because_err(&e))?;
        (stage::extract_zips(&options.files, password.expose(), &root)?, None)
    } else {
        stage_backup(options, gnupg_home.as_deref(), &root, options.preload, progress)?
    };
    stage::check_manifest(&staged)?;

    let conf_member = conf_member(&staged)?;
    let Some((dump_member, dump_facts)) = &staged.dump else {
        return Err(Error::usage("the backup holds no .sql database dump"));
    };
    let recorded_confdir = recorded_confdir(&conf_member);
    let staged_confdir = root.join(conf_dir_member(&conf_member));
    let staged_config = Config::load(&staged_confdir.join("keytrustee.conf"))?;
    let hostname = staged_config.string(config::HOSTNAME)?.to_string();
    let key = crate::pgp::load_public_key(&staged_confdir.join(crate::instance::PUBRING))?;
    let fingerprint = crate::pgp::wire_fingerprint(&key);
    if let Some(m) = &staged.manifest {
        if m["server_fingerprint"].as_str() != Some(fingerprint.as_str()) {
            return Err(Error::usage("the backup's key does not match its manifest"));
        }
    }
    let target = target_layout(options, &conf_member)?;

    // Identity: the instance being replaced, or this host.
    let existing = target.clone().load().ok();
    let foreign = match &existing {
        Some(inst) => {
            let here = inst.hostname().unwrap_or("").to_string();
            let here_key = crate::pgp::load_public_key(&inst.layout.pubring()).map(|k| crate::pgp::wire_fingerprint(&k)).ok();
            if here != hostname {
                Some(format!("the backup is of host {hostname}, this instance is {here}"))
            } else if here_key.as_deref().is_some_and(|k| k != fingerprint) {
                Some(format!("the backup's key is {fingerprint}, this instance's is {}", here_key.unwrap_or_default()))
            } else {
                None
            }
        }
        None => {
            let fqdn = crate::hostname::fqdn().unwrap_or_default();
            (fqdn != hostname).then(|| format!("the backup is of host {hostname}, this host is {fqdn}"))
        }
    };
    if let (Some(why), false) = (&foreign, options.force_foreign) {
        return Err(Error::usage(format!("refusing a foreign backup: {why}"))
            .with_hint("restore on the host it came from, or pass --force-foreign if this host replaces it"));
    }
    let row_counts = match &staged.manifest {
        Some(m) => serde_json::from_value(m["row_counts"].clone()).unwrap_or_else(|_| dump_facts.row_counts.clone()),
        None => dump_facts.row_counts.clone(),
    };
    let load_by_psql = dump_facts.needs_psql(DB_NAME);
    let mut dump = root.join(dump_member);
    let preloaded = match preloading {
        None => None,
        Some(mut p) => {
            progress.step("finishing the load into a scratch database");
            match p.wait() {
                Ok(report) => Some((p, report)),
                // The dump uses psql features: psql loads it after all, from
                // a staged file (the first pass streamed it to kt's loader).
                Err(_) if load_by_psql.is_some() => {
                    drop(p);
                    progress.step("decrypting the backup again, for psql");
                    let again = staging.0.join("root-psql");
                    let (restaged, _) = stage_backup(options, gnupg_home.as_deref(), &again, false, progress)?;
                    stage::check_manifest(&restaged)?;
                    match &restaged.dump {
                        Some((member, facts)) if facts.sha256 == dump_facts.sha256 => dump = again.join(member),
                        _ => return Err(Error::usage("the backup changed while it was being restored")),
                    }
                    None
                }
                Err(e) => return Err(e.restate(Kind::Environment, "the dump does not load (tried in a scratch database): nothing was changed")),
            }
        }
    };
    Ok(Plan {
        replaces_confdir: target.confdir.exists(),
        target,
        recorded_confdir,
        hostname,
        fingerprint,
        created: staged.manifest.as_ref().and_then(|m| m["created"].as_str().map(str::to_string)),
        row_counts,
        has_manifest: staged.manifest.is_some(),
        load_by_psql,
        preloaded,
        foreign,
        dump,
        staged_confdir,
        _staging: staging,
    })
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
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)).filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
        if !meta.is_dir() || meta.uid() != me || pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Its Drop stops a GnuPG agent left running there, then removes it.
        drop(StagingDir(entry.path()));
    }
}

/// Decrypts (when encrypted) and extracts one backup file into `root`.
/// With `preload`, the dump goes straight into a scratch database as it is
/// decrypted (when the instance it replaces has its cluster running; see
/// [`preload`]) instead of into a staging file.
fn stage_backup(
    options: &RestoreOptions,
    gnupg_home: Option<&Path>,
    root: &Path,
    preload: bool,
    progress: &dyn Progress,
) -> Result<(stage::Staged, Option<preload::Preload>)> {
    std::fs::create_dir(root).map_err(|e| Error::env("cannot create the staging root").because_err(&e))?;
    let (source, child) = stage::open(&options.files[0], gnupg_home, options.passphrase_file.as_deref())?;
    let total = std::fs::metadata(&options.files[0]).map(|m| m.len()).unwrap_or(0);
    let source = Box::new(ProgressReader { inner: source, done: 0, total, progress });
    let mut preloading = None;
    // The confdir comes before the dump in kt's archives: by the time the
    // dump starts, the instance it replaces (and its cluster) is known.
    let mut on_dump = |so_far: &stage::Staged| {
        if !preload {
            return None;
        }
        let member = conf_member(so_far).ok()?;
        let target = target_layout(options, &member).ok()?;
        if target.confdir != recorded_confdir(&member) {
            // A re-rooted confdir has its paths rewritten later: load after.
            return None;
        }
        let staged_confdir = root.join(conf_dir_member(&member));
        let (p, tap) = preload::Preload::start(&target, &staged_confdir)?;
        preloading = Some(p);
        Some(tap)
    };
    let staged = stage::extract(source, root, &mut on_dump);
    progress.finish();
    // The decryption verdict first: a wrong key shows up as an empty tar.
    stage::finish_decryption(child)?;
    Ok((staged?, preloading))
}

/// The confdir's path inside the archive (`home/x/.keytrustee`).
fn conf_dir_member(conf_member: &str) -> &str {
    conf_member.trim_end_matches("/keytrustee.conf")
}

/// The confdir's path on the host it was backed up from.
fn recorded_confdir(conf_member: &str) -> PathBuf {
    PathBuf::from(format!("/{}", conf_dir_member(conf_member)))
}

/// The one `keytrustee.conf` of a staged backup (its directory is the
/// confdir's recorded path).
fn conf_member(staged: &stage::Staged) -> Result<String> {
    let conf_members: Vec<&String> = staged.files.keys().filter(|p| p.ends_with("/keytrustee.conf")).collect();
    match conf_members.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::usage("the backup holds no keytrustee.conf")),
        _ => Err(Error::usage("the backup holds more than one keytrustee.conf")),
    }
}

/// Where the confdir goes: `--confdir`, else its recorded path.
fn target_layout(options: &RestoreOptions, conf_member: &str) -> Result<Layout> {
    Layout::new(Some(options.confdir.as_deref().unwrap_or(&recorded_confdir(conf_member))))
}

impl Plan {
    /// Whether the dump is loaded already (into a scratch database that
    /// the restore renames into place).
    pub fn preloaded(&self) -> bool {
        self.preloaded.is_some()
    }
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
    /// The previous database, renamed aside: dropped once the restore
    /// succeeded (the backup is the copy of record then).
    renamed_db: Option<(Cluster, Password, String)>,
    restarted_server: bool,
}

/// Puts the staged backup in place. Every step is recorded in an undo
/// journal right after it succeeded; any failure undoes all of them, in
/// reverse order, whatever fails on the way, and the error lists each
/// step undone and each one that could not be (DESIGN.md, "Trust before
/// action").
pub fn execute(mut plan: Plan, options: &RestoreOptions, progress: &dyn Progress) -> Result<Outcome> {
    let preloaded = plan.preloaded.take();
    let target = plan.target.clone();
    // Rewrite the recorded paths when the confdir is re-rooted (in staging:
    // nothing live yet).
    if target.confdir != plan.recorded_confdir {
        rewrite_paths(&plan.staged_confdir.join("keytrustee.conf"), &plan.recorded_confdir, &target.confdir)?;
    }
    let staged_config = Config::load(&plan.staged_confdir.join("keytrustee.conf"))?;
    let service_name = options
        .service_user
        .clone()
        .or_else(|| staged_config.string(config::SERVICE_USER).ok().map(str::to_string))
        .unwrap_or_else(|| "keytrustee".into());

    let mut journal = Journal::new();
    let created_home = fsutil::create_dirs(&target.home, 0o755)?;
    // Outermost first, so undone innermost first. Only while empty: logs of
    // a failed start (evidence) may have landed there.
    for dir in created_home.iter().cloned() {
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
        change(&plan, preloaded, &target, &account, &safety_dir, &mut journal, progress)
    });
    match result {
        Ok(changed) => {
            journal.commit();
            if let Some((cl, password, name)) = &changed.renamed_db {
                // Best effort: `kt verify` points at a database left aside.
                if let Ok(mut admin) = cl.connect(password, "postgres") {
                    let _ = databases::drop(&mut admin, name);
                }
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
fn change(
    plan: &Plan,
    preloaded: Option<(preload::Preload, load::LoadReport)>,
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
                if let Some((p, _)) = &preloaded {
                    // Dropped by the preload itself when the restore ends
                    // before the swap, unless the password was switched
                    // under it; this step drops it in any case.
                    let (cl, pw, name) = (p.cluster.clone(), password.clone(), p.database.clone());
                    journal.record(format!("loaded the backup into the scratch database {name}"), move || {
                        let mut admin = cl.connect(&pw, "postgres")?;
                        databases::drop(&mut admin, &name)
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
    let renamed_db = put_in_place(plan, preloaded, target, account, old_password, journal, progress)?;
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

fn put_in_place(
    plan: &Plan,
    preloaded: Option<(preload::Preload, load::LoadReport)>,
    target: &Layout,
    account: &Account,
    old_password: Option<Password>,
    journal: &mut Journal,
    progress: &dyn Progress,
) -> Result<Option<(Cluster, Password, String)>> {
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
    let mut cl = Cluster::for_instance(&inst)?;
    cl.account = account.clone();
    let password = Password::read(&inst.layout.pgpass(), DB_USER)?;
    if !cl.exists() {
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
    if preloaded.as_ref().is_some_and(|(p, _)| p.cluster.data_dir != cl.data_dir || p.cluster.port != cl.port) {
        return Err(Error::env("the database was loaded into another cluster than the restored configuration names"));
    }
    progress.step(if preloaded.is_some() {
        "putting the loaded database in place of the keytrustee database"
    } else {
        "dropping and re-creating the keytrustee database"
    });
    let exists = database_exists(&mut admin, DB_NAME)?;
    let mut renamed_db = None;
    if exists {
        let aside = free_safety_name(&mut admin)?;
        databases::rename(&mut admin, DB_NAME, &aside).map_err(|e| Error::env("cannot set the current database aside").because(e.to_string()))?;
        journal.record(
            format!("set the database {DB_NAME} aside as {aside}"),
            undo_db(|c, from, to| databases::rename(c, from, to), aside.clone(), DB_NAME.to_string()),
        );
        renamed_db = Some((cl.clone(), password.clone(), aside));
    }
    let drop_new = undo_db(|c, name, _| databases::drop(c, name), DB_NAME.to_string(), String::new());
    let report = match preloaded {
        Some((p, report)) => {
            let scratch = p.database.clone();
            p.rename_into(&mut admin, DB_NAME)?;
            journal.record(format!("renamed the loaded database {scratch} to {DB_NAME}"), drop_new);
            report
        }
        None => {
            databases::create(&mut admin, DB_NAME)?;
            journal.record(format!("created the database {DB_NAME}"), drop_new);
            progress.step(match &plan.load_by_psql {
                None => "loading the dump".to_string(),
                Some(why) => format!("loading the dump with psql ({why})"),
            }
            .as_str());
            load::load(&cl, &password, &inst.layout.pgpass(), DB_NAME, &plan.dump, plan.load_by_psql.as_deref(), progress)?
        }
    };
    let mut db = cl.connect(&password, DB_NAME)?;
    // Rows as the server counted them while loading; psql does not tell,
    // so after a psql load they are counted (the migration below may add
    // schema_version rows, hence that table is left out there).
    for (table, expected) in &plan.row_counts {
        let n = if report.by_psql {
            if table == "schema_version" || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let n: i64 = db
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .map_err(|e| Error::env(format!("cannot count {table}")).because_err(&e))?
                .get(0);
            n as u64
        } else {
            report.rows.get(table).copied().unwrap_or(0)
        };
        if n != *expected {
            return Err(Error::env(format!("table {table} has {n} rows after loading, the backup {expected}")));
        }
    }
    schema::migrate(&mut db)?;
    let key = crate::pgp::load_public_key(&inst.layout.pubring())?;
    if crate::pgp::wire_fingerprint(&key) != plan.fingerprint {
        return Err(Error::env("the restored key does not match the backup's"));
    }
    Ok(renamed_db)
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
    done: u64,
    total: u64,
    progress: &'p dyn Progress,
}

impl std::io::Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.done;
        self.done += n as u64;
        if self.done >> 23 != before >> 23 {
            self.progress.bytes("decrypting and unpacking", self.done, Some(self.total));
        }
        Ok(n)
    }
}
