//! Making certificate signing requests and certificates for the server:
//! the documented `openssl req -new` and `openssl x509 -req` (and the
//! self-signed certificate of `kt init`) done with rcgen.
//!
//! A [`Request`] holds what goes into the subject and the SANs, checked
//! once: the host name is the common name and the first SAN (so clients
//! that still read the CN and those that read only SANs agree), extra SANs
//! are DNS names or IP addresses, `localhost` also names the loopback
//! addresses, and the other subject fields come from `--subject`. A CN in
//! `--subject` is accepted only when it is the host name: the CN is always
//! the host name, and a different one would make a certificate whose
//! subject and SANs disagree.
//!
//! Certificates are TLS server certificates (serverAuth, CA:FALSE,
//! digitalSignature, and keyEncipherment for RSA keys, which RSA key
//! exchange needs), with a random serial (RFC 5280: unique per issuer,
//! which a hash of the key is not once the key is reused) and a start an
//! hour back for clients whose clocks run behind.

use std::net::IpAddr;
use std::path::Path;

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::cert::chain;
use crate::cert::info::CertInfo;
use crate::cert::key::{KeyAlgorithm, PrivateKey};
use crate::error::{Error, Result};

/// The organization of the subject when `--subject` is not given (what
/// `kt init` has always written).
pub const DEFAULT_ORGANIZATION: &str = "Key Trustee Server";

/// The slack before "now" a new certificate starts at.
const BACKDATE_SECONDS: i64 = 3600;

/// A subject field `--subject` may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Country,
    State,
    Locality,
    Organization,
    OrganizationalUnit,
    Email,
    CommonName,
}

/// The names each field is known by (openssl's short and long names),
/// and the longest value RFC 5280 allows it (what a CA enforces).
const FIELDS: &[(Field, &str, &str, usize)] = &[
    // C is checked to be two letters on its own, with a clearer message.
    (Field::Country, "C", "countryName", 64),
    (Field::State, "ST", "stateOrProvinceName", 128),
    (Field::Locality, "L", "localityName", 128),
    (Field::Organization, "O", "organizationName", 64),
    (Field::OrganizationalUnit, "OU", "organizationalUnitName", 64),
    (Field::Email, "emailAddress", "E", 255),
    (Field::CommonName, "CN", "commonName", 64),
];

impl Field {
    fn lookup(name: &str) -> Option<(Field, &'static str, usize)> {
        FIELDS
            .iter()
            .find(|(_, short, long, _)| name.eq_ignore_ascii_case(short) || name.eq_ignore_ascii_case(long))
            .map(|&(field, short, _, max)| (field, short, max))
    }
}

/// The subject fields other than the CN, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    fields: Vec<(Field, String)>,
}

impl Default for Subject {
    fn default() -> Self {
        Subject { fields: vec![(Field::Organization, DEFAULT_ORGANIZATION.to_string())] }
    }
}

