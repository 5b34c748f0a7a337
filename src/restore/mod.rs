//! `kt restore`: disaster recovery that never makes things worse.
//!
//! 1. [`prepare`]: decrypt into a private staging directory next to the
//!    instance home and check everything: GnuPG's integrity verdict (MDC),
//!    the tar (one reader and one policy with `kt verify backup`:
//!    `backup::read`), the manifest against every member, its signature by
//!    the server key, and the identity (host name and server key against
//!    the instance being replaced, or `--expect-fingerprint`; see
//!    `backup::trust`). Nothing from the backup is executed or put in
//!    place here, and nothing live changes.
//! 2. The caller shows the [`Plan`] and asks for confirmation.
//! 3. [`execute`]: load the dump into a scratch database as a role that is
//!    no superuser, through the statement filter ([`preload`]); only when
//!    it loaded: stop the server, move the current confdir aside into a
//!    safety directory, put the restored confdir in place, rename the
//!    current database aside and the loaded one into its place, check rows
//!    and key, start the server again. On a fresh host the cluster is
//!    created first and the dump loaded the same way. Any failure puts the
//!    previous state back: the old state or the new one, never a mix.

pub mod preload;
pub mod stage;

use std::collections::BTreeMap;
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
use crate::progress::Progress;
use crate::storage::pgpass::Password;
use crate::storage::{databases, load, schema, Cluster};
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
    pub has_manifest: bool,
    /// The manifest's signature verified with the archived server key.
    pub signed: bool,
    /// How that key relates to the keys this host trusts.
    pub identity: Identity,
    /// Why the backup looks foreign (accepted with --force-foreign).
    pub foreign: Option<String>,
    /// Why psql rather than kt's loader loads this dump (`None`: kt's).
    pub load_by_psql: Option<String>,
    /// Held for its Drop: the staging area goes when the plan does.
    _staging: StagingDir,
    staged_confdir: PathBuf,
    dump: PathBuf,
}

impl Plan {
    /// Whether the backup is tied, by its signature, to a key this host
    /// trusted before reading it (the instance's, or the expected one).
    pub fn anchored(&self) -> bool {
        self.signed && self.key_known()
    }

    /// Whether the backup's server key is one this host trusted before:
    /// the instance's, or the one `--expect-fingerprint` named.
    pub fn key_known(&self) -> bool {
        matches!(self.identity, Identity::Instance | Identity::Expected)
    }

    /// Private to this run (0700), removed with the plan.
    fn private_dir(&self) -> &Path {
        &self._staging.0
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
    // a rename on one file system; it is private and removed on drop.
    let hinted_home = options.confdir.as_ref().map(|c| fsutil::parent_dir(&fsutil::absolute(c).unwrap_or(c.clone())).to_path_buf());
    let staging_parent = match &hinted_home {
        Some(home) if home.is_dir() => home.clone(),
        _ => std::env::temp_dir(),
    };
    let staging = StagingDir::create(staging_parent.join(format!(".kt-restore-{}", std::process::id())))?;
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
    load::check_meta_commands(&dump_facts.meta_commands, DB_NAME)?;

    let recorded_confdir = recorded_confdir(&conf_member);
    let staged_confdir = root.join(&conf_member);
    let staged_config = Config::load(&staged_confdir.join("keytrustee.conf"))?;
    let hostname = staged_config.string(config::HOSTNAME)?.to_string();

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
        has_manifest: assessment.manifest.is_some(),
        signed: assessment.signed,
        identity: assessment.identity,
        load_by_psql: dump_facts.needs_psql(DB_NAME),
        foreign,
        dump: root.join(dump_member),
        staged_confdir,
        _staging: staging,
    })
}

