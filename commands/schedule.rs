//! `kt schedule add|list|remove|next|run|systemd`

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Local};
use kt::account::Account;
use kt::backup::recipients;
use kt::instance::Layout;
use kt::schedule::{cronfile, runner, systemd, CronFile, Entry, Schedule};
use kt::error::Kind;
use kt::Error;

use crate::cli::{BackupArgs, Cli, Command, GlobalArgs, ScheduleCommand};
use crate::printer::Printer;
use crate::{CommandResult, Status};

/// How run times are shown: local time with the day name and the offset.
const SHOWN: &str = "%a %Y-%m-%d %H:%M:%S %:z";

pub fn run(global: &GlobalArgs, command: ScheduleCommand, printer: &Printer) -> CommandResult {
    match command {
        ScheduleCommand::Add { expr, name, file, command } => add(global, &expr, name, &file.cron_file, command, printer),
        ScheduleCommand::List { file, json } => list(&file.cron_file, json, printer),
        ScheduleCommand::Remove { name, file } => {
            CronFile::edit(&file.cron_file, |cron| cron.remove(&name))?;
            printer.info(format!("kt: removed the entry {name} from {}", file.cron_file.display()));
            Ok(Status::Success)
        }
        ScheduleCommand::Next { expr, count, from, json } => next(&expr, count, from.as_deref(), json, printer),
        ScheduleCommand::Run { file, once } => run_entries(&file.cron_file, once.as_deref(), printer),
        ScheduleCommand::Systemd { name, file, install, unit_dir } => {
            let cron = CronFile::load(&file.cron_file)?;
            let entry = cron.get(&name).ok_or_else(|| {
                Error::usage(format!("{} has no entry named {name}", file.cron_file.display())).with_hint("kt schedule list shows the names")
            })?;
            let (service, timer) = systemd::units(entry);
            let stem = systemd::unit_stem(entry);
            if install {
                if !unit_dir.is_dir() {
                    return Err(Error::env(format!("{} is not a directory", unit_dir.display())).into());
                }
                for (suffix, text) in [("service", &service), ("timer", &timer)] {
                    let path = unit_dir.join(format!("{stem}.{suffix}"));
                    kt::fsutil::write_atomic(&path, text.as_bytes(), 0o644, None)?;
                    printer.info(format!("kt: wrote {}", path.display()));
                }
                printer.info(format!("kt: now: systemctl daemon-reload && systemctl enable --now {stem}.timer (and kt schedule remove {name}, so cron does not run it too)"));
            } else {
                printer.data(format!("# {stem}.service\n{service}\n# {stem}.timer\n{timer}"))?;
            }
            Ok(Status::Success)
        }
    }
}

