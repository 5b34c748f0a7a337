//! `kt mail queue` and `kt mail test`

use kt::instance::Layout;
use kt::mail::{compose, messages, outbox, transport::Sender};
use kt::text::printable;
use kt::Error;

use crate::cli::{GlobalArgs, MailCommand};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, command: MailCommand, printer: &Printer) -> CommandResult {
    if let MailCommand::Test { to } = &command {
        kt::org::validate_contact(to)?;
    }
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    match command {
        MailCommand::Queue { all, json } => {
            let mut db = kt::storage::endpoint::connect_instance(&instance, "kt")?;
            kt::storage::schema::require_current(&mut db)?;
            let entries = outbox::list(&mut db, all)?;
            if json {
                printer.data(serde_json::to_string_pretty(&entries).expect("JSON"))?;
                return Ok(Status::Success);
            }
            if entries.is_empty() {
                printer.info("kt: the mail queue is empty");
            }
            for e in &entries {
                let org = e.organization.as_deref().unwrap_or("-");
                printer.data(format!("{}  {}  {}  to {} ({org})  {:?}", e.id, e.state, e.kind, e.recipient, e.subject))?;
                printer.data(format!("    queued {}, {} attempt(s)", e.created, e.attempts))?;
                if let Some(next) = &e.next_attempt {
                    printer.data(format!("    next attempt {next}"))?;
                }
                if let Some(err) = &e.last_error {
                    printer.data(format!("    last error: {}", printable(err)))?;
                }
                if let Some(sent) = &e.sent {
                    printer.data(format!("    sent {sent}: {}", printable(e.mta_reply.as_deref().unwrap_or(""))))?;
                }
            }
            Ok(Status::Success)
        }
        MailCommand::Test { to } => {
            let s = &instance.settings;
            let account = instance.service_account()?;
            let sender = Sender::new(&s.mail, &s.hostname, account.as_ref())?;
            if matches!(sender, Sender::Off) {
                return Err(Error::usage("MAIL_TRANSPORT is off: kt sends no mail")
                    .with_hint("set MAIL_TRANSPORT to \"smtp\" or \"sendmail\" in keytrustee.conf")
                    .into());
            }
            let key = kt::pgp::load_secret_key(&instance.layout.secring())?;
            let text = messages::test_message(&s.hostname);
            let from = s.mail.from_address(&s.hostname);
            let composed = compose::compose(&from, &to, &text.subject, &text.body, &key, None)?;
            printer.info(format!("kt: sending a signed test message from {from} to {to} via {}", sender.describe()));
            match sender.send(&composed.message) {
                Ok(reply) => {
                    printer.data(printable(&reply))?;
                    Ok(Status::Success)
                }
                Err(refused) => Err(Error::env(format!("the mail was not accepted ({})", sender.describe()))
                    .because(refused.reason)
                    .with_hint("check the MTA and the MAIL_* settings in keytrustee.conf; `kt mail queue` shows queued mail")
                    .into()),
            }
        }
    }
}
