//! A client's directory (0700): `client.json` (servers, organization,
//! fingerprint, trust) and its key pair `secret.gpg` / `public.gpg` (0600).
//! A [`Session`] signs every request with that key and fails over across
//! the configured servers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgp::composed::{Deserializable, SignedSecretKey};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::client::https::{Failure, HttpsClient, Response, Trust, Url};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pgp::{generate_key, KeySpec};

const SETTINGS: &str = "client.json";
const SECRET: &str = "secret.gpg";
const PUBLIC: &str = "public.gpg";
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer a session reads: the largest deposit a server can
/// hold, with room for the JSON of a long listing.
pub(crate) const MAX_ANSWER: usize = crate::config::MAX_BODY_BYTES_CEILING as usize + 16 * 1024 * 1024;

/// What `client.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSettings {
    pub servers: Vec<String>,
    pub organization: String,
    pub fingerprint: String,
    pub state: String,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
}

impl ClientSettings {
    pub fn trust(&self) -> Trust {
        match &self.ca {
            Some(ca) => Trust::Ca(ca.clone()),
            None => Trust::Insecure,
        }
    }
}

/// What `register` needs.
pub struct RegisterOptions {
    pub servers: Vec<String>,
    pub organization: String,
    pub auth_secret: String,
    pub trust: Trust,
    pub key_spec: KeySpec,
}

impl std::fmt::Debug for RegisterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterOptions")
            .field("servers", &self.servers)
            .field("organization", &self.organization)
            .field("auth_secret", &"***")
            .finish()
    }
}

/// The client directory.
#[derive(Debug, Clone)]
pub struct ClientDir {
    pub dir: PathBuf,
}

impl ClientDir {
    pub fn new(dir: &Path) -> Result<ClientDir> {
        Ok(ClientDir { dir: fsutil::absolute(dir)? })
    }

    fn settings_path(&self) -> PathBuf {
        self.dir.join(SETTINGS)
    }

