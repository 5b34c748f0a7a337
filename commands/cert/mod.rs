//! `kt cert generate | replace | rollback | show | check`

mod check;
mod generate;
mod replace;
mod show;

use kt::secret::PasswordSource;

use crate::cli::{CertCommand, GlobalArgs, KeyPasswordArgs};
use crate::printer::Printer;
use crate::CommandResult;

pub fn run(global: &GlobalArgs, command: CertCommand, printer: &Printer) -> CommandResult {
    match command {
        CertCommand::Generate(args) => generate::run(global, args, printer),
        CertCommand::Replace(args) => replace::run(global, args, printer),
        CertCommand::Rollback(args) => replace::rollback(global, args, printer),
        CertCommand::Show(args) => show::run(global, args, printer),
        CertCommand::Check(args) => check::run(global, args, printer),
    }
}

impl KeyPasswordArgs {
    /// The password source given, if any.
    pub fn source(&self) -> Option<PasswordSource> {
        match (&self.key_password_file, &self.key_password_script) {
            (Some(file), _) => Some(PasswordSource::File(file.clone())),
            (None, Some(script)) => Some(PasswordSource::Script(script.clone())),
            (None, None) => None,
        }
    }

    /// How the password was (or can be) given, for messages.
    pub fn what(&self) -> &'static str {
        match (&self.key_password_file, &self.key_password_script) {
            (Some(_), _) => "--key-password-file",
            (None, Some(_)) => "--key-password-script",
            (None, None) => "--key-password-file FILE or --key-password-script CMD",
        }
    }
}
