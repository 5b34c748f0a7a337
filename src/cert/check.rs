//! Whether the instance's TLS certificate is fit to serve: the one check
//! behind `kt cert check` (every finding on its own line, for monitoring)
//! and the "tls certificate" line of `kt verify` (the same findings in one
//! line). `kt verify --server` judges a remote certificate's dates with
//! [`validity`] too, so both say the same thing about the same dates.
//!
//! Everything is read the way the server reads it (the configured files,
//! the key decrypted by `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`), because the
//! question is whether the server will start and clients will trust it,
//! and, when it runs, whether it serves what is configured: a certificate
//! replaced on disk without a reload is served only after the next one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::cert::chain;
use crate::cert::info::{format_utc, CertInfo};
use crate::cert::key::PrivateKey;

use crate::daemon::ServerProcess;
use crate::error::{Error, Kind, Result};
use crate::instance::Instance;
use crate::secret::PasswordSource;
use crate::checks::{Report, Status};

/// The finding of the server's own loader (only reported when it fails
/// where the other findings passed).
const LOADS: &str = "loads";
/// How long the handshake with the running server may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The findings about the instance's certificate, and the facts a one-line
/// summary needs.
#[derive(Debug, Clone, Serialize)]
pub struct CertCheck {
    /// The configured certificate file (`SSL_CERTIFICATE`).
    pub certificate: PathBuf,
    /// What its first certificate (the leaf) says.
    pub leaf: CertInfo,
    /// The instance's host name, which the certificate must name.
    pub host: String,
    pub report: Report,
}

impl CertCheck {
    /// Whether every finding is fine (or not applicable).
    pub fn sound(&self) -> bool {
        self.report.sound()
    }

    /// The findings in one line, for `kt verify`: what is fine, or every
    /// problem.
    pub fn summary(&self) -> std::result::Result<String, String> {
        let problems: Vec<&str> =
            self.report.checks.iter().filter(|c| c.status == Status::Fail).map(|c| c.detail.as_str()).collect();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let served = self.report.checks.iter().any(|c| c.name == SERVED && c.status == Status::Ok);
        Ok(format!(
            "matches its key, names {}, {} days left{}",
            self.host,
            self.leaf.days_left(),
            if served { ", served by the running server" } else { "" }
        ))
    }
}

/// The names of the findings, as `kt cert check` prints them.
pub const VALIDITY: &str = "validity";
pub const KEY: &str = "key";
pub const HOST_NAME: &str = "host name";
pub const CHAIN: &str = "chain";
pub const SERVED: &str = "served";

/// Checks the instance's configured certificate: its dates against
/// `warn_days`, its key, the host name, its chain to the CA file, and
/// whether the running server (if any) serves it.
///
/// An error (exit 3) only when nothing can be checked: the configured
/// certificate or key cannot be read, or the password script cannot be
/// run. Everything else is a finding.
pub fn check_instance(instance: &Instance, warn_days: i64) -> Result<CertCheck> {
    let now = crate::clock::unix_now();
    let (cert_path, key_path, ca_path) = instance.tls_files();
    let host = instance.hostname()?.to_string();
    let certs = read_configured_certs(&cert_path)?;
    let leaf_der = &certs[0];
    let leaf = CertInfo::parse(leaf_der).map_err(|e| Error::env(format!("cannot read {}", cert_path.display())).because(e))?;
    let mut report = Report::default();

    report.record(VALIDITY, validity(&leaf, warn_days, now));

    // As the server runs it: as the service account, never as root (the
    // script comes from keytrustee.conf, which that account can write).
    let runs_as = instance.service_account()?;
    let script = instance.settings.ssl_private_key_password_script.clone().map(|s| PasswordSource::Script(s).run_by(runs_as.as_ref()));
    let (status, detail) = key(leaf_der, &cert_path, &key_path, script.as_ref())?;
    let key_ok = status == Status::Ok;
    report.push(KEY, status, detail);
    // And the whole set through the server's own loader, with the
    // configured TLS policy: what `kt server start` would load.
    if key_ok {
        let loaded = crate::tls::protocol_versions(&instance.settings.tls_min_version)
            .and_then(|(versions, _)| crate::tls::provider(&instance.settings.ciphers, &versions))
            .and_then(|provider| crate::cert::material::KeyMaterial::for_instance(instance)?.load(&provider));
        if let Err(e) = loaded {
            report.fail(LOADS, format!("the server would not load it: {e}"));
        }
    }

    if leaf.covers(&host) {
        report.ok(HOST_NAME, format!("names {host}"));
    } else {
        report.fail(HOST_NAME, format!("the certificate does not name the host {host} (names: {})", leaf.names().join(", ")));
    }

    let (status, detail) = chain_finding(leaf_der, &leaf, &certs[1..], &ca_path, warn_days, now);
    report.push(CHAIN, status, detail);

    let (status, detail) = served(instance, leaf_der, &cert_path)?;
    report.push(SERVED, status, detail);

    Ok(CertCheck { certificate: cert_path, leaf, host, report })
}

