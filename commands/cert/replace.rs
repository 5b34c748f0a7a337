//! `kt cert replace` and `kt cert rollback` (being built: see issue 11).

use crate::cli::{CertReplaceArgs, CertRollbackArgs, GlobalArgs};
use crate::printer::Printer;
use crate::CommandResult;

pub fn run(_global: &GlobalArgs, _args: CertReplaceArgs, _printer: &Printer) -> CommandResult {
    Err(kt::Error::usage("kt cert replace is not built yet").into())
}

pub fn rollback(_global: &GlobalArgs, _args: CertRollbackArgs, _printer: &Printer) -> CommandResult {
    Err(kt::Error::usage("kt cert rollback is not built yet").into())
}
