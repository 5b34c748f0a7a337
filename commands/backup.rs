//! `kt backup` and `kt backup list`

use kt::backup::{self, list, BackupOptions};
use kt::instance::Layout;

use crate::cli::{BackupArgs, BackupCommand, GlobalArgs};
use crate::jobmetrics::Tally;
use crate::printer::Printer;
use crate::progress::TerminalProgress;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, mut args: BackupArgs, printer: &Printer) -> CommandResult {
    if let Some(BackupCommand::List { output, json }) = args.command.take() {
        return list_backups(global, output, json, printer);
    }
    let metrics_file = args.metrics_file.take();
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let result = backup_once(global, args, printer, &mut tally);
    crate::jobmetrics::write(printer, metrics_file.as_deref(), "backup", started, &result, tally);
    result
}

fn backup_once(global: &GlobalArgs, args: BackupArgs, printer: &Printer, tally: &mut Tally) -> CommandResult {
    let options = BackupOptions {
        output: args.output,
        recipients: args.recipients,
        recipient_files: args.recipient_files,
        cleartext: args.cleartext,
        roll: args.roll.map(|n| n as usize),
        lock_wait: args.lock_wait,
        db_port: args.database_port,
    };
    // Bad options and unusable recipients are refused before anything else
    // (exit 2): no backup is written; the refusal goes into the output
    // directory's status record, where `kt verify --max-age` finds why a
    // scheduled job stopped working (an expired or removed key).
    let loaded = backup::resolve_recipients(&options)
        .and_then(|recipients| Ok((recipients, Layout::new(global.confdir.as_deref())?.load()?)));
    let (recipients, instance) = match loaded {
        Ok(both) => both,
        Err(e) => {
            // The instance's output directory and host name when it loads;
            // else this machine's name (the backups' names use it too).
            let instance = Layout::new(global.confdir.as_deref()).and_then(|l| l.load()).ok();
            let output = options.output.clone().or_else(|| instance.as_ref().map(|i| i.layout.home.clone()));
            let host = instance.as_ref().and_then(|i| i.hostname().ok().map(str::to_string)).or_else(|| kt::hostname::fqdn().ok());
            if let (Some(output), Some(host)) = (output, host) {
                backup::record_refusal(&output, &host, &e);
            }
            return Err(e.into());
        }
    };
    let progress = TerminalProgress::new(printer);
    let report = backup::backup(&instance, &options, &recipients, &progress)?;
    progress.done();
    tally.bytes = report.size;
    tally.rows = report.row_counts.clone();
    for path in &report.stale_temps_removed {
        printer.info(format!("kt: removed {} left by an interrupted backup", path.display()));
    }
    printer.detail(format!("kt: the dump was {} bytes; the archive holds {} members:", report.dump_size, report.members.len()));
    for (member, size) in &report.members {
        if member.ends_with('/') || *size == 0 {
            printer.detail(format!("kt:   {member}"));
        } else {
            printer.detail(format!("kt:   {member} ({size} bytes)"));
        }
    }
    if report.encrypted {
        for r in &recipients {
            let subkey = r.subkey_fingerprint.as_deref().map(|s| format!(", encryption subkey {s}")).unwrap_or_default();
            printer.detail(format!("kt: recipient {}: key {}{subkey}", r.label, r.primary_fingerprint));
        }
        let to: Vec<String> = report.recipients.iter().map(|(label, id)| format!("{label} ({id})")).collect();
        printer.info(format!("kt: encrypted to {}", to.join(", ")));
    } else if !printer.quiet {
        // Asked for explicitly; with --quiet (a scheduled run) it stays
        // silent so that cron mails only failures. `kt backup list` says
        // CLEARTEXT.
        printer.warn("the backup is NOT encrypted (--cleartext): it holds the server's secret keys");
    }
    if let Some(why) = &report.status_error {
        printer.warn(format!("the backup is complete but its status record was not written: {why}"));
    }
    let rows: Vec<String> = report.row_counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    printer.info(format!("kt: backed up {} ({} bytes; rows: {})", report.path.display(), report.size, rows.join(", ")));
    if let Some(keep) = args.roll {
        printer.detail(format!("kt: --roll={keep}: keeping the {} newest backups of this host:", report.roll_kept.len()));
        for path in &report.roll_kept {
            printer.detail(format!("kt:   kept {}", path.display()));
        }
        if report.rolled.is_empty() {
            printer.detail("kt:   nothing older to remove");
        }
    }
    for path in &report.rolled {
        printer.info(format!("kt: removed old backup {}", path.display()));
    }
    printer.data(report.path.display().to_string())?;
    Ok(Status::Success)
}

fn list_backups(global: &GlobalArgs, output: Option<std::path::PathBuf>, json: bool, printer: &Printer) -> CommandResult {
    let dir = match output {
        Some(dir) => dir,
        None => Layout::new(global.confdir.as_deref())?.load()?.layout.home,
    };
    let backups = list::list(&dir)?;
    if json {
        // The array as before; the status records are JSON files of their
        // own (backup::status::file_name) for machines.
        let items: Vec<_> = backups
            .iter()
            .map(|b| {
                serde_json::json!({
                    "path": b.name.path, "host": b.name.host, "stamp": b.name.stamp,
                    "size": b.size, "age_seconds": b.age_seconds,
                    "encrypted": b.name.encrypted, "recipient_key_ids": b.key_ids,
                })
            })
            .collect();
        printer.data(serde_json::to_string_pretty(&items).expect("JSON"))?;
        return Ok(Status::Success);
    }
    // The records are a summary, one per host with backups here: one that
    // cannot be read (written by root, listed by the service account) does
    // not hide the list. On stderr, so that stdout stays one backup per
    // line, newest first (scripts take `kt backup list | head -1`).
    for host in backup::status::hosts(&dir) {
        let status = match backup::status::read(&dir, &host) {
            Ok(Some(status)) => status,
            Ok(None) => continue,
            Err(e) => {
                printer.warn(format!("{e}"));
                continue;
            }
        };
        match &status.last_success {
            Some(s) => printer.info(format!(
                "kt: {host}: last success: {}  {}  {} bytes  {:.1} s",
                s.time,
                s.file.display(),
                s.size,
                s.duration_seconds
            )),
            None => printer.info(format!("kt: {host}: last success: never")),
        }
        if let Some(f) = &status.last_failure {
            if status.failing().is_some() {
                printer.warn(format!("{host}: the most recent backup run FAILED at {}: {}", f.time, f.error));
            } else {
                printer.info(format!("kt: {host}: last failure: {}  {}", f.time, f.error));
            }
        }
    }
    for b in &backups {
        let what = if b.name.encrypted { format!("encrypted to {}", b.key_ids.join(",")) } else { "CLEARTEXT".to_string() };
        printer.data(format!(
            "{}  {:>12} bytes  {:>8} old  {}",
            b.name.path.display(),
            b.size,
            human_age(b.age_seconds),
            what
        ))?;
    }
    if backups.is_empty() {
        printer.info(format!("kt: no backups in {}", dir.display()));
    }
    Ok(Status::Success)
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
