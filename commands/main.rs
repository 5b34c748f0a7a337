//! The `kt` binary: parses the command line, runs one command, and turns
//! its result into output and an exit code (DESIGN.md, "Exit codes"). Only
//! `main` decides exit codes; commands return their status or an error.

mod backup;
mod cli;
mod cert;
mod client;
mod db;
mod fingerprint;
mod ha;
mod ha_pair;
mod init;
mod jobmetrics;
mod mail;
mod org;
mod printer;
mod progress;
mod prompt;
mod restore;
mod schedule;
mod serve;
mod server;
mod verify;

use std::process::ExitCode;

use cli::Command;
use printer::Printer;

/// What a command reports when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// The check ran and found a problem: exit 1.
    Problem,
}

/// The result of a command: a status, a library error, or an I/O error on
/// stdout (such as a closed pipe).
pub enum Failure {
    Kt(kt::Error),
    Output(std::io::Error),
}

impl From<kt::Error> for Failure {
    fn from(e: kt::Error) -> Self {
        Failure::Kt(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}

pub type CommandResult = Result<Status, Failure>;

fn main() -> ExitCode {
    let cli = cli::parse();
    let printer = Printer::new(cli.global.quiet, cli.global.verbose, cli.global.no_progress);
    let result = match cli.command {
        Command::Init(args) => init::run(&cli.global, args, &printer),
        Command::Db(command) => db::run(&cli.global, command, &printer),
        Command::Fingerprint(args) => fingerprint::run(&cli.global, args, &printer),
        Command::Serve(args) => serve::run(&cli.global, args, &printer),
        Command::Server(command) => server::run(&cli.global, command, &printer),
        Command::Org(command) => org::run(&cli.global, command, &printer),
        Command::Client(args) => client::run(&cli.global, args, &printer),
        Command::Backup(args) => backup::run(&cli.global, args, &printer),
        Command::Verify(args) => verify::run(&cli.global, args, &printer),
        Command::Restore(args) => restore::run(&cli.global, args, &printer),
        Command::Cert(command) => cert::run(&cli.global, command, &printer),
        Command::Ha(command) => ha::run(&cli.global, command, &printer),
        Command::Schedule(command) => schedule::run(&cli.global, command, &printer),
        Command::Mail(command) => mail::run(&cli.global, command, &printer),
    };
    match result {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Problem) => ExitCode::from(1),
        // The reader went away (`kt ... | head`): not an error.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            report(&kt::Error::env("cannot write the output").because_err(&e));
            ExitCode::from(3)
        }
        Err(Failure::Kt(e)) => {
            report(&e);
            ExitCode::from(e.kind().exit_code() as u8)
        }
    }
}

/// `kt: error: <what>`, the cause chain, then `hint: <what to do>`.
/// Causes often quote outside text (a server's or an MTA's answer, a
/// file's content): control characters are escaped, so none of it can
/// rewrite the operator's terminal.
fn report(error: &kt::Error) {
    use kt::text::printable;
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "kt: error: {}", printable(error.message()));
    for cause in error.causes() {
        let _ = writeln!(err, "  cause: {}", printable(cause));
    }
    if let Some(hint) = error.hint() {
        let _ = writeln!(err, "hint: {}", printable(hint));
    }
}
