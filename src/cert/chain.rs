//! Certificate files and chains: reading certificates in PEM or DER and
//! from PKCS#12 bundles, whether a key belongs to a certificate, and
//! whether a chain leads from a certificate to a root (rustls' own webpki,
//! the same verifier TLS clients of rustls use).

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

use crate::cert::info::CertInfo;
use crate::cert::key::PrivateKey;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// `der` as PEM with `label` (64-character lines, LF), the encoding of
/// every certificate and key kt writes.
pub fn pem(label: &str, der: &[u8]) -> String {
    pkcs8::der::pem::encode_string(label, pkcs8::der::pem::LineEnding::LF, der).expect("a PEM label kt chose and any DER encode")
}

/// Certificates as one PEM text, in order.
pub fn certs_pem(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| pem("CERTIFICATE", c)).collect()
}

/// Every certificate of a file: one or more PEM certificates, or one DER.
pub fn read_cert_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::usage(format!("cannot read the certificate {}", path.display())).because_err(&e))?;
    parse_certs(&bytes, &path.display().to_string())
}

/// Every certificate in `bytes` (PEM, any number; or one DER).
pub fn parse_certs(bytes: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let certs: Vec<CertificateDer<'static>> = if is_pem {
        CertificateDer::pem_slice_iter(bytes)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::usage(format!("{origin} is not a valid PEM certificate file")).because(e))?
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    if certs.is_empty() {
        return Err(Error::usage(format!("{origin} holds no certificate")));
    }
    for cert in &certs {
        CertInfo::parse(cert).map_err(|e| Error::usage(format!("{origin} holds a certificate kt cannot read")).because(e))?;
    }
    Ok(certs)
}

/// The key and certificates of a PKCS#12 bundle (what `keytool
/// -importkeystore -deststoretype PKCS12` and `openssl pkcs12 -export`
/// write). It must hold exactly one private key; its certificates come
/// first, leaf first, then any other certificate of the bundle.
pub fn parse_pkcs12(bytes: &[u8], origin: &str, password: &Secret) -> Result<(PrivateKey, Vec<CertificateDer<'static>>)> {
    let store = p12_keystore::KeyStore::from_pkcs12(bytes, password.expose()).map_err(|e| {
        Error::usage(format!("cannot open the PKCS#12 bundle {origin}")).because(format!("{e} (wrong password, or not PKCS#12)"))
    })?;
    let mut chains = Vec::new();
    let mut loose = Vec::new();
    for (_alias, entry) in store.entries() {
        match entry {
            p12_keystore::KeyStoreEntry::PrivateKeyChain(chain) => chains.push(chain),
            p12_keystore::KeyStoreEntry::Certificate(cert) => loose.push(CertificateDer::from(cert.as_der().to_vec())),
            p12_keystore::KeyStoreEntry::Secret(_) => {}
        }
    }
    let chain = match chains.as_slice() {
        [one] => *one,
        [] => return Err(Error::usage(format!("the PKCS#12 bundle {origin} holds no private key"))),
        _ => {
            return Err(Error::usage(format!("the PKCS#12 bundle {origin} holds {} private keys", chains.len()))
                .with_hint("export the one entry the server uses (keytool -importkeystore -srcalias NAME ...)"))
        }
    };
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().to_vec()));
    let key = PrivateKey::from_der(&der, &format!("the key in {origin}"))?;
    let mut certs: Vec<CertificateDer<'static>> = chain.chain().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    for cert in loose {
        if !certs.contains(&cert) {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(Error::usage(format!("the PKCS#12 bundle {origin} holds no certificate for its key")));
    }
    Ok((key, certs))
}

/// Whether `key` is the private half of `cert`'s public key (checked by
/// rustls as the server would check it at start).
pub fn key_matches(cert: &CertificateDer<'_>, key: &PrivateKey) -> bool {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(vec![cert.clone().into_owned()], key.rustls_der(), &provider).is_ok()
}

/// Checks that `leaf` chains to a root among `others` (roots are the
/// self-issued certificates there; the rest are intermediates, in any
/// order), for TLS server use, at `now`. Returns the path from the leaf's
/// issuer to the root, in order.
pub fn verify_chain(
    leaf: &CertificateDer<'_>,
    others: &[CertificateDer<'static>],
    now: i64,
) -> Result<Vec<CertificateDer<'static>>> {
    let mut roots = Vec::new();
    let mut intermediates = Vec::new();
    for cert in others {
        if cert == leaf {
            continue;
        }
        let info = CertInfo::parse(cert).map_err(|e| Error::usage("a CA certificate kt cannot read").because(e))?;
        if info.self_issued {
            roots.push(cert.clone());
        } else {
            intermediates.push(cert.clone());
        }
    }
    if roots.is_empty() {
        return Err(Error::usage("the CA file holds no root certificate")
            .with_hint("--ca takes the root and any intermediates in one PEM file"));
    }
    let anchors: Vec<_> = roots
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).map_err(|e| Error::usage("a root certificate webpki cannot use").because(e)))
        .collect::<Result<_>>()?;
    let end_entity = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| Error::usage("the certificate cannot be read as a TLS server certificate").because(e))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
    let path = end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| {
            let why = match e {
                webpki::Error::UnknownIssuer => "no path from the certificate to a root in the CA file".to_string(),
                webpki::Error::CertExpired { .. } => "a certificate of the chain has expired".to_string(),
                webpki::Error::CertNotValidYet { .. } => "a certificate of the chain is not valid yet".to_string(),
                webpki::Error::InvalidSignatureForPublicKey => "a signature in the chain does not verify".to_string(),
                other => format!("{other:?}"),
            };
            Error::usage("the certificate chain does not verify").because(why)
        })?;
    let mut ordered: Vec<CertificateDer<'static>> = path.intermediate_certificates().map(|c| c.der().into_owned()).collect();
    let anchor = path.anchor();
    if let Some(root) = roots.iter().find(|r| {
        webpki::anchor_from_trusted_cert(r).is_ok_and(|a| a.subject == anchor.subject && a.subject_public_key_info == anchor.subject_public_key_info)
    }) {
        ordered.push(root.clone());
    }
    Ok(ordered)
}
