//! The typed settings of one instance: every documented key of
//! `keytrustee.conf`, its default and its allowed range, in one place.
//!
//! [`Config`] stays the storage layer (the raw JSON object, kept in its
//! order, rewritten atomically); `Settings` is what the code reads. It is
//! built once per command, when the instance is loaded
//! ([`crate::instance::Layout::load`]), and passed down: code asks
//! `instance.settings.db_port`, never `config.get("DB_PORT")`. Keys kt does
//! not know are kept in [`Settings::extra`] and survive every rewrite.
//!
//! Checking is of two kinds. Here: each value's type and range, so that a
//! malformed value stops every command with exit 2 naming the key (bad
//! configuration is bad input, src/error.rs). What a well-formed value
//! means to another part (which cipher suites `CIPHERS` names, whether
//! the certificate file exists) is checked by that part (src/tls.rs) when
//! it is used: by `kt serve`, `kt server start|restart` and `kt verify`.
//!
//! New keys (certificates, HA, mail, metrics) belong here too: a field,
//! its default and range in [`Settings::from_config`], and its line in
//! [`Settings::store`].

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::secret::PasswordSource;

/// The default `LISTEN`: every address, the documented port.
pub const DEFAULT_LISTEN: &str = config::DEFAULT_LISTEN;
pub const DEFAULT_DB_PORT: u16 = config::DEFAULT_DB_PORT;
pub const DEFAULT_TLS_MIN_VERSION: &str = config::DEFAULT_TLS_MIN_VERSION;

/// A numeric setting: its key, its default and the values it may take.
#[derive(Debug, Clone)]
pub struct Bounded {
    pub key: &'static str,
    pub default: u64,
    pub range: RangeInclusive<u64>,
}

/// The server's limits, with the defaults an untuned server runs with.
pub const MAX_BODY_BYTES: Bounded =
    Bounded { key: config::MAX_BODY_BYTES, default: 1024 * 1024, range: 1..=config::MAX_BODY_BYTES_CEILING };
pub const MAX_HEADER_BYTES: Bounded =
    Bounded { key: config::MAX_HEADER_BYTES, default: 16 * 1024, range: 8192..=1024 * 1024 };
pub const MAX_CONNECTIONS: Bounded = Bounded { key: config::MAX_CONNECTIONS, default: 1024, range: 1..=100_000 };
pub const IDLE_TIMEOUT_SECONDS: Bounded = Bounded { key: config::IDLE_TIMEOUT_SECONDS, default: 30, range: 1..=3600 };
pub const REQUEST_TIMEOUT_SECONDS: Bounded =
    Bounded { key: config::REQUEST_TIMEOUT_SECONDS, default: 30, range: 1..=3600 };
pub const AUTH_WINDOW_SECONDS: Bounded = Bounded { key: config::AUTH_WINDOW_SECONDS, default: 300, range: 1..=86_400 };
pub const DB_POOL_SIZE: Bounded = Bounded { key: config::DB_POOL_SIZE, default: 4, range: 1..=256 };
pub const HA_WRITE_TIMEOUT_SECONDS: Bounded =
    Bounded { key: config::HA_WRITE_TIMEOUT_SECONDS, default: 5, range: 1..=300 };
/// Registrations without the secret wait for an administrator; each is a
/// row anyone who knows an organization's name can add, so they are capped.
pub const MAX_PENDING_CLIENTS: Bounded =
    Bounded { key: config::MAX_PENDING_CLIENTS, default: 100, range: 1..=100_000 };
/// A stopping server's grace with /health at 503 before it stops
/// accepting: 0 by default (a lone server has nobody to tell); behind a
/// load balancer, its health-check interval times its failure count.
pub const DRAIN_SECONDS: Bounded = Bounded { key: config::DRAIN_SECONDS, default: 0, range: 0..=300 };

/// Every limit, in the order they are written.
const LIMITS: [&Bounded; 10] = [
    &MAX_BODY_BYTES,
    &MAX_HEADER_BYTES,
    &MAX_CONNECTIONS,
    &IDLE_TIMEOUT_SECONDS,
    &REQUEST_TIMEOUT_SECONDS,
    &AUTH_WINDOW_SECONDS,
    &DB_POOL_SIZE,
    &HA_WRITE_TIMEOUT_SECONDS,
    &MAX_PENDING_CLIENTS,
    &DRAIN_SECONDS,
];

/// The settings of `keytrustee.conf`, checked and with defaults filled in.
///
/// Paths are as written: relative ones are resolved by
/// [`crate::instance::Instance`], which knows the home and the confdir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>", into = "Map<String, Value>")]
pub struct Settings {
    /// `HOSTNAME` (required): the name in the certificate and the backup names.
    pub hostname: String,
    /// `LISTEN`: where `kt serve` listens (default 0.0.0.0:11371).
    pub listen: SocketAddr,
    /// `DB_PORT`: the instance's PostgreSQL port on 127.0.0.1 (default 11381).
    pub db_port: u16,
    /// `PG_ROOTDIR`: the PostgreSQL data directory (default `<home>/db`).
    pub pg_rootdir: Option<PathBuf>,
    /// `SSL_CERTIFICATE` (default `<confdir>/.ssl/ssl-cert-keytrustee.pem`).
    pub ssl_certificate: Option<PathBuf>,
    /// `SSL_PRIVATE_KEY` (default `<confdir>/.ssl/ssl-cert-keytrustee-pk.pem`).
    pub ssl_private_key: Option<PathBuf>,
    /// `SSL_CA` (default `<confdir>/.ssl/ssl-cert-keytrustee-ca.pem`, used when present).
    pub ssl_ca: Option<PathBuf>,
    /// `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`: prints the password of an encrypted key.
    pub ssl_private_key_password_script: Option<String>,
    /// `TLS_MIN_VERSION` (default tlsv1.2; its values are checked by src/tls.rs).
    pub tls_min_version: String,
    /// `CIPHERS` (default: empty, every suite; names checked by src/tls.rs).
    pub ciphers: String,
    /// `SERVICE_USER`: the account the database and server run as under root.
    pub service_user: Option<String>,
    /// `HA_ROLE`: `active` or `passive` in an HA pair (None: standalone).
    pub ha_role: Option<HaRole>,
    /// `HA_PEER`: the other host's database, HOST:DBPORT.
    pub ha_peer: Option<String>,
    /// `DB_MODE` `external` and its keys: where the external database is.
    /// None (`DB_MODE` absent or `local`): the instance's own cluster.
    pub external_db: Option<ExternalDb>,
    /// `METRICS_LISTEN`: a loopback address and port for `GET /metrics`
    /// (None: no metrics listener).
    pub metrics_listen: Option<SocketAddr>,
    /// `MAX_BODY_BYTES`, `MAX_HEADER_BYTES`, ... (see [`Limits`]).
    pub limits: Limits,
    /// `MAIL_*`: how contact mail leaves this host (see [`MailSettings`]).
    pub mail: MailSettings,
    /// Keys kt does not know, kept as they were for every rewrite.
    pub extra: Map<String, Value>,
}