/// Decrypts (when encrypted) and extracts one backup file into `root`.
/// GnuPG's verdict (wrong key, failed integrity check) comes before the
/// archive's: a message that does not decrypt whole reads as a damaged tar.
fn stage_backup(options: &RestoreOptions, gnupg_home: Option<&Path>, root: &Path, progress: &dyn Progress) -> Result<Contents> {
    let (source, child) = stage::open(&options.files[0], gnupg_home, options.passphrase_file.as_deref())?;
    let total = std::fs::metadata(&options.files[0]).map(|m| m.len()).unwrap_or(0);
    let source = ProgressReader { inner: source, done: 0, total, progress };
    let contents = crate::backup::read::read(source, Some(root));
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

/// The state taken aside before anything changes, to put back on failure.
struct Safety {
    dir: PathBuf,
    /// The previous confdir, moved here.
    confdir: Option<PathBuf>,
    /// The previous database, renamed aside inside its cluster (instant,
    /// and instant to put back).
    renamed_db: Option<String>,
    /// The password the cluster had, when it was changed to the restored one.
    old_password: Option<Password>,
    password_changed: bool,
    /// The keytrustee database is this run's (dropped again on failure).
    created_db: bool,
    /// A cluster this run created (removed again on failure).
    created_data_dir: Option<PathBuf>,
    server_was_running: bool,
}

pub fn execute(plan: Plan, options: &RestoreOptions, progress: &dyn Progress) -> Result<Outcome> {
    let target = plan.target.clone();
    // Rewrite the recorded paths when the confdir is re-rooted.
    if target.confdir != plan.recorded_confdir {
        rewrite_paths(&plan.staged_confdir.join("keytrustee.conf"), &plan.recorded_confdir, &target.confdir)?;
    }
    // The load first, into a scratch database, while the live instance
    // goes on serving: a dump that does not load changes nothing.
    let preloaded = match preload::live_cluster(&target, &plan.staged_confdir) {
        Some((cluster, password)) => {
            progress.step(&match &plan.load_by_psql {
                None => "loading the dump into a scratch database".to_string(),
                Some(why) => format!("loading the dump into a scratch database with psql ({why})"),
            });
            let loaded = preload::load(&cluster, &password, &plan.dump, plan.load_by_psql.as_deref(), plan.private_dir(), progress)
                .map_err(|e| {
                    let mut told = Error::new(e.kind(), "the dump does not load (tried in a scratch database): nothing was changed").because(e.message());
                    for cause in e.causes() {
                        told = told.because(cause);
                    }
                    match e.hint() {
                        Some(hint) => told.with_hint(hint),
                        None => told,
                    }
                })?;
            check_rows(&plan, &loaded.report, &cluster, &password, &loaded.scratch.name)?;
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
    let created_home = fsutil::create_dirs(&target.home, 0o755)?;
    let account = Account::service(&service_name, &target.home)?;
    if created_home.last() == Some(&target.home) {
        account.chown(&target.home)?;
    }

    // A new directory each time (two restores may fall in one second).
    let stamp = crate::backup::naming::stamp_now();
    let mut n = 0;
    let safety_dir = loop {
        let dir = target.home.join(match n {
            0 => format!(".kt-restore-safety-{stamp}"),
            n => format!(".kt-restore-safety-{stamp}.{n}"),
        });
        match std::fs::create_dir(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(Error::env(format!("cannot create {}", dir.display())).because_err(&e)),
        }
    };
    fsutil::set_mode(&safety_dir, 0o700)?;
    let mut safety = Safety {
        dir: safety_dir.clone(),
        confdir: None,
        renamed_db: None,
        old_password: None,
        password_changed: false,
        created_db: false,
        created_data_dir: None,
        server_was_running: false,
    };

    // 1. Safety copy of what is there now.
    let existing = target.clone().load().ok();
    if let Some(inst) = &existing {
        progress.step("taking a safety copy of the current database and confdir");
        if let Ok(server) = ServerProcess::for_instance(inst) {
            if let ServerState::Running { .. } = server.state()? {
                server.stop()?;
                safety.server_was_running = true;
            }
        }
        if let Ok(cl) = Cluster::for_instance(inst) {
            if cl.exists() {
                safety.old_password = Some(Password::read(&inst.layout.pgpass(), DB_USER)?);
            }
        }
    }
    if target.confdir.exists() {
        let aside = safety_dir.join("confdir");
        std::fs::rename(&target.confdir, &aside)
            .map_err(|e| Error::env(format!("cannot move {} aside", target.confdir.display())).because_err(&e))?;
        safety.confdir = Some(aside);
    }

    // 2. The new state; any failure puts the old one back.
    // The server's restart is part of it: a restored instance whose server
    // does not start is a failed restore, not a success with a footnote.
    let result = put_in_place(&plan, preloaded, &target, &account, &mut safety, progress).and_then(|()| {
        if safety.server_was_running {
            progress.step("starting the server again");
            let inst = target.clone().load()?;
            let exe = std::env::current_exe().map_err(|e| Error::env("cannot find kt").because_err(&e))?;
            ServerProcess::for_instance(&inst)?.start(&exe)?;
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            // The old database was only kept for a rollback: the backup is
            // the copy of record now.
            if let Some(name) = &safety.renamed_db {
                if let Ok(inst) = target.clone().load() {
                    if let (Ok(cl), Ok(pw)) = (Cluster::for_instance(&inst), Password::read(&inst.layout.pgpass(), DB_USER)) {
                        if let Ok(mut admin) = cl.connect(&pw, "postgres") {
                            let _ = databases::drop(&mut admin, name);
                        }
                    }
                }
            }
            let keep = safety.confdir.is_some();
            if !keep {
                let _ = std::fs::remove_dir_all(&safety_dir);
            }
            Ok(Outcome { confdir: target.confdir.clone(), safety_dir: keep.then_some(safety_dir), restarted_server: safety.server_was_running })
        }
        Err(e) => {
            progress.step("the restore failed: putting the previous state back");
            let rollback = roll_back(&target, &safety);
            let message = format!("the restore failed and was rolled back: {}", e.message());
            let mut err = e.restate(Kind::Environment, message);
            if let Err(r) = rollback {
                err = err.because(format!("ROLLBACK ALSO FAILED: {r}; the safety copy is in {}", safety.dir.display()));
            }
            Err(err.with_hint(format!("the safety copy stays in {}", safety.dir.display())))
        }
    }
}

fn put_in_place(
    plan: &Plan,
    preloaded: Option<preload::Preloaded>,
    target: &Layout,
    account: &Account,
    safety: &mut Safety,
    progress: &dyn Progress,
) -> Result<()> {
    progress.step(&format!("putting the confdir in place at {}", target.confdir.display()));
    chown_tree(&plan.staged_confdir, account)?;
    std::fs::rename(&plan.staged_confdir, &target.confdir).or_else(|_| copy_tree(&plan.staged_confdir, &target.confdir, account))?;
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
        for dir in fsutil::create_dirs(&cl.data_dir, 0o700)? {
            account.chown(&dir)?;
        }
        safety.created_data_dir = Some(cl.data_dir.clone());
        for dir in fsutil::create_dirs(&inst.layout.log_dir(), 0o700)? {
            account.chown(&dir)?;
        }
        cl.initdb(&password, &inst.layout.confdir)?;
    }
    cl.start()?;
    // The cluster's password is the old instance's when the cluster stays:
    // switch it to the restored one.
    let mut admin = match cl.connect(&password, "postgres") {
        Ok(c) => c,
        Err(e) => match &safety.old_password {
            Some(old) => {
                let mut c = cl.connect(old, "postgres")?;
                set_password(&mut c, &password)?;
                safety.password_changed = true;
                c
            }
            None => return Err(e),
        },
    };
    // The preload checked that the restored configuration names this
    // cluster; should that have changed since, there is no dump to load.
    if preloaded.as_ref().is_some_and(|p| p.scratch.cluster().data_dir != cl.data_dir || p.scratch.cluster().port != cl.port) {
        return Err(Error::env("the database was loaded into another cluster than the restored configuration names"));
    }
    let preloaded = match preloaded {
        Some(p) => p,
        None => {
            progress.step(&match &plan.load_by_psql {
                None => "loading the dump".to_string(),
                Some(why) => format!("loading the dump with psql ({why})"),
            });
            let p = preload::load(&cl, &password, &plan.dump, plan.load_by_psql.as_deref(), plan.private_dir(), progress)?;
            check_rows(plan, &p.report, &cl, &password, &p.scratch.name)?;
            p
        }
    };
    progress.step("putting the loaded database in place of the keytrustee database");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB_NAME])
        .map_err(|e| Error::env("cannot read the database list").because_err(&e))?
        .is_some();
    if exists {
        let aside = format!("kt_restore_safety_{}", std::process::id());
        databases::drop(&mut admin, &aside)
            .and_then(|_| databases::rename(&mut admin, DB_NAME, &aside))
            .map_err(|e| Error::env("cannot set the current database aside").because(e.to_string()))?;
        safety.renamed_db = Some(aside);
    }
    preloaded.scratch.adopt_as(&mut admin, DB_NAME)?;
    safety.created_db = true;
    let mut db = cl.connect(&password, DB_NAME)?;
    schema::migrate(&mut db)?;
    let key = crate::pgp::load_public_key(&inst.layout.pubring())?;
    if crate::pgp::wire_fingerprint(&key) != plan.fingerprint {
        return Err(Error::env("the restored key does not match the backup's"));
    }
    Ok(())
}

/// The rows the load put into `database`, table by table, against the
/// backup's: as the server counted them while loading, or (after a psql
/// load, which does not tell) counted now.
fn check_rows(plan: &Plan, report: &load::LoadReport, cl: &Cluster, password: &Password, database: &str) -> Result<()> {
    let mut db = None;
    for (table, expected) in &plan.row_counts {
        let n = if report.by_psql {
            if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::usage(format!("odd table name {table:?} in the backup")));
            }
            let db = match &mut db {
                Some(db) => db,
                None => db.insert(cl.connect(password, database)?),
            };
            let n: i64 = db
                .query_one(&format!("SELECT count(*) FROM public.{table}"), &[])
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
    Ok(())
}

fn set_password(db: &mut postgres::Client, password: &Password) -> Result<()> {
    // A literal in ALTER ROLE: the password is alphanumeric by construction
    // (kt generates it); anything else is refused rather than quoted.
    if !password.expose().chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::env("the restored database password has characters kt does not expect"));
    }
    db.batch_execute(&format!("ALTER ROLE {DB_USER} PASSWORD '{}'", password.expose()))
        .map_err(|e| Error::env("cannot set the database password").because_err(&e))
}