/// The certificates of the configured file. Missing or unreadable, there
/// is nothing to check: an environment failure.
fn read_configured_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::env(format!("cannot read the certificate {}", path.display()))
            .because_err(&e)
            .with_hint("SSL_CERTIFICATE in keytrustee.conf names it")
    })?;
    chain::parse_certs(&bytes, &path.display().to_string())
        .map_err(|e| e.restate(Kind::Environment, format!("the configured certificate {} cannot be read", path.display())))
}

/// The certificate's dates at `now`: a problem when it is not valid yet,
/// has expired, or has fewer than `warn_days` days left.
pub fn validity(info: &CertInfo, warn_days: i64, now: i64) -> std::result::Result<String, String> {
    let until = format_utc(info.not_after);
    if now < info.not_before {
        let days = (info.not_before - now).div_euclid(86_400);
        return Err(format!("the certificate is not valid yet: not before {} (in {days} days)", format_utc(info.not_before)));
    }
    let days = info.days_left_at(now);
    if now > info.not_after {
        return Err(format!("the certificate expired {} days ago ({until})", -days));
    }
    if days < warn_days {
        return Err(format!("the certificate expires in {days} days ({until}, under --warn-days {warn_days}): replace it"));
    }
    Ok(format!("valid until {until}, {days} days left"))
}

/// Whether the configured key loads (decrypted as the server decrypts it)
/// and belongs to the certificate.
fn key(
    leaf: &CertificateDer<'_>,
    cert_path: &Path,
    key_path: &Path,
    script: Option<&PasswordSource>,
) -> Result<(Status, String)> {
    if let Err(e) = std::fs::metadata(key_path) {
        return Err(Error::env(format!("cannot read the TLS key {}", key_path.display())).because_err(&e));
    }
    let key = match PrivateKey::read_configured(key_path, script) {
        Ok(key) => key,
        // The password script could not be run: nothing to judge.
        Err(e) if e.kind() == Kind::Environment => return Err(e),
        Err(e) => return Ok((Status::Fail, format!("the server cannot load its key: {e}"))),
    };
    if !chain::key_matches(leaf, &key) {
        return Ok((
            Status::Fail,
            format!("the private key {} does not belong to the certificate {}", key_path.display(), cert_path.display()),
        ));
    }
    let how = if key.is_encrypted() { ", decrypted by SSL_PRIVATE_KEY_PASSWORD_SCRIPT" } else { "" };
    Ok((Status::Ok, format!("{} ({}) matches the certificate{how}", key_path.display(), key.describe())))
}

