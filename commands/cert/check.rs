//! `kt cert check` (being built: see issue 11).

use crate::cli::{CertCheckArgs, GlobalArgs};
use crate::printer::Printer;
use crate::CommandResult;

pub fn run(_global: &GlobalArgs, _args: CertCheckArgs, _printer: &Printer) -> CommandResult {
    Err(kt::Error::usage("kt cert check is not built yet").into())
}
