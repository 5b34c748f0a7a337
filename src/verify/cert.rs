//! Reading X.509 certificates for verification: validity and names.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

/// What verify needs to know about a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    pub not_after: i64,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl CertInfo {
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns_names.push(n.to_string()),
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
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            not_after: cert.validity().not_after.timestamp(),
            dns_names,
            ips,
        })
    }

    /// Reads the first certificate of a PEM file.
    pub fn from_pem_file(path: &std::path::Path) -> Result<CertInfo, String> {
        let certs = crate::tls::read_certs(path).map_err(|e| e.to_string())?;
        CertInfo::parse(&certs[0])
    }

    /// Whether the certificate names `host` (exact, or one `*.` wildcard label).
    pub fn covers(&self, host: &str) -> bool {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ips.contains(&ip);
        }
        let host = host.to_ascii_lowercase();
        self.dns_names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            n == host || n.strip_prefix("*.").is_some_and(|rest| host.split_once('.').is_some_and(|(_, h)| h == rest))
        })
    }

    pub fn days_left(&self) -> i64 {
        (self.not_after - crate::clock::unix_now()).div_euclid(86_400)
    }
}
