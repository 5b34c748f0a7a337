//! `kt db start | stop | status`

use kt::instance::Layout;
use kt::storage::cluster::{Cluster, Started, State, Stopped};
use kt::storage::socket;

use crate::cli::{DbCommand, DbStartArgs, DbStatusArgs, GlobalArgs, PgRootdirArg};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, command: DbCommand, printer: &Printer) -> CommandResult {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    if instance.settings.external_db.is_some() {
        return match command {
            DbCommand::Status(args) => external_status(&instance, args, printer),
            _ => Err(kt::storage::cluster::external_refusal(&instance).into()),
        };
    }
    let cluster = Cluster::for_instance(&instance)?;
    match command {
        DbCommand::Start(args) => {
            check_rootdir(&cluster, &args.rootdir)?;
            if cluster.exists() {
                // PG_ROOTDIR is the account's own, before anything is done
                // there. (A missing cluster is for `start` to explain.)
                cluster.check_data_dir()?;
            }
            let socket_dir = cluster.socket_dir();
            if kt::account::is_root() {
                // The steps that need root: the socket's directory (made,
                // or checked to be the account's own) and the link where
                // the documented tools look for the socket, into it only.
                socket::prepare_dir(&socket_dir, &cluster.account)?;
                if let Some(note) = socket::link_default(&socket_dir, cluster.port, &cluster.account) {
                    printer.warn(note);
                }
                kt::account::become_account(&cluster.account)?;
            } else if !socket::default_is_linked(&socket_dir, cluster.port) {
                printer.info(format!(
                    "kt: the documented commands reach this database with -h {} (kt db start as root links it from {})",
                    socket_dir.display(),
                    socket::LIBPQ_DEFAULT_DIR
                ));
            }
            // As the service account: its own files in its own directory.
            let rules_added = cluster.exists() && socket::ensure_peer_rule(&cluster.data_dir, &cluster.account)?;
            wait_for_active(&instance, &cluster, &args, printer)?;
            let status = start(&cluster, printer)?;
            if rules_added {
                printer.info("kt: added the Unix-socket rule for the service account (pg_hba.conf, pg_ident.conf)");
                if matches!(cluster.state()?, State::Running { .. }) {
                    cluster.reload()?;
                }
            }
            if let Err(e) = upgrade_schema(&instance, &cluster, printer) {
                printer.warn(format!("the database runs, but its schema could not be brought up to this kt's: {e}"));
            }
            Ok(status)
        }
        DbCommand::Stop(args) => {
            check_rootdir(&cluster, &args.rootdir)?;
            stop(&cluster, printer)
        }
        DbCommand::Status(args) => status(&cluster, args, printer),
    }
}

/// `--pg-rootdir`, when given, names this instance's database directory
/// (compared after resolving links, so `/var/lib/keytrustee/db` and a
/// link to it are one directory).
fn check_rootdir(cluster: &Cluster, arg: &PgRootdirArg) -> kt::Result<()> {
    let Some(given) = &arg.pg_rootdir else { return Ok(()) };
    let same = match (std::fs::canonicalize(given), std::fs::canonicalize(&cluster.data_dir)) {
        (Ok(a), Ok(b)) => a == b,
        _ => given == &cluster.data_dir,
    };
    if same {
        return Ok(());
    }
    Err(kt::Error::usage(format!(
        "--pg-rootdir {} is not this instance's database directory {}",
        given.display(),
        cluster.data_dir.display()
    ))
    .with_hint("give the confdir of the instance that owns it (-c DIR), or leave --pg-rootdir out"))
}

/// The documented trap "the passive database fails to start when the
/// active is not running" becomes a bounded wait with a message; after it
/// the standby starts anyway (it serves reads and streams once the active
/// answers).
fn wait_for_active(instance: &kt::instance::Instance, cluster: &Cluster, args: &DbStartArgs, printer: &Printer) -> kt::Result<()> {
    let (Some(kt::settings::HaRole::Passive), Some(peer)) = (instance.settings.ha_role, &instance.settings.ha_peer) else {
        return Ok(());
    };
    if matches!(cluster.state()?, State::Running { .. }) {
        return Ok(());
    }
    let active = kt::ha::Peer::parse(peer, instance.settings.db_port)?;
    if let Err(e) = kt::ha::passive::wait_for_active(&active, std::time::Duration::from_secs(args.wait_for_active), printer) {
        printer.warn(format!("{e}: starting the standby anyway; it streams once the active answers"));
    }
    Ok(())
}