/// The mail keys of `keytrustee.conf`.
pub const MAIL_TRANSPORT: &str = "MAIL_TRANSPORT";
pub const MAIL_SMTP_HOST: &str = "MAIL_SMTP_HOST";
pub const MAIL_SMTP_PORT: &str = "MAIL_SMTP_PORT";
pub const MAIL_SMTP_TLS: &str = "MAIL_SMTP_TLS";
pub const MAIL_SMTP_CA: &str = "MAIL_SMTP_CA";
pub const MAIL_SMTP_USER: &str = "MAIL_SMTP_USER";
pub const MAIL_SMTP_PASSWORD_FILE: &str = "MAIL_SMTP_PASSWORD_FILE";
pub const MAIL_SMTP_PASSWORD_SCRIPT: &str = "MAIL_SMTP_PASSWORD_SCRIPT";
pub const MAIL_SENDMAIL: &str = "MAIL_SENDMAIL";
pub const MAIL_FROM: &str = "MAIL_FROM";
/// The first retry's delay; each later one doubles, up to an hour.
pub const MAIL_RETRY_SECONDS: Bounded = Bounded { key: "MAIL_RETRY_SECONDS", default: 60, range: 1..=3600 };
/// How long a message is retried before it is given up (`failed`).
pub const MAIL_GIVE_UP_HOURS: Bounded = Bounded { key: "MAIL_GIVE_UP_HOURS", default: 72, range: 1..=720 };
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";

/// How contact mail is sent (`MAIL_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTransport {
    /// SMTP to `MAIL_SMTP_HOST:MAIL_SMTP_PORT` (default localhost:25, the
    /// documented local Postfix).
    Smtp,
    /// The local `sendmail` program (`MAIL_SENDMAIL`).
    Sendmail,
    /// No mail leaves: messages stay queued (`kt mail queue` shows them)
    /// until a transport is configured.
    Off,
}

impl MailTransport {
    pub fn name(self) -> &'static str {
        match self {
            MailTransport::Smtp => "smtp",
            MailTransport::Sendmail => "sendmail",
            MailTransport::Off => "off",
        }
    }
}

/// TLS on the SMTP connection (`MAIL_SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS when the server offers it (default). To a loopback address
    /// the certificate is not checked (the traffic does not leave the host,
    /// and Debian's Postfix offers a self-signed "snakeoil" one); to any
    /// other host it is, against the system's CAs and `MAIL_SMTP_CA`.
    Opportunistic,
    /// STARTTLS or no mail; the certificate is always checked.
    Required,
    /// TLS from the first byte (port 465, "SMTPS"); checked.
    Wrapper,
    /// Plain SMTP; allowed only without authentication or to loopback.
    Off,
}

impl SmtpTls {
    pub fn name(self) -> &'static str {
        match self {
            SmtpTls::Opportunistic => "opportunistic",
            SmtpTls::Required => "required",
            SmtpTls::Wrapper => "wrapper",
            SmtpTls::Off => "off",
        }
    }
}

/// SMTP authentication: `MAIL_SMTP_USER` and where its password comes
/// from (`MAIL_SMTP_PASSWORD_FILE` or `MAIL_SMTP_PASSWORD_SCRIPT`), as a
/// [`PasswordSource`], the one reader of password files and scripts, whose
/// Debug output never shows a script (it may hold a password inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpAuth {
    pub user: String,
    /// `PasswordSource::File` or `PasswordSource::Script`, as configured.
    pub password: PasswordSource,
}

impl SmtpAuth {
    /// The key the password comes from, for messages.
    pub fn password_key(&self) -> &'static str {
        match self.password {
            PasswordSource::File(_) => MAIL_SMTP_PASSWORD_FILE,
            _ => MAIL_SMTP_PASSWORD_SCRIPT,
        }
    }
}

/// The mail settings, checked. A password is never in the configuration:
/// only where to read it (a file or a script, as with
/// `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    pub transport: MailTransport,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    /// `MAIL_SMTP_CA`: extra CA certificates (PEM) for the relay's certificate.
    pub smtp_ca: Option<PathBuf>,
    /// `MAIL_SMTP_USER` with its password source (None: no authentication).
    pub smtp_auth: Option<SmtpAuth>,
    pub sendmail: PathBuf,
    /// `MAIL_FROM` as written (None: `keytrustee@<HOSTNAME>`).
    pub from: Option<String>,
    pub retry_seconds: u64,
    pub give_up_hours: u64,
}

impl MailSettings {
    /// The sender address: `MAIL_FROM`, else `keytrustee@<HOSTNAME>`.
    pub fn from_address(&self, hostname: &str) -> String {
        self.from.clone().unwrap_or_else(|| format!("keytrustee@{hostname}"))
    }

