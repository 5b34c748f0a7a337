//! Where the instance's database is and how to reach it, for both modes
//! (`DB_MODE`, src/settings.rs): the one place that builds a connection
//! for kt's commands (sync `postgres`), for `kt serve` (async
//! `tokio-postgres`) and for libpq's tools (`pg_dump`, `psql`), so that
//! host, port, database, user and TLS never disagree between them.
//!
//! - **local**: the instance's own cluster on 127.0.0.1:`DB_PORT`,
//!   database and user `keytrustee`, no TLS (loopback, SCRAM).
//! - **external**: `DB_HOST`:`DB_PORT`/`DB_NAME` as `DB_USER`, TLS as
//!   `DB_SSLMODE` says (src/storage/pgtls.rs).
//!
//! The password comes from the confdir's `.pgpass` in both modes: read
//! here for kt's own connections, handed to libpq's tools as PGPASSFILE.
//!
//! What a connection trusts is what keytrustee.conf says and nothing
//! else: libpq would otherwise read the running account's
//! `~/.postgresql/` (`root.crt` turns `require` into `verify-ca`,
//! `root.crl` adds revocation checks, `postgresql.crt`/`.key` send a
//! client certificate) and try GSSAPI encryption ahead of TLS when a
//! Kerberos ticket is at hand, none of which kt's own connector does.
//! So every libpq tool gets each of those settings explicitly
//! ([`Endpoint::libpq_env`]), and pg_dump checks exactly what kt checks.
//! Every session's search_path is pinned to `public` (see
//! [`PINNED_OPTIONS`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::instance::{Instance, DB_NAME, DB_USER};
use crate::settings::{ChannelBinding, SslMode};
use crate::storage::pgpass::Password;
use crate::storage::pgtls::MakeRustls;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A path no file can have (a path below a device): what libpq's file
/// settings get when kt uses no such file, so that libpq does not fall
/// back to `~/.postgresql/` (an empty value means that default). libpq
/// takes a file it cannot stat (ENOTDIR here) as absent.
pub const NO_FILE: &str = "/dev/null/kt-none";
/// Every session's search_path is `public`, kt's schema, from the start:
/// the default `"$user", public` would search a schema named after kt's
/// role first, and on an external database another role may have made
/// one (with a `deposits` table in it) to take kt's statements over.
/// kt's own SQL names nothing outside `public` unqualified.
const PINNED_OPTIONS: &str = "-c search_path=public";

/// The instance's database and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub channel_binding: ChannelBinding,
    /// An existing server kt neither starts nor stops.
    pub external: bool,
}

impl Endpoint {
    /// The database of `instance`, as its settings say.
    pub fn for_instance(instance: &Instance) -> Endpoint {
        let port = instance.settings.db_port;
        match &instance.settings.external_db {
            None => Endpoint::local(port),
            Some(e) => Endpoint {
                host: e.host.clone(),
                port,
                dbname: e.name.clone(),
                user: e.user.clone(),
                sslmode: e.sslmode,
                sslrootcert: e.sslrootcert.as_ref().map(|p| resolve(&instance.layout.confdir, p)),
                channel_binding: e.channel_binding,
                external: true,
            },
        }
    }

