//! `kt cert show [FILE | --server HOST:PORT] [--json]`: what a certificate
//! and its chain say, for people (text) or programs (JSON with stable
//! field names). The instance's certificate and CA file by default.

use std::path::Path;
use std::time::Duration;

use kt::cert::chain;
use kt::cert::info::{format_utc, CertInfo};
use kt::client::https::{self, Url};
use kt::error::Kind;
use kt::instance::Layout;
use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::cli::{CertShowArgs, GlobalArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One certificate as shown; the JSON field names are a stable interface.
#[derive(Debug, Serialize)]
struct Shown {
    /// "leaf" (the first certificate), "chain" (the ones after it in the
    /// same file or handshake) or "ca" (from the instance's CA file).
    role: &'static str,
    /// The file it was read from, or the server that presented it.
    source: String,
    subject: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    dns_names: Vec<String>,
    ip_addresses: Vec<String>,
    issuer: String,
    serial: String,
    /// RFC 3339, UTC.
    not_before: String,
    not_after: String,
    /// Whole days until it expires, negative once expired.
    days_left: i64,
    /// SHA-256 of the DER, as `openssl x509 -fingerprint -sha256` prints it.
    sha256: String,
    /// "RSA 2048", "EC P-256", "Ed25519".
    key: String,
    is_ca: bool,
    self_issued: bool,
    #[serde(skip)]
    not_before_unix: i64,
    #[serde(skip)]
    not_after_unix: i64,
}

impl Shown {
    fn new(role: &'static str, source: &str, der: &CertificateDer<'_>) -> kt::Result<Shown> {
        let info = CertInfo::parse(der).map_err(|e| kt::Error::usage("a certificate kt cannot read").because(e))?;
        Ok(Shown {
            role,
            source: source.to_string(),
            not_before_unix: info.not_before,
            not_after_unix: info.not_after,
            dns_names: info.dns_names.clone(),
            ip_addresses: info.ips.iter().map(|ip| ip.to_string()).collect(),
            not_before: kt::clock::rfc3339(info.not_before),
            not_after: kt::clock::rfc3339(info.not_after),
            days_left: info.days_left(),
            subject: info.subject,
            issuer: info.issuer,
            serial: info.serial,
            sha256: info.sha256,
            key: info.key,
            is_ca: info.is_ca,
            self_issued: info.self_issued,
        })
    }

    fn lines(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dns_names.iter().map(|n| format!("DNS:{n}")).collect();
        names.extend(self.ip_addresses.iter().map(|ip| format!("IP:{ip}")));
        let left = match self.days_left {
            d if d < 0 => format!("expired {} days ago", -d),
            d => format!("{d} days left"),
        };
        let ca = match (self.is_ca, self.self_issued) {
            (true, true) => "yes (self-signed root)",
            (true, false) => "yes",
            (false, true) => "no (self-signed)",
            (false, false) => "no",
        };
        vec![
            format!("{} ({})", self.role, self.source),
            format!("  subject:     {}", self.subject),
            format!("  names:       {}", if names.is_empty() { "(none)".to_string() } else { names.join(", ") }),
            format!("  issuer:      {}", self.issuer),
            format!("  serial:      {}", self.serial),
            format!("  not before:  {}", format_utc(self.not_before_unix)),
            format!("  not after:   {} ({left})", format_utc(self.not_after_unix)),
            format!("  SHA-256:     {}", self.sha256),
            format!("  key:         {}", self.key),
            format!("  CA:          {ca}"),
        ]
    }
}

pub fn run(global: &GlobalArgs, args: CertShowArgs, printer: &Printer) -> CommandResult {
    let (source, shown) = match (&args.file, &args.server) {
        (Some(file), _) => (file.display().to_string(), from_file(file)?),
        (None, Some(server)) => {
            let url = Url::parse_host_port(server)?;
            let chain = https::presented_chain(&url, HANDSHAKE_TIMEOUT)?;
            (url.to_string(), roles(&chain, &url.to_string())?)
        }
        (None, None) => instance_certificates(global)?,
    };
    if args.json {
        let value = serde_json::json!({ "source": source, "certificates": shown });
        printer.data(serde_json::to_string_pretty(&value).expect("JSON"))?;
        return Ok(Status::Success);
    }
    let mut out = Vec::new();
    for cert in &shown {
        if !out.is_empty() {
            out.push(String::new());
        }
        out.extend(cert.lines());
    }
    printer.data(out.join("\n"))?;
    Ok(Status::Success)
}

/// The first certificate is the leaf, every later one "chain".
fn roles(certs: &[CertificateDer<'_>], source: &str) -> kt::Result<Vec<Shown>> {
    certs.iter().enumerate().map(|(i, c)| Shown::new(if i == 0 { "leaf" } else { "chain" }, source, c)).collect()
}

/// A file named on the command line: unreadable or not a certificate is
/// bad input (exit 2).
fn from_file(path: &Path) -> kt::Result<Vec<Shown>> {
    roles(&chain::read_cert_file(path)?, &path.display().to_string())
}

/// The instance's certificate file, then what its CA file adds. These are
/// the instance's own files: missing or unreadable, the environment is at
/// fault (exit 3).
fn instance_certificates(global: &GlobalArgs) -> kt::Result<(String, Vec<Shown>)> {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    let (cert, _key, ca) = instance.tls_files();
    let configured = |path: &Path| {
        chain::read_cert_file(path).map_err(|e| e.restate(Kind::Environment, format!("cannot show the configured certificate {}", path.display())))
    };
    let certs = configured(&cert)?;
    let mut shown = roles(&certs, &cert.display().to_string())?;
    if ca.exists() {
        for der in configured(&ca)? {
            if !certs.contains(&der) {
                shown.push(Shown::new("ca", &ca.display().to_string(), &der)?);
            }
        }
    }
    Ok((cert.display().to_string(), shown))
}
