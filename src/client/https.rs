//! A small blocking HTTPS/1.1 client on rustls with keep-alive: enough for
//! kt's own server (responses always carry Content-Length) and shared by
//! `kt client`, `kt server start` (readiness), `kt verify` and the
//! benchmarks.
//!
//! # When a request is sent again
//!
//! Deposit requests are signed, and the server accepts each nonce once
//! (409 `replayed` the second time). This client therefore never re-sends
//! a request by itself; [`HttpsClient::send`] reports whether the request
//! may have reached the server, and the caller that signs (the client
//! [`Session`](crate::client::store::Session)) decides, signing again with a
//! new nonce whenever it sends again:
//!
//! - Before a kept-alive connection is reused it is checked: if the server
//!   has closed it meanwhile (its idle timeout) or sent anything unasked,
//!   a new connection is opened first. This is the common case of a stale
//!   connection, and no request is lost or doubled by it.
//! - [`Failure::Unreachable`], [`Failure::NotSent`]: the server cannot
//!   have carried the request out: no connection, the request could not be written completely, or a
//!   reused connection was closed cleanly (TLS close_notify) before a byte
//!   of the answer (an HTTP/1.1 server closes a kept-alive connection only
//!   between requests). Any request may be sent again, freshly signed.
//! - [`Failure::NoAnswer`]: the request was written and no complete answer
//!   came back (timeout, reset, truncated answer). The server may have
//!   carried it out, so a write (POST) is not repeated: the caller reports
//!   that the outcome is unknown instead of risking a duplicate or a false
//!   refusal.
//!
//! # Answers are read with a limit
//!
//! A body is read as it arrives, up to a cap ([`DEFAULT_MAX_BODY`] unless
//! [`HttpsClient::with_max_body`] says otherwise); a Content-Length is never
//! trusted to size a buffer, and an answer that claims or sends more than
//! the cap is an error. Header lines are capped too.

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
        Url::from_authority(authority).ok_or_else(bad)
    }

    /// `HOST:PORT`, `[IPv6]:PORT`, or a bare host (port 11371), as
    /// operators write a server address on the command line
    /// (`kt cert show --server`). An `https://` URL is taken too.
    pub fn parse_host_port(address: &str) -> Result<Url> {
        let bad = || {
            Error::usage(format!("invalid server address {address:?}")).with_hint("use HOST:PORT, or [IPv6]:PORT")
        };
        if address.starts_with("https://") {
            return Url::parse(address);
        }
        Url::from_authority(address).ok_or_else(bad)
    }

    fn from_authority(authority: &str) -> Option<Url> {
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => 11371,
                None => return None,
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                // A bare IPv6 address has colons but no port.
                Some(_) if authority.parse::<std::net::Ipv6Addr>().is_ok() => (authority.to_string(), 11371),
                Some((h, p)) => (h.to_string(), p.parse().ok()?),
                None => (authority.to_string(), 11371),
            }
        };
        if host.is_empty() || port == 0 || host.contains(['/', ' ']) {
            return None;
        }
        Some(Url { host, port })
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

/// The body cap of a client that was given none: far above any answer of
/// kt's server except deposits, which [`Session`](crate::client::store::Session)
/// raises it for.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// The most the status line and headers of one answer may take.
const MAX_HEAD: usize = 64 * 1024;
/// The most a body buffer grows ahead of the bytes that actually arrived.
const READ_CHUNK: usize = 64 * 1024;

/// A request that got no answer, and whether the server may have carried
/// it out (see the module documentation).
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made (resolution, TCP, TLS handshake):
    /// nothing was sent; another server may be tried.
    Unreachable(Error),
    /// The server cannot have carried the request out: it may be sent
    /// again, signed afresh, on a new connection or to another server.
    NotSent(Error),
    /// The request was sent and no complete answer came back: the server
    /// may have carried it out.
    NoAnswer(Error),
}

impl Failure {
    pub fn error(&self) -> &Error {
        match self {
            Failure::Unreachable(e) | Failure::NotSent(e) | Failure::NoAnswer(e) => e,
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        match f {
            Failure::Unreachable(e) | Failure::NotSent(e) | Failure::NoAnswer(e) => e,
        }
    }
}

/// A keep-alive connection to one server.
pub struct HttpsClient {
    config: Arc<ClientConfig>,
    url: Url,
    timeout: Duration,
    max_body: usize,
    conn: Option<BufReader<Stream>>,
    peer_certificate: Option<Vec<u8>>,
}

impl HttpsClient {
    pub fn new(url: &Url, trust: &Trust, timeout: Duration) -> Result<HttpsClient> {
        Ok(HttpsClient {
            config: Arc::new(client_config(trust)?),
            url: url.clone(),
            timeout,
            max_body: DEFAULT_MAX_BODY,
            conn: None,
            peer_certificate: None,
        })
    }