    /// The instance's own cluster on 127.0.0.1:`port`.
    pub fn local(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            dbname: DB_NAME.into(),
            user: DB_USER.into(),
            sslmode: SslMode::Disable,
            sslrootcert: None,
            // Loopback without TLS: nothing to bind to.
            channel_binding: ChannelBinding::Prefer,
            external: false,
        }
    }

    /// `external HOST:PORT/DB` or `local 127.0.0.1:PORT`: what `kt verify`
    /// and the messages say.
    pub fn describe(&self) -> String {
        if self.external {
            format!("external {}", self.address())
        } else {
            format!("local {}:{}", self.host, self.port)
        }
    }

    /// `HOST:PORT/DB`.
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    /// The password of [`Endpoint::user`] from the libpq password file.
    pub fn password(&self, pgpass: &Path) -> Result<Password> {
        Password::read(pgpass, &self.user)
    }

    /// The TLS connector for every connection to this database.
    pub fn tls(&self) -> Result<MakeRustls> {
        MakeRustls::new(self.sslmode, self.sslrootcert.as_deref())
    }

    fn driver_sslmode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self.sslmode {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }

    fn driver_channel_binding(&self) -> tokio_postgres::config::ChannelBinding {
        use tokio_postgres::config::ChannelBinding as Driver;
        match self.channel_binding {
            ChannelBinding::Prefer => Driver::Prefer,
            ChannelBinding::Require => Driver::Require,
            ChannelBinding::Disable => Driver::Disable,
        }
    }

    /// The async driver's configuration (`kt serve`'s pool).
    pub fn async_config(&self, password: &Password, application: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(password.expose())
            .dbname(&self.dbname)
            .ssl_mode(self.driver_sslmode())
            .channel_binding(self.driver_channel_binding())
            .application_name(application)
            .options(PINNED_OPTIONS)
            .connect_timeout(CONNECT_TIMEOUT);
        config
    }

    /// Connects to [`Endpoint::dbname`] as [`Endpoint::user`].
    pub fn connect(&self, password: &Password, application: &str) -> Result<postgres::Client> {
        self.connect_to(&self.dbname, password, application)
    }

    /// Connects to another database of the same server (an admin
    /// connection to `postgres`, a scratch database).
    pub fn connect_to(&self, dbname: &str, password: &Password, application: &str) -> Result<postgres::Client> {
        let mut config = postgres::Config::from(self.async_config(password, application));
        config.dbname(dbname);
        config.connect(self.tls()?).map_err(|e| {
            let err = Error::env(format!("cannot connect to the database on {}:{}/{dbname}", self.host, self.port)).because_err(&e);
            if self.external {
                err.with_hint(
                    "is the database server up and reachable? check DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_SSLMODE, DB_SSLROOTCERT and DB_CHANNEL_BINDING in keytrustee.conf and the password in the confdir's .pgpass",
                )
            } else {
                err.with_hint("is it running? try `kt db status` and `kt db start`")
            }
        })
    }

    /// Points a libpq tool (`pg_dump`, `psql`) at this database: every
    /// setting in its environment, the password by PGPASSFILE, none of the
    /// caller's own PG* variables left to interfere, and every file libpq
    /// would otherwise look for in `~/.postgresql/` named explicitly (the
    /// module doc says why): the CA file or none, no CRL, no client
    /// certificate, no GSSAPI encryption. Service files are read only for
    /// a service name (PGSERVICE), which is removed with the rest.
    pub fn libpq_env(&self, command: &mut Command, pgpass: &Path) {
        let inherited = std::env::vars_os().map(|(k, _)| k);
        let given: Vec<_> = command.get_envs().map(|(k, _)| k.to_os_string()).collect();
        for key in inherited.chain(given) {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                command.env_remove(key);
            }
        }
        command
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGDATABASE", &self.dbname)
            .env("PGUSER", &self.user)
            .env("PGSSLMODE", self.sslmode.name())
            .env("PGPASSFILE", pgpass)
            .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT.as_secs().to_string())
            .env("PGAPPNAME", "kt")
            .env("PGCHANNELBINDING", self.channel_binding.name())
            .env("PGSSLROOTCERT", self.sslrootcert.as_deref().unwrap_or(Path::new(NO_FILE)))
            .env("PGSSLCRL", NO_FILE)
            .env("PGSSLCERT", NO_FILE)
            .env("PGSSLKEY", NO_FILE)
            // libpq 16 and later: no client certificate whatever the files
            // say (older versions ignore the variable).
            .env("PGSSLCERTMODE", "disable")
            .env("PGGSSENCMODE", "disable")
            .env("PGOPTIONS", PINNED_OPTIONS);
    }
}

/// The instance's database connection: its endpoint and its password.
pub fn connect_instance(instance: &Instance, application: &str) -> Result<postgres::Client> {
    let endpoint = Endpoint::for_instance(instance);
    let password = endpoint.password(&instance.layout.pgpass())?;
    endpoint.connect(&password, application)
}

/// A relative CA path is the confdir's (where `kt init` copies it).
fn resolve(confdir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        confdir.join(path)
    }
}