impl Subject {
    /// Parses `--subject` in openssl's `-subj` form (`/C=US/O=Example/OU=Ops`)
    /// or comma-separated (`C=US, O=Example`); a backslash escapes the next
    /// character (`O=Example\, Inc.`). Field names are openssl's short or
    /// long names, in any case. A CN is accepted only when it equals
    /// `hostname` (and is dropped: the CN is always the host name).
    pub fn parse(text: &str, hostname: &str) -> Result<Subject> {
        let bad = |why: String| {
            Error::usage(format!("invalid --subject {text:?}"))
                .because(why)
                .with_hint("give the other subject fields as /C=US/ST=CA/L=City/O=Example/OU=Ops or C=US,O=Example")
        };
        let trimmed = text.trim();
        let (body, separator) = match trimmed.strip_prefix('/') {
            Some(rest) => (rest, '/'),
            None => (trimmed, ','),
        };
        let parts = split_unescaped(body, separator).map_err(bad)?;
        let mut fields: Vec<(Field, String)> = Vec::new();
        for part in parts {
            if part.raw.trim().is_empty() {
                return Err(bad("an empty field".into()));
            }
            let (name, value) = match part.raw.split_once('=') {
                Some((n, _)) => (n.trim(), part.value.as_str()),
                None => return Err(bad(format!("{:?} is not NAME=VALUE", part.raw.trim()))),
            };
            let Some((field, short, max)) = Field::lookup(name) else {
                return Err(bad(format!("unknown field name {name:?}"))
                    .because("known fields: C, ST, L, O, OU, emailAddress, and CN (the host name)"));
            };
            let value = value.trim().to_string();
            if value.is_empty() {
                return Err(bad(format!("{short} is empty")));
            }
            if value.chars().count() > max {
                return Err(bad(format!("{short} is longer than {max} characters")));
            }
            if value.chars().any(char::is_control) {
                return Err(bad(format!("{short} holds a control character")));
            }
            match field {
                Field::Country if !(value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic())) => {
                    return Err(bad(format!("C must be a two-letter country code, not {value:?}")));
                }
                Field::Email if !value.is_ascii() || !value.contains('@') => {
                    return Err(bad(format!("emailAddress {value:?} is not an ASCII e-mail address")));
                }
                Field::CommonName => {
                    if !value.eq_ignore_ascii_case(hostname) {
                        return Err(Error::usage(format!("--subject sets CN={value}, but the host name is {hostname}"))
                            .because("the CN is always the host name (and the first SAN)")
                            .with_hint("drop CN= from --subject, or give the name with --hostname"));
                    }
                    continue;
                }
                _ => {}
            }
            let value = if field == Field::Country { value.to_ascii_uppercase() } else { value };
            if fields.iter().any(|(f, _)| *f == field) {
                return Err(bad(format!("{short} is given twice (kt writes one value per field)")));
            }
            fields.push((field, value));
        }
        Ok(Subject { fields })
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[(Field, String)] {
        &self.fields
    }

    /// The distinguished name: these fields in order, then CN=`hostname`
    /// (openssl's order: `/C=US/O=Example/CN=host`).
    fn distinguished_name(&self, hostname: &str) -> Result<DistinguishedName> {
        let mut dn = DistinguishedName::new();
        for (field, value) in &self.fields {
            let ascii = |what: &str| Error::usage(format!("the subject's {what} {value:?} cannot be encoded"));
            match field {
                Field::Country => dn.push(
                    DnType::CountryName,
                    DnValue::PrintableString(PrintableString::try_from(value.to_ascii_uppercase()).map_err(|_| ascii("C"))?),
                ),
                Field::State => dn.push(DnType::StateOrProvinceName, value.as_str()),
                Field::Locality => dn.push(DnType::LocalityName, value.as_str()),
                Field::Organization => dn.push(DnType::OrganizationName, value.as_str()),
                Field::OrganizationalUnit => dn.push(DnType::OrganizationalUnitName, value.as_str()),
                Field::Email => dn.push(
                    DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                    DnValue::Ia5String(Ia5String::try_from(value.clone()).map_err(|_| ascii("emailAddress"))?),
                ),
                Field::CommonName => unreachable!("the CN is never stored"),
            }
        }
        dn.push(DnType::CommonName, hostname);
        Ok(dn)
    }
}

/// One field of `--subject` as written, before unescaping.
struct RawPart {
    raw: String,
    /// The unescaped value after the first unescaped `=`.
    value: String,
}