    fn read(c: &Config) -> Result<MailSettings> {
        let text = |key: &str| -> Result<Option<String>> { Ok(c.optional_string(key)?.map(str::to_string)) };
        let transport = match c.optional_string(MAIL_TRANSPORT)? {
            None | Some("smtp") => MailTransport::Smtp,
            Some("sendmail") => MailTransport::Sendmail,
            Some("off") => MailTransport::Off,
            Some(other) => return Err(bad(MAIL_TRANSPORT, &format!("is {other:?}, not \"smtp\", \"sendmail\" or \"off\""))),
        };
        let smtp_tls = match c.optional_string(MAIL_SMTP_TLS)? {
            None | Some("opportunistic") => SmtpTls::Opportunistic,
            Some("required") => SmtpTls::Required,
            Some("wrapper") => SmtpTls::Wrapper,
            Some("off") => SmtpTls::Off,
            Some(other) => {
                return Err(bad(MAIL_SMTP_TLS, &format!("is {other:?}, not \"opportunistic\", \"required\", \"wrapper\" or \"off\"")))
            }
        };
        let smtp_port = match c.get(MAIL_SMTP_PORT) {
            None | Some(Value::Null) => if smtp_tls == SmtpTls::Wrapper { 465 } else { 25 },
            Some(_) => c.port(MAIL_SMTP_PORT)?,
        };
        let smtp_host = text(MAIL_SMTP_HOST)?.unwrap_or_else(|| "localhost".to_string());
        if crate::hostname::validate(&smtp_host).is_err() && smtp_host.parse::<std::net::IpAddr>().is_err() {
            return Err(bad(MAIL_SMTP_HOST, &format!("{smtp_host:?} is not a host name or address")));
        }
        let from = text(MAIL_FROM)?;
        if let Some(from) = &from {
            crate::org::validate_contact(from).map_err(|e| bad(MAIL_FROM, "is not a mail address").because(e.to_string()))?;
        }
        let smtp_user = text(MAIL_SMTP_USER)?;
        let smtp_password_file = c.optional_string(MAIL_SMTP_PASSWORD_FILE)?.map(PathBuf::from);
        let smtp_password_script = text(MAIL_SMTP_PASSWORD_SCRIPT)?;
        if smtp_password_file.is_some() && smtp_password_script.is_some() {
            return Err(bad(MAIL_SMTP_PASSWORD_FILE, "and MAIL_SMTP_PASSWORD_SCRIPT are both set: keep one"));
        }
        let smtp_auth = match (smtp_user, smtp_password_file, smtp_password_script) {
            (None, None, None) => None,
            (Some(user), Some(file), None) => Some(SmtpAuth { user, password: PasswordSource::File(file) }),
            (Some(user), None, Some(script)) => Some(SmtpAuth { user, password: PasswordSource::Script(script) }),
            _ => return Err(bad(MAIL_SMTP_USER, "needs MAIL_SMTP_PASSWORD_FILE or MAIL_SMTP_PASSWORD_SCRIPT, and they need it")),
        };
        Ok(MailSettings {
            transport,
            smtp_host,
            smtp_port,
            smtp_tls,
            smtp_ca: c.optional_string(MAIL_SMTP_CA)?.map(PathBuf::from),
            smtp_auth,
            sendmail: c.optional_string(MAIL_SENDMAIL)?.map_or_else(|| PathBuf::from(DEFAULT_SENDMAIL), PathBuf::from),
            from,
            retry_seconds: c.number_or(MAIL_RETRY_SECONDS.key, MAIL_RETRY_SECONDS.default, MAIL_RETRY_SECONDS.range.clone())?,
            give_up_hours: c.number_or(MAIL_GIVE_UP_HOURS.key, MAIL_GIVE_UP_HOURS.default, MAIL_GIVE_UP_HOURS.range.clone())?,
        })
    }

    /// The keys to write back: only those set in the file or away from
    /// their default (an untouched file stays as it was).
    fn store(&self, config: &mut Config) {
        let d = MailSettings::read(&Config::new()).expect("the defaults are valid");
        let mut put = |key: &str, value: Option<Value>, default: Option<Value>| match value {
            Some(v) if Some(&v) != default.as_ref() || config.get(key).is_some() => config.set(key, v),
            Some(_) => {}
            None => config.remove(key),
        };
        let text = |s: &Option<String>| s.clone().map(Value::from);
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::from(p.to_string_lossy().into_owned()));
        put(MAIL_TRANSPORT, Some(self.transport.name().into()), Some(d.transport.name().into()));
        put(MAIL_SMTP_HOST, Some(self.smtp_host.clone().into()), Some(d.smtp_host.into()));
        let default_port = if self.smtp_tls == SmtpTls::Wrapper { 465 } else { 25 };
        put(MAIL_SMTP_PORT, Some(self.smtp_port.into()), Some(default_port.into()));
        put(MAIL_SMTP_TLS, Some(self.smtp_tls.name().into()), Some(d.smtp_tls.name().into()));
        put(MAIL_SMTP_CA, path(&self.smtp_ca), None);
        let auth = self.smtp_auth.as_ref();
        let (file, script) = match auth.map(|a| &a.password) {
            Some(PasswordSource::File(p)) => (Some(p.clone()), None),
            Some(PasswordSource::Script(s)) => (None, Some(s.clone())),
            _ => (None, None),
        };
        put(MAIL_SMTP_USER, text(&auth.map(|a| a.user.clone())), None);
        put(MAIL_SMTP_PASSWORD_FILE, path(&file), None);
        put(MAIL_SMTP_PASSWORD_SCRIPT, text(&script), None);
        put(MAIL_SENDMAIL, Some(self.sendmail.to_string_lossy().into_owned().into()), Some(DEFAULT_SENDMAIL.into()));
        put(MAIL_FROM, text(&self.from), None);
        put(MAIL_RETRY_SECONDS.key, Some(self.retry_seconds.into()), Some(MAIL_RETRY_SECONDS.default.into()));
        put(MAIL_GIVE_UP_HOURS.key, Some(self.give_up_hours.into()), Some(MAIL_GIVE_UP_HOURS.default.into()));
    }
}

/// Every mail key (not in `extra`).
const MAIL_KEYS: [&str; 12] = [
    MAIL_TRANSPORT,
    MAIL_SMTP_HOST,
    MAIL_SMTP_PORT,
    MAIL_SMTP_TLS,
    MAIL_SMTP_CA,
    MAIL_SMTP_USER,
    MAIL_SMTP_PASSWORD_FILE,
    MAIL_SMTP_PASSWORD_SCRIPT,
    MAIL_SENDMAIL,
    MAIL_FROM,
    MAIL_RETRY_SECONDS.key,
    MAIL_GIVE_UP_HOURS.key,
];

/// This host's part in an HA pair (`HA_ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaRole {
    Active,
    Passive,
}

