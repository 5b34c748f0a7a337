//! `kt serve`

use kt::account::{self, Account};
use kt::instance::Layout;
use kt::server::{serve, ServerSettings};

use crate::cli::{GlobalArgs, ServeArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, _args: ServeArgs, _printer: &Printer) -> CommandResult {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    if account::is_root() {
        let name = instance.service_user().unwrap_or("keytrustee").to_string();
        let service = Account::lookup(&name)?.ok_or_else(|| {
            kt::Error::env(format!("the service account {name} does not exist"))
                .with_hint("create it, or fix SERVICE_USER in keytrustee.conf")
        })?;
        if service.uid != 0 {
            account::become_account(&service)?;
        }
    }
    let settings = ServerSettings::from_instance(&instance)?;
    serve(settings, || Ok(()))?;
    Ok(Status::Success)
}
