//! `kt client ...`: the reference client.

use std::io::{Read, Write};

use kt::client::bench::{self, BenchOptions, Operation};
use kt::client::https::Trust;
use kt::client::store::RegisterOptions;
use kt::client::ClientDir;
use kt::pgp::KeySpec;

use crate::cli::{BenchOp, ClientArgs, ClientCommand, GlobalArgs, KeyType};
use crate::printer::Printer;
use crate::{CommandResult, Status};

/// What the session did on its own (a write sent again), on stderr.
fn notes(session: &mut kt::client::store::Session, printer: &Printer) {
    for note in session.take_notes() {
        printer.info(note);
    }
}

pub fn run(_global: &GlobalArgs, args: ClientArgs, printer: &Printer) -> CommandResult {
    let dir = ClientDir::new(&args.dir)?;
    match args.command {
        ClientCommand::Register { servers, org, auth_secret_file, ca, insecure: _, key_type } => {
            let auth_secret = match auth_secret_file {
                Some(file) => crate::org::read_secret_file(&file)?,
                None => String::new(),
            };
            let options = RegisterOptions {
                servers,
                organization: org,
                auth_secret,
                trust: match ca {
                    Some(ca) => Trust::Ca(ca),
                    None => Trust::Insecure,
                },
                key_spec: match key_type {
                    KeyType::Rsa4096 => KeySpec::Rsa4096,
                    KeyType::Ed25519 => KeySpec::Ed25519,
                },
            };
            let settings = dir.register(&options)?;
            printer.data(&settings.fingerprint)?;
            if settings.state == "pending" {
                // Registered, but not usable yet: exit 1 tells a script so
                // (the request ran and found the client not admitted).
                printer.warn(format!(
                    "registration with {org} awaits approval (registration_pending): the client can do nothing until an administrator of {org} approves it",
                    org = settings.organization
                ));
                printer.hint(format!(
                    "on the key server: kt org enable-client --fingerprint {}; then run this register command again to see the new state",
                    settings.fingerprint
                ));
                return Ok(Status::Problem);
            }
            printer.info(format!("kt: registered with {} ({})", settings.organization, settings.state));
        }
        ClientCommand::Put { name, file } => {
            let content = match file.as_deref() {
                None => read_stdin()?,
                Some(p) if p.as_os_str() == "-" => read_stdin()?,
                Some(p) => std::fs::read(p)
                    .map_err(|e| kt::Error::usage(format!("cannot read {}", p.display())).because_err(&e))?,
            };
            let mut session = dir.open()?;
            let uuid = session.put(&name, &content);
            notes(&mut session, printer);
            printer.data(uuid?)?;
        }
        ClientCommand::Get { uuid } => {
            let content = dir.open()?.get(&uuid)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&content)?;
            out.flush()?;
        }
        ClientCommand::List => {
            let list = dir.open()?.list()?;
            printer.data(serde_json::to_string_pretty(&list).expect("JSON"))?;
        }
        ClientCommand::Delete { uuid } => {
            let mut session = dir.open()?;
            let deleted = session.delete(&uuid);
            notes(&mut session, printer);
            deleted?;
            printer.info(format!("kt: deleted {uuid}"));
        }
        ClientCommand::Status => {
            let s = dir.settings()?;
            printer.data(format!("fingerprint:  {}", s.fingerprint))?;
            printer.data(format!("organization: {}", s.organization))?;
            printer.data(format!("state:        {} (at registration)", s.state))?;
            printer.data(format!("servers:      {}", s.servers.join(" ")))?;
            let trust = match &s.ca {
                Some(ca) => format!("CA {}", ca.display()),
                None => "none (--insecure)".to_string(),
            };
            printer.data(format!("trust:        {trust}"))?;
        }
        ClientCommand::Bench { op, connections, seconds, requests, size, rate } => {
            let options = BenchOptions {
                operation: match op {
                    BenchOp::Get => Operation::Get,
                    BenchOp::Put => Operation::Put,
                },
                connections: connections as usize,
                duration: std::time::Duration::from_secs(seconds),
                max_requests: requests,
                deposit_size: size,
                rate: rate.filter(|r| *r > 0.0),
            };
            let r = bench::run(&dir, &options)?;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            printer.data(format!(
                "op={} connections={} requests={} errors={} seconds={:.2} per_second={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} p99_from_schedule_ms={:.2}",
                match op { BenchOp::Get => "get", BenchOp::Put => "put" },
                connections,
                r.requests,
                r.errors,
                r.elapsed.as_secs_f64(),
                r.per_second,
                ms(r.p50),
                ms(r.p99),
                ms(r.max),
                ms(r.p99_from_schedule)
            ))?;
            if r.errors > 0 {
                return Ok(Status::Problem);
            }
        }
    }
    Ok(Status::Success)
}

fn read_stdin() -> kt::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| kt::Error::env("cannot read standard input").because_err(&e))?;
    Ok(buf)
}
