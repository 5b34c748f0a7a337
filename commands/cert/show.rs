//! `kt cert show` (being built: see issue 11).

use crate::cli::{CertShowArgs, GlobalArgs};
use crate::printer::Printer;
use crate::CommandResult;

pub fn run(_global: &GlobalArgs, _args: CertShowArgs, _printer: &Printer) -> CommandResult {
    Err(kt::Error::usage("kt cert show is not built yet").into())
}