/// Whether the certificate leads to a root clients can be given: itself
/// when self-signed, else through the certificates after it in its file
/// and those of the CA file. A CA certificate close to its end is a
/// problem like the leaf's own.
fn chain_finding(
    leaf_der: &CertificateDer<'_>,
    leaf: &CertInfo,
    carried: &[CertificateDer<'static>],
    ca_path: &Path,
    warn_days: i64,
    now: i64,
) -> (Status, String) {
    if leaf.self_issued {
        return (Status::Ok, "self-signed: clients trust this certificate itself (give them the CA file)".into());
    }
    let mut others: Vec<CertificateDer<'static>> = carried.to_vec();
    if ca_path.exists() {
        match std::fs::read(ca_path).map_err(|e| e.to_string()).and_then(|bytes| {
            chain::parse_certs(&bytes, &ca_path.display().to_string()).map_err(|e| e.to_string())
        }) {
            Ok(certs) => {
                for cert in certs {
                    if !others.contains(&cert) {
                        others.push(cert);
                    }
                }
            }
            Err(e) => return (Status::Fail, format!("the CA file cannot be read: {e}")),
        }
    }
    if others.is_empty() {
        return (Status::Skip, format!("no CA file at {}: nothing to check the issuer against", ca_path.display()));
    }
    let path = match chain::verify_chain(leaf_der, &others, now) {
        Ok(path) => path,
        Err(e) => return (Status::Fail, e.to_string()),
    };
    let infos: Vec<CertInfo> = path.iter().filter_map(|c| CertInfo::parse(c).ok()).collect();
    if let Some(soon) = infos.iter().find(|i| i.days_left_at(now) < warn_days) {
        return (
            Status::Fail,
            format!(
                "the CA certificate {} expires in {} days ({}, under --warn-days {warn_days})",
                soon.subject,
                soon.days_left_at(now),
                format_utc(soon.not_after)
            ),
        );
    }
    let root = infos.last().map(|i| i.subject.clone()).unwrap_or_default();
    (Status::Ok, format!("verifies to the root {root} ({} CA certificates)", infos.len()))
}

/// Whether the running server presents the configured certificate.
fn served(instance: &Instance, leaf: &CertificateDer<'_>, cert_path: &Path) -> Result<(Status, String)> {
    let process = ServerProcess::for_instance(instance)?;
    let Some(pid) = process.running_pid()? else {
        return Ok((Status::Skip, "the server is not running (its next start uses the configured certificate)".into()));
    };
    let url = process.probe_url();
    let presented = match process.served_leaf(HANDSHAKE_TIMEOUT) {
        Ok(leaf) => leaf,
        Err(e) => return Ok((Status::Fail, format!("the server (pid {pid}) does not complete a TLS handshake at {url}: {e}"))),
    };
    if presented == leaf.as_ref() {
        return Ok((Status::Ok, format!("the server at {url} serves it")));
    }
    Ok((
        Status::Fail,
        format!(
            "the server at {url} serves another certificate (SHA-256 {}) than {} (SHA-256 {}): changed without a reload? run kt server reload",
            crate::cert::info::fingerprint(&presented),
            cert_path.display(),
            crate::cert::info::fingerprint(leaf)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(not_before: i64, not_after: i64) -> CertInfo {
        let mut info = CertInfo::parse(
            &chain::parse_certs(crate::cert::self_signed("localhost", &[], 1).unwrap().cert_pem.as_bytes(), "t").unwrap()[0],
        )
        .unwrap();
        info.not_before = not_before;
        info.not_after = not_after;
        info
    }

    #[test]
    fn judges_the_dates() {
        let day = 86_400;
        let now = 1_800_000_000;
        assert!(validity(&info(now - day, now + 100 * day), 30, now).unwrap().contains("100 days left"));
        let soon = validity(&info(now - day, now + 10 * day), 30, now).unwrap_err();
        assert!(soon.contains("expires in 10 days") && soon.contains("--warn-days 30"), "{soon}");
        let gone = validity(&info(now - 10 * day, now - 2 * day), 30, now).unwrap_err();
        assert!(gone.contains("expired 2 days ago"), "{gone}");
        let early = validity(&info(now + 3 * day, now + 300 * day), 30, now).unwrap_err();
        assert!(early.contains("not valid yet") && early.contains("in 3 days"), "{early}");
        // The last second is still valid.
        assert!(validity(&info(now - day, now), 0, now).is_ok());
    }
}