impl HaRole {
    pub fn name(self) -> &'static str {
        match self {
            HaRole::Active => "active",
            HaRole::Passive => "passive",
        }
    }
}

/// An existing PostgreSQL server that holds the instance's database
/// (`DB_MODE` `external`). Its port is `DB_PORT`; the password is in the
/// confdir's `.pgpass`, never here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalDb {
    /// `DB_HOST` (required): a host name or address.
    pub host: String,
    /// `DB_NAME` (default keytrustee).
    pub name: String,
    /// `DB_USER` (default keytrustee): a role without superuser rights.
    pub user: String,
    /// `DB_SSLMODE` (default verify-full).
    pub sslmode: SslMode,
    /// `DB_SSLROOTCERT`: the CA file; required by verify-ca and verify-full.
    pub sslrootcert: Option<PathBuf>,
    /// `DB_CHANNEL_BINDING` (default prefer).
    pub channel_binding: ChannelBinding,
}

/// libpq's `channel_binding`, with libpq's meaning: whether SCRAM ties
/// the login to the TLS session (`tls-server-end-point`), so that a man
/// in the middle holding a certificate the client accepts cannot relay
/// it. `require` refuses a server that does not (no TLS, no SCRAM, or no
/// channel binding offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    Prefer,
    Require,
    Disable,
}

impl ChannelBinding {
    pub const NAMES: [&'static str; 3] = ["prefer", "require", "disable"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Option<ChannelBinding> {
        [ChannelBinding::Prefer, ChannelBinding::Require, ChannelBinding::Disable]
            .into_iter()
            .find(|m| m.name() == text)
    }
}

/// libpq's `sslmode`, with libpq's meaning (what `psql` and `pg_dump`
/// do with the same name is what kt does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    /// TLS, the certificate checked against DB_SSLROOTCERT when given.
    Require,
    /// TLS, the chain checked against DB_SSLROOTCERT, not the host name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    pub const NAMES: [&'static str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Option<SslMode> {
        [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull]
            .into_iter()
            .find(|m| m.name() == text)
    }

    /// Whether the server's certificate chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The defaults of an external database's settings.
pub const DEFAULT_DB_NAME: &str = "keytrustee";
pub const DEFAULT_DB_USER: &str = "keytrustee";
pub const DEFAULT_DB_SSLMODE: SslMode = SslMode::VerifyFull;

/// The server's resource limits (each a [`Bounded`] setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_header_bytes: u64,
    pub max_connections: u64,
    pub idle_timeout_seconds: u64,
    pub request_timeout_seconds: u64,
    pub auth_window_seconds: u64,
    pub db_pool_size: u64,
    /// With synchronous replication: how long a write waits for the passive.
    pub ha_write_timeout_seconds: u64,
    /// Clients awaiting approval per organization; more are refused (429).
    pub max_pending_clients: u64,
    /// A stopping server's /health-503 grace before it stops accepting.
    pub drain_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: MAX_BODY_BYTES.default,
            max_header_bytes: MAX_HEADER_BYTES.default,
            max_connections: MAX_CONNECTIONS.default,
            idle_timeout_seconds: IDLE_TIMEOUT_SECONDS.default,
            request_timeout_seconds: REQUEST_TIMEOUT_SECONDS.default,
            auth_window_seconds: AUTH_WINDOW_SECONDS.default,
            db_pool_size: DB_POOL_SIZE.default,
            ha_write_timeout_seconds: HA_WRITE_TIMEOUT_SECONDS.default,
            max_pending_clients: MAX_PENDING_CLIENTS.default,
            drain_seconds: DRAIN_SECONDS.default,
        }
    }
}

