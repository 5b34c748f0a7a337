//! `kt init --external-db`: an instance whose database is an existing
//! PostgreSQL server, run by someone else (a managed service, Patroni).
//!
//! kt never initdb's, starts or stops that server. It checks, before the
//! first change, that it can log in (TLS as DB_SSLMODE asks, SCRAM with the
//! password given in a file), that its role is no superuser and may
//! create tables in the schema `public`, and that the database holds no
//! tables yet (kt init never overwrites). Then it makes the confdir, keys
//! and certificate like a local init, writes the password to `.pgpass`
//! (0600), copies the CA file into the confdir, creates kt's schema by the
//! migrations, and writes `keytrustee.conf` last. Every change is in the
//! undo journal, the schema's tables included, so a failed init leaves the
//! database as empty as it found it.

use std::path::{Path, PathBuf};

use crate::account::Account;
use crate::config;
use crate::error::{Error, Result};
use crate::init::{self, InitOptions, InitReport};
use crate::journal::Journal;
use crate::progress::Progress;
use crate::settings::ExternalDb;
use crate::storage::endpoint::{self, Endpoint};
use crate::storage::pgpass::Password;
use crate::storage::{grants, schema};

/// Where the CA file of the database's certificate is copied, in the
/// confdir: backups and `kt ha sync` carry it with the rest.
pub const DB_CA_FILE: &str = "db-ca.pem";

/// What `--external-db` adds to [`InitOptions`].
#[derive(Debug, Clone)]
pub struct ExternalInit {
    pub db: ExternalDb,
    pub port: u16,
    /// The role's password (read from a file, never argv).
    pub password: Password,
}

pub(crate) fn init(options: &InitOptions, external: &ExternalInit, progress: &dyn Progress) -> Result<InitReport> {
    let layout = &options.layout;
    // -- Checks of the input and the environment: nothing changes before.
    init::check_input(options)?;
    check_settings(external)?;
    init::refuse_existing(layout, &[&layout.confdir])?;
    init::check_creatable(&layout.confdir)?;
    let account = Account::service(&options.service_user, &layout.home)?;
    init::check_reachable(&account, &layout.confdir)?;
    let endpoint = endpoint_of(external, external.db.sslrootcert.clone());
    progress.step(&format!("checking the database {}", endpoint.describe()));
    let mut db = endpoint.connect(&external.password, "kt init")?;
    check_database(&endpoint, &mut db)?;

    // -- Changes, each recorded for undo.
    let mut journal = Journal::new();
    let result = create(options, external, &account, db, &mut journal, progress);
    journal.finish(result, "remove what is marked NOT UNDONE by hand before running kt init again")
}

fn endpoint_of(external: &ExternalInit, sslrootcert: Option<PathBuf>) -> Endpoint {
    Endpoint {
        host: external.db.host.clone(),
        port: external.port,
        dbname: external.db.name.clone(),
        user: external.db.user.clone(),
        sslmode: external.db.sslmode,
        sslrootcert,
        channel_binding: external.db.channel_binding,
        external: true,
    }
}

/// The external database's keys in `config`, as the instance will read
/// them: the checks' probe and the written configuration share them.
fn set_database(config: &mut config::Config, external: &ExternalInit, sslrootcert: Option<&Path>) {
    config.set(config::DB_MODE, "external");
    config.set(config::DB_HOST, external.db.host.clone());
    config.set(config::DB_PORT, external.port);
    config.set(config::DB_NAME, external.db.name.clone());
    config.set(config::DB_USER, external.db.user.clone());
    config.set(config::DB_SSLMODE, external.db.sslmode.name());
    config.set(config::DB_CHANNEL_BINDING, external.db.channel_binding.name());
    if let Some(ca) = sslrootcert {
        config.set(config::DB_SSLROOTCERT, ca.to_string_lossy().into_owned());
    }
}

/// The same checks the settings get when an instance loads (the names
/// go into SQL and `.pgpass`), here so that a bad option changes nothing.
fn check_settings(external: &ExternalInit) -> Result<()> {
    let mut probe = config::Config::new();
    probe.set(config::HOSTNAME, "probe.invalid");
    if let Some(ca) = &external.db.sslrootcert {
        if !ca.is_file() {
            return Err(Error::usage(format!("the database CA file {} does not exist", ca.display())));
        }
    }
    set_database(&mut probe, external, external.db.sslrootcert.as_deref());
    crate::settings::Settings::from_config(&probe)
        .map_err(|e| Error::usage(e.message().replace("configuration key ", "")).with_hint("fix the --db-* options"))?;
    if external.password.expose().is_empty() || external.password.expose().contains(['\n', '\r']) {
        return Err(Error::usage("the database password file holds no password (its first line is empty)"));
    }
    Ok(())
}