/// Splits `text` at each `separator` not preceded by a backslash, and
/// unescapes each value (`\X` is `X`).
fn split_unescaped(text: &str, separator: char) -> std::result::Result<Vec<RawPart>, String> {
    let mut parts = Vec::new();
    let mut raw = String::new();
    let mut value = String::new();
    let mut seen_equals = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else { return Err("it ends with a lone backslash".into()) };
                raw.push(c);
                raw.push(next);
                if seen_equals {
                    value.push(next);
                }
            }
            c if c == separator => {
                parts.push(RawPart { raw: std::mem::take(&mut raw), value: std::mem::take(&mut value) });
                seen_equals = false;
            }
            c => {
                raw.push(c);
                if seen_equals {
                    value.push(c);
                } else if c == '=' {
                    seen_equals = true;
                }
            }
        }
    }
    parts.push(RawPart { raw, value });
    // "/C=US/" and "C=US," end with an empty part; a lone one is an error.
    if parts.len() > 1 && parts.last().is_some_and(|p| p.raw.trim().is_empty()) {
        parts.pop();
    }
    Ok(parts)
}

/// A name in the SANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Dns(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Dns(n) => f.write_str(n),
            Name::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What a request or certificate says: subject and SANs, checked.
#[derive(Debug, Clone)]
pub struct Request {
    hostname: String,
    names: Vec<Name>,
    subject: Subject,
}

impl Request {
    /// Checks `hostname` (a DNS name), each of `extra_sans` (a DNS name,
    /// possibly `*.`-wildcarded, or an IP address) and `subject`
    /// (`--subject`; `None`: O=Key Trustee Server). The SANs are the host
    /// name, for `localhost` 127.0.0.1 and ::1, then the extra names,
    /// without repeats.
    pub fn new(hostname: &str, extra_sans: &[String], subject: Option<&str>) -> Result<Request> {
        crate::hostname::validate(hostname)?;
        let mut names = vec![Name::Dns(hostname.to_string())];
        if hostname.eq_ignore_ascii_case("localhost") {
            names.push(Name::Ip(IpAddr::from([127, 0, 0, 1])));
            names.push(Name::Ip("::1".parse().expect("an IPv6 address")));
        }
        for san in extra_sans {
            let name = parse_san(san)?;
            let known = names.iter().any(|n| match (n, &name) {
                (Name::Dns(a), Name::Dns(b)) => a.eq_ignore_ascii_case(b),
                (a, b) => a == b,
            });
            if !known {
                names.push(name);
            }
        }
        let subject = match subject {
            Some(text) => Subject::parse(text, hostname)?,
            None => Subject::default(),
        };
        Ok(Request { hostname: hostname.to_string(), names, subject })
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The subject as `C=US, O=Example, CN=host` (as certificates show it).
    pub fn subject_line(&self) -> String {
        let mut parts: Vec<String> = self
            .subject
            .fields
            .iter()
            .map(|(field, value)| {
                let short = FIELDS.iter().find(|f| f.0 == *field).map_or("?", |f| f.1);
                format!("{short}={value}")
            })
            .collect();
        parts.push(format!("CN={}", self.hostname));
        parts.join(", ")
    }

    /// The SANs, host name first.
    pub fn names(&self) -> &[Name] {
        &self.names
    }

    /// The parameters shared by requests and certificates.
    fn params(&self, key: &PrivateKey) -> Result<CertificateParams> {
        let mut params = CertificateParams::default();
        params.distinguished_name = self.subject.distinguished_name(&self.hostname)?;
        for name in &self.names {
            params.subject_alt_names.push(match name {
                Name::Ip(ip) => SanType::IpAddress(*ip),
                Name::Dns(n) => SanType::DnsName(
                    Ia5String::try_from(n.clone())
                        .map_err(|e| Error::usage(format!("the SAN {n:?} cannot be encoded")).because(e))?,
                ),
            });
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key.describe().starts_with("RSA") {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        Ok(params)
    }

    /// The parameters of a certificate valid from an hour before `now`
    /// (but not before `not_before_floor`) for `days` days.
    fn cert_params(&self, key: &PrivateKey, days: u32, now: i64, not_before_floor: i64) -> Result<CertificateParams> {
        let mut params = self.params(key)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(random_serial());
        params.not_before = datetime((now - BACKDATE_SECONDS).max(not_before_floor))?;
        params.not_after = datetime(not_after(now, days))?;
        Ok(params)
    }
}

/// The end of a certificate valid `days` days from `now`.
fn not_after(now: i64, days: u32) -> i64 {
    now + i64::from(days) * 86_400
}

fn datetime(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| Error::usage("a validity date out of range").because(e))
}

/// 16 random bytes, positive and without a leading zero byte (so every
/// serial is 16 bytes long in DER, as CAs make them).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Checks one `--san`.
fn parse_san(san: &str) -> Result<Name> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(Name::Ip(ip));
    }
    let hint = "a --san is a DNS name (kts01.example.com, *.example.com) or an IP address (192.0.2.10, 2001:db8::1)";
    let dns = san.strip_prefix("*.").unwrap_or(san);
    crate::hostname::validate(dns).map_err(|e| {
        let mut err = Error::usage(format!("invalid --san {san:?}"));
        for cause in e.causes() {
            err = err.because(cause);
        }
        err.with_hint(hint)
    })?;
    // No top-level domain is all digits (RFC 3696): such a name is a
    // mistyped IP address, which would end up as a DNS name nobody uses.
    if dns.rsplit('.').next().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(Error::usage(format!("invalid --san {san:?}"))
            .because("it looks like an IP address, but is not a valid one")
            .with_hint(hint));
    }
    Ok(Name::Dns(san.to_ascii_lowercase()))
}

