//! `kt ha enable | disable | init-passive | enable-sync | disable-sync |
//! status`: the HA pair, over `kt::ha`.

use std::time::Duration;

use kt::error::Context;
use kt::ha::{self, Peer};
use kt::instance::Layout;

use crate::cli::{GlobalArgs, HaCommand, HaInitPassiveArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

/// Run as root, the HA commands work as the service account once the
/// instance is loaded: the confdir, the PostgreSQL data directory and its
/// configuration are that account's (which may be hostile), and root
/// working by path there is open to symlink and rename races, or to reading
/// files the account names (as kt cert replace, src/cert/replace.rs).
fn become_service(instance: &kt::instance::Instance) -> kt::Result<()> {
    if let Some(service) = instance.service_account()? {
        kt::account::become_account(&service)?;
    }
    Ok(())
}

pub fn run(global: &GlobalArgs, command: HaCommand, printer: &Printer) -> CommandResult {
    let layout = Layout::new(global.confdir.as_deref())?;
    match command {
        HaCommand::Sync(_) => unreachable!("kt ha sync is commands/ha.rs"),
        HaCommand::Enable(args) => {
            let instance = layout.load()?;
            become_service(&instance)?;
            let peer = Peer::parse(&args.peer, instance.settings.db_port)?;
            let report = ha::enable::enable(&instance, &peer, printer)?;
            let list = |ips: &[std::net::IpAddr]| ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ");
            printer.info(format!(
                "kt: HA enabled: the passive {} may replicate from {} (TLS, SCRAM); the database listens on {}{}",
                report.peer,
                list(&report.peer_addresses),
                list(&report.listen_addresses),
                match (report.restarted, report.running) {
                    (true, _) => " (restarted)",
                    (false, true) => "",
                    (false, false) => " (stopped, as it was)",
                }
            ));
            printer.info(format!(
                "kt: next: kt ha sync the confdir to the passive (it carries {}), then kt ha init-passive there",
                report.password_file.display()
            ));
            Ok(Status::Success)
        }
        HaCommand::Disable(_) => {
            let instance = layout.load()?;
            become_service(&instance)?;
            let report = ha::enable::disable(&instance, printer)?;
            printer.info(format!(
                "kt: HA disabled: role, password file and settings removed{}",
                if report.restarted { "; the database was restarted" } else { "" }
            ));
            Ok(Status::Success)
        }
        HaCommand::InitPassive(args) => init_passive(layout, args, printer),
        HaCommand::EnableSync(args) => {
            let instance = layout.load()?;
            become_service(&instance)?;
            ha::syncrep::enable(&instance, Duration::from_secs(args.wait), printer)?;
            printer.info("kt: synchronous replication is on: the passive is the synchronous standby");
            // The documented step after `kt ha init-passive --force`
            // following a restore: the restore's marker goes here.
            report_reinit(ha::reinit::clear_if_caught_up(&instance)?, printer);
            Ok(Status::Success)
        }
        HaCommand::DisableSync(_) => {
            let instance = layout.load()?;
            become_service(&instance)?;
            let was_on = ha::syncrep::disable(&instance)?;
            printer.info(if was_on {
                "kt: synchronous replication is off: writes no longer wait for the passive"
            } else {
                "kt: synchronous replication was already off"
            });
            Ok(Status::Success)
        }
        HaCommand::Status(args) => {
            let instance = layout.load()?;
            // The drift is read as the invoking user (its remote shell and
            // keys, as `kt ha sync`); it only reads here.
            let drift = match &args.peer {
                Some(spec) => {
                    let peer = ha::drift::PeerConfdir::parse(spec, &instance.layout.confdir)?;
                    let reach = ha::drift::Reach { rsh: args.rsh.clone(), remote_kt: args.remote_kt.clone() };
                    Some(ha::drift::check(&instance, &peer, &reach))
                }
                None => None,
            };
            become_service(&instance)?;
            if args.clear_reinit {
                report_reinit(ha::reinit::clear_if_caught_up(&instance)?, printer);
            }
            let mut status = ha::status::read(&instance)?;
            if let Some(drift) = &drift {
                ha::drift::apply(&mut status, drift);
            }
            let drift = drift.and_then(|d| d.ok());
            if args.json {
                let out = ha::drift::StatusWithDrift { status: &status, drift: drift.as_ref() };
                printer.data(serde_json::to_string(&out).map_err(|e| kt::Error::problem("cannot encode the status").because(e))?)?;
            } else {
                let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                printer.data(format!("role:          {}", status.role))?;
                printer.data(format!("peer:          {}", opt(&status.peer)))?;
                printer.data(format!("replication:   {}", status.replication))?;
                let mode = match (status.synchronous, &status.sync_state) {
                    (Some(true), _) => "sync (configured)".to_string(),
                    (Some(false), _) => "async".to_string(),
                    (None, _) => "-".to_string(),
                };
                printer.data(format!("synchronous:   {mode}"))?;
                printer.data(format!("sync state:    {}", opt(&status.sync_state)))?;
                printer.data(format!("lag:           {} bytes, {} s",
                    status.lag_bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
                    status.lag_seconds.map(|s| format!("{s:.3}")).unwrap_or_else(|| "-".into())))?;
                printer.data(format!("wal received:  {}", opt(&status.last_wal_received)))?;
                printer.data(format!("wal replayed:  {}", opt(&status.last_wal_replayed)))?;
                if let Some(drift) = &drift {
                    printer.data(format!("confdir drift: {}", if drift.is_empty() { "none".to_string() } else { format!("{} path(s)", drift.changes.len()) }))?;
                    for line in &drift.changes {
                        printer.data(format!("  {line}"))?;
                    }
                }
                printer.data(format!("health:        {}", if status.healthy { "healthy" } else { "degraded" }))?;
                for p in &status.problems {
                    printer.warn(p);
                }
            }
            Ok(if status.healthy { Status::Success } else { Status::Problem })
        }
    }
}

/// What clearing the restore's marker found (the status that may follow
/// repeats a marker left in place as a problem).
fn report_reinit(pending: ha::reinit::Pending, printer: &Printer) {
    use ha::reinit::Pending;
    match pending {
        Pending::CaughtUp(marker) => {
            printer.info(format!("kt: the passive has caught up with the restore of {}: marker removed", marker.restored_at))
        }
        Pending::Reinit(_) => printer.warn("the restore's marker stays: no standby has caught up with the restore yet"),
        Pending::Unreadable(why) => printer.warn(format!("the restore's marker stays: {why}")),
        Pending::Nothing => {}
    }
}

fn init_passive(layout: Layout, args: HaInitPassiveArgs, printer: &Printer) -> CommandResult {
    // The active's database port defaults to DB_PORT of the synced configuration.
    let synced = layout.clone().load()?;
    if let Some(service) = synced.service_account()? {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&layout.home).env_context(|| format!("cannot read {}", layout.home.display()))?.uid();
        if owner != service.uid {
            return Err(kt::Error::usage(format!("the instance home {} does not belong to the service account {}", layout.home.display(), service.name))
                .because("the passive's server and database keep their pid files and logs there, as the service account")
                .with_hint(format!("chown {}: {} (as kt init makes it on the active)", service.name, layout.home.display()))
                .into());
        }
    }
    // The active must answer before anything is made here (bounded wait).
    let active = Peer::parse(&args.active, synced.settings.db_port)?;
    ha::passive::wait_for_active(&active, Duration::from_secs(args.wait), printer)?;
    // The database and log directories may have to be made where only
    // root can (their parent is root's): made here, empty, for the service
    // account, before kt drops to that account.
    let data_dir = match &args.pg_rootdir {
        Some(dir) => kt::fsutil::absolute(dir)?,
        None => synced.pg_rootdir()?,
    };
    let made = make_service_dirs(&synced, &[&data_dir, &layout.log_dir()])?;
    become_service(&synced)?;
    let result = init_passive_as_service(layout, &synced, args, printer);
    if result.is_err() {
        for dir in made.iter().rev() {
            // Only what is still empty; as the service account, a
            // directory in a parent of root's may stay (it is empty).
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// Makes each missing `dir` whose parent is there as an empty 0700
/// directory of the service account; returns those it made. mkdir never
/// follows a link and lchown neither, so a race in the parent gains nothing.
fn make_service_dirs(instance: &kt::instance::Instance, dirs: &[&std::path::Path]) -> kt::Result<Vec<std::path::PathBuf>> {
    let Some(service) = instance.service_account()? else { return Ok(Vec::new()) };
    let mut made = Vec::new();
    for dir in dirs {
        if dir.symlink_metadata().is_ok() || !kt::fsutil::parent_dir(dir).is_dir() {
            continue;
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(dir).env_context(|| format!("cannot create {}", dir.display()))?;
        service.chown(dir)?;
        made.push(dir.to_path_buf());
    }
    Ok(made)
}

fn init_passive_as_service(layout: Layout, synced: &kt::instance::Instance, args: HaInitPassiveArgs, printer: &Printer) -> CommandResult {
    let active = Peer::parse(&args.active, synced.settings.db_port)?;
    let hostname = match args.hostname {
        Some(name) => name,
        None => kt::hostname::fqdn()?,
    };
    let options = ha::passive::PassiveOptions {
        active,
        hostname,
        force: args.force,
        pg_rootdir: args.pg_rootdir,
        db_port: args.database_port,
        listen: args.listen,
        wait: Duration::from_secs(args.wait),
        cert_days: args.cert_days,
        extra_sans: args.extra_sans,
        exe: std::env::current_exe().env_context(|| "cannot find the kt executable")?,
    };
    let report = ha::passive::init_passive(&layout, &options, printer)?;
    if let Some(aside) = &report.set_aside {
        printer.warn(format!("the old database is kept in {}: remove it when you no longer need it", aside.display()));
    }
    printer.info(format!(
        "kt: this host is the passive of {}: its database in {} streams from the active, its server answers reads at {}{}",
        options.active,
        report.data_dir.display(),
        report.server_url,
        if report.new_certificate { " (with a new self-signed certificate)" } else { "" }
    ));
    printer.info("kt: next, on the active: kt ha enable-sync");
    Ok(Status::Success)
}