fn add(
    global: &GlobalArgs,
    expr: &str,
    name: Option<String>,
    cron_file: &std::path::Path,
    command: Vec<String>,
    printer: &Printer,
) -> CommandResult {
    let schedule = Schedule::parse(expr)?;
    let backup = parse_kt(&command)?;
    let (parsed_global, args) = backup;
    for (what, path) in args.output.iter().map(|p| ("--output", p)).chain(args.recipient_files.iter().map(|p| ("--gpg-recipient-file", p))) {
        if !path.is_absolute() {
            return Err(Error::usage(format!("{what} {} is relative", path.display()))
                .with_hint("cron runs the entry in the service account's home: give an absolute path")
                .into());
        }
    }
    if args.cleartext == (!args.recipients.is_empty() || !args.recipient_files.is_empty()) {
        return Err(Error::usage("a scheduled backup needs --gpg-recipient (or --gpg-recipient-file), or --cleartext, not both").into());
    }
    if parsed_global.confdir.as_ref().is_some_and(|c| c.is_relative()) {
        return Err(Error::usage("the confdir of the scheduled command is relative")
            .with_hint("give -c an absolute path (cron runs the entry in the service account's home)")
            .into());
    }
    let confdir = parsed_global.confdir.clone().or_else(|| global.confdir.clone());
    let layout = Layout::new(confdir.as_deref())?;
    let instance = layout.load()?;
    let confdir = kt::fsutil::absolute(&instance.layout.confdir)?;
    // Cron runs the entry as the service account (root: SERVICE_USER), with
    // that account's HOME and so its GnuPG keyring.
    let account = match instance.service_account()? {
        Some(a) => a,
        None => Account::current()?,
    };
    for recipient in &args.recipients {
        recipients::from_keyring_of(recipient, Some(&account)).map_err(|e| {
            // The kind stays (gpg missing is not bad input); the account is added.
            let hint = match e.kind() {
                Kind::Usage => Some(format!("import the public key as that account: sudo -u {} -H gpg --import KEY.asc", account.name)),
                _ => e.hint().map(str::to_string),
            };
            let message = format!("{} (in the keyring of {}, who runs the scheduled backup)", e.message(), account.name);
            let kind = e.kind();
            let e = e.restate(kind, message);
            match hint {
                Some(h) => e.with_hint(h),
                None => e,
            }
        })?;
    }
    for file in &args.recipient_files {
        recipients::from_file(file)?;
    }
    let exe = std::env::current_exe().map_err(|e| Error::env("cannot find kt's own path").because_err(&e))?;
    // Linux names a replaced or removed executable "PATH (deleted)": the
    // line would run a file that is not there.
    if exe.to_string_lossy().ends_with(" (deleted)") {
        return Err(Error::env(format!("kt's own file {} has been replaced or removed since this kt started", exe.display()))
            .with_hint("run the kt now installed")
            .into());
    }
    // Always explicit: cron has no KT_CONFDIR, and the instance checked
    // here is the one the entry must back up.
    let mut argv = vec![exe.to_string_lossy().into_owned()];
    if parsed_global.confdir.is_none() {
        argv.extend(["-c".to_string(), confdir.to_string_lossy().into_owned()]);
    }
    if !parsed_global.quiet {
        argv.push("--quiet".into());
    }
    argv.extend(command.iter().cloned());
    // The exact line cron will run, parsed once more as kt parses it.
    parse_kt(&argv[1..])?;
    for arg in &argv {
        cronfile::check_arg(arg)?;
    }
    if let Some(n) = &name {
        cronfile::check_name(n)?;
    }
    let next: Vec<String> = schedule.next_runs(&Local::now(), 1).iter().map(|t| t.format(SHOWN).to_string()).collect();
    let user = account.name.clone();
    let schedule_is_reboot = schedule.is_reboot();
    let name = CronFile::edit(cron_file, |cron| {
        let name = name.unwrap_or_else(|| cron.free_name("backup"));
        cron.add(Entry { name: name.clone(), schedule, user, argv })?;
        Ok(name)
    })?;
    let when = if schedule_is_reboot { "at boot".to_string() } else { next.first().cloned().expect("Schedule::parse refuses what never runs") };
    printer.info(format!("kt: added {name} to {} (runs as {}; next: {when})", cron_file.display(), account.name));
    Ok(Status::Success)
}

/// Parses `args` (without argv[0]) as kt would; only `kt backup` (not
/// `backup list`) can be scheduled.
/// The global args come back with `confdir` only when the command line
/// itself gives it (not KT_CONFDIR, which cron does not have).
fn parse_kt(args: &[String]) -> Result<(GlobalArgs, BackupArgs), Error> {
    use clap::FromArgMatches;
    let argv = std::iter::once("kt".to_string()).chain(args.iter().cloned());
    let cli = crate::cli::command().try_get_matches_from(argv).and_then(|m| {
        let mut cli = Cli::from_arg_matches(&m)?;
        if m.value_source("confdir") != Some(clap::parser::ValueSource::CommandLine) {
            cli.global.confdir = None;
        }
        Ok(cli)
    });
    let cli = cli.map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
        Error::usage(format!("the kt command line after -- is not valid: {first}")).with_hint("it is parsed exactly as kt parses it: e.g. -- backup --gpg-recipient='John Doe' --output=/var/backups/kt")
    })?;
    match cli.command {
        Command::Backup(args) if args.command.is_none() => Ok((cli.global, args)),
        _ => Err(Error::usage("kt schedule add schedules kt backup").with_hint("-- backup --gpg-recipient=NAME ...")),
    }
}

