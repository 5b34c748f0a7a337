//! A small blocking HTTPS/1.1 client on rustls with keep-alive: enough for
//! kt's own server (responses always carry Content-Length) and shared by
//! `kt client`, `kt server start` (readiness) and the benchmarks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};

use crate::error::{Error, Result};

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Certificates issued by (or equal to) those in a PEM file.
    Ca(std::path::PathBuf),
    /// Any certificate: for tests and first contact only.
    Insecure,
}

/// A parsed `https://host[:port]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url> {
        let bad = || Error::usage(format!("invalid server URL {url:?}")).with_hint("use https://HOST[:PORT]");
        let rest = url.strip_prefix("https://").ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 11371,
                None => return Err(bad()),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), 11371),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Url { host, port })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `error` code of a JSON refusal, if any.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body).ok()?.get("error")?.as_str().map(str::to_string)
    }
}

type Stream = StreamOwned<ClientConnection, TcpStream>;

/// A keep-alive connection to one server.
pub struct HttpsClient {
    config: Arc<ClientConfig>,
    url: Url,
    timeout: Duration,
    conn: Option<BufReader<Stream>>,
    peer_certificate: Option<Vec<u8>>,
}

impl HttpsClient {
    pub fn new(url: &Url, trust: &Trust, timeout: Duration) -> Result<HttpsClient> {
        Ok(HttpsClient { config: Arc::new(client_config(trust)?), url: url.clone(), timeout, conn: None, peer_certificate: None })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The DER of the certificate the server presented on the last connection.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_certificate.as_deref()
    }

    fn connect(&self) -> Result<BufReader<Stream>> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::env(format!("cannot connect to {}", self.url)).because(format!("{what}: {e}"))
        };
        let addrs: Vec<_> = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| fail("cannot resolve the host", &e))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| match last {
            Some(e) => fail("TCP", &e),
            None => fail("TCP", &"no address"),
        })?;
        tcp.set_nodelay(true).ok();
        tcp.set_read_timeout(Some(self.timeout)).ok();
        tcp.set_write_timeout(Some(self.timeout)).ok();
        let name = ServerName::try_from(self.url.host.clone()).map_err(|e| fail("server name", &e))?;
        let conn = ClientConnection::new(self.config.clone(), name).map_err(|e| fail("TLS", &e))?;
        let mut stream = StreamOwned::new(conn, tcp);
        // Complete the handshake now so that certificate problems are
        // reported as such, not as a failed request.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| fail("TLS handshake", &e))?;
        }
        Ok(BufReader::with_capacity(64 * 1024, stream))
    }

    /// Sends one request; retries once on a fresh connection when a reused
    /// keep-alive connection turns out to be closed.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response> {
        let reused = self.conn.is_some();
        match self.try_request(method, path, headers, body) {
            Ok(resp) => Ok(resp),
            Err(_) if reused => {
                self.conn = None;
                self.try_request(method, path, headers, body)
            }
            Err(e) => Err(e),
        }
    }

    fn try_request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response> {
        if self.conn.is_none() {
            let conn = self.connect()?;
            self.peer_certificate = conn.get_ref().conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
            self.conn = Some(conn);
        }
        let url = self.url.clone();
        let result = (|| -> std::io::Result<Response> {
            let conn = self.conn.as_mut().expect("connected above");
            let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", url.host, body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let stream = conn.get_mut();
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)?;
            stream.flush()?;
            read_response(conn, method == "HEAD")
        })();
        match result {
            Ok(resp) => {
                if resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    self.conn = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.conn = None;
                Err(Error::env(format!("request to {url} failed")).because_err(&e))
            }
        }
    }
}

fn read_response(conn: &mut BufReader<Stream>, head_only: bool) -> std::io::Result<Response> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| invalid("bad status line"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(invalid("truncated headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if !head_only && status != 204 && status != 304 {
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().map_err(|_| invalid("bad Content-Length"))?;
            body.resize(len, 0);
            conn.read_exact(&mut body)?;
        } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                conn.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| invalid("bad chunk"))?;
                let start = body.len();
                body.resize(start + size, 0);
                conn.read_exact(&mut body[start..])?;
                line.clear();
                conn.read_line(&mut line)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            conn.read_to_end(&mut body)?;
        }
    }
    Ok(Response { status, headers, body })
}

fn client_config(trust: &Trust) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::env("cannot set up TLS").because(e))?;
    let mut config = match trust {
        Trust::Ca(path) => {
            let mut roots = RootCertStore::empty();
            for cert in crate::tls::read_certs(path)? {
                roots.add(cert).map_err(|e| Error::usage(format!("{} holds an unusable CA certificate", path.display())).because(e))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `--insecure`: accepts any certificate but still checks the handshake
/// signatures, so the connection is encrypted, just not authenticated.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(Url::parse("https://kts.example.com").unwrap(), Url { host: "kts.example.com".into(), port: 11371 });
        assert_eq!(Url::parse("https://127.0.0.1:8443/").unwrap(), Url { host: "127.0.0.1".into(), port: 8443 });
        assert_eq!(Url::parse("https://[::1]:9000").unwrap(), Url { host: "::1".into(), port: 9000 });
        assert_eq!(Url::parse("https://[::1]:9000").unwrap().to_string(), "https://[::1]:9000");
        for bad in ["http://x", "https://", "https://x:0", "https://x:port", "x:1"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