/// Puts the safety copy back: the database first (while the restored
/// confdir still names the cluster's current password), then the confdir,
/// then the server.
fn roll_back(target: &Layout, safety: &Safety) -> Result<()> {
    if safety.created_db || safety.renamed_db.is_some() || safety.password_changed {
        let inst = target.clone().load()?;
        let cl = Cluster::for_instance(&inst)?;
        cl.start()?;
        let current = Password::read(&inst.layout.pgpass(), DB_USER)?;
        let mut admin = cl
            .connect(&current, "postgres")
            .or_else(|e| safety.old_password.as_ref().map(|old| cl.connect(old, "postgres")).unwrap_or(Err(e)))?;
        // A scratch database left by a preload that could not drop it
        // itself (the password had been switched under it).
        let _ = databases::drop(&mut admin, &preload::scratch_name());
        let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}_loader", preload::scratch_name()));
        if safety.created_db {
            databases::drop(&mut admin, DB_NAME).map_err(|e| Error::env("cannot drop the half-restored database").because(e.to_string()))?;
        }
        if let Some(aside) = &safety.renamed_db {
            databases::rename(&mut admin, aside, DB_NAME).map_err(|e| Error::env("cannot put the old database back").because(e.to_string()))?;
        }
        if safety.password_changed {
            if let Some(old) = &safety.old_password {
                set_password(&mut admin, old)?;
            }
        }
    }
    if let Some(data_dir) = &safety.created_data_dir {
        // A cluster this run created on a fresh host: stop it (as its
        // account, through the restored configuration that names it) and
        // remove it.
        if let Ok(inst) = target.clone().load() {
            if let Ok(cl) = Cluster::for_instance(&inst) {
                let _ = cl.stop();
            }
        }
        let _ = std::fs::remove_dir_all(data_dir);
    }
    // The restored confdir came from staging: it is ours to remove.
    if target.confdir.exists() {
        let failed = target.home.join(format!("{}.failed-restore", safety.dir.file_name().and_then(|n| n.to_str()).unwrap_or("kt")));
        std::fs::rename(&target.confdir, &failed).map_err(|e| Error::env("cannot move the restored confdir away").because_err(&e))?;
        let _ = std::fs::remove_dir_all(&failed);
    }
    if let Some(old) = &safety.confdir {
        std::fs::rename(old, &target.confdir).map_err(|e| Error::env("cannot put the old confdir back").because_err(&e))?;
    }
    if safety.server_was_running {
        let inst = target.clone().load()?;
        let exe = std::env::current_exe().map_err(|e| Error::env("cannot find kt").because_err(&e))?;
        ServerProcess::for_instance(&inst)?.start(&exe)?;
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
