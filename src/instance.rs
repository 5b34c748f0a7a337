//! Where an instance's files live (DESIGN.md, "Instance layout").
//!
//! Everything hangs off the confdir: the home is its parent, and the
//! configuration inside it names the database cluster and TLS files.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::settings::Settings;
use crate::error::Result;
use crate::fsutil;

pub const DEFAULT_CONFDIR: &str = "/var/lib/keytrustee/.keytrustee";
pub const CONFIG_FILE: &str = "keytrustee.conf";
pub const SSL_DIR: &str = ".ssl";
pub const CERT_FILE: &str = "ssl-cert-keytrustee.pem";
pub const KEY_FILE: &str = "ssl-cert-keytrustee-pk.pem";
pub const CA_FILE: &str = "ssl-cert-keytrustee-ca.pem";
pub const SECRING: &str = "secring.gpg";
pub const PUBRING: &str = "pubring.gpg";
/// libpq password file with the database password (0600): lets both kt and
/// an operator's `PGPASSFILE=... psql` connect without the secret in argv.
pub const PGPASS: &str = ".pgpass";
pub const DB_NAME: &str = "keytrustee";
/// The database superuser that initdb creates and kt connects as.
pub const DB_USER: &str = "keytrustee";

/// The file-system layout of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub confdir: PathBuf,
    pub home: PathBuf,
}

impl Layout {
    /// The layout for `confdir` (or the default one), made absolute.
    pub fn new(confdir: Option<&Path>) -> Result<Layout> {
        let confdir = fsutil::absolute(confdir.unwrap_or(Path::new(DEFAULT_CONFDIR)))?;
        let home = fsutil::parent_dir(&confdir).to_path_buf();
        Ok(Layout { confdir, home })
    }

    pub fn config_file(&self) -> PathBuf {
        self.confdir.join(CONFIG_FILE)
    }
    pub fn ssl_dir(&self) -> PathBuf {
        self.confdir.join(SSL_DIR)
    }
    pub fn secring(&self) -> PathBuf {
        self.confdir.join(SECRING)
    }
    pub fn pubring(&self) -> PathBuf {
        self.confdir.join(PUBRING)
    }
    pub fn pgpass(&self) -> PathBuf {
        self.confdir.join(PGPASS)
    }
    pub fn default_pg_rootdir(&self) -> PathBuf {
        self.home.join("db")
    }
    /// Where kt keeps its logs (PostgreSQL's server log among them).
    pub fn log_dir(&self) -> PathBuf {
        self.home.join("logs")
    }
    pub fn db_log_file(&self) -> PathBuf {
        self.log_dir().join("postgresql.log")
    }

    /// Loads the configuration of an existing instance (`keytrustee.conf`
    /// with this host's own keys from `.ssl/host.conf` over it, see
    /// [`crate::hostconf`]) and checks its settings (a bad value: exit 2,
    /// naming the key).
    pub fn load(self) -> Result<Instance> {
        let config = crate::hostconf::load_merged(&self.confdir)?;
        Instance::new(self, config)
    }
}

/// An existing instance: its layout, its configuration as stored, and the
/// settings read from it once, which the code passes down.
#[derive(Debug, Clone)]
pub struct Instance {
    pub layout: Layout,
    /// The configuration as stored (for rewrites that keep unknown keys):
    /// `keytrustee.conf` with the host file's keys over it. Saved back to
    /// `keytrustee.conf`, it writes this host's values there too, which is
    /// harmless: on this host the host file says the same, on a peer its
    /// own host file overrides them.
    pub config: Config,
    /// The checked, typed view of `config`.
    pub settings: Settings,
}

impl Instance {
    /// The instance at `layout` with `config`, its settings checked.
    pub fn new(layout: Layout, config: Config) -> Result<Instance> {
        let settings = Settings::from_config(&config)?;
        Ok(Instance { layout, config, settings })
    }

    /// `PG_ROOTDIR`, relative to the home, default `<home>/db`.
    pub fn pg_rootdir(&self) -> Result<PathBuf> {
        Ok(match &self.settings.pg_rootdir {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => self.layout.home.join(dir),
            None => self.layout.default_pg_rootdir(),
        })
    }

    pub fn db_port(&self) -> Result<u16> {
        Ok(self.settings.db_port)
    }

    pub fn hostname(&self) -> Result<&str> {
        Ok(&self.settings.hostname)
    }

    /// The service account name recorded at init (None: the current user).
    pub fn service_user(&self) -> Option<&str> {
        self.settings.service_user.as_deref()
    }

    /// The account the instance's files belong to and its scripts run as,
    /// when kt runs as root (`SERVICE_USER`, default `keytrustee`); None
    /// for an ordinary user, who is the service account.
    ///
    /// `SERVICE_USER` is read from a file that account can write, so it is
    /// not trusted alone: the account must not be root and must own the
    /// confdir, else a compromised account could name root and have root
    /// run its scripts.
    pub fn service_account(&self) -> Result<Option<crate::account::Account>> {
        use crate::error::Error;
        use std::os::unix::fs::MetadataExt;
        if !crate::account::is_root() {
            return Ok(None);
        }
        let name = self.service_user().unwrap_or("keytrustee");
        let account = crate::account::Account::lookup(name)?.ok_or_else(|| {
            Error::env(format!("the service account {name} does not exist"))
                .with_hint("create it, or fix SERVICE_USER in keytrustee.conf")
        })?;
        let confdir = &self.layout.confdir;
        let owner = std::fs::symlink_metadata(confdir)
            .map_err(|e| Error::env(format!("cannot read {}", confdir.display())).because_err(&e))?
            .uid();
        if account.uid == 0 || owner != account.uid {
            return Err(Error::usage(format!(
                "the service account {name} (uid {}) is root or does not own the confdir {} (uid {owner})",
                account.uid,
                confdir.display()
            ))
            .with_hint("SERVICE_USER in keytrustee.conf must name the ordinary account that owns the confdir"));
        }
        Ok(Some(account))
    }

    /// Where the server's certificate, key and CA are (`SSL_CERTIFICATE`,
    /// `SSL_PRIVATE_KEY`, `SSL_CA`; the documented `.ssl` files by default).
    pub fn tls_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        let ssl = self.layout.ssl_dir();
        let s = &self.settings;
        (
            s.ssl_certificate.clone().unwrap_or_else(|| ssl.join(CERT_FILE)),
            s.ssl_private_key.clone().unwrap_or_else(|| ssl.join(KEY_FILE)),
            s.ssl_ca.clone().unwrap_or_else(|| ssl.join(CA_FILE)),
        )
    }
}