/// Whether the session runs over TLS, and which version: what the server
/// itself says (`pg_stat_ssl`), not what was asked for.
pub fn tls_in_use(db: &mut postgres::Client) -> Result<Option<String>> {
    let row = db
        .query_one("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .map_err(|e| Error::env("cannot read the session's TLS state").because_err(&e))?;
    let ssl: bool = row.get(0);
    Ok(ssl.then(|| row.get::<_, Option<String>>(1).unwrap_or_else(|| "TLS".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn external() -> Endpoint {
        Endpoint {
            host: "db.example.com".into(),
            port: 5432,
            dbname: "kt".into(),
            user: "ktapp".into(),
            sslmode: SslMode::VerifyFull,
            sslrootcert: Some("/etc/kt/db-ca.pem".into()),
            channel_binding: ChannelBinding::Require,
            external: true,
        }
    }

    #[test]
    fn each_mode_says_where_it_is() {
        assert_eq!(Endpoint::local(11381).describe(), "local 127.0.0.1:11381");
        assert_eq!(external().describe(), "external db.example.com:5432/kt");
    }

    #[test]
    fn libpq_tools_get_every_setting_and_nothing_of_the_callers() {
        let mut command = Command::new("pg_dump");
        // PG variables from elsewhere (kt's own environment is handled the
        // same way; not set here, as tests share the process) do not reach
        // pg_dump.
        command.env("PGPASSWORD", "leak").env("PGSERVICE", "other");
        external().libpq_env(&mut command, Path::new("/c/.pgpass"));
        let env: std::collections::BTreeMap<String, Option<String>> = command
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        let get = |k: &str| env.get(k).cloned().flatten();
        assert_eq!(get("PGHOST").as_deref(), Some("db.example.com"));
        assert_eq!(get("PGPORT").as_deref(), Some("5432"));
        assert_eq!(get("PGDATABASE").as_deref(), Some("kt"));
        assert_eq!(get("PGUSER").as_deref(), Some("ktapp"));
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/etc/kt/db-ca.pem"));
        assert_eq!(get("PGPASSFILE").as_deref(), Some("/c/.pgpass"));
        assert_eq!(get("PGOPTIONS").as_deref(), Some("-c search_path=public"));
        assert_eq!(env.get("PGSERVICE"), Some(&None), "other PG variables are removed");
        assert_eq!(env.get("PGPASSWORD"), Some(&None));
        assert_eq!(get("PGCHANNELBINDING").as_deref(), Some("require"));
        // Nothing from ~/.postgresql: each file named, none of them there.
        for key in ["PGSSLCRL", "PGSSLCERT", "PGSSLKEY"] {
            assert_eq!(get(key).as_deref(), Some(NO_FILE), "{key}");
        }
        assert_eq!(get("PGSSLCERTMODE").as_deref(), Some("disable"));
        assert_eq!(get("PGGSSENCMODE").as_deref(), Some("disable"));
        assert!(std::fs::metadata(NO_FILE).is_err(), "{NO_FILE} cannot exist");
    }

    #[test]
    fn without_a_ca_file_libpq_checks_nothing_either() {
        // kt's connector checks no certificate in `require` without
        // DB_SSLROOTCERT; libpq must not use ~/.postgresql/root.crt instead.
        let endpoint = Endpoint { sslmode: SslMode::Require, sslrootcert: None, ..external() };
        let mut command = Command::new("pg_dump");
        endpoint.libpq_env(&mut command, Path::new("/c/.pgpass"));
        let root = command.get_envs().find(|(k, _)| *k == "PGSSLROOTCERT").and_then(|(_, v)| v);
        assert_eq!(root, Some(std::ffi::OsStr::new(NO_FILE)));
    }

    #[test]
    fn the_channel_binding_setting_reaches_the_driver() {
        let config = external().async_config(&Password::new("x".into()), "t");
        assert_eq!(config.get_channel_binding(), tokio_postgres::config::ChannelBinding::Require);
    }

    #[test]
    fn the_verifying_modes_need_a_ca() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let e = MakeRustls::new(mode, None).unwrap_err();
            assert!(e.to_string().contains("DB_SSLROOTCERT"), "{e}");
        }
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            MakeRustls::new(mode, None).unwrap();
        }
    }
}