/// TLS as asked, the role's rights, and an empty database.
fn check_database(endpoint: &Endpoint, db: &mut postgres::Client) -> Result<()> {
    let tls = endpoint::tls_in_use(db)?;
    if tls.is_none() && endpoint.sslmode != crate::settings::SslMode::Disable && endpoint.sslmode != crate::settings::SslMode::Prefer {
        return Err(Error::env(format!("the session with {} is not encrypted", endpoint.describe())));
    }
    let grants = grants::read(db)?;
    if grants.superuser {
        return Err(Error::usage(format!(
            "the database role {} is a superuser (or a member of a superuser role, pg_execute_server_program or pg_write_server_files)",
            grants.role
        ))
        .with_hint(
            "give kt a role without superuser rights (README, \"External database\"): a dump it loads could otherwise run programs on the database server",
        ));
    }
    if !grants.connect || !grants.create_in_public {
        return Err(Error::env(grants.problem().unwrap_or_default()).with_hint(format!(
            "as the database's administrator: GRANT CONNECT ON DATABASE {db} TO {role}; GRANT CREATE ON SCHEMA public TO {role} (or make {role} the database's owner)",
            db = endpoint.dbname,
            role = grants.role
        )));
    }
    let objects = public_objects(db)?;
    if !objects.is_empty() {
        return Err(Error::usage(format!("the database {} already holds objects in schema public: {}", endpoint.address(), objects.join(", "))).with_hint(
            "kt init never overwrites: give kt an empty database; further kt serve nodes share an instance's confdir instead of running kt init",
        ));
    }
    Ok(())
}

/// Everything in schema `public` that kt's schema could collide with or
/// that someone else relies on: tables, views, sequences, foreign tables,
/// functions. kt only starts on an empty schema.
fn public_objects(db: &mut postgres::Client) -> Result<Vec<String>> {
    let rows = db
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
             UNION SELECT p.proname::text || '()' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'public' ORDER BY 1",
            &[],
        )
        .map_err(|e| Error::env("cannot list the database's objects").because_err(&e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The tables in `public` that kt's role owns: what kt's migrations made
/// (the schema was empty before them), never another role's table.
fn own_public_tables(db: &mut postgres::Client) -> Result<Vec<String>> {
    let rows = db
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user ORDER BY 1", &[])
        .map_err(|e| Error::env("cannot list the database's tables").because_err(&e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn create(
    options: &InitOptions,
    external: &ExternalInit,
    account: &Account,
    mut db: postgres::Client,
    journal: &mut Journal,
    progress: &dyn Progress,
) -> Result<InitReport> {
    let layout = &options.layout;
    let owner = Some(account);
    let made = init::create_confdir(options, account, journal, progress)?;
    init::write_new(journal, &layout.pgpass(), external.password.pgpass_line(&external.db.user).as_bytes(), owner)?;
    let ca_copy = match &external.db.sslrootcert {
        Some(ca) => {
            let copy = layout.confdir.join(DB_CA_FILE);
            let bytes = std::fs::read(ca).map_err(|e| Error::env(format!("cannot read {}", ca.display())).because_err(&e))?;
            init::write_new(journal, &copy, &bytes, owner)?;
            Some(copy)
        }
        None => None,
    };

    progress.step("creating kt's schema in the database");
    let endpoint = endpoint_of(external, ca_copy.clone());
    {
        // Undo drops exactly the tables the migrations made (the database
        // held none before: checked).
        let endpoint = endpoint.clone();
        let password = external.password.clone();
        journal.record(format!("created kt's tables in {}", endpoint.address()), move || drop_tables(&endpoint, &password));
    }
    schema::migrate(&mut db)?;
    let schema_version = schema::current_version(&mut db)?;
    drop(db);

    // The configuration is written last: its presence marks a complete instance.
    let mut config = init::base_config(options, &made, account);
    set_database(&mut config, external, ca_copy.as_deref());
    let config_path = layout.config_file();
    journal.record_created([config_path.clone()]);
    config.save(&config_path, owner)?;
    // What the instance will read back must be what was checked.
    crate::instance::Instance::new(layout.clone(), config)?;
    Ok(InitReport {
        confdir: layout.confdir.clone(),
        database: endpoint.describe(),
        service_user: account.name.clone(),
        fingerprint: made.fingerprint,
        schema_version,
    })
}

/// The undo of the schema: the tables kt's role owns in `public`, which
/// held nothing before; a table another role made meanwhile is not kt's
/// to drop.
fn drop_tables(endpoint: &Endpoint, password: &Password) -> Result<()> {
    let mut db = endpoint.connect(password, "kt init")?;
    let tables = own_public_tables(&mut db)?;
    if tables.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = tables.iter().map(|t| format!("public.\"{}\"", t.replace('"', "\"\""))).collect();
    db.batch_execute(&format!("DROP TABLE {}", list.join(", ")))
        .map_err(|e| Error::env("cannot drop kt's tables").because(crate::storage::db_error_text(&e)))
}

/// Reads the database password: the first line of `path`, or of standard
/// input for `-` (so it can come from a pipe or a secrets tool, never argv).
pub fn read_password(path: &Path) -> Result<Password> {
    let text = if path == Path::new("-") {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| Error::usage("cannot read the database password from standard input").because_err(&e))?;
        line
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Error::usage(format!("cannot read the database password file {}", path.display())).because_err(&e))?
    };
    let mut text = zeroize::Zeroizing::new(text);
    let first = text.lines().next().unwrap_or("").to_string();
    zeroize::Zeroize::zeroize(&mut *text);
    Ok(Password::new(first))
}
