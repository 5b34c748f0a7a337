//! Where an instance's files live (DESIGN.md, "Instance layout").
//!
//! Everything hangs off the confdir: the home is its parent, and the
//! configuration inside it names the database cluster and TLS files.

use std::path::{Path, PathBuf};

use crate::config::{self, Config};
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

    /// Loads the configuration of an existing instance.
    pub fn load(self) -> Result<Instance> {
        let config = Config::load(&self.config_file())?;
        Ok(Instance { layout: self, config })
    }
}

/// An existing instance: its layout and its configuration.
#[derive(Debug, Clone)]
pub struct Instance {
    pub layout: Layout,
    pub config: Config,
}

impl Instance {
    pub fn pg_rootdir(&self) -> Result<PathBuf> {
        let dir = self.config.path(config::PG_ROOTDIR)?;
        Ok(if dir.is_absolute() { dir } else { self.layout.home.join(dir) })
    }

    pub fn db_port(&self) -> Result<u16> {
        self.config.port(config::DB_PORT)
    }

    pub fn hostname(&self) -> Result<&str> {
        self.config.string(config::HOSTNAME)
    }

    /// The service account name recorded at init (None: the current user).
    pub fn service_user(&self) -> Option<&str> {
        self.config.get(config::SERVICE_USER).and_then(|v| v.as_str())
    }
}