    /// The largest answer body this client accepts.
    pub fn with_max_body(mut self, bytes: usize) -> HttpsClient {
        self.max_body = bytes;
        self
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The DER of the certificate the server presented on the last connection.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_certificate.as_deref()
    }

    fn connect(&self) -> Result<BufReader<Stream>> {
        let stream = connect(&self.config, &self.url, self.timeout)?;
        Ok(BufReader::with_capacity(64 * 1024, stream))
    }

    /// Sends one request, once: on a kept-alive connection if the server
    /// still holds it open, else on a new one. For callers that do not
    /// care whether a failed request reached the server.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response> {
        self.send(method, path, headers, body).map_err(Error::from)
    }

    /// Sends one request, once, and on failure tells whether the server
    /// may have carried it out. Never sends it a second time.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Response, Failure> {
        if self.conn.as_ref().is_some_and(|c| !still_open(c)) {
            self.conn = None;
        }
        let reused = self.conn.is_some();
        if !reused {
            let conn = self.connect().map_err(Failure::Unreachable)?;
            self.peer_certificate = conn.get_ref().conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
            self.conn = Some(conn);
        }
        let url = self.url.clone();
        let conn = self.conn.as_mut().expect("connected above");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", url.host, body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let failed = |e: &dyn std::error::Error| Error::env(format!("request to {url} failed")).because(e);
        let stream = conn.get_mut();
        let written = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body)).and_then(|_| stream.flush());
        if let Err(e) = written {
            // The server did not get the whole request, so it cannot have
            // acted on it.
            self.conn = None;
            return Err(Failure::NotSent(failed(&e)));
        }
        match read_response(conn, method == "HEAD", self.max_body) {
            Ok(resp) => {
                if resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                    self.conn = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.conn = None;
                let clean_close = e.kind() == std::io::ErrorKind::ConnectionAborted;
                if reused && clean_close {
                    Err(Failure::NotSent(failed(&e)))
                } else {
                    Err(Failure::NoAnswer(failed(&e)))
                }
            }
        }
    }
}

/// Opens a TCP connection to `url` (each address the host resolves to, in
/// turn) and completes the TLS handshake, so that certificate problems are
/// reported as such, not as a failed request.
fn connect(config: &Arc<ClientConfig>, url: &Url, timeout: Duration) -> Result<Stream> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::env(format!("cannot connect to {url}")).because(format!("{what}: {e}"));
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| fail("cannot resolve the host", &e))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
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
    tcp.set_read_timeout(Some(timeout)).ok();
    tcp.set_write_timeout(Some(timeout)).ok();
    let name = ServerName::try_from(url.host.clone()).map_err(|e| fail("server name", &e))?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| fail("TLS", &e))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| fail("TLS handshake", &e))?;
    }
    Ok(stream)
}

/// The certificates the server at `url` presents, leaf first, as sent.
///
/// Only a TLS handshake: no request is sent, so any certificate is
/// accepted (this is how `kt cert show --server` and `kt cert check`
/// inspect it; judging it is the caller's business).
pub fn presented_chain(url: &Url, timeout: Duration) -> Result<Vec<CertificateDer<'static>>> {
    let config = Arc::new(client_config(&Trust::Insecure)?);
    let mut stream = connect(&config, url, timeout)?;
    let chain: Vec<CertificateDer<'static>> =
        stream.conn.peer_certificates().map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default();
    stream.conn.send_close_notify();
    let _ = stream.conn.complete_io(&mut stream.sock);
    if chain.is_empty() {
        return Err(Error::env(format!("{url} presented no certificate")));
    }
    Ok(chain)
}

/// Whether a kept-alive connection can carry another request: nothing is
/// waiting to be read on it (no close_notify, no FIN, nothing unasked).
fn still_open(conn: &BufReader<Stream>) -> bool {
    if !conn.buffer().is_empty() {
        return false;
    }
    let sock = &conn.get_ref().sock;
    socket_idle(sock)
}

/// Whether nothing is readable on `sock` right now (checked without
/// blocking or consuming anything).
fn socket_idle(sock: &TcpStream) -> bool {
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    let peeked = sock.peek(&mut [0u8; 1]);
    let restored = sock.set_nonblocking(false).is_ok();
    restored && matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Reads one line of at most `budget` bytes (counted down), without the
/// line end. `Ok(None)` at a clean end of stream before the first byte.
fn read_line_capped(r: &mut impl BufRead, budget: &mut usize) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(invalid(format!("the answer's header exceeds {MAX_HEAD} bytes")));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the answer ends inside its header"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map(Some).map_err(|_| invalid("the answer's header is not text"))
}

