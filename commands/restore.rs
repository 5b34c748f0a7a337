//! `kt restore`

use std::io::{BufRead, IsTerminal, Write};

use kt::backup::trust::Identity;
use kt::restore::{self, RestoreOptions};

use crate::cli::{GlobalArgs, RestoreArgs};
use crate::jobmetrics::Tally;
use crate::printer::Printer;
use crate::progress::TerminalProgress;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, mut args: RestoreArgs, printer: &Printer) -> CommandResult {
    let metrics_file = args.metrics_file.take().filter(|_| !args.dry_run);
    let started = std::time::Instant::now();
    // What was read: the backup's files.
    let mut tally = Tally {
        bytes: args.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum(),
        ..Tally::default()
    };
    let result = restore_once(global, args, printer, &mut tally);
    crate::jobmetrics::write(printer, metrics_file.as_deref(), "restore", started, &result, tally);
    result
}

fn restore_once(global: &GlobalArgs, args: RestoreArgs, printer: &Printer, tally: &mut Tally) -> CommandResult {
    let zips = args.files.iter().any(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")));
    let zip_password = match (&args.zip_password_file, zips) {
        (Some(file), _) => Some(kt::storage::pgpass::Password::new(crate::org::read_secret_file(file)?)),
        (None, true) if std::io::stdin().is_terminal() => Some(crate::prompt::password("password of the zip backup: ")?),
        _ => None,
    };
    let options = RestoreOptions {
        files: args.files.clone(),
        zip_password,
        secret_key: args.secret_key,
        passphrase_file: args.passphrase_file,
        confdir: global.confdir.clone(),
        force_foreign: args.force_foreign,
        expect_fingerprint: args.expect_fingerprint.clone(),
        allow_unsigned: args.allow_unsigned,
        service_user: args.service_user,
    };
    // Decide up front whether we may ask: a refusal to proceed must come
    // before any work, not after the backup was decrypted.
    let interactive = std::io::stdin().is_terminal();
    if !args.dry_run && !args.yes && !interactive {
        return Err(kt::Error::usage("no terminal to confirm the restore on")
            .with_hint("check the plan with --dry-run, then run again with --yes")
            .into());
    }
    let progress = TerminalProgress::new(printer);
    let plan = restore::prepare(&options, &progress)?;
    progress.done();
    tally.rows = plan.row_counts.clone();
    let names: Vec<String> = options.files.iter().map(|f| f.display().to_string()).collect();
    printer.data(format!("backup:       {}", names.join(" + ")))?;
    printer.data(format!("host:         {}", plan.hostname))?;
    printer.data(format!("server key:   {}", plan.fingerprint))?;
    printer.data(format!("made:         {}", plan.created.as_deref().unwrap_or("unknown (no kt manifest)")))?;
    let rows: Vec<String> = plan.row_counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    printer.data(format!("rows:         {}", rows.join(", ")))?;
    printer.data(format!(
        "confdir:      {}{}",
        plan.target.confdir.display(),
        if plan.replaces_confdir { " (the current one is moved to a safety copy)" } else { " (new)" }
    ))?;
    printer.data(
        "database:     keytrustee is replaced by a copy loaded from this backup into a scratch database \
         (the current one is set aside until the restore succeeded)",
    )?;
    printer.data(format!(
        "signature:    {}",
        match (plan.signed, &plan.identity) {
            (true, Identity::Instance) => "signed by this instance's server key".to_string(),
            (true, Identity::Expected) => "signed by the expected server key".to_string(),
            (true, _) => format!("signed by the server key {} in the backup itself (NOT a key this host knows)", plan.fingerprint),
            (false, _) => "NOT SIGNED: nothing proves who made this backup (accepted with --allow-unsigned)".to_string(),
        }
    ))?;
    if let Some(why) = &plan.foreign {
        printer.warn(format!("foreign backup accepted with --force-foreign: {why}"));
    }
    if let Some(why) = &plan.address_warning {
        printer.warn(why);
    }
    if !plan.key_known() {
        printer.warn(format!(
            "the backup's server key {} could not be checked against a key this host trusts: \
             compare it with your records (or the old server's /?a=fingerprint) before you go on",
            plan.fingerprint
        ));
    }
    if args.dry_run {
        printer.info("kt: --dry-run: nothing changed");
        return Ok(Status::Success);
    }
    // Only a person can vouch for a key this host has never seen: without
    // one at the prompt, the operator names the key up front.
    if args.yes && !plan.key_known() {
        return Err(kt::Error::usage("--yes needs a backup of a server key this host knows")
            .with_hint(format!(
                "check the key and give --expect-fingerprint {} (or confirm on a terminal, without --yes)",
                plan.fingerprint
            ))
            .into());
    }
    if !args.yes {
        eprint!("Restore this backup? Type 'yes' to go on: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            return Err(kt::Error::usage("restore not confirmed: nothing changed").into());
        }
    }
    let outcome = restore::execute(plan, &options, &progress)?;
    progress.done();
    printer.info(format!("kt: restored {}", outcome.confdir.display()));
    if let Some(dir) = &outcome.safety_dir {
        printer.info(format!("kt: the previous state is kept in {} (remove it when satisfied)", dir.display()));
    }
    if outcome.restarted_server {
        printer.info("kt: the server is running again");
    }
    // The same checks as `kt verify`, as a report: a stopped server is the
    // operator's call here, not a failed restore.
    let layout = kt::instance::Layout::new(Some(&outcome.confdir))?;
    let options = kt::verify::local::LocalOptions { warn_days: 30, max_age: None, backup_dir: None };
    if let Ok(report) = kt::verify::local::verify(layout, &options) {
        for check in &report.checks {
            printer.info(format!("verify: {}  {}: {}", check.status.mark(), check.name, check.detail));
        }
    }
    Ok(Status::Success)
}
