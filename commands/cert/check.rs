//! `kt cert check [--warn-days N] [--json]`: the instance's certificate
//! judged for monitoring and cron: one line per finding and a verdict on
//! stdout, exit 0 when fine, 1 on a problem, 3 when it cannot be checked.

use kt::cert::check::check_instance;
use kt::instance::Layout;

use crate::cli::{CertCheckArgs, GlobalArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, args: CertCheckArgs, printer: &Printer) -> CommandResult {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    let checked = check_instance(&instance, args.warn_days)?;
    if args.json {
        let leaf = &checked.leaf;
        let value = serde_json::json!({
            "verdict": if checked.sound() { "sound" } else { "problem" },
            "certificate": checked.certificate,
            "sha256": leaf.sha256,
            "not_after": kt::clock::rfc3339(leaf.not_after),
            "days_left": leaf.days_left(),
            "checks": checked.report.checks,
        });
        printer.data(serde_json::to_string_pretty(&value).expect("JSON"))?;
    } else {
        crate::verify::print_lines(&checked.report, printer)?;
    }
    Ok(if checked.sound() { Status::Success } else { Status::Problem })
}