fn rcgen_failed(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::usage(format!("cannot make the {what}")).because(e)
}

/// A certificate signing request (PEM) for `request`, signed with `key`,
/// for a CA to sign (`openssl x509 -req`, or any CA's web form).
pub fn csr(request: &Request, key: &PrivateKey) -> Result<String> {
    let failed = rcgen_failed("certificate signing request");
    let pair = key.key_pair().map_err(&failed)?;
    let params = request.params(key)?;
    params.serialize_request(&pair).map_err(&failed)?.pem().map_err(&failed)
}

/// A certificate kt made.
#[derive(Debug, Clone)]
pub struct Issued {
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub info: CertInfo,
}

impl Issued {
    fn from(cert: rcgen::Certificate) -> Result<Issued> {
        let info = CertInfo::parse(cert.der())
            .map_err(|e| Error::problem("kt made a certificate it cannot read back").because(e))?;
        Ok(Issued { der: cert.der().clone(), pem: cert.pem(), info })
    }
}

/// A self-signed certificate for `request` and `key`, valid `days` days
/// from an hour before `now`.
pub fn self_signed_cert(request: &Request, key: &PrivateKey, days: u32, now: i64) -> Result<Issued> {
    let failed = rcgen_failed("self-signed certificate");
    let pair = key.key_pair().map_err(&failed)?;
    let params = request.cert_params(key, days, now, i64::MIN)?;
    Issued::from(params.self_signed(&pair).map_err(&failed)?)
}

/// A local CA that signs certificates: its certificate and key, checked.
pub struct Ca {
    cert: CertificateDer<'static>,
    info: CertInfo,
    key: PrivateKey,
    origin: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("origin", &self.origin).field("subject", &self.info.subject).finish_non_exhaustive()
    }
}

impl Ca {
    /// Reads the CA certificate (the first of `cert_path`) and its key (an
    /// unencrypted PEM or DER key) and checks them at `now`.
    pub fn load(cert_path: &Path, key_path: &Path, now: i64) -> Result<Ca> {
        let certs = chain::read_cert_file(cert_path)?;
        let cert = certs.into_iter().next().expect("read_cert_file returns at least one certificate");
        let bytes = Zeroizing::new(
            std::fs::read(key_path)
                .map_err(|e| Error::usage(format!("cannot read the CA key {}", key_path.display())).because_err(&e))?,
        );
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("ENCRYPTED") {
            return Err(Error::usage(format!("the CA key {} is encrypted", key_path.display()))
                .because("kt reads the CA key of a lab CA without a password")
                .with_hint(format!(
                    "sign with an unencrypted copy in a private directory: openssl pkey -in {} -out CA-KEY.pem",
                    key_path.display()
                )));
        }
        let key = PrivateKey::parse(&bytes, &format!("the CA key {}", key_path.display()), None, "--ca-key")?;
        Ca::new(cert, key, &cert_path.display().to_string(), &key_path.display().to_string(), now)
    }

