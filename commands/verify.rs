//! `kt verify`, `kt verify --server`, `kt verify backup`

use kt::client::https::Trust;
use kt::instance::Layout;
use kt::verify::{self, backup::BackupCheckOptions, local::LocalOptions, remote::RemoteOptions, Report, Status as CheckStatus};

use crate::cli::{GlobalArgs, VerifyArgs, VerifyCommand};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, args: VerifyArgs, printer: &Printer) -> CommandResult {
    let report = match args.command {
        Some(VerifyCommand::Backup { file, decrypt, secret_key, passphrase_file, restore_test, expect_fingerprint, allow_unsigned }) => {
            // The instance's key is what the backup is compared with, when
            // there is an instance here; --restore-test needs one.
            let layout = Layout::new(global.confdir.as_deref())?;
            let instance = if restore_test { Some(layout.load()?) } else { layout.load().ok() };
            let options = BackupCheckOptions { decrypt, secret_key, passphrase_file, expect_fingerprint, allow_unsigned, restore_test };
            verify::backup::verify(&file, &options, instance.as_ref())?
        }
        None if !args.servers.is_empty() => {
            let options = RemoteOptions {
                servers: args.servers,
                trust: match args.ca {
                    Some(ca) => Trust::Ca(ca),
                    None if args.insecure => Trust::Insecure,
                    None => {
                        return Err(kt::Error::usage("give --ca FILE to verify the server certificates, or --insecure").into())
                    }
                },
                expect_fingerprint: args.expect_fingerprint,
                warn_days: args.warn_days,
            };
            let (report, answers) = verify::remote::verify(&options)?;
            if !args.json {
                // The fingerprints exactly as the servers gave them.
                for (_, fingerprint) in &answers {
                    printer.data(fingerprint)?;
                }
            }
            report
        }
        None => {
            let options = LocalOptions { warn_days: args.warn_days, max_age: args.max_age, backup_dir: args.backup_dir };
            verify::local::verify(Layout::new(global.confdir.as_deref())?, &options)?
        }
    };
    print(&report, args.json, printer)?;
    Ok(if report.sound() { Status::Success } else { Status::Problem })
}

fn print(report: &Report, json: bool, printer: &Printer) -> std::io::Result<()> {
    if json {
        let value = serde_json::json!({
            "verdict": if report.sound() { "sound" } else { "problem" },
            "checks": report.checks,
        });
        return printer.data(serde_json::to_string_pretty(&value).expect("JSON"));
    }
    print_lines(report, printer)
}

/// One line per check, then the verdict (also `kt cert check`'s output).
pub fn print_lines(report: &Report, printer: &Printer) -> std::io::Result<()> {
    for check in &report.checks {
        printer.data(format!("{}  {}: {}", check.status.mark(), check.name, check.detail))?;
    }
    let failed = report.checks.iter().filter(|c| c.status == CheckStatus::Fail).count();
    if failed == 0 {
        printer.data("verdict: sound")
    } else {
        printer.data(format!("verdict: PROBLEM ({failed} of {} checks failed)", report.checks.len()))
    }
}
