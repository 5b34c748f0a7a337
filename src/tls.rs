//! TLS policy and key material for the server (and the trust roots of
//! clients): the documented settings `TLS_MIN_VERSION`, `CIPHERS`,
//! `SSL_CERTIFICATE`, `SSL_PRIVATE_KEY`, `SSL_PRIVATE_KEY_PASSWORD_SCRIPT`
//! and `SSL_CA`, mapped onto rustls.
//!
//! rustls speaks TLS 1.2 and 1.3 only and offers nine AEAD suites; settings
//! asking for anything else are refused with an error naming them, never
//! silently narrowed (except the documented `tlsv1`/`tlsv1.1` minimums,
//! accepted with a warning that the effective minimum is TLS 1.2).

use std::sync::{Arc, RwLock};

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

use crate::error::{Error, Result};

/// OpenSSL's names of the suites rustls implements, with rustls' own.
const SUITE_NAMES: &[(&str, CipherSuite)] = &[
    ("TLS_AES_256_GCM_SHA384", CipherSuite::TLS13_AES_256_GCM_SHA384),
    ("TLS_AES_128_GCM_SHA256", CipherSuite::TLS13_AES_128_GCM_SHA256),
    ("TLS_CHACHA20_POLY1305_SHA256", CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("ECDHE-RSA-AES256-GCM-SHA384", CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("ECDHE-RSA-AES128-GCM-SHA256", CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("ECDHE-RSA-CHACHA20-POLY1305", CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

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

/// The suites named by an OpenSSL-style `CIPHERS` list (separated by
/// colons, commas or spaces; OpenSSL or IANA names). Empty: all nine.
pub fn cipher_suites(setting: &str) -> Result<Vec<SupportedCipherSuite>> {
    let names: Vec<&str> = setting.split([':', ',', ' ']).map(str::trim).filter(|s| !s.is_empty()).collect();
    if names.is_empty() {
        return Ok(aws_lc_rs::ALL_CIPHER_SUITES.to_vec());
    }
    let mut suites = Vec::new();
    for name in names {
        let wanted = SUITE_NAMES
            .iter()
            .find(|(openssl, _)| openssl.eq_ignore_ascii_case(name))
            .map(|(_, suite)| *suite)
            .or_else(|| {
                aws_lc_rs::ALL_CIPHER_SUITES
                    .iter()
                    .map(|s| s.suite())
                    .find(|s| iana_name(*s).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            });
        let Some(wanted) = wanted else {
            let why = if name.starts_with(['!', '-', '+', '@']) || name.chars().all(|c| c.is_ascii_uppercase()) {
                "OpenSSL cipher keywords and operators are not supported: list suite names"
            } else {
                "not a cipher suite rustls offers (only the AEAD suites of TLS 1.2 and 1.3)"
            };
            return Err(Error::usage(format!("unsupported cipher {name:?} in CIPHERS"))
                .because(why)
                .with_hint(format!(
                    "use names from: {}",
                    SUITE_NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(":")
                )));
        };
        let suite = aws_lc_rs::ALL_CIPHER_SUITES.iter().find(|s| s.suite() == wanted).copied().expect("table matches provider");
        if !suites.iter().any(|s: &SupportedCipherSuite| s.suite() == wanted) {
            suites.push(suite);
        }
    }
    Ok(suites)
}

fn iana_name(suite: CipherSuite) -> Option<&'static str> {
    suite.as_str()
}

/// The crypto provider with the configured suites, checked against the
/// enabled protocol versions.
pub fn provider(ciphers: &str, versions: &[&'static SupportedProtocolVersion]) -> Result<CryptoProvider> {
    let suites = cipher_suites(ciphers)?;
    let usable = suites.iter().any(|s| versions.iter().any(|v| s.version() == *v));
    if !usable {
        return Err(Error::usage("CIPHERS leaves no suite for the enabled TLS versions")
            .with_hint("with TLS_MIN_VERSION=tlsv1.3, list at least one TLS 1.3 suite (TLS_AES_256_GCM_SHA384, ...)"));
    }
    Ok(CryptoProvider { cipher_suites: suites, ..aws_lc_rs::default_provider() })
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
    fn maps_openssl_and_iana_names() {
        let suites = cipher_suites("ECDHE-RSA-AES256-GCM-SHA384, TLS_AES_128_GCM_SHA256 TLS13_CHACHA20_POLY1305_SHA256").unwrap();
        let got: Vec<_> = suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            got,
            [
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(cipher_suites("").unwrap().len(), 9);
        assert_eq!(cipher_suites(crate::config::DEFAULT_CIPHERS).unwrap().len(), 9);
    }

    #[test]
    fn refuses_unknown_and_unsupported_names() {
        for bad in ["AES256-SHA", "HIGH:!aNULL", "ECDHE-RSA-AES256-SHA384", "NOPE"] {
            let err = cipher_suites(bad).unwrap_err();
            assert!(err.message().contains("unsupported cipher"), "{bad}: {err}");
        }
    }

    #[test]
    fn min_versions() {
        assert_eq!(protocol_versions("tlsv1.3").unwrap().0.len(), 1);
        let (v, warn) = protocol_versions("tlsv1").unwrap();
        assert_eq!(v.len(), 2);
        assert!(warn.unwrap().contains("effective minimum is TLS 1.2"));
        assert!(protocol_versions("sslv3").is_err());
        assert!(provider("ECDHE-RSA-AES256-GCM-SHA384", &[&rustls::version::TLS13]).is_err());
    }
}
