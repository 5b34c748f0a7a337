//! What a certificate says, read with x509-parser: names, issuer, validity,
//! fingerprint, key. Used by `kt cert show`, `kt cert check`, the checks of
//! `kt cert replace` and `kt verify`.

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

/// The facts of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// SHA-256 of the DER, upper-case hex pairs joined by `:` (as
    /// `openssl x509 -fingerprint -sha256` prints it).
    pub sha256: String,
    /// "RSA 2048", "EC P-256", "Ed25519".
    pub key: String,
    /// Subject equals issuer.
    pub self_issued: bool,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// The DER of its SubjectPublicKeyInfo.
    #[serde(skip)]
    pub public_key_info: Vec<u8>,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (rest, cert) = parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns_names.push(printable(n)),
                    GeneralName::IPAddress(b) if b.len() == 4 => {
                        ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("len 4")))
                    }
                    GeneralName::IPAddress(b) if b.len() == 16 => {
                        ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("len 16")))
                    }
                    _ => {}
                }
            }
        }
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        Ok(CertInfo {
            subject: printable(&cert.subject().to_string()),
            issuer: printable(&cert.issuer().to_string()),
            serial: cert.raw_serial_as_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            dns_names,
            ips,
            sha256: fingerprint(der),
            key: describe_public_key(cert.public_key().raw),
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
            is_ca,
            public_key_info: cert.public_key().raw.to_vec(),
        })
    }

    /// The common name of the subject, if it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.subject
            .split(", ")
            .find_map(|part| part.strip_prefix("CN="))
    }

    /// Whether the certificate names `host`: a SAN (exact, or one `*.`
    /// wildcard label), or the common name when there are no SANs at all
    /// (what older clients still accept).
    pub fn covers(&self, host: &str) -> bool {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ips.contains(&ip);
        }
        let host = host.to_ascii_lowercase();
        let matches = |n: &str| {
            let n = n.to_ascii_lowercase();
            n == host || n.strip_prefix("*.").is_some_and(|rest| host.split_once('.').is_some_and(|(_, h)| h == rest))
        };
        if self.dns_names.is_empty() && self.ips.is_empty() {
            return self.common_name().is_some_and(matches);
        }
        self.dns_names.iter().any(|n| matches(n))
    }

    /// Every name the certificate is valid for, for messages.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.dns_names.clone();
        names.extend(self.ips.iter().map(|ip| ip.to_string()));
        if names.is_empty() {
            names.extend(self.common_name().map(|cn| format!("CN={cn}")));
        }
        names
    }

    /// Whole days until it expires (negative once expired).
    pub fn days_left(&self) -> i64 {
        self.days_left_at(crate::clock::unix_now())
    }

    pub fn days_left_at(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// A certificate date as `YYYY-MM-DD HH:MM:SS UTC`, for people (JSON
/// output uses RFC 3339, [`crate::clock::rfc3339`]).
pub fn format_utc(unix: i64) -> String {
    crate::clock::rfc3339(unix).replacen('T', " ", 1).replace('Z', " UTC")
}

pub use crate::text::printable;

/// SHA-256 of `der` as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// "RSA 2048", "EC P-256", "Ed25519", or "unknown" for a DER
/// SubjectPublicKeyInfo.
pub fn describe_public_key(spki_der: &[u8]) -> String {
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(spki_der) else { return "unknown".into() };
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_string(),
                    "1.3.132.0.34" => "P-384".to_string(),
                    "1.3.132.0.35" => "P-521".to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "unknown curve".into());
            format!("EC {curve}")
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
        _ => format!("unknown ({})", spki.algorithm.algorithm.to_id_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::printable("CN=a\u{1b}[2J\nverdict: sound"), "CN=a\\u{1b}[2J\\nverdict: sound");
        assert_eq!(super::printable("CN=kts01.example.com, O=Ü"), "CN=kts01.example.com, O=Ü");
    }
}
