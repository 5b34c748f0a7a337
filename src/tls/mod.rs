//! TLS policy and key material for the server (and the trust roots of
//! clients): the documented settings `TLS_MIN_VERSION`, `CIPHERS`,
//! `SSL_CERTIFICATE`, `SSL_PRIVATE_KEY`, `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`
//! and `SSL_CA`, mapped onto rustls.
//!
//! rustls speaks TLS 1.2 and 1.3 only and offers nine AEAD suites. What a
//! setting asks for beyond that is never silently narrowed: the documented
//! `tlsv1`/`tlsv1.1` minimums are accepted with a warning that the
//! effective minimum is TLS 1.2, and the parts of an OpenSSL cipher string
//! kt cannot offer are named in warnings ([`ciphers`]); a setting that
//! leaves nothing usable is refused.

use std::sync::{Arc, RwLock};

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SupportedProtocolVersion;

use crate::error::{Error, Result};

pub mod ciphers;

/// The protocol versions allowed by a `TLS_MIN_VERSION` value, and a
/// warning when the setting asks for less than rustls can give.
pub fn protocol_versions(setting: &str) -> Result<(Vec<&'static SupportedProtocolVersion>, Option<String>)> {
    let all = vec![&rustls::version::TLS12, &rustls::version::TLS13];
    match setting.trim().to_ascii_lowercase().as_str() {
        "tlsv1" | "tlsv1.0" | "tlsv1.1" => Ok((
            all,
            Some(format!(
                "TLS_MIN_VERSION={setting} is accepted for compatibility, but the effective minimum is TLS 1.2 (TLS 1.0 and 1.1 are not offered)"
            )),
        )),
        "" | "tlsv1.2" => Ok((all, None)),
        "tlsv1.3" => Ok((vec![&rustls::version::TLS13], None)),
        _ => Err(Error::usage(format!("unknown TLS_MIN_VERSION {setting:?}"))
            .with_hint("use one of tlsv1, tlsv1.1, tlsv1.2, tlsv1.3")),
    }
}

/// The crypto provider with the suites `CIPHERS` selects (see
/// [`ciphers`]), checked against the enabled protocol versions; the
/// warnings name what the setting asked for and kt cannot offer.
pub fn provider_with_warnings(
    ciphers: &str,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<(CryptoProvider, Vec<String>)> {
    let selection = ciphers::select(ciphers)?;
    let usable = selection.suites.iter().any(|s| versions.iter().any(|v| s.version() == *v));
    if !usable {
        return Err(Error::usage("CIPHERS leaves no suite for the enabled TLS versions")
            .with_hint("with TLS_MIN_VERSION=tlsv1.3, keep at least one TLS 1.3 suite (TLS_AES_256_GCM_SHA384, ...)"));
    }
    Ok((CryptoProvider { cipher_suites: selection.suites, ..aws_lc_rs::default_provider() }, selection.warnings))
}

/// [`provider_with_warnings`] for the checks that only need to know
/// whether the server would load (the server itself logs the warnings).
pub fn provider(ciphers: &str, versions: &[&'static SupportedProtocolVersion]) -> Result<CryptoProvider> {
    provider_with_warnings(ciphers, versions).map(|(provider, _)| provider)
}

/// The certificate the server presents, replaceable while it runs
/// (SIGHUP): new handshakes get the new one, open connections keep theirs.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn new(key: CertifiedKey) -> Arc<ReloadableCert> {
        Arc::new(ReloadableCert { current: RwLock::new(Arc::new(key)) })
    }

    pub fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Builds the server's rustls configuration.
pub fn server_config(
    provider: CryptoProvider,
    versions: &[&'static SupportedProtocolVersion],
    cert: Arc<ReloadableCert>,
) -> Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| Error::usage("invalid TLS settings").because(e))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_versions() {
        assert_eq!(protocol_versions("tlsv1.3").unwrap().0.len(), 1);
        let (v, warn) = protocol_versions("tlsv1").unwrap();
        assert_eq!(v.len(), 2);
        assert!(warn.unwrap().contains("effective minimum is TLS 1.2"));
        assert!(protocol_versions("sslv3").is_err());
        // A cipher string does not govern TLS 1.3 (as in OpenSSL)...
        assert!(provider("ECDHE-RSA-AES256-GCM-SHA384", &[&rustls::version::TLS13]).is_ok());
        // ...unless it names TLS 1.3 suites, and then it must keep one.
        let err = provider("TLS_AES_128_GCM_SHA256:!TLS_AES_128_GCM_SHA256:ECDHE-RSA-AES256-GCM-SHA384", &[&rustls::version::TLS13]);
        assert!(err.is_err());
    }
}
