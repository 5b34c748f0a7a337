//! `kt ha ...`: high availability. `kt ha sync` is rsync's command line
//! over kt's sync library (`kt::sync`): local, push (DEST remote) or pull
//! (SRC remote), and the hidden `--server` side a remote shell starts.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Instant;

use kt::sync::list::{self, FileKind, ListOptions};
use kt::sync::receive::{self, Item, ReceiveOptions};
use kt::sync::remote::{self, Location, Remote, Role, SessionOptions, Transport};
use kt::Error;

use crate::cli::{GlobalArgs, HaCommand, HaSyncArgs};
use crate::printer::Printer;
use crate::progress::TerminalProgress;
use kt::progress::Progress;
use crate::{CommandResult, Status};

pub fn run(_global: &GlobalArgs, command: HaCommand, printer: &Printer) -> CommandResult {
    match command {
        HaCommand::Sync(args) => sync(args, printer),
        other => crate::ha_pair::run(_global, other, printer),
    }
}

/// What a sync did, whichever side ran where.
struct Outcome {
    sent: u64,
    received: u64,
    total_size: u64,
    errors: Vec<String>,
}

fn sync(args: HaSyncArgs, printer: &Printer) -> CommandResult {
    let filter = remote::filter_from(&args.rules)?;
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
        // The remote receiver's items also drive the progress display.
        report_items: args.itemize_changes || printer.verbose || printer.progress_bars,
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
    let dest = remote::parse_location(dest_arg);
    let srcs: Vec<Location> = src_args.iter().map(|s| remote::parse_location(s)).collect();

    // The lines of -i and -v, printed as the changes happen; on a terminal,
    // files and bytes so far (per file: the sync library reports changes,
    // not bytes, so the bytes are the files' sizes locally and the
    // session's bytes on the wire when a side is remote).
    let push = matches!(dest, Location::Remote { .. });
    let progress = TerminalProgress::new(printer);
    let wire: std::cell::RefCell<Option<remote::Counters>> = Default::default();
    let mut files = 0u64;
    let mut file_bytes = 0u64;
    let mut print_error: Option<std::io::Error> = None;
    let mut on_item = |i: &Item| {
        if printer.progress_bars && i.kind == FileKind::File && i.code.get(..2).is_some_and(|c| c == ">f" || c == "<f") {
            files += 1;
            progress.count("files", files);
            match (&*wire.borrow(), &dest) {
                (Some(counters), _) => progress.bytes("syncing (bytes on the wire)", counters.read() + counters.written(), None),
                (None, Location::Local(root)) => {
                    let path = root.join(std::ffi::OsStr::from_bytes(&i.path));
                    file_bytes += std::fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0);
                    progress.bytes("syncing", file_bytes, None);
                }
                (None, Location::Remote { .. }) => {}
            }
        }
        let text = if args.itemize_changes {
            let mut line = i.line();
            if push && line.starts_with('>') {
                line.replace_range(..1, "<");
            }
            Some(line)
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
    let header = |what: &str| if printer.verbose { printer.data(format!("{what} incremental file list")) } else { Ok(()) };
    let outcome = match (&dest, srcs.iter().all(|s| matches!(s, Location::Local(_)))) {
        (Location::Local(dest), true) => {
            header("sending")?;
            let srcs: Vec<PathBuf> = srcs.iter().map(local_path).collect();
            let report = kt::sync::sync_local(&srcs, dest, &session.list, &session.receive, &mut on_item)?;
            progress.done();
            let mut errors = list_errors(&report.skipped, printer)?;
            errors.extend(report.receive.errors);
            Outcome {
                sent: report.send.bytes_written,
                received: report.send.bytes_read,
                total_size: report.receive.total_size,
                errors,
            }
        }
        (Location::Remote { host, path }, true) => {
            header("sending")?;
            let srcs: Vec<PathBuf> = srcs.iter().map(local_path).collect();
            let list = list::build(&srcs, &session.list, &session.receive.filter)?;
            let mut errors = list_errors(&list.skipped, printer)?;
            let server_args = remote::server_args(Role::Receiver, &session, std::slice::from_ref(path));
            let (remote, stdout, stdin) = Remote::start(&args.rsh, host, &args.remote_kt, &server_args)?;
            let mut t = Transport::new(stdout, stdin, args.compress);
            wire.replace(Some(t.counters.clone()));
            let result = remote::push(&list, &mut t, &mut on_item);
            progress.done();
            let counters = t.counters.clone();
            drop(t);
            let (report, said) = remote.finish(result)?;
            show_remote_stderr(&said);
            errors.extend(report.errors);
            Outcome {
                sent: counters.written(),
                received: counters.read(),
                total_size: list::total_size(&list.entries),
                errors,
            }
        }
        (Location::Local(dest), false) => {
            let (host, paths) = remote_sources(&srcs)?;
            header("receiving")?;
            let server_args = remote::server_args(Role::Sender, &session, &paths);
            let (remote, stdout, stdin) = Remote::start(&args.rsh, &host, &args.remote_kt, &server_args)?;
            let mut t = Transport::new(stdout, stdin, args.compress);
            wire.replace(Some(t.counters.clone()));
            let result = receive::receive(dest, &session.receive, &mut t.input, &mut t.output, &mut on_item);
            progress.done();
            let counters = t.counters.clone();
            drop(t);
            let (stats, said) = remote.finish(result)?;
            show_remote_stderr(&said);
            Outcome { sent: counters.written(), received: counters.read(), total_size: stats.total_size, errors: stats.errors }
        }
        (Location::Remote { .. }, false) => {
            return Err(Error::usage("the sources and the destination cannot both be remote").into());
        }
    };
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
    if outcome.errors.is_empty() {
        return Ok(Status::Success);
    }
    for e in &outcome.errors {
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
    let mut t = Transport::stdio(args.compress)?;
    if args.sender {
        let srcs: Vec<PathBuf> = args.paths.iter().map(PathBuf::from).collect();
        let list = match list::build(&srcs, &session.list, &session.receive.filter) {
            Ok(list) => list,
            Err(e) => {
                // Tell the client why, in the protocol, before exiting.
                let mut w = kt::sync::wire::Writer::new(&mut t.output);
                let _ = w.send(&kt::sync::wire::Msg::Error { message: e.to_string() });
                let _ = w.flush();
                return Err(e.into());
            }
        };
        kt::sync::send::send(&list, &mut t.input, &mut t.output)?;
        // Warnings reach the client through our stderr, which it shows.
        for s in list.skipped.iter().filter(|s| !s.starts_with("skipping ")) {
            eprintln!("kt: warning: {s}");
        }
    } else {
        let [dest] = args.paths.as_slice() else {
            return Err(Error::usage("--server --receiver takes one destination").into());
        };
        remote::serve_receiver(&PathBuf::from(dest), &session.receive, args.itemize_changes, &mut t)?;
    }
    Ok(Status::Success)
}

fn local_path(l: &Location) -> PathBuf {
    match l {
        Location::Local(p) => p.clone(),
        Location::Remote { .. } => unreachable!("checked to be local"),
    }
}

/// Remote sources must all be on one host, as rsync's `host:a host:b`.
fn remote_sources(srcs: &[Location]) -> Result<(OsString, Vec<OsString>), Error> {
    let mut host: Option<&OsString> = None;
    let mut paths = Vec::new();
    for s in srcs {
        match s {
            Location::Remote { host: h, path } if host.is_none_or(|x| x == h) => {
                host = Some(h);
                paths.push(path.clone());
            }
            Location::Remote { .. } => return Err(Error::usage("remote sources must all be on the same host")),
            Location::Local(p) => {
                return Err(Error::usage(format!("{} is local while other sources are remote", p.display())))
            }
        }
    }
    Ok((host.expect("one source at least").clone(), paths))
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