    pub fn settings(&self) -> Result<ClientSettings> {
        let path = self.settings_path();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let err = Error::env(format!("cannot read {}", path.display())).because_err(&e);
            if e.kind() == std::io::ErrorKind::NotFound {
                err.with_hint("register this client first: kt client --dir DIR register --server URL --org NAME ...")
            } else {
                err
            }
        })?;
        serde_json::from_str(&text).map_err(|e| Error::env(format!("{} is damaged", path.display())).because(e))
    }

    fn save_settings(&self, settings: &ClientSettings) -> Result<()> {
        let mut text = serde_json::to_string_pretty(settings).expect("settings serialize");
        text.push('\n');
        fsutil::write_atomic(&self.settings_path(), text.as_bytes(), 0o600, None)
    }

    /// Creates the key, registers it with the first server that answers,
    /// and saves the settings. On failure, files this call created are
    /// removed again.
    ///
    /// A directory whose registration awaits approval (`pending`) asks
    /// again with its key: the answer tells whether it was approved (or,
    /// after a denial, holds the new request), and a right secret given
    /// now admits it.
    pub fn register(&self, options: &RegisterOptions) -> Result<ClientSettings> {
        if self.settings_path().exists() {
            let saved = self.settings()?;
            if saved.state != "pending" {
                return Err(Error::usage(format!("{} already holds a registered client", self.dir.display()))
                    .with_hint("use another --dir for another client"));
            }
            if saved.organization != options.organization {
                return Err(Error::usage(format!(
                    "{} awaits approval by {}, not {}",
                    self.dir.display(),
                    saved.organization,
                    options.organization
                ))
                .with_hint("use another --dir for another organization"));
            }
            return self.register_again(options, saved);
        }
        if options.servers.is_empty() {
            return Err(Error::usage("give at least one --server"));
        }
        let urls = options.servers.iter().map(|s| Url::parse(s)).collect::<Result<Vec<_>>>()?;
        if let Trust::Ca(ca) = &options.trust {
            if !ca.is_file() {
                return Err(Error::usage(format!("the CA file {} does not exist", ca.display())));
            }
        }
        let created = fsutil::create_dirs(&self.dir, 0o700)?;
        let cleanup = |paths: &[PathBuf]| {
            for p in paths.iter().rev() {
                let _ = std::fs::remove_dir_all(p);
            }
        };
        let result = self.register_in(options, &urls);
        if result.is_err() {
            let _ = std::fs::remove_file(self.dir.join(SECRET));
            let _ = std::fs::remove_file(self.dir.join(PUBLIC));
            cleanup(&created);
        }
        result
    }

    /// Sends the registration of the saved key again, to the servers
    /// given now; the key and the directory stay whatever the answer.
    fn register_again(&self, options: &RegisterOptions, saved: ClientSettings) -> Result<ClientSettings> {
        let path = self.dir.join(SECRET);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::env(format!("cannot read the client key {}", path.display())).because_err(&e))?;
        let secret = SignedSecretKey::from_bytes(&bytes[..])
            .map_err(|e| Error::env(format!("{} is not an OpenPGP secret key", path.display())).because(e))?;
        let servers = if options.servers.is_empty() { saved.servers.clone() } else { options.servers.clone() };
        let urls = servers.iter().map(|s| Url::parse(s)).collect::<Result<Vec<_>>>()?;
        let options = RegisterOptions {
            servers,
            organization: saved.organization.clone(),
            auth_secret: options.auth_secret.clone(),
            trust: options.trust.clone(),
            key_spec: options.key_spec,
        };
        self.send_registration(&options, &urls, &secret, &saved.fingerprint)
    }

    fn register_in(&self, options: &RegisterOptions, urls: &[Url]) -> Result<ClientSettings> {
        let user_id = format!("kt client <{}@{}>", options.organization, urls[0].host);
        let key = generate_key(options.key_spec, &user_id)?;
        fsutil::write_atomic(&self.dir.join(SECRET), &key.secret, 0o600, None)?;
        fsutil::write_atomic(&self.dir.join(PUBLIC), &key.public, 0o600, None)?;
        let secret = SignedSecretKey::from_bytes(&key.secret[..])
            .map_err(|e| Error::env("cannot read back the new key").because(e))?;
        let fingerprint = key.fingerprint_hex();
        self.send_registration(options, urls, &secret, &fingerprint)
    }

    /// Sends the signed registration and saves the settings the answer
    /// gives: 200 (admitted) or 202 (`registration_pending`: saved with
    /// state `pending`, for the caller to explain).
    fn send_registration(
        &self,
        options: &RegisterOptions,
        urls: &[Url],
        secret: &SignedSecretKey,
        fingerprint: &str,
    ) -> Result<ClientSettings> {
        let public = SignedSecretKey::to_public_key(secret);
        let armored = crate::pgp::armored(&public)?;
        // The host name helps the administrator who approves the client.
        let host = crate::hostname::fqdn().ok().filter(|h| crate::hostname::validate(h).is_ok());
        let body = serde_json::json!({
            "organization": options.organization,
            "auth_secret": options.auth_secret,
            "public_key": armored,
            "host": host,
        })
        .to_string();
        let mut last_error = None;
        for url in urls {
            let mut client = HttpsClient::new(url, &options.trust, TIMEOUT)?;
            let headers = auth::sign_request(secret, fingerprint, "POST", "/register", body.as_bytes())?;
            match send_signed(&mut client, "POST", "/register", &headers, body.as_bytes()) {
                Ok(resp) if resp.status == 200 || resp.status == 202 => {
                    let answer: serde_json::Value = serde_json::from_slice(&resp.body)
                        .map_err(|e| Error::env("the server's answer is not JSON").because(e))?;
                    let settings = ClientSettings {
                        servers: options.servers.clone(),
                        organization: options.organization.clone(),
                        fingerprint: fingerprint.to_string(),
                        state: answer["state"].as_str().unwrap_or("unknown").to_string(),
                        ca: match &options.trust {
                            Trust::Ca(p) => Some(fsutil::absolute(p)?),
                            Trust::Insecure => None,
                        },
                        insecure: matches!(options.trust, Trust::Insecure),
                    };
                    self.save_settings(&settings)?;
                    return Ok(settings);
                }
                Ok(resp) => return Err(refusal("registration", &resp)),
                // Registering is idempotent (the same key with the same
                // organization answers its state again), so the next server
                // may be asked, with a new signature, whatever happened here.
                Err(e) => last_error = Some(e.into()),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::env("no server answered")))
    }

    /// Opens a session for signed requests.
    pub fn open(&self) -> Result<Session> {
        let settings = self.settings()?;
        let path = self.dir.join(SECRET);
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::env(format!("cannot read the client key {}", path.display())).because_err(&e))?;
        let key = SignedSecretKey::from_bytes(&bytes[..])
            .map_err(|e| Error::env(format!("{} is not an OpenPGP secret key", path.display())).because(e))?;
        let urls = settings.servers.iter().map(|s| Url::parse(s)).collect::<Result<Vec<_>>>()?;
        let trust = settings.trust();
        let clients = urls
            .iter()
            .map(|u| HttpsClient::new(u, &trust, TIMEOUT).map(|c| c.with_max_body(MAX_ANSWER)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Session { settings, key, clients, notes: Vec::new() })
    }
}