/// An instance made by an earlier kt gets this kt's schema migrations
/// when its database starts (on the active or a single server; a passive
/// receives them by replication), so that the server and `kt org` find
/// the columns they use. A failure is reported, not fatal: the database
/// did start.
fn upgrade_schema(instance: &kt::instance::Instance, cluster: &Cluster, printer: &Printer) -> kt::Result<()> {
    if instance.settings.ha_role == Some(kt::settings::HaRole::Passive)
        || !matches!(cluster.state()?, State::Running { .. })
    {
        return Ok(());
    }
    let mut db = kt::storage::endpoint::connect_instance(instance, "kt")?;
    if let Some(last) = kt::storage::schema::upgrade(&mut db)?.last() {
        printer.info(format!("kt: brought the database schema up to version {last}"));
    }
    Ok(())
}

fn start(cluster: &Cluster, printer: &Printer) -> CommandResult {
    match cluster.start()? {
        Started::AlreadyRunning { pid } => {
            printer.info(format!("kt: the database is already running (pid {pid}, port {})", cluster.port))
        }
        Started::Now { pid, removed_stale_pid } => {
            if let Some(stale) = removed_stale_pid {
                printer.warn(format!(
                    "removed a stale postmaster.pid (pid {stale} was not a running PostgreSQL: crash or reboot?)"
                ));
            }
            printer.info(format!("kt: the database is running (pid {pid}, port {})", cluster.port));
        }
    }
    Ok(Status::Success)
}

fn stop(cluster: &Cluster, printer: &Printer) -> CommandResult {
    match cluster.stop()? {
        Stopped::AlreadyStopped { stale_pid: None } => printer.info("kt: the database is already stopped"),
        Stopped::AlreadyStopped { stale_pid: Some(pid) } => printer.info(format!(
            "kt: the database is already stopped (stale postmaster.pid names pid {pid}, which is not running)"
        )),
        Stopped::Now { pid } => printer.info(format!("kt: the database is stopped (was pid {pid})")),
    }
    Ok(Status::Success)
}

fn status(cluster: &Cluster, args: DbStatusArgs, printer: &Printer) -> CommandResult {
    let state = cluster.state()?;
    let (name, pid, note) = match &state {
        State::Running { pid, .. } => ("running", Some(*pid), None),
        State::Stopped => ("stopped", None, None),
        State::Stale { pid } => (
            "stopped",
            None,
            Some(format!("stale postmaster.pid: pid {pid} is not a running PostgreSQL; `kt db start` removes it")),
        ),
    };
    let port = match state {
        State::Running { port: Some(port), .. } => port,
        _ => cluster.port,
    };
    if args.json {
        let value = serde_json::json!({
            "state": name,
            "pid": pid,
            "port": port,
            "data_dir": cluster.data_dir,
            "log_file": cluster.log_file,
            "socket_dir": cluster.socket_dir(),
            "note": note,
        });
        printer.data(value.to_string())?;
    } else {
        printer.data(format!("state:    {name}"))?;
        if let Some(pid) = pid {
            printer.data(format!("pid:      {pid}"))?;
        }
        printer.data(format!("port:     {port}"))?;
        printer.data(format!("data dir: {}", cluster.data_dir.display()))?;
        printer.data(format!("log:      {}", cluster.log_file.display()))?;
        printer.data(format!("socket:   {} (the service account: psql -p {port})", cluster.socket_dir().display()))?;
        if let Some(note) = note {
            printer.warn(note);
        }
    }
    Ok(if pid.is_some() { Status::Success } else { Status::Problem })
}

/// `kt db status` on an instance whose database is external: where it is,
/// whether it answers kt (with TLS or not). Exit 1 when it does not answer,
/// like a stopped local cluster.
fn external_status(instance: &kt::instance::Instance, args: DbStatusArgs, printer: &Printer) -> CommandResult {
    let endpoint = kt::storage::endpoint::Endpoint::for_instance(instance);
    let answer = kt::storage::endpoint::connect_instance(instance, "kt")
        .and_then(|mut db| kt::storage::endpoint::tls_in_use(&mut db));
    let (state, tls, problem) = match &answer {
        Ok(tls) => ("answering", tls.clone(), None),
        Err(e) => ("not answering", None, Some(e.to_string())),
    };
    if args.json {
        let value = serde_json::json!({
            "mode": "external",
            "state": state,
            "host": endpoint.host,
            "port": endpoint.port,
            "database": endpoint.dbname,
            "user": endpoint.user,
            "sslmode": endpoint.sslmode.name(),
            "tls": tls,
            "note": problem,
        });
        printer.data(value.to_string())?;
    } else {
        printer.data(format!("database: {}", endpoint.describe()))?;
        printer.data(format!("state:    {state}"))?;
        printer.data(format!("user:     {}", endpoint.user))?;
        printer.data(format!("tls:      {} (sslmode {})", tls.as_deref().unwrap_or("none"), endpoint.sslmode.name()))?;
        if let Some(problem) = problem {
            printer.warn(problem);
        }
    }
    Ok(if answer.is_ok() { Status::Success } else { Status::Problem })
}