    /// Checks that `cert` is a CA certificate valid at `now` that may sign
    /// certificates, and that `key` is its key.
    pub fn new(cert: CertificateDer<'static>, key: PrivateKey, cert_origin: &str, key_origin: &str, now: i64) -> Result<Ca> {
        let info = CertInfo::parse(&cert)
            .map_err(|e| Error::usage(format!("the CA certificate {cert_origin} cannot be read")).because(e))?;
        if !info.is_ca {
            return Err(Error::usage(format!("{cert_origin} is not a CA certificate"))
                .because(format!("{} has no basicConstraints CA:TRUE", info.subject))
                .with_hint("make a lab CA with: openssl req -x509 -newkey rsa:3072 -nodes -keyout ca-key.pem -out ca.pem -days 3650 -subj /CN=Lab-CA -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"));
        }
        if !may_sign_certificates(&cert) {
            return Err(Error::usage(format!("the CA certificate {cert_origin} may not sign certificates"))
                .because("its keyUsage lacks keyCertSign"));
        }
        if now > info.not_after {
            return Err(Error::usage(format!("the CA certificate {cert_origin} expired on {}", crate::clock::rfc3339(info.not_after))));
        }
        if now < info.not_before {
            return Err(Error::usage(format!(
                "the CA certificate {cert_origin} is not valid before {}",
                crate::clock::rfc3339(info.not_before)
            ))
            .with_hint("check this host's clock"));
        }
        if !chain::key_matches(&cert, &key) {
            return Err(Error::usage(format!("the CA key {key_origin} does not match the CA certificate {cert_origin}"))
                .because(format!("the certificate's key is {}, the key file holds another {} key", info.key, key.describe())));
        }
        Ok(Ca { cert, info, key, origin: cert_origin.to_string() })
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

/// Whether the certificate's keyUsage (when it has one) allows signing
/// certificates: openssl refuses a chain through a CA whose does not.
fn may_sign_certificates(cert: &CertificateDer<'_>) -> bool {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, x509)) => match x509.key_usage() {
            Ok(Some(ku)) => ku.value.key_cert_sign(),
            Ok(None) => true,
            Err(_) => false,
        },
        Err(_) => false,
    }
}

/// A certificate for `request` and `key` signed by `ca`, valid `days` days
/// from an hour before `now` (but not before the CA itself). Refused when
/// it would outlive the CA: a certificate whose chain expires first is
/// one an operator would learn about from an outage.
pub fn signed_by(request: &Request, key: &PrivateKey, days: u32, ca: &Ca, now: i64) -> Result<Issued> {
    let end = not_after(now, days);
    if end > ca.info.not_after {
        let max = (ca.info.not_after - now).div_euclid(86_400);
        let mut err = Error::usage(format!("--days {days} would make the certificate outlive its CA"))
            .because(format!("the CA certificate {} expires on {}", ca.origin, crate::clock::rfc3339(ca.info.not_after)));
        err = if max >= 1 {
            err.with_hint(format!("give --days {max} or fewer"))
        } else {
            err.with_hint("the CA expires within a day: renew the CA first")
        };
        return Err(err);
    }
    let failed = rcgen_failed("certificate");
    let ca_pair = ca.key.key_pair().map_err(&failed)?;
    let issuer = Issuer::from_ca_cert_der(&ca.cert, ca_pair).map_err(|e| {
        Error::usage(format!("kt cannot sign with the CA certificate {}", ca.origin))
            .because(e)
            .because("its subject must have one attribute per RDN")
    })?;
    let pair = key.key_pair().map_err(&failed)?;
    let mut params = request.cert_params(key, days, now, ca.info.not_before)?;
    params.use_authority_key_identifier_extension = true;
    let issued = Issued::from(params.signed_by(&pair, &issuer).map_err(&failed)?)?;
    check_issued_by(&issued, ca, now)?;
    Ok(issued)
}

