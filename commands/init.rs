//! `kt init`

use kt::init::{init, InitOptions};
use kt::instance::Layout;
use kt::pgp::KeySpec;

use crate::cli::{GlobalArgs, InitArgs, KeyType};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, args: InitArgs, printer: &Printer) -> CommandResult {
    let layout = Layout::new(global.confdir.as_deref())?;
    let hostname = match args.hostname {
        Some(name) => name,
        None => kt::hostname::fqdn()?,
    };
    let external = match (args.external_db, args.db_host) {
        (true, Some(host)) => Some(kt::init_external::ExternalInit {
            db: kt::settings::ExternalDb {
                host,
                name: args.db_name,
                user: args.db_user,
                sslmode: kt::settings::SslMode::parse(&args.db_sslmode).expect("clap checked the name"),
                sslrootcert: args.db_sslrootcert.map(|p| kt::fsutil::absolute(&p)).transpose()?,
                channel_binding: kt::settings::ChannelBinding::parse(&args.db_channel_binding).expect("clap checked the name"),
            },
            port: args.db_port,
            password: kt::init_external::read_password(args.db_password_file.as_deref().expect("clap requires it"))?,
        }),
        _ => None,
    };
    let options = InitOptions {
        layout,
        hostname,
        listen: args.listen,
        db_port: args.database_port,
        pg_rootdir: args.pg_rootdir,
        service_user: args.service_user,
        key_type: match args.key_type {
            KeyType::Rsa4096 => KeySpec::Rsa4096,
            KeyType::Ed25519 => KeySpec::Ed25519,
        },
        cert_days: args.cert_days,
        extra_sans: args.extra_sans,
        external,
    };
    printer.detail(format!("kt: {options:#?}"));
    let report = init(&options, printer)?;
    printer.info(format!(
        "kt: created the instance in {} (database {}, run by {}, schema version {})",
        report.confdir.display(),
        report.database,
        report.service_user,
        report.schema_version
    ));
    printer.data(report.fingerprint)?;
    Ok(Status::Success)
}
