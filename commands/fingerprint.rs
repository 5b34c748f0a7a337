//! `kt fingerprint`

use kt::instance::Layout;

use crate::cli::{FingerprintArgs, GlobalArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, _args: FingerprintArgs, printer: &Printer) -> CommandResult {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    let key = kt::pgp::load_public_key(&instance.layout.pubring())?;
    printer.data(kt::pgp::wire_fingerprint(&key))?;
    Ok(Status::Success)
}