/// Checks that `issued` names `ca`'s subject byte for byte as its issuer
/// (rcgen rebuilds the name, and keeps one value per attribute type), and
/// for a root CA that the chain verifies, so nothing a verifier would
/// refuse is written.
fn check_issued_by(issued: &Issued, ca: &Ca, now: i64) -> Result<()> {
    let raw_name = |der: &[u8], subject: bool| -> Option<Vec<u8>> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(if subject { cert.subject().as_raw().to_vec() } else { cert.issuer().as_raw().to_vec() })
    };
    if raw_name(&issued.der, false).is_none() || raw_name(&issued.der, false) != raw_name(&ca.cert, true) {
        return Err(Error::usage(format!("kt cannot sign with the CA certificate {}", ca.origin))
            .because(format!("its subject \"{}\" cannot be copied exactly (repeated attributes?)", ca.info.subject))
            .with_hint("sign the CSR with openssl instead: kt cert generate --csr, then openssl x509 -req"));
    }
    if ca.info.self_issued {
        chain::verify_chain(&issued.der, std::slice::from_ref(&ca.cert), now)
            .map_err(|e| e.restate(crate::error::Kind::Problem, "the certificate kt signed does not verify against its CA"))?;
    }
    Ok(())
}

/// A certificate and its private key, PEM encoded (what `kt init` writes).
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").field("cert_pem", &self.cert_pem).field("key_pem", &"***").finish()
    }
}

