//! `kt restore`

use std::io::{BufRead, IsTerminal, Write};

use kt::restore::{self, RestoreOptions};

use crate::cli::{GlobalArgs, RestoreArgs};
use crate::printer::{Printer, TerminalProgress};
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, args: RestoreArgs, printer: &Printer) -> CommandResult {
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
        service_user: args.service_user,
        preload: !args.dry_run,
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
    printer.data(if plan.preloaded() {
        "database:     keytrustee is replaced by the copy loaded from this backup (the current one is set aside until the restore succeeded)"
    } else {
        "database:     keytrustee is re-created and loaded (the current one is set aside until the restore succeeded)"
    })?;
    if let Some(why) = &plan.foreign {
        printer.warn(format!("foreign backup accepted with --force-foreign: {why}"));
    }
    if args.dry_run {
        printer.info("kt: --dry-run: nothing changed");
        return Ok(Status::Success);
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
