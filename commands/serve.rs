//! `kt serve`

use kt::account;
use kt::instance::Layout;
use kt::server::{serve, ServerSettings};

use crate::cli::{GlobalArgs, ServeArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, _args: ServeArgs, _printer: &Printer) -> CommandResult {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    // As root: become the service account (never root itself, and the
    // owner of the confdir: Instance::service_account checks both).
    if let Some(service) = instance.service_account()? {
        account::become_account(&service)?;
    }
    let settings = ServerSettings::from_instance(&instance)?;
    serve(settings, || Ok(()))?;
    Ok(Status::Success)
}