/// `kt init`'s certificate: a new ECDSA P-256 key and a self-signed
/// certificate for `hostname` (and `extra` SANs) valid `days` days.
pub fn self_signed(hostname: &str, extra: &[String], days: u32) -> Result<SelfSigned> {
    let request = Request::new(hostname, extra, None)?;
    let key = PrivateKey::generate(KeyAlgorithm::EcP256)?;
    let issued = self_signed_cert(&request, &key, days, crate::clock::unix_now())?;
    Ok(SelfSigned { cert_pem: issued.pem, key_pem: key.to_pkcs8_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(Field, String)>> {
        Subject::parse(text, "kts01.example.com").map(|s| s.fields)
    }

    #[test]
    fn subject_in_both_forms() {
        let want = vec![
            (Field::Country, "US".to_string()),
            (Field::Organization, "Example".to_string()),
            (Field::OrganizationalUnit, "Ops".to_string()),
        ];
        assert_eq!(parse("/C=US/O=Example/OU=Ops").unwrap(), want);
        assert_eq!(parse("C=US,O=Example,OU=Ops").unwrap(), want);
        assert_eq!(parse(" C=US, O=Example , OU=Ops ").unwrap(), want);
        assert_eq!(parse("/C=US/O=Example/OU=Ops/").unwrap(), want);
        assert_eq!(parse("countryName=US,organizationName=Example,ou=Ops").unwrap(), want);
        let all = parse("/C=DE/ST=Berlin/L=Berlin/O=Ex/OU=Ops/emailAddress=ops@example.com").unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5], (Field::Email, "ops@example.com".to_string()));
    }

    #[test]
    fn subject_escapes() {
        assert_eq!(parse("O=Example\\, Inc.,OU=Ops").unwrap()[0], (Field::Organization, "Example, Inc.".to_string()));
        assert_eq!(parse("/O=A\\/B/OU=x=y").unwrap(), vec![
            (Field::Organization, "A/B".to_string()),
            (Field::OrganizationalUnit, "x=y".to_string()),
        ]);
        assert!(parse("O=trailing\\").is_err());
    }

    #[test]
    fn subject_cn_must_be_the_host_name() {
        assert_eq!(parse("/O=Ex/CN=KTS01.example.com").unwrap(), vec![(Field::Organization, "Ex".to_string())]);
        let err = parse("/O=Ex/CN=other.example.com").unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Usage);
        assert!(err.message().contains("CN=other.example.com"), "{err}");
    }

    #[test]
    fn subject_refusals_say_why() {
        for (text, why) in [
            ("/X=1", "unknown field name \"X\""),
            ("Organisation=Ex", "unknown field name \"Organisation\""),
            ("C=USA", "two-letter"),
            ("C=1A", "two-letter"),
            ("O=", "O is empty"),
            ("O=a,O=b", "O is given twice"),
            ("O", "is not NAME=VALUE"),
            ("", "an empty field"),
            ("emailAddress=nobody", "e-mail"),
            ("O=x\u{7}y", "control character"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::Usage, "{text}");
            let all = format!("{} {}", err.message(), err.causes().join(" | "));
            assert!(all.contains(why), "{text:?}: {all}");
        }
        let long = format!("O={}", "x".repeat(65));
        assert!(parse(&long).unwrap_err().causes().iter().any(|c| c.contains("longer than 64")));
    }

    #[test]
    fn request_names() {
        let r = Request::new("localhost", &["127.0.0.1".into(), "Kt.Example.com".into(), "*.example.com".into()], None).unwrap();
        let names: Vec<String> = r.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["localhost", "127.0.0.1", "::1", "kt.example.com", "*.example.com"]);
        for bad in ["bad_name", "", "a..b", "-x.example.com", "*.*.example.com", "300.1.2.3", "10.0.0.1.5"] {
            let err = Request::new("kts01.example.com", &[bad.to_string()], None).unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::Usage, "{bad}");
            assert!(err.message().contains("--san"), "{err}");
        }
        assert!(Request::new("not a host", &[], None).is_err());
    }

    #[test]
    fn self_signed_and_ca_signed_certificates() {
        let now = crate::clock::unix_now();
        let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
        let request = Request::new("kts01.example.com", &["10.0.0.1".into()], Some("/C=US/O=Example")).unwrap();
        let cert = self_signed_cert(&request, &key, 30, now).unwrap();
        assert_eq!(cert.info.subject, "C=US, O=Example, CN=kts01.example.com");
        assert!(cert.info.covers("kts01.example.com") && cert.info.covers("10.0.0.1"));
        assert!(!cert.info.is_ca && cert.info.self_issued);
        assert!(chain::key_matches(&cert.der, &key));
        let again = self_signed_cert(&request, &key, 30, now).unwrap();
        assert_ne!(cert.info.serial, again.info.serial, "serials are random");

        // A CA made by rcgen itself, then a certificate it signs.
        let ca_key = PrivateKey::generate(KeyAlgorithm::EcP384).unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params.distinguished_name.push(DnType::CommonName, "Lab CA");
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.not_before = datetime(now - 60).unwrap();
        ca_params.not_after = datetime(now + 10 * 86_400).unwrap();
        let ca_cert = ca_params.self_signed(&ca_key.key_pair().unwrap()).unwrap();
        let ca = Ca::new(ca_cert.der().clone(), ca_key, "ca.pem", "ca-key.pem", now).unwrap();
        let issued = signed_by(&request, &key, 5, &ca, now).unwrap();
        assert_eq!(issued.info.issuer, "CN=Lab CA");
        assert!(issued.info.not_before >= ca.info().not_before);
        let err = signed_by(&request, &key, 11, &ca, now).unwrap_err();
        assert_eq!(err.hint(), Some("give --days 10 or fewer"), "{err:?}");

        // The leaf is no CA, and a key that is not the CA's is refused.
        let other = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
        assert!(Ca::new(issued.der.clone(), other, "leaf.pem", "k", now).unwrap_err().message().contains("not a CA"));
        let wrong = PrivateKey::generate(KeyAlgorithm::EcP384).unwrap();
        let err = Ca::new(ca_cert.der().clone(), wrong, "ca.pem", "k.pem", now).unwrap_err();
        assert!(err.message().contains("does not match"), "{err}");
    }
}