fn send_signed(
    client: &mut HttpsClient,
    method: &str,
    path: &str,
    h: &auth::SignedHeaders,
    body: &[u8],
) -> std::result::Result<Response, Failure> {
    let ts = h.timestamp.to_string();
    let mut headers = vec![
        (auth::HEADER_CLIENT, h.client.as_str()),
        (auth::HEADER_TIMESTAMP, ts.as_str()),
        (auth::HEADER_NONCE, h.nonce.as_str()),
        (auth::HEADER_SIGNATURE, h.signature.as_str()),
    ];
    if let Some(id) = &h.request_id {
        headers.push((auth::HEADER_REQUEST_ID, id));
    }
    client.send(method, path, &headers, body)
}

/// Turns a refusal into an error with the exit class an operator expects.
pub fn refusal(what: &str, resp: &Response) -> Error {
    let detail: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let code = detail["error"].as_str().unwrap_or("unknown");
    let message = detail["message"].as_str().unwrap_or("");
    let text = format!("{what} refused: HTTP {} {code}", resp.status);
    let err = match resp.status {
        400 | 404 | 413 => Error::usage(text),
        _ => Error::env(text),
    };
    let err = if message.is_empty() { err } else { err.because(message) };
    match code {
        "client_disabled" => err.with_hint("the operator can re-enable it: kt org enable-client --fingerprint FPR"),
        "client_pending" => err.with_hint(
            "an administrator of the organization approves it with: kt org enable-client --fingerprint FPR (FPR: kt client --dir DIR status)",
        ),
        "stale" => err.with_hint("check this host's clock"),
        "registration_refused" => err.with_hint("check the organization name and its auth secret"),
        "passive_unavailable" => err.with_hint("nothing was changed: send it again when `kt ha status` on the active is healthy"),
        "write_unconfirmed" => err.with_hint("do not send it again: it is stored; kt client --dir DIR list shows it"),
        "write_outcome_unknown" => err.with_hint("look before repeating it: kt client --dir DIR list"),
        _ => err,
    }
}

/// Signed requests on behalf of one client.
pub struct Session {
    pub settings: ClientSettings,
    key: SignedSecretKey,
    clients: Vec<HttpsClient>,
    /// What the session did that its user should hear of (a write sent
    /// again after an unknown outcome); taken by [`Session::take_notes`].
    notes: Vec<String>,
}

/// What `send` does after one attempt.
enum Next {
    /// Sign afresh and send again to the same server.
    Again,
    /// Go on to the next server.
    NextServer,
}

