//! `kt ha ...`: high availability. `kt ha sync` is rsync's command line
//! over kt's sync library (`kt::sync`): local, push (DEST remote) or pull
//! (SRC remote), and the hidden `--server` side a remote shell starts.

use std::time::Instant;

use kt::sync::{self, FileKind, Item, ListOptions, Location, ReceiveOptions, RemoteShell, SessionOptions};
use kt::Error;

use crate::cli::{GlobalArgs, HaCommand, HaSyncArgs};
use crate::printer::Printer;
use crate::progress::TerminalProgress;
use crate::{CommandResult, Status};

pub fn run(_global: &GlobalArgs, command: HaCommand, printer: &Printer) -> CommandResult {
    match command {
        HaCommand::Sync(args) => sync(args, printer),
        other => crate::ha_pair::run(_global, other, printer),
    }
}

fn sync(args: HaSyncArgs, printer: &Printer) -> CommandResult {
    let filter = sync::filter_from(&args.rules)?;
    let a = args.archive;
    let session = SessionOptions {
        list: ListOptions {
            recursive: a || args.recursive,
            links: a || args.links,
            devices: a || args.devices,
            checksum: args.checksum,
        },
        receive: ReceiveOptions {
            perms: a || args.perms,
            times: a || args.times,
            owner: a || args.owner,
            group: a || args.group,
            devices: a || args.devices,
            checksum: args.checksum,
            delete: args.delete,
            dry_run: args.dry_run,
            whole_file: if args.whole_file {
                Some(true)
            } else if args.no_whole_file {
                Some(false)
            } else {
                None
            },
            filter,
            ..ReceiveOptions::default()
        },
        compress: args.compress,
        report_items: args.itemize_changes || printer.verbose,
    };
    if args.server {
        return server(&args, &session);
    }
    if args.sender || args.receiver {
        return Err(Error::usage("--sender and --receiver are for --server, which kt starts itself").into());
    }
    if args.paths.len() < 2 {
        return Err(Error::usage("kt ha sync needs at least one SRC and a DEST")
            .with_hint("kt ha sync -a SRC... DEST (rsync's command line)")
            .into());
    }
    let (dest_arg, src_args) = args.paths.split_last().expect("two paths");
    let dest = sync::parse_location(dest_arg);
    let srcs: Vec<Location> = src_args.iter().map(|s| sync::parse_location(s)).collect();
    let shell = RemoteShell { rsh: args.rsh.clone(), remote_kt: args.remote_kt.clone() };

    // On a terminal, files and bytes so far, as the sync library reports
    // them (received here, or sent by a push); the lines of -i and -v,
    // printed as the changes happen, go above the bar.
    let progress = TerminalProgress::new(printer);
    let mut print_error: Option<std::io::Error> = None;
    let mut on_item = |i: &Item| {
        let text = if args.itemize_changes {
            Some(i.line())
        } else if printer.verbose {
            verbose_line(i)
        } else {
            None
        };
        if let (Some(text), None) = (text, &print_error) {
            if let Err(e) = progress.suspend(|| printer.data(text)) {
                print_error = Some(e);
            }
        }
    };
    let started = Instant::now();
    let remote_src = srcs.iter().any(|s| matches!(s, Location::Remote { .. }));
    if printer.verbose {
        match dest {
            Location::Local(_) if remote_src => printer.data("receiving incremental file list")?,
            Location::Remote { .. } if remote_src => {} // refused by the run
            _ => printer.data("sending incremental file list")?,
        }
    }
    let outcome = sync::run(&srcs, &dest, &session, &shell, &mut on_item, &progress);
    progress.done();
    let outcome = outcome?;
    show_remote_stderr(&outcome.remote_said);
    let mut errors = list_errors(&outcome.skipped, printer)?;
    errors.extend(outcome.errors.iter().cloned());
    if let Some(e) = print_error {
        return Err(e.into());
    }
    if printer.verbose {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let wire = outcome.sent + outcome.received;
        printer.data("")?;
        printer.data(format!(
            "sent {} bytes  received {} bytes  {} bytes/sec",
            commas(outcome.sent),
            commas(outcome.received),
            commas_f(wire as f64 / secs)
        ))?;
        let speedup = if wire == 0 { 0.0 } else { outcome.total_size as f64 / wire as f64 };
        printer.data(format!(
            "total size is {}  speedup is {}{}",
            commas(outcome.total_size),
            commas_f(speedup),
            if args.dry_run { " (DRY RUN)" } else { "" }
        ))?;
    }
    if errors.is_empty() {
        return Ok(Status::Success);
    }
    for e in &errors {
        printer.warn(e);
    }
    printer.warn("some files could not be transferred (see the warnings above)");
    Ok(Status::Problem)
}

/// The remote side of a session, on stdin and stdout. Nothing else may
/// write to stdout here: it is the protocol stream.
fn server(args: &HaSyncArgs, session: &SessionOptions) -> CommandResult {
    if args.sender == args.receiver {
        return Err(Error::usage("--server needs exactly one of --sender and --receiver").into());
    }
    // Warnings reach the client through our stderr, which it shows.
    for s in sync::serve(args.sender, &args.paths, session)? {
        eprintln!("kt: warning: {s}");
    }
    Ok(Status::Success)
}

/// What rsync's -v prints for a change: the name of every transferred
/// file, created or changed directory, link or device, and `deleting`
/// lines; not files whose attributes alone changed.
fn verbose_line(i: &Item) -> Option<String> {
    let line = i.line();
    let name = line.get(12..).unwrap_or("").to_string();
    if i.code == "*deleting" {
        return Some(format!("deleting {name}"));
    }
    if i.kind == FileKind::File && !i.code.starts_with('>') && !i.code.starts_with('<') {
        return None;
    }
    Some(name)
}

/// The list's notes: "skipping ..." is information rsync prints with -v;
/// anything else (unreadable, vanished) is a file not transferred.
fn list_errors(skipped: &[String], printer: &Printer) -> Result<Vec<String>, crate::Failure> {
    let mut errors = Vec::new();
    for s in skipped {
        if s.starts_with("skipping ") {
            if printer.verbose {
                printer.data(s)?;
            }
        } else {
            errors.push(s.clone());
        }
    }
    Ok(errors)
}

/// A successful remote side's warnings, passed on.
fn show_remote_stderr(said: &str) {
    if !said.is_empty() {
        eprintln!("{said}");
    }
}

/// 1234567 as rsync prints it: 1,234,567.
fn commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate or ratio with two decimals and grouped thousands: 10,766.00.
fn commas_f(x: f64) -> String {
    let cents = (x * 100.0).round() as u64;
    format!("{}.{:02}", commas(cents / 100), cents % 100)
}
