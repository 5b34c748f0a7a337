//! TLS to PostgreSQL through rustls, for both the sync `postgres` client
//! (kt's commands) and the async `tokio-postgres` pool (`kt serve`): one
//! connector type, so a local and an external database give the same
//! client and connection types.
//!
//! What is checked follows libpq's `sslmode` (src/settings.rs, `SslMode`):
//! `verify-full` the chain against `DB_SSLROOTCERT` and the host name,
//! `verify-ca` the chain only, `require` the chain when a CA file is given
//! and nothing otherwise, `prefer` nothing. The handshake's signatures are
//! always checked, so even an unchecked certificate gives an encrypted
//! session. SCRAM's channel binding (`tls-server-end-point`) is offered,
//! so a server that insists on it (`channel_binding=require` on its
//! clients) is satisfied and a man in the middle cannot relay the login.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::error::{Error, Result};
use crate::settings::SslMode;

/// Makes a TLS session for each new connection (cheap to clone).
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustls")
    }
}

impl MakeRustls {
    /// The connector for `mode`, trusting the CAs in `rootcert`.
    pub fn new(mode: SslMode, rootcert: Option<&Path>) -> Result<MakeRustls> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::env("cannot set up TLS for the database").because(e))?;
        let roots = match rootcert {
            Some(path) if mode != SslMode::Disable && mode != SslMode::Prefer => Some(roots(path)?),
            _ => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => webpki(roots, provider)?,
            (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(ChainOnly(webpki(roots, provider)?)),
            (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
                return Err(Error::usage(format!("sslmode {} needs a CA file (DB_SSLROOTCERT)", mode.name())))
            }
            _ => Arc::new(crate::client::https::AcceptAnyCert(provider)),
        };
        let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
        Ok(MakeRustls { config: Arc::new(config) })
    }
}

fn roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in crate::cert::material::read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| Error::usage(format!("{} holds an unusable CA certificate", path.display())).because(e))?;
    }
    Ok(roots)
}

fn webpki(roots: RootCertStore, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>> {
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| Error::usage("cannot use the database's CA file").because(e))?;
    Ok(verifier)
}

/// libpq's `verify-ca`: the chain must lead to the CA, whatever name the
/// certificate is for.
#[derive(Debug)]
struct ChainOnly(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect { config: self.config.clone(), name })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS session to the database.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// RFC 5929's `tls-server-end-point`: the server certificate hashed
    /// as [`end_point_hash`] says. None when that hash is undefined: the
    /// login then goes without channel binding (or fails, with
    /// DB_CHANNEL_BINDING `require`), rather than offering a value the
    /// server cannot match.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session.peer_certificates().and_then(|c| c.first()).and_then(|cert| end_point_hash(cert)) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// The hash functions a certificate's signature can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The certificate hashed as RFC 5929 (4.1) says, and as PostgreSQL's
/// server computes it (`be_tls_get_certificate_hash`, OpenSSL's
/// `X509_get_signature_info`): by the hash function of the certificate's
/// signature, SHA-256 in place of MD5 and SHA-1. For RSASSA-PSS that
/// hash is in the algorithm's parameters (SHA-1 when absent), not in the
/// OID. None for a signature without a hash function of its own (Ed25519,
/// Ed448) or one this does not know: PostgreSQL has no end-point hash for
/// those either.
fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    let hash = signature_hash(cert)?;
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(cert).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
    })
}

fn signature_hash(cert: &[u8]) -> Option<Hash> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let algorithm = &parsed.signature_algorithm;
    let oid = algorithm.algorithm.to_id_string();
    if oid == RSASSA_PSS {
        let params = algorithm.parameters.as_ref()?;
        let params = x509_parser::signature_algorithm::RsaSsaPssParams::try_from(params).ok()?;
        return digest_hash(&params.hash_algorithm_oid().to_id_string());
    }
    signed_with(&oid)
}