impl Limits {
    fn values(&self) -> [u64; 10] {
        [
            self.max_body_bytes,
            self.max_header_bytes,
            self.max_connections,
            self.idle_timeout_seconds,
            self.request_timeout_seconds,
            self.auth_window_seconds,
            self.db_pool_size,
            self.ha_write_timeout_seconds,
            self.max_pending_clients,
            self.drain_seconds,
        ]
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

impl Settings {
    /// Reads and checks every known key of `config`. The first bad value
    /// stops it: exit 2, naming the key, with a hint to fix the file.
    pub fn from_config(config: &Config) -> Result<Settings> {
        let c = config;
        let path = |key: &str| -> Result<Option<PathBuf>> { Ok(c.optional_string(key)?.map(PathBuf::from)) };
        let text = |key: &str| -> Result<Option<String>> { Ok(c.optional_string(key)?.map(str::to_string)) };
        let number = |b: &Bounded| c.number_or(b.key, b.default, b.range.clone());

        let hostname = c.string(config::HOSTNAME)?.to_string();
        crate::hostname::validate(&hostname).map_err(|e| bad(config::HOSTNAME, "is not a valid host name").because(e))?;
        let listen_text = c.optional_string(config::LISTEN)?.unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text
            .parse()
            .map_err(|e| bad(config::LISTEN, &format!("{listen_text:?} is not an address and port")).because(e))?;
        let db_port = match c.get(config::DB_PORT) {
            None | Some(Value::Null) => DEFAULT_DB_PORT,
            Some(_) => c.port(config::DB_PORT)?,
        };
        let ha_role = match c.optional_string(config::HA_ROLE)? {
            None => None,
            Some("active") => Some(HaRole::Active),
            Some("passive") => Some(HaRole::Passive),
            Some(other) => return Err(bad(config::HA_ROLE, &format!("is {other:?}, not \"active\" or \"passive\""))),
        };
        let external_db = external_db(c)?;
        let known = known_keys();
        let extra = c.values().iter().filter(|(k, _)| !known.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Settings {
            hostname,
            listen,
            db_port,
            pg_rootdir: path(config::PG_ROOTDIR)?,
            ssl_certificate: path(config::SSL_CERTIFICATE)?,
            ssl_private_key: path(config::SSL_PRIVATE_KEY)?,
            ssl_ca: path(config::SSL_CA)?,
            ssl_private_key_password_script: text(config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT)?,
            tls_min_version: text(config::TLS_MIN_VERSION)?.unwrap_or_else(|| DEFAULT_TLS_MIN_VERSION.to_string()),
            ciphers: text(config::CIPHERS)?.unwrap_or_default(),
            service_user: text(config::SERVICE_USER)?,
            ha_role,
            ha_peer: text(config::HA_PEER)?,
            external_db,
            metrics_listen: metrics_listen(c)?,
            limits: Limits {
                max_body_bytes: number(&MAX_BODY_BYTES)?,
                max_header_bytes: number(&MAX_HEADER_BYTES)?,
                max_connections: number(&MAX_CONNECTIONS)?,
                idle_timeout_seconds: number(&IDLE_TIMEOUT_SECONDS)?,
                request_timeout_seconds: number(&REQUEST_TIMEOUT_SECONDS)?,
                auth_window_seconds: number(&AUTH_WINDOW_SECONDS)?,
                db_pool_size: number(&DB_POOL_SIZE)?,
                ha_write_timeout_seconds: number(&HA_WRITE_TIMEOUT_SECONDS)?,
                max_pending_clients: number(&MAX_PENDING_CLIENTS)?,
                drain_seconds: number(&DRAIN_SECONDS)?,
            },
            mail: MailSettings::read(c)?,
            extra,
        })
    }

    /// Writes these settings into `config`: known keys set (or removed when
    /// unset), unknown keys and the file's order left as they are. Limits
    /// at their default are not added to a file that lacks them.
    pub fn store(&self, config: &mut Config) {
        for (key, value) in self.known_values() {
            match value {
                Some(value) => config.set(key, value),
                None => config.remove(key),
            }
        }
        for (bounded, value) in LIMITS.iter().zip(self.limits.values()) {
            if value != bounded.default || config.get(bounded.key).is_some() {
                config.set(bounded.key, value);
            }
        }
        self.mail.store(config);
        for (key, value) in &self.extra {
            config.set(key, value.clone());
        }
    }

    /// Every known key but the limits with its value to write (None:
    /// leave it out).
    fn known_values(&self) -> Vec<(&'static str, Option<Value>)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::from(p.to_string_lossy().into_owned()));
        let text = |s: &Option<String>| s.clone().map(Value::from);
        vec![
            (config::HOSTNAME, Some(Value::from(self.hostname.clone()))),
            (config::LISTEN, Some(Value::from(self.listen.to_string()))),
            (config::DB_PORT, Some(Value::from(self.db_port))),
            (config::PG_ROOTDIR, path(&self.pg_rootdir)),
            (config::SSL_CERTIFICATE, path(&self.ssl_certificate)),
            (config::SSL_PRIVATE_KEY, path(&self.ssl_private_key)),
            (config::SSL_CA, path(&self.ssl_ca)),
            (config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT, text(&self.ssl_private_key_password_script)),
            (config::TLS_MIN_VERSION, Some(Value::from(self.tls_min_version.clone()))),
            (config::CIPHERS, (!self.ciphers.is_empty()).then(|| Value::from(self.ciphers.clone()))),
            (config::SERVICE_USER, text(&self.service_user)),
            (config::HA_ROLE, self.ha_role.map(|r| Value::from(r.name()))),
            (config::HA_PEER, text(&self.ha_peer)),
            (config::DB_MODE, self.external_db.as_ref().map(|_| Value::from("external"))),
            (config::DB_HOST, self.external_db.as_ref().map(|e| Value::from(e.host.clone()))),
            (config::DB_NAME, self.external_db.as_ref().map(|e| Value::from(e.name.clone()))),
            (config::DB_USER, self.external_db.as_ref().map(|e| Value::from(e.user.clone()))),
            (config::DB_SSLMODE, self.external_db.as_ref().map(|e| Value::from(e.sslmode.name()))),
            (config::DB_SSLROOTCERT, self.external_db.as_ref().and_then(|e| path(&e.sslrootcert))),
            (config::DB_CHANNEL_BINDING, self.external_db.as_ref().map(|e| Value::from(e.channel_binding.name()))),
            (config::METRICS_LISTEN, self.metrics_listen.map(|a| Value::from(a.to_string()))),
        ]
    }
}

/// The keys [`Settings`] reads: everything else is kept in `extra`.
fn known_keys() -> Vec<&'static str> {
    // Every host key (src/hostconf.rs), then the keys both hosts share.
    let mut keys = crate::hostconf::HOST_KEYS.to_vec();
    keys.extend([config::TLS_MIN_VERSION, config::CIPHERS, config::SERVICE_USER, config::METRICS_LISTEN]);
    keys.extend(EXTERNAL_KEYS);
    keys.push(config::DB_MODE);
    keys.extend(LIMITS.iter().map(|b| b.key));
    keys.extend(MAIL_KEYS);
    keys
}

/// The keys that describe an external database (besides DB_MODE, DB_PORT).
const EXTERNAL_KEYS: [&str; 6] =
    [config::DB_HOST, config::DB_NAME, config::DB_USER, config::DB_SSLMODE, config::DB_SSLROOTCERT, config::DB_CHANNEL_BINDING];

/// `DB_MODE` and the external database's keys. In local mode those keys
/// are refused rather than ignored: a half-edited file that names a
/// database kt would not use is a mistake to point out, not to guess at.
fn external_db(c: &Config) -> Result<Option<ExternalDb>> {
    match c.optional_string(config::DB_MODE)? {
        None | Some("local") => {
            let set = |k: &&&str| matches!(c.get(k), Some(v) if !v.is_null() && v.as_str() != Some(""));
            if let Some(key) = EXTERNAL_KEYS.iter().find(set) {
                return Err(bad(key, "is set but DB_MODE is not \"external\""));
            }
            Ok(None)
        }
        Some("external") => {
            let host = c.optional_string(config::DB_HOST)?.ok_or_else(|| bad(config::DB_HOST, "is missing (DB_MODE is \"external\")"))?;
            let name = c.optional_string(config::DB_NAME)?.unwrap_or(DEFAULT_DB_NAME);
            let user = c.optional_string(config::DB_USER)?.unwrap_or(DEFAULT_DB_USER);
            // Names go into SQL text, `.pgpass` and libpq's environment:
            // plain words only, no quoting to get wrong. Database and role
            // names are lower case, as PostgreSQL folds unquoted names.
            if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)) {
                return Err(bad(config::DB_HOST, &format!("{host:?} is not a host name or address")));
            }
            for (key, value) in [(config::DB_NAME, name), (config::DB_USER, user)] {
                if !is_plain_identifier(value) {
                    return Err(bad(key, &format!("{value:?} is not a plain name (a-z, 0-9, _; not starting with a digit)")));
                }
            }
            let sslmode = match c.optional_string(config::DB_SSLMODE)? {
                None => DEFAULT_DB_SSLMODE,
                Some(text) => SslMode::parse(text)
                    .ok_or_else(|| bad(config::DB_SSLMODE, &format!("is {text:?}, not one of {}", SslMode::NAMES.join(", "))))?,
            };
            let sslrootcert = c.optional_string(config::DB_SSLROOTCERT)?.map(PathBuf::from);
            if sslmode.verifies() && sslrootcert.is_none() {
                return Err(bad(config::DB_SSLROOTCERT, &format!("is missing: DB_SSLMODE {} checks the server's certificate against it", sslmode.name())));
            }
            let channel_binding = match c.optional_string(config::DB_CHANNEL_BINDING)? {
                None => ChannelBinding::Prefer,
                Some(text) => ChannelBinding::parse(text).ok_or_else(|| {
                    bad(config::DB_CHANNEL_BINDING, &format!("is {text:?}, not one of {}", ChannelBinding::NAMES.join(", ")))
                })?,
            };
            // As libpq: binding to a TLS session needs one.
            if channel_binding == ChannelBinding::Require && sslmode == SslMode::Disable {
                return Err(bad(config::DB_CHANNEL_BINDING, "is \"require\" but DB_SSLMODE is \"disable\": channel binding needs TLS"));
            }
            Ok(Some(ExternalDb { host: host.to_string(), name: name.to_string(), user: user.to_string(), sslmode, sslrootcert, channel_binding }))
        }
        Some(other) => Err(bad(config::DB_MODE, &format!("is {other:?}, not \"local\" or \"external\""))),
    }
}