impl Session {
    /// Sends a signed request, signing it afresh (new nonce) every time it
    /// is sent, so that no attempt is refused as a replay of another.
    /// A write carries one request id (`X-KT-Request-Id`) across all its
    /// attempts, so that the server answers a repeat from its record of
    /// the first instead of writing twice.
    ///
    /// - No connection ([`Failure::Unreachable`]): any request goes to the
    ///   next server.
    /// - Nothing reached the server ([`Failure::NotSent`]): any request
    ///   goes again, to the same server once on a new connection (a
    ///   kept-alive one it had closed), then to the next.
    /// - No answer ([`Failure::NoAnswer`]), or 504 `write_outcome_unknown`:
    ///   reads go to the next server; a write goes once more to the same
    ///   server with the same request id (safe: the server answers it from
    ///   its record, or writes it if the first never got stored), noted in
    ///   [`Session::take_notes`]. If that fails too, the error says the
    ///   outcome is unknown; no other server is asked.
    /// - Answered 5xx: reads go to the next server; writes only on 503
    ///   (passive server, or nothing changed), and only while no attempt's
    ///   outcome is unknown.
    pub fn send(&mut self, method: &str, path: &str, body: &[u8], read: bool) -> Result<Response> {
        let request_id = (!read).then(auth::random_nonce);
        let mut last_error = None;
        let mut active_refused = false;
        for client in &mut self.clients {
            let mut resent_unsent = false;
            // Set once an attempt at this server may have been carried out.
            let mut unknown: Option<Error> = None;
            loop {
                let headers = match &request_id {
                    Some(id) => auth::sign_request_with_id(&self.key, &self.settings.fingerprint, method, path, body, id)?,
                    None => auth::sign_request(&self.key, &self.settings.fingerprint, method, path, body)?,
                };
                let url = client.url().to_string();
                let outcome = send_signed(client, method, path, &headers, body);
                let unknown_now = |e: Error| {
                    e.restate(
                        crate::error::Kind::Environment,
                        format!("no answer from {url} to {method} {path}: the server may or may not have carried it out"),
                    )
                    .with_hint("look before repeating it: kt client --dir DIR list")
                };
                let next = match outcome {
                    Ok(resp) if !read && resp.status == 504 && resp.error_code().as_deref() == Some("write_outcome_unknown") => {
                        let err = refusal(&format!("{method} {path} at {url}"), &resp);
                        if unknown.is_some() {
                            return Err(err);
                        }
                        self.notes.push(format!(
                            "kt: {url} lost its database connection while committing {method} {path}: sent again with the same request id (it is never written twice)"
                        ));
                        unknown = Some(err);
                        Next::Again
                    }
                    Ok(resp) if resp.status >= 500 && (read || resp.status == 503) => {
                        if let Some(first) = unknown {
                            return Err(first.because(format!(
                                "sent again, {url} answered {} {}: the first attempt's outcome stays unknown",
                                resp.status,
                                resp.error_code().unwrap_or_default()
                            )));
                        }
                        // A write: the active's reason (passive_unavailable)
                        // says more than what the servers after it answer
                        // (a passive's read_only): the first one is kept.
                        let read_only = resp.error_code().as_deref() == Some("read_only");
                        if read || !active_refused {
                            active_refused = !read_only;
                            last_error = Some(refusal(&format!("{method} {path} at {url}"), &resp));
                        }
                        Next::NextServer
                    }
                    Ok(resp) => return Ok(resp),
                    Err(Failure::NotSent(e)) if !resent_unsent => {
                        resent_unsent = true;
                        last_error = Some(e);
                        Next::Again
                    }
                    Err(Failure::NoAnswer(e)) if read => {
                        last_error = Some(e);
                        Next::NextServer
                    }
                    Err(Failure::NoAnswer(e)) => {
                        if let Some(first) = unknown {
                            return Err(first);
                        }
                        self.notes.push(format!(
                            "kt: no answer from {url} to {method} {path}: sent again with the same request id (it is never written twice)"
                        ));
                        unknown = Some(unknown_now(e));
                        Next::Again
                    }
                    Err(Failure::Unreachable(e) | Failure::NotSent(e)) => {
                        if let Some(first) = unknown {
                            return Err(first);
                        }
                        last_error = Some(e);
                        Next::NextServer
                    }
                };
                match next {
                    Next::Again => continue,
                    Next::NextServer => break,
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::env("no server configured")))
    }

    /// Notes of what the session did on its own (see [`Session::send`]),
    /// for the command to show.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn expect(&self, what: &str, resp: Response, ok: &[u16]) -> Result<Response> {
        if ok.contains(&resp.status) {
            Ok(resp)
        } else {
            Err(refusal(what, &resp))
        }
    }

    /// Stores a new deposit; returns its UUID.
    pub fn put(&mut self, name: &str, content: &[u8]) -> Result<String> {
        let path = format!("/deposits?name={}", percent_encode(name));
        let resp = self.send("POST", &path, content, false)?;
        let resp = self.expect("storing the deposit", resp, &[201])?;
        let answer: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| Error::env("the server's answer is not JSON").because(e))?;
        answer["uuid"].as_str().map(str::to_string).ok_or_else(|| Error::env("the server's answer has no uuid"))
    }

    pub fn get(&mut self, uuid: &str) -> Result<Vec<u8>> {
        let resp = self.send("GET", &format!("/deposits/{uuid}"), b"", true)?;
        Ok(self.expect("fetching the deposit", resp, &[200])?.body)
    }

    pub fn list(&mut self) -> Result<Vec<serde_json::Value>> {
        let resp = self.send("GET", "/deposits", b"", true)?;
        let resp = self.expect("listing deposits", resp, &[200])?;
        serde_json::from_slice(&resp.body).map_err(|e| Error::env("the server's answer is not JSON").because(e))
    }

    pub fn delete(&mut self, uuid: &str) -> Result<()> {
        let resp = self.send("DELETE", &format!("/deposits/{uuid}"), b"", false)?;
        self.expect("deleting the deposit", resp, &[204]).map(|_| ())
    }

    pub fn key(&self) -> &SignedSecretKey {
        &self.key
    }
}

/// Everything but RFC 3986's unreserved characters is escaped.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes everything but unreserved characters (upper-case hex).
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_escaped_for_a_query() {
        assert_eq!(super::percent_encode("disk-key_1.x~"), "disk-key_1.x~");
        assert_eq!(super::percent_encode("a b+c/\u{e9}&="), "a%20b%2Bc%2F%C3%A9%26%3D");
    }
}