/// id-RSASSA-PSS (RFC 4055): its hash is a parameter.
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// The hash of a signature algorithm that names one in its OID (RSA
/// PKCS#1 v1.5, ECDSA, DSA), MD5 and SHA-1 mapped to SHA-256.
fn signed_with(oid: &str) -> Option<Hash> {
    Some(match oid {
        // md5WithRSA, sha1WithRSA, ecdsa-with-SHA1, dsa-with-sha1
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" | "1.2.840.10040.4.3" => Hash::Sha256,
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" | "2.16.840.1.101.3.4.3.1" => Hash::Sha224,
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" | "2.16.840.1.101.3.4.3.2" => Hash::Sha256,
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Hash::Sha384,
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Hash::Sha512,
        _ => return None,
    })
}

/// A hash function's own OID (in RSASSA-PSS parameters), MD5 and SHA-1
/// mapped to SHA-256.
fn digest_hash(oid: &str) -> Option<Hash> {
    Some(match oid {
        "1.2.840.113549.2.5" | "1.3.14.3.2.26" => Hash::Sha256,
        "2.16.840.1.101.3.4.2.4" => Hash::Sha224,
        "2.16.840.1.101.3.4.2.1" => Hash::Sha256,
        "2.16.840.1.101.3.4.2.2" => Hash::Sha384,
        "2.16.840.1.101.3.4.2.3" => Hash::Sha512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A self-signed certificate made by openssl with `key_args` (for
    /// `req -newkey`) and `sign_args` (digest and signature options), DER.
    fn openssl_cert(key_args: &[&str], sign_args: &[&str]) -> Vec<u8> {
        // The key is thrown away; the certificate comes on stdout.
        let out = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=db", "-keyout", "/dev/null", "-outform", "DER", "-newkey"])
            .args(key_args)
            .args(sign_args)
            .output()
            .expect("openssl must be installed for this test");
        assert!(out.status.success(), "openssl {key_args:?} {sign_args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_hash() {
        let rsa = ["rsa:2048"];
        let p256 = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
        let pss = |md: &'static str| -> Vec<&'static str> {
            vec![md, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"]
        };
        let cases: Vec<(&[&str], Vec<&str>, Option<Hash>)> = vec![
            (&rsa, vec!["-sha1"], Some(Hash::Sha256)),
            (&rsa, vec!["-sha224"], Some(Hash::Sha224)),
            (&rsa, vec!["-sha256"], Some(Hash::Sha256)),
            (&rsa, vec!["-sha384"], Some(Hash::Sha384)),
            (&rsa, vec!["-sha512"], Some(Hash::Sha512)),
            (&p256, vec!["-sha384"], Some(Hash::Sha384)),
            (&p256, vec!["-sha512"], Some(Hash::Sha512)),
            // RSA-PSS: the hash is in the parameters, whatever the OID.
            (&rsa, pss("-sha256"), Some(Hash::Sha256)),
            (&rsa, pss("-sha384"), Some(Hash::Sha384)),
            (&rsa, pss("-sha512"), Some(Hash::Sha512)),
            // No hash of its own: no channel binding.
            (&["ed25519"], vec![], None),
        ];
        for (key, sign, want) in cases {
            let der = openssl_cert(key, &sign);
            assert_eq!(signature_hash(&der), want, "{key:?} {sign:?}");
            let expected = match want {
                None => None,
                Some(Hash::Sha224) => Some(sha2::Sha224::digest(&der).to_vec()),
                Some(Hash::Sha256) => Some(sha2::Sha256::digest(&der).to_vec()),
                Some(Hash::Sha384) => Some(sha2::Sha384::digest(&der).to_vec()),
                Some(Hash::Sha512) => Some(sha2::Sha512::digest(&der).to_vec()),
            };
            assert_eq!(end_point_hash(&der), expected, "{key:?} {sign:?}");
        }
        // A PSS certificate's own parameters decide, not a default.
        let der = openssl_cert(&rsa, &pss("-sha384"));
        assert_eq!(end_point_hash(&der).unwrap().len(), 48);
    }
}
