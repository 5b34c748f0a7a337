//! The instance's TLS certificate: a self-signed certificate for the host
//! name, made at `kt init` (later replaced by `kt cert`).

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use crate::error::{Error, Result};

/// A certificate and its private key, PEM encoded.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").field("cert_pem", &self.cert_pem).field("key_pem", &"***").finish()
    }
}

/// Makes a self-signed ECDSA P-256 certificate valid for `days` days whose
/// common name is `hostname` and whose SANs are `hostname` plus `extra`
/// names (DNS names or IP addresses). `localhost` also gets the loopback
/// addresses, so a local instance is reachable as https://127.0.0.1.
pub fn self_signed(hostname: &str, extra: &[String], days: u32) -> Result<SelfSigned> {
    let failed = |e: rcgen::Error| Error::env("cannot create the TLS certificate").because(e);
    let mut names: Vec<String> = vec![hostname.to_string()];
    if hostname == "localhost" {
        names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    }
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut params = CertificateParams::default();
    for name in &names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                crate::hostname::validate(name)?;
                SanType::DnsName(name.clone().try_into().map_err(failed)?)
            }
        };
        params.subject_alt_names.push(san);
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    dn.push(DnType::OrganizationName, "Key Trustee Server");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clients whose clocks run behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok(SelfSigned { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}
