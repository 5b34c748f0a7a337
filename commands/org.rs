//! `kt org ...` (the documented keytrustee-orgtool)

use kt::instance::Layout;
use kt::org;

use crate::cli::{GlobalArgs, OrgCommand};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, command: OrgCommand, printer: &Printer) -> CommandResult {
    // Check the input before touching the database.
    match &command {
        OrgCommand::Add { name, contacts, .. } | OrgCommand::Invite { name, contacts, .. } => {
            org::validate_name(name)?;
            org::parse_contacts(contacts)?;
        }
        OrgCommand::SetAuth { name, .. } => org::validate_name(name)?,
        OrgCommand::EnableClient { fingerprint }
        | OrgCommand::DisableClient { fingerprint }
        | OrgCommand::DenyClient { fingerprint } => {
            org::normalize_fingerprint(fingerprint)?;
        }
        OrgCommand::Clients { name: Some(name) } => org::validate_name(name)?,
        _ => {}
    }
    let confdir = match &command {
        OrgCommand::Add { confdir: Some(dir), .. } | OrgCommand::Invite { confdir: Some(dir), .. } => Some(dir.as_path()),
        _ => global.confdir.as_deref(),
    };
    let instance = Layout::new(confdir)?.load()?;
    let mut db = kt::storage::endpoint::connect_instance(&instance, "kt")?;
    // An older schema is upgraded by `kt db start` or `kt serve` on the
    // active, not here: `kt org` may run on a passive or beside a server.
    kt::storage::schema::require_current(&mut db)?;
    if !matches!(command, OrgCommand::List { .. } | OrgCommand::Clients { .. }) {
        kt::ha::syncrep::refuse_waiting_write(&mut db)?;
    }
    match command {
        OrgCommand::Add { name, contacts, .. } => {
            let contacts = org::parse_contacts(&contacts)?;
            let site = kt::mail::messages::Site::for_settings(&instance.settings);
            match org::add(&mut db, &name, &contacts, &site)? {
                org::Added::Created => printer.info(format!("kt: added organization {name}")),
                org::Added::Updated => printer.info(format!("kt: organization {name} exists: contacts merged")),
            }
        }
        OrgCommand::Invite { name, contacts, .. } => {
            let contacts = org::parse_contacts(&contacts)?;
            let site = kt::mail::messages::Site::for_settings(&instance.settings);
            org::invite(&mut db, &name, &contacts, &site)?;
            printer.info(format!(
                "kt: queued a new registration link to {} ({name}); older unused links stopped working",
                contacts.join(", ")
            ));
        }
        OrgCommand::List { json_extended } => {
            let list = org::list(&mut db, json_extended || printer.verbose)?;
            printer.data(serde_json::to_string_pretty(&list).expect("JSON"))?;
        }
        OrgCommand::SetAuth { name, secret, secret_file } => {
            let secret = match (secret, secret_file) {
                (Some(s), _) => s,
                (None, Some(file)) => read_secret_file(&file)?,
                (None, None) => unreachable!("clap requires one"),
            };
            org::set_auth(&mut db, &name, &secret)?;
            if secret.is_empty() {
                printer.info(format!("kt: {name} now approves new clients automatically"));
            } else {
                printer.info(format!("kt: set the auth secret of {name}"));
            }
        }
        OrgCommand::EnableClient { fingerprint } => {
            match org::set_client_state(&mut db, &fingerprint, "active")?.as_str() {
                "pending" => printer.info("kt: client approved"),
                _ => printer.info("kt: client enabled"),
            }
        }
        OrgCommand::DenyClient { fingerprint } => {
            org::deny_client(&mut db, &fingerprint)?;
            printer.info("kt: client denied: its registration is removed");
        }
        OrgCommand::DisableClient { fingerprint } => {
            org::set_client_state(&mut db, &fingerprint, "disabled")?;
            printer.info("kt: client disabled");
        }
        OrgCommand::Clients { name } => {
            let list = org::clients(&mut db, name.as_deref())?;
            printer.data(serde_json::to_string_pretty(&list).expect("JSON"))?;
        }
    }
    Ok(Status::Success)
}

/// The first line of a secret file, without its line ending.
pub fn read_secret_file(path: &std::path::Path) -> kt::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| kt::Error::usage(format!("cannot read the secret file {}", path.display())).because_err(&e))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}
