//! `keytrustee.conf`: a JSON object with the documented upper-case keys.
//!
//! The file is kept as an ordered JSON map so that keys kt does not know
//! (set by an operator or a newer version) survive every rewrite, in their
//! original order. Every rewrite is atomic.
//!
//! This is the storage layer; code reads the typed, checked
//! [`crate::settings::Settings`] made from it once per command.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::account::Account;
use crate::error::{Context, Error, Result};
use crate::fsutil;

pub const HOSTNAME: &str = "HOSTNAME";
pub const LISTEN: &str = "LISTEN";
pub const DB_PORT: &str = "DB_PORT";
pub const PG_ROOTDIR: &str = "PG_ROOTDIR";
pub const SSL_CERTIFICATE: &str = "SSL_CERTIFICATE";
pub const SSL_PRIVATE_KEY: &str = "SSL_PRIVATE_KEY";
pub const SSL_CA: &str = "SSL_CA";
pub const TLS_MIN_VERSION: &str = "TLS_MIN_VERSION";
pub const CIPHERS: &str = "CIPHERS";
pub const SERVICE_USER: &str = "SERVICE_USER";
pub const SSL_PRIVATE_KEY_PASSWORD_SCRIPT: &str = "SSL_PRIVATE_KEY_PASSWORD_SCRIPT";
/// HA: this host's role (`active` or `passive`), written by `kt ha enable`
/// and `kt ha init-passive`.
pub const HA_ROLE: &str = "HA_ROLE";
/// HA: the other host's database address, HOST:DBPORT.
pub const HA_PEER: &str = "HA_PEER";
/// The database: `local` (default: the instance's own cluster under
/// PG_ROOTDIR) or `external` (an existing PostgreSQL server kt never
/// starts, stops or initdb's; the keys below say where).
pub const DB_MODE: &str = "DB_MODE";
pub const DB_HOST: &str = "DB_HOST";
pub const DB_NAME: &str = "DB_NAME";
pub const DB_USER: &str = "DB_USER";
/// libpq's sslmode names: disable, prefer, require, verify-ca, verify-full.
pub const DB_SSLMODE: &str = "DB_SSLMODE";
/// The CA certificate(s) that sign the external database's certificate.
pub const DB_SSLROOTCERT: &str = "DB_SSLROOTCERT";
/// libpq's channel_binding names: prefer (default), require, disable.
pub const DB_CHANNEL_BINDING: &str = "DB_CHANNEL_BINDING";
/// Server limits (optional; defaults below).
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
/// The highest MAX_BODY_BYTES a server accepts: no deposit is larger, so
/// clients size their answer cap from it.
pub const MAX_BODY_BYTES_CEILING: u64 = 256 * 1024 * 1024;
pub const MAX_HEADER_BYTES: &str = "MAX_HEADER_BYTES";
pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
pub const IDLE_TIMEOUT_SECONDS: &str = "IDLE_TIMEOUT_SECONDS";
pub const REQUEST_TIMEOUT_SECONDS: &str = "REQUEST_TIMEOUT_SECONDS";
pub const AUTH_WINDOW_SECONDS: &str = "AUTH_WINDOW_SECONDS";
pub const DB_POOL_SIZE: &str = "DB_POOL_SIZE";
/// HA: how long a write on the active waits for the passive's confirmation.
pub const HA_WRITE_TIMEOUT_SECONDS: &str = "HA_WRITE_TIMEOUT_SECONDS";
/// How many clients may await approval in one organization.
pub const MAX_PENDING_CLIENTS: &str = "MAX_PENDING_CLIENTS";
/// How long a stopping server (SIGTERM) answers 503 on /health while it
/// still takes connections, before it stops accepting.
pub const DRAIN_SECONDS: &str = "DRAIN_SECONDS";
/// Where `kt serve` answers `GET /metrics` (loopback only; unset: off).
pub const METRICS_LISTEN: &str = "METRICS_LISTEN";

pub const DEFAULT_LISTEN: &str = "0.0.0.0:11371";
pub const DEFAULT_DB_PORT: u16 = 11381;
pub const DEFAULT_TLS_MIN_VERSION: &str = "tlsv1.2";
/// The AEAD suites rustls offers, in OpenSSL's names, strongest first: the
/// table in `tls::ciphers` as a string (a unit test there keeps them equal).
pub const DEFAULT_CIPHERS: &str = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