fn list(path: &std::path::Path, json: bool, printer: &Printer) -> CommandResult {
    let cron = CronFile::load(path)?;
    let now = Local::now();
    let entries: Vec<&Entry> = cron.entries().collect();
    if json {
        let items: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "cron": e.schedule.source, "user": e.user, "command": e.argv,
                    "next": e.schedule.next_runs(&now, 5).iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
                    "on_calendar": e.schedule.on_calendar(),
                })
            })
            .collect();
        printer.data(serde_json::to_string_pretty(&items).expect("JSON"))?;
        return Ok(Status::Success);
    }
    for e in &entries {
        printer.data(format!("{}  {}  (as {})", e.name, e.schedule.source, e.user))?;
        printer.data(format!("  {}", e.command()))?;
        if e.schedule.is_reboot() {
            printer.data("  next: at boot (or when kt schedule run starts)")?;
        }
        for t in e.schedule.next_runs(&now, 5) {
            printer.data(format!("  next: {}", t.format(SHOWN)))?;
        }
    }
    if entries.is_empty() {
        printer.info(format!("kt: no kt entries in {}", path.display()));
    }
    Ok(Status::Success)
}

fn next(expr: &str, count: usize, from: Option<&str>, json: bool, printer: &Printer) -> CommandResult {
    let schedule = Schedule::parse(expr)?;
    let from: DateTime<Local> = match from {
        None => Local::now(),
        Some(text) => chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .ok()
            .and_then(|t| kt::schedule::expr::instants_of(t).first().copied())
            .ok_or_else(|| Error::usage(format!("bad --from '{text}'")).with_hint("local time as 'YYYY-MM-DD HH:MM:SS'"))?,
    };
    let runs = schedule.next_runs(&from, count);
    if json {
        let value = serde_json::json!({
            "cron": schedule.source,
            "on_calendar": schedule.on_calendar(),
            "next": runs.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
            "next_unix": runs.iter().map(|t| t.timestamp()).collect::<Vec<_>>(),
        });
        printer.data(serde_json::to_string_pretty(&value).expect("JSON"))?;
        return Ok(Status::Success);
    }
    for t in runs {
        printer.data(t.format(SHOWN).to_string())?;
    }
    Ok(Status::Success)
}

/// Set by SIGTERM and SIGINT once [`stop_on_signals`] ran.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT set [`STOP`] instead of ending kt, so that a
/// running backup is waited for (it runs in a session of its own, so the
/// signal does not reach it). Process-wide: the CLI's business, not the
/// library's.
fn stop_on_signals() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
    &STOP
}

fn run_entries(path: &std::path::Path, once: Option<&str>, printer: &Printer) -> CommandResult {
    let cron = CronFile::load(path)?;
    if let Some(name) = once {
        let entry = cron.get(name).ok_or_else(|| Error::usage(format!("{} has no entry named {name}", path.display())))?;
        stop_on_signals();
        let status = runner::run_once(entry)?;
        if status.success() {
            return Ok(Status::Success);
        }
        // The child's exit code passed through (kt's 1, 2, 3); anything
        // else, a signal included, is the environment (3).
        let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
            (_, Some(signal)) => format!("killed by signal {signal}"),
            (code, None) => format!("exit {}", code.unwrap_or(-1)),
        };
        return Err(Error::new(Kind::from_exit_code(status.code()), format!("the entry {name} failed ({how})")).into());
    }
    let entries: Vec<Entry> = cron.entries().cloned().collect();
    if entries.is_empty() {
        return Err(Error::usage(format!("no kt entries in {}", path.display())).with_hint("add one with kt schedule add").into());
    }
    let _lock = runner::lock(path)?;
    let stop = stop_on_signals();
    runner::run(&entries, stop, &mut |event| match event {
        runner::Event::Next { entry, at } => printer.info(format!("kt: schedule: {} next at {}", entry.name, at.format(SHOWN))),
        runner::Event::Started { entry } => printer.info(format!("kt: schedule: running {}", entry.name)),
        runner::Event::Finished { entry, status, took } if status.success() => {
            printer.info(format!("kt: schedule: {} done in {:.1} s", entry.name, took.as_secs_f64()))
        }
        runner::Event::Finished { entry, status, took } => {
            printer.warn(format!("the scheduled {} failed ({status}) after {:.1} s", entry.name, took.as_secs_f64()))
        }
        runner::Event::Failed { entry, error, took } => {
            let causes = error.causes().join(": ");
            let because = if causes.is_empty() { String::new() } else { format!(": {causes}") };
            printer.warn(format!("the scheduled {} failed after {:.1} s: {}{because}", entry.name, took.as_secs_f64(), error.message()))
        }
        runner::Event::Stopping => printer.info("kt: schedule: stopped"),
    })?;
    Ok(Status::Success)
}