/// A lower-case SQL identifier that needs no quoting.
pub fn is_plain_identifier(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `METRICS_LISTEN`: off when absent; on, a loopback address only. The
/// metrics name the server's key, its clients' refusal counts and its
/// database's state: they are for the host's own collector (or an agent
/// that forwards them), never an open port.
fn metrics_listen(c: &Config) -> Result<Option<SocketAddr>> {
    let Some(text) = c.optional_string(config::METRICS_LISTEN)? else { return Ok(None) };
    let addr: SocketAddr =
        text.parse().map_err(|e| bad(config::METRICS_LISTEN, &format!("{text:?} is not an address and port")).because(e))?;
    if !addr.ip().is_loopback() {
        return Err(bad(config::METRICS_LISTEN, &format!("is {addr}: the metrics listener takes a loopback address only (127.0.0.1 or ::1)")));
    }
    Ok(Some(addr))
}

fn bad(key: &str, what: &str) -> Error {
    let hint = if crate::hostconf::is_host_key(key) {
        "fix keytrustee.conf in the confdir, or .ssl/host.conf when that file sets the key (it overrides keytrustee.conf)"
    } else {
        "fix keytrustee.conf in the confdir"
    };
    Error::usage(format!("configuration key {key} {what}")).with_hint(hint)
}

impl TryFrom<Map<String, Value>> for Settings {
    type Error = Error;

    fn try_from(values: Map<String, Value>) -> Result<Settings> {
        Settings::from_config(&Config::from_map(values))
    }
}

impl From<Settings> for Map<String, Value> {
    fn from(settings: Settings) -> Map<String, Value> {
        let mut config = Config::new();
        settings.store(&mut config);
        config.into_map()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings> {
        Settings::from_config(&Config::parse(text).unwrap())
    }

    #[test]
    fn an_external_database_is_read_checked_and_written_back() {
        let s = parse(r#"{"HOSTNAME": "h", "DB_MODE": "external", "DB_HOST": "db.example.com", "DB_PORT": 5432,
            "DB_SSLROOTCERT": "/etc/kt/db-ca.pem"}"#)
        .unwrap();
        let e = s.external_db.clone().unwrap();
        assert_eq!((e.host.as_str(), e.name.as_str(), e.user.as_str()), ("db.example.com", "keytrustee", "keytrustee"));
        assert_eq!((e.sslmode, s.db_port), (SslMode::VerifyFull, 5432));
        let mut config = Config::new();
        s.store(&mut config);
        assert_eq!(config.get("DB_SSLMODE"), Some(&Value::from("verify-full")));
        assert_eq!(e.channel_binding, ChannelBinding::Prefer, "libpq's default");
        assert_eq!(config.get("DB_CHANNEL_BINDING"), Some(&Value::from("prefer")));
        assert_eq!(Settings::from_config(&config).unwrap(), s);
        let required = parse(r#"{"HOSTNAME": "h", "DB_MODE": "external", "DB_HOST": "db", "DB_SSLMODE": "require", "DB_CHANNEL_BINDING": "require"}"#);
        assert_eq!(required.unwrap().external_db.unwrap().channel_binding, ChannelBinding::Require);
        for mode in ChannelBinding::NAMES {
            assert_eq!(ChannelBinding::parse(mode).unwrap().name(), mode);
        }
        // Local (the default) writes none of the keys.
        let local = parse(r#"{"HOSTNAME": "h"}"#).unwrap();
        let mut config = Config::new();
        local.store(&mut config);
        assert!(config.get("DB_MODE").is_none() && config.get("DB_HOST").is_none());
        for mode in SslMode::NAMES {
            assert_eq!(SslMode::parse(mode).unwrap().name(), mode);
        }
    }

    #[test]
    fn bad_external_settings_name_their_key() {
        for (text, key) in [
            (r#""DB_MODE": "remote""#, "DB_MODE"),
            (r#""DB_MODE": "external""#, "DB_HOST"),
            (r#""DB_HOST": "db""#, "DB_HOST"),
            (r#""DB_MODE": "external", "DB_HOST": "db", "DB_SSLMODE": "verify""#, "DB_SSLMODE"),
            (r#""DB_MODE": "external", "DB_HOST": "db""#, "DB_SSLROOTCERT"),
            (r#""DB_MODE": "external", "DB_HOST": "db", "DB_SSLMODE": "require", "DB_USER": "Kt""#, "DB_USER"),
            (r#""DB_MODE": "external", "DB_HOST": "db", "DB_SSLMODE": "require", "DB_NAME": "a;b""#, "DB_NAME"),
            (r#""DB_MODE": "external", "DB_HOST": "a b", "DB_SSLMODE": "require""#, "DB_HOST"),
            (r#""DB_MODE": "external", "DB_HOST": "db", "DB_SSLMODE": "require", "DB_CHANNEL_BINDING": "always""#, "DB_CHANNEL_BINDING"),
            (r#""DB_MODE": "external", "DB_HOST": "db", "DB_SSLMODE": "disable", "DB_CHANNEL_BINDING": "require""#, "DB_CHANNEL_BINDING"),
            (r#""DB_CHANNEL_BINDING": "require""#, "DB_CHANNEL_BINDING"),
        ] {
            let e = parse(&format!(r#"{{"HOSTNAME": "h", {text}}}"#)).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{text}");
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
        assert!(parse(r#"{"HOSTNAME": "h", "DB_MODE": "external", "DB_HOST": "db", "DB_SSLMODE": "require"}"#).is_ok());
        assert!(parse(r#"{"HOSTNAME": "h", "DB_MODE": "local", "DB_HOST": ""}"#).is_ok());
    }

    #[test]
    fn defaults_fill_what_is_absent() {
        let s = parse(r#"{"HOSTNAME": "kts01.example.com"}"#).unwrap();
        assert_eq!(s.listen, "0.0.0.0:11371".parse().unwrap());
        assert_eq!(s.db_port, 11381);
        assert_eq!(s.tls_min_version, "tlsv1.2");
        assert_eq!(s.ciphers, "");
        assert_eq!((s.pg_rootdir, s.ssl_certificate, s.service_user), (None, None, None));
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.limits.max_body_bytes, 1024 * 1024);
        assert_eq!(s.limits.idle_timeout(), Duration::from_secs(30));
        // Empty and null optional values are absent.
        let s = parse(r#"{"HOSTNAME": "h", "SSL_CA": "", "SSL_PRIVATE_KEY_PASSWORD_SCRIPT": null}"#).unwrap();
        assert_eq!((s.ssl_ca, s.ssl_private_key_password_script), (None, None));
    }

    #[test]
    fn values_are_read_as_numbers_or_numeric_strings() {
        let s = parse(r#"{"HOSTNAME": "h", "DB_PORT": "5432", "MAX_CONNECTIONS": 10, "DB_POOL_SIZE": " 8 "}"#).unwrap();
        assert_eq!((s.db_port, s.limits.max_connections, s.limits.db_pool_size), (5432, 10, 8));
    }

    #[test]
    fn ranges_and_types_are_checked_naming_the_key() {
        for (text, key) in [
            (r#"{}"#, "HOSTNAME is missing"),
            (r#"{"HOSTNAME": 7}"#, "HOSTNAME is not a string"),
            (r#"{"HOSTNAME": "bad host"}"#, "HOSTNAME is not a valid host name"),
            (r#"{"HOSTNAME": "h", "LISTEN": "nowhere"}"#, "LISTEN \"nowhere\""),
            (r#"{"HOSTNAME": "h", "DB_PORT": 0}"#, "DB_PORT is not a port"),
            (r#"{"HOSTNAME": "h", "DB_PORT": 70000}"#, "DB_PORT is not a port"),
            (r#"{"HOSTNAME": "h", "SSL_CERTIFICATE": ["x"]}"#, "SSL_CERTIFICATE is not a string"),
            (r#"{"HOSTNAME": "h", "MAX_HEADER_BYTES": 100}"#, "MAX_HEADER_BYTES must be a number from 8192 to 1048576"),
            (r#"{"HOSTNAME": "h", "MAX_CONNECTIONS": 0}"#, "MAX_CONNECTIONS must be"),
            (r#"{"HOSTNAME": "h", "IDLE_TIMEOUT_SECONDS": 3601}"#, "IDLE_TIMEOUT_SECONDS must be"),
            (r#"{"HOSTNAME": "h", "DB_POOL_SIZE": "many"}"#, "DB_POOL_SIZE must be"),
            (r#"{"HOSTNAME": "h", "METRICS_LISTEN": "0.0.0.0:9100"}"#, "METRICS_LISTEN is 0.0.0.0:9100: the metrics listener takes a loopback address only"),
            (r#"{"HOSTNAME": "h", "METRICS_LISTEN": "localhost"}"#, "METRICS_LISTEN \"localhost\" is not an address and port"),
            (r#"{"HOSTNAME": "h", "DRAIN_SECONDS": 301}"#, "DRAIN_SECONDS must be"),
            (r#"{"HOSTNAME": "h", "SERVICE_USER": false}"#, "SERVICE_USER is not a string"),
            (r#"{"HOSTNAME": "h", "HA_ROLE": "primary"}"#, "HA_ROLE is \"primary\""),
            (r#"{"HOSTNAME": "h", "HA_WRITE_TIMEOUT_SECONDS": 0}"#, "HA_WRITE_TIMEOUT_SECONDS must be"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind(), crate::Kind::Usage, "{text}");
            assert!(err.to_string().contains(key), "{text}: {err}");
            assert!(err.hint().is_some_and(|h| h.contains("keytrustee.conf")), "{text}");
        }
        let s = parse(r#"{"HOSTNAME": "h", "HA_ROLE": "passive", "HA_PEER": "kts01:11381"}"#).unwrap();
        assert_eq!((s.ha_role, s.ha_peer.as_deref(), s.limits.ha_write_timeout_seconds), (Some(HaRole::Passive), Some("kts01:11381"), 5));
        // The bounds themselves are allowed.
        let s = parse(r#"{"HOSTNAME": "h", "MAX_HEADER_BYTES": 8192, "AUTH_WINDOW_SECONDS": 86400}"#).unwrap();
        assert_eq!((s.limits.max_header_bytes, s.limits.auth_window_seconds), (8192, 86_400));
    }

    #[test]
    fn unknown_keys_are_kept_on_rewrite() {
        let text = r#"{"ZZZ": 1, "HOSTNAME": "a", "MAX_CONNECTIONS": 1024, "EXTRA": {"x": [1, 2]}, "DB_PORT": 11381}"#;
        let mut config = Config::parse(text).unwrap();
        let mut settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.extra.keys().collect::<Vec<_>>(), ["ZZZ", "EXTRA"]);
        settings.hostname = "b".into();
        settings.db_port = 5432;
        settings.store(&mut config);
        // Through the storage layer: the order of the file, the unknown
        // keys as they were, an explicit default kept.
        let out = serde_json::to_string(&Value::Object(config.values().clone())).unwrap();
        assert_eq!(
            out,
            r#"{"ZZZ":1,"HOSTNAME":"b","MAX_CONNECTIONS":1024,"EXTRA":{"x":[1,2]},"DB_PORT":5432,"LISTEN":"0.0.0.0:11371","TLS_MIN_VERSION":"tlsv1.2"}"#
        );
        assert_eq!(Settings::from_config(&config).unwrap(), settings);
    }

    #[test]
    fn serde_round_trip_keeps_unknown_keys_and_checks_values() {
        let text = r#"{"HOSTNAME": "a", "NEWER_KEY": "kept", "MAX_BODY_BYTES": 2048, "SSL_CA": "/ca.pem"}"#;
        let settings: Settings = serde_json::from_str(text).unwrap();
        assert_eq!(settings.limits.max_body_bytes, 2048);
        let value = serde_json::to_value(&settings).unwrap();
        assert_eq!(value["NEWER_KEY"], "kept");
        assert_eq!(value["MAX_BODY_BYTES"], 2048);
        assert_eq!(value["SSL_CA"], "/ca.pem");
        assert!(value.get("MAX_CONNECTIONS").is_none(), "a default is not written where it was absent");
        let again: Settings = serde_json::from_value(value).unwrap();
        assert_eq!(again, settings);
        let err = serde_json::from_str::<Settings>(r#"{"HOSTNAME": "a", "DB_PORT": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("DB_PORT"), "{err}");
    }

    #[test]
    fn mail_settings_defaults_and_checks() {
        let s = parse(r#"{"HOSTNAME": "kts01.example.com"}"#).unwrap();
        assert_eq!(s.mail.transport, MailTransport::Smtp);
        assert_eq!((s.mail.smtp_host.as_str(), s.mail.smtp_port, s.mail.smtp_tls), ("localhost", 25, SmtpTls::Opportunistic));
        assert_eq!(s.mail.from_address(&s.hostname), "keytrustee@kts01.example.com");
        assert_eq!((s.mail.retry_seconds, s.mail.give_up_hours), (60, 72));
        let s = parse(r#"{"HOSTNAME": "h", "MAIL_SMTP_TLS": "wrapper", "MAIL_FROM": "kms@example.com"}"#).unwrap();
        assert_eq!((s.mail.smtp_port, s.mail.from_address("h").as_str()), (465, "kms@example.com"));
        for (text, key) in [
            (r#"{"HOSTNAME": "h", "MAIL_TRANSPORT": "pigeon"}"#, "MAIL_TRANSPORT is \"pigeon\""),
            (r#"{"HOSTNAME": "h", "MAIL_SMTP_TLS": "maybe"}"#, "MAIL_SMTP_TLS is"),
            (r#"{"HOSTNAME": "h", "MAIL_SMTP_PORT": 0}"#, "MAIL_SMTP_PORT"),
            (r#"{"HOSTNAME": "h", "MAIL_FROM": "nobody"}"#, "MAIL_FROM"),
            (r#"{"HOSTNAME": "h", "MAIL_SMTP_USER": "u"}"#, "MAIL_SMTP_USER needs"),
            (r#"{"HOSTNAME": "h", "MAIL_SMTP_PASSWORD_FILE": "/p"}"#, "MAIL_SMTP_USER needs"),
            (r#"{"HOSTNAME": "h", "MAIL_SMTP_USER": "u", "MAIL_SMTP_PASSWORD_FILE": "/p", "MAIL_SMTP_PASSWORD_SCRIPT": "cat /p"}"#, "both set"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind(), crate::Kind::Usage, "{text}");
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        // A file without mail keys gets none on rewrite; set ones stay.
        let mut config = Config::parse(r#"{"HOSTNAME": "a", "MAIL_SMTP_PORT": 2525}"#).unwrap();
        Settings::from_config(&config).unwrap().store(&mut config);
        assert_eq!(config.get(MAIL_SMTP_PORT), Some(&Value::from(2525)));
        assert!(config.get(MAIL_TRANSPORT).is_none() && config.get(MAIL_SENDMAIL).is_none());
    }

    /// A password script may carry the password inline: the settings'
    /// Debug output (which a log line or a panic may show) never has it,
    /// and the source survives a rewrite.
    #[test]
    fn the_smtp_password_script_is_not_in_debug_output() {
        let text = r#"{"HOSTNAME": "h", "MAIL_SMTP_USER": "kt", "MAIL_SMTP_PASSWORD_SCRIPT": "echo hunter2"}"#;
        let s = parse(text).unwrap();
        let auth = s.mail.smtp_auth.clone().unwrap();
        assert_eq!((auth.user.as_str(), auth.password_key()), ("kt", MAIL_SMTP_PASSWORD_SCRIPT));
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
        let mut config = Config::parse(text).unwrap();
        s.store(&mut config);
        assert_eq!(config.get(MAIL_SMTP_PASSWORD_SCRIPT), Some(&Value::from("echo hunter2")));
        let s = parse(r#"{"HOSTNAME": "h", "MAIL_SMTP_USER": "kt", "MAIL_SMTP_PASSWORD_FILE": "/pw"}"#).unwrap();
        assert_eq!(s.mail.smtp_auth.unwrap().password, PasswordSource::File("/pw".into()));
    }

    #[test]
    fn an_unset_optional_key_is_removed_on_store() {
        let mut config = Config::parse(r#"{"HOSTNAME": "a", "SSL_PRIVATE_KEY_PASSWORD_SCRIPT": "cat /pw"}"#).unwrap();
        let mut settings = Settings::from_config(&config).unwrap();
        settings.ssl_private_key_password_script = None;
        settings.store(&mut config);
        assert!(config.get(config::SSL_PRIVATE_KEY_PASSWORD_SCRIPT).is_none());
    }
}
