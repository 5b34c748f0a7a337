//! `kt cert generate` (being built: see issue 11).

use crate::cli::{CertGenerateArgs, GlobalArgs};
use crate::printer::Printer;
use crate::CommandResult;

pub fn run(_global: &GlobalArgs, _args: CertGenerateArgs, _printer: &Printer) -> CommandResult {
    Err(kt::Error::usage("kt cert generate is not built yet").into())
}