/// Appends exactly `len` bytes to `body`, growing it only as bytes arrive.
fn read_exactly(r: &mut impl Read, body: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let want = body.len() + len;
    while body.len() < want {
        let chunk = (want - body.len()).min(READ_CHUNK);
        let got = r.by_ref().take(chunk as u64).read_to_end(body)?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the answer ends after {} of {len} announced body bytes", len - (want - body.len())),
            ));
        }
    }
    Ok(())
}

/// Reads one answer. A clean end of stream before its first byte is
/// `ConnectionAborted` (the server closed the connection between
/// requests); a body above `max_body` is `InvalidData`.
fn read_response(conn: &mut impl BufRead, head_only: bool, max_body: usize) -> std::io::Result<Response> {
    let mut budget = MAX_HEAD;
    let Some(line) = read_line_capped(conn, &mut budget)? else {
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the server closed the connection"));
    };
    let status: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| invalid("bad status line"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line_capped(conn, &mut budget)?.ok_or_else(|| invalid("truncated headers"))?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let too_large = |len: &dyn std::fmt::Display| {
        invalid(format!("the server announced a body of {len} bytes, more than the limit of {max_body} bytes"))
    };
    let mut body = Vec::new();
    if !head_only && status != 204 && status != 304 && !(100..200).contains(&status) {
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let line = read_line_capped(conn, &mut budget)?.ok_or_else(|| invalid("truncated chunked body"))?;
                let size_text = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
                if size > max_body - body.len() {
                    return Err(too_large(&format!("more than {}", body.len() + size)));
                }
                read_exactly(conn, &mut body, size)?;
                if size == 0 {
                    // Trailer lines, up to the empty line that ends the answer.
                    while !read_line_capped(conn, &mut budget)?.ok_or_else(|| invalid("truncated chunked body"))?.is_empty() {}
                    break;
                }
                // The line end after the chunk's data.
                let end = read_line_capped(conn, &mut budget)?.ok_or_else(|| invalid("truncated chunked body"))?;
                if !end.is_empty() {
                    return Err(invalid("bad chunk end"));
                }
            }
        } else if let Some(len) = header("content-length") {
            let len: u64 = len.parse().map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
            if len > max_body as u64 {
                return Err(too_large(&len));
            }
            read_exactly(conn, &mut body, len as usize)?;
        } else {
            conn.take(max_body as u64 + 1).read_to_end(&mut body)?;
            if body.len() > max_body {
                return Err(too_large(&format!("more than {max_body}")));
            }
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
            for cert in crate::cert::material::read_certs(path)? {
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
pub(crate) struct AcceptAnyCert(pub(crate) Arc<rustls::crypto::CryptoProvider>);

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

    #[test]
    fn parses_host_and_port() {
        let url = |host: &str, port| Url { host: host.into(), port };
        assert_eq!(Url::parse_host_port("kts.example.com:8443").unwrap(), url("kts.example.com", 8443));
        assert_eq!(Url::parse_host_port("kts.example.com").unwrap(), url("kts.example.com", 11371));
        assert_eq!(Url::parse_host_port("[::1]:11371").unwrap(), url("::1", 11371));
        assert_eq!(Url::parse_host_port("[::1]").unwrap(), url("::1", 11371));
        assert_eq!(Url::parse_host_port("::1").unwrap(), url("::1", 11371));
        assert_eq!(Url::parse_host_port("127.0.0.1:9").unwrap(), url("127.0.0.1", 9));
        assert_eq!(Url::parse_host_port("https://[::1]:9000").unwrap(), url("::1", 9000));
        for bad in ["", ":1", "x:0", "x:port", "[::1", "[::1]x", "a b:1", "x/y:1"] {
            assert!(Url::parse_host_port(bad).is_err(), "{bad}");
        }
    }

    /// A TLS server on loopback presenting `chain`, for one handshake.
    fn one_handshake_server(addr: &str, chain: Vec<CertificateDer<'static>>, key: rustls::pki_types::PrivateKeyDer<'static>) -> u16 {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(config).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut sock).is_err() {
                    return;
                }
            }
            let _ = conn.complete_io(&mut sock);
        });
        port
    }

    #[test]
    fn the_presented_chain_is_read_over_ipv4_and_ipv6() {
        let leaf = crate::cert::self_signed("localhost", &[], 1).unwrap();
        let other = crate::cert::self_signed("ca.example", &[], 1).unwrap();
        let der = |pem: &str| crate::cert::chain::parse_certs(pem.as_bytes(), "test").unwrap().remove(0);
        let chain = vec![der(&leaf.cert_pem), der(&other.cert_pem)];
        let key = || rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        use rustls::pki_types::pem::PemObject;
        let port = one_handshake_server("127.0.0.1:0", chain.clone(), key());
        let got = presented_chain(&Url::parse_host_port(&format!("127.0.0.1:{port}")).unwrap(), Duration::from_secs(5)).unwrap();
        assert_eq!(got, chain);
        // An IPv6 literal (the test fails, loudly, on a host without ::1).
        let port = one_handshake_server("[::1]:0", chain.clone(), key());
        let got = presented_chain(&Url::parse_host_port(&format!("[::1]:{port}")).unwrap(), Duration::from_secs(5)).unwrap();
        assert_eq!(got, chain);
        // Nothing listening: an environment failure (exit 3).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = presented_chain(&Url::parse_host_port(&format!("127.0.0.1:{port}")).unwrap(), Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Environment, "{err}");
    }

    fn read(answer: &[u8], max_body: usize) -> std::io::Result<Response> {
        read_response(&mut std::io::Cursor::new(answer), false, max_body)
    }

    #[test]
    fn reads_answers_by_length_and_by_chunks() {
        let resp = read(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello", 100).unwrap();
        assert_eq!((resp.status, resp.body.as_slice(), resp.header("x-a")), (201, &b"hello"[..], Some("b")));
        let resp = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n", 100).unwrap();
        assert_eq!(resp.body, b"abcde");
        let resp = read(b"HTTP/1.1 204 No Content\r\n\r\n", 100).unwrap();
        assert!(resp.body.is_empty());
        let resp = read(b"HTTP/1.0 200 OK\r\n\r\nto the end", 100).unwrap();
        assert_eq!(resp.body, b"to the end");
    }

    #[test]
    fn a_huge_content_length_is_refused_before_any_allocation() {
        // If this allocated what the header claims, the test would abort.
        let err = read(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nabc", 1 << 20).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("announced a body of 18446744073709551615 bytes, more than the limit of 1048576"), "{err}");
        let err = read(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n", 100).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let err = read(b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", 100).unwrap_err();
        assert!(err.to_string().contains("bad Content-Length"), "{err}");
    }

    #[test]
    fn a_lying_content_length_is_an_error_not_a_hang_or_a_buffer() {
        // Within the cap but more than is sent: the body grows only with
        // what arrives, and the shortfall is reported.
        let err = read(b"HTTP/1.1 200 OK\r\nContent-Length: 200000000\r\n\r\nonly this", 1 << 30).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("ends after 9 of 200000000 announced body bytes"), "{err}");
    }

    #[test]
    fn chunks_and_unsized_bodies_are_capped_too() {
        let err = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n", 10).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let err = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 10).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let err = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n", 10).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let err = read(b"HTTP/1.0 200 OK\r\n\r\n0123456789A", 10).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(read(b"HTTP/1.0 200 OK\r\n\r\n0123456789", 10).unwrap().body.len(), 10);
    }

    #[test]
    fn headers_are_capped_and_must_be_complete() {
        let mut endless = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        endless.extend(std::iter::repeat_n(b'a', MAX_HEAD * 2));
        assert_eq!(read(&endless, 100).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(read(b"HTTP/1.1 200 OK\r\nX: 1\r\n", 100).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(read(b"SSH-2.0-OpenSSH\r\n\r\n", 100).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_clean_close_before_the_answer_is_told_apart() {
        // The server closed a kept-alive connection between requests: the
        // request can be sent again; anything else means it may have run.
        assert_eq!(read(b"", 100).unwrap_err().kind(), std::io::ErrorKind::ConnectionAborted);
        assert_eq!(read(b"HTTP/1.1 2", 100).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_connection_closed_by_the_server_is_not_reused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert!(socket_idle(&client), "an open, quiet connection is reusable");
        server.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!socket_idle(&client), "unasked bytes make a connection unusable");
        let mut got = [0u8; 1];
        (&client).read_exact(&mut got).unwrap();
        assert!(socket_idle(&client));
        drop(server);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!socket_idle(&client), "a connection the server closed is not reused");
        // The check leaves the socket blocking, as the client expects.
        client.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert_eq!((&client).read(&mut got).unwrap(), 0);
    }
}