/// The parsed configuration of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    values: Map<String, Value>,
}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads and parses `path`. A missing file is an environment failure
    /// with a hint; a malformed one names the line and column.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let err = Error::env(format!("cannot read {}", path.display())).because_err(&e);
            if e.kind() == std::io::ErrorKind::NotFound {
                err.with_hint("no instance here: create one with `kt init`, or point -c/--confdir at it")
            } else {
                err
            }
        })?;
        // Bad configuration is bad input (exit 2): the operator fixes it
        // by editing the file (src/error.rs).
        Self::parse(&text).map_err(|e| {
            Error::usage(format!("{} is not a valid configuration", path.display()))
                .because(e)
                .with_hint("fix keytrustee.conf in the confdir")
        })
    }

    pub fn parse(text: &str) -> Result<Config> {
        let value: Value = serde_json::from_str(text).usage_context(|| "invalid JSON")?;
        match value {
            Value::Object(values) => Ok(Config { values }),
            _ => Err(Error::usage("the configuration must be a JSON object")),
        }
    }

    /// Writes the configuration atomically, mode 0600.
    pub fn save(&self, path: &Path, owner: Option<&Account>) -> Result<()> {
        let mut text = serde_json::to_string_pretty(&Value::Object(self.values.clone()))
            .expect("a JSON map always serializes");
        text.push('\n');
        fsutil::write_atomic(path, text.as_bytes(), 0o600, owner)
    }

    /// A configuration holding exactly `values`.
    pub fn from_map(values: Map<String, Value>) -> Config {
        Config { values }
    }

    /// Every key and value, in the file's order.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.values
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &str) {
        self.values.shift_remove(key);
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.values.insert(key.to_string(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// A required string value.
    pub fn string(&self, key: &str) -> Result<&str> {
        match self.values.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.bad(key, "is not a string")),
            None => Err(self.bad(key, "is missing")),
        }
    }

    /// A required path value.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        self.string(key).map(PathBuf::from)
    }

    /// An optional string value (absent or empty: None).
    pub fn optional_string(&self, key: &str) -> Result<Option<&str>> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(key, "is not a string")),
        }
    }

    /// An optional positive integer in `range`, `default` when absent.
    pub fn number_or(&self, key: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64> {
        let value = match self.values.get(key) {
            None | Some(Value::Null) => return Ok(default),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match value {
            Some(v) if range.contains(&v) => Ok(v),
            _ => Err(self.bad(key, &format!("must be a number from {} to {}", range.start(), range.end()))),
        }
    }

    /// A required TCP port, given as a number or a numeric string.
    pub fn port(&self, key: &str) -> Result<u16> {
        let port = match self.values.get(key) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
            None => return Err(self.bad(key, "is missing")),
        };
        match port {
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(self.bad(key, "is not a port number (1-65535)")),
        }
    }

    /// A malformed, out-of-range or missing value: bad input (exit 2).
    fn bad(&self, key: &str, what: &str) -> Error {
        Error::usage(format!("configuration key {key} {what}"))
            .with_hint("fix keytrustee.conf in the confdir")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_survive_in_order() {
        let text = r#"{"ZZZ": 1, "HOSTNAME": "a", "EXTRA": {"x": [1,2]}}"#;
        let mut config = Config::parse(text).unwrap();
        config.set(HOSTNAME, "b");
        let out = serde_json::to_string(&Value::Object(config.values.clone())).unwrap();
        assert_eq!(out, r#"{"ZZZ":1,"HOSTNAME":"b","EXTRA":{"x":[1,2]}}"#);
    }

    #[test]
    fn ports_are_checked() {
        let config = Config::parse(r#"{"A": 11381, "B": "5432", "C": 0, "D": "x", "E": 70000}"#).unwrap();
        assert_eq!(config.port("A").unwrap(), 11381);
        assert_eq!(config.port("B").unwrap(), 5432);
        for key in ["C", "D", "E", "F"] {
            assert!(config.port(key).is_err(), "{key}");
        }
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(Config::parse("[1]").is_err());
        assert!(Config::parse("{").is_err());
    }
}
