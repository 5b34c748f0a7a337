//! The HTTP endpoints (DESIGN.md, "Wire protocol").
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /?a=fingerprint` | `<bits><algo>/<FINGERPRINT>` of the server key (text) |
//! | `GET /?a=pubkey` | the server's armored public key |
//! | `GET /?q=TOKEN`, `POST /?q=TOKEN` | the contact key registration page: HTML, its own statuses ([`crate::server::contact_page`]) |
//! | `GET /health` | JSON role, database, replication, version; 200 when active and healthy, 503 otherwise (also `{"draining": true}` once the server was told to stop) |
//! | `POST /register` | JSON `{organization, auth_secret, public_key, host?}`, signed with that key; 200 `{fingerprint, state, organization}` when admitted, 202 with `"status": "registration_pending"` and state `pending` when no secret was given to an organization that has one (an administrator approves it with `kt org enable-client`) |
//! | `POST /deposits?name=NAME` | body stored as a new deposit; 201 `{uuid}` |
//! | `GET /deposits` | JSON list of the client's deposits |
//! | `GET /deposits/UUID` | the deposit's bytes |
//! | `PUT /deposits/UUID` | replaces the deposit's bytes |
//! | `DELETE /deposits/UUID` | 204 |
//!
//! Refusals answer JSON `{"error": CODE, "message": TEXT}`:
//!
//! | status | code | why |
//! | --- | --- | --- |
//! | 400 | `bad_request` | malformed request: query, JSON, auth header format |
//! | 401 | `unsigned` | no signature headers |
//! | 403 | `forged` / `unknown_client` | the signature does not verify / no such client |
//! | 403 | `registration_refused` | wrong auth secret, or unknown or disabled organization |
//! | 404 | `not_found` | no such path, or no such deposit of this client |
//! | 405 | `method_not_allowed` | |
//! | 408 | `request_timeout` | the request (body, authentication, a read) did not complete within `REQUEST_TIMEOUT_SECONDS`; never a write once it started |
//! | 409 | `replayed` | the nonce was already used |
//! | 409 | `request_id_reused` | the `X-KT-Request-Id` was first used for another method, path or body |
//! | 409 | `already_registered` | the key is registered with another organization |
//! | 412 | `stale` | the timestamp is outside the allowed window |
//! | 413 | `body_too_large` | |
//! | 423 | `client_disabled` / `client_pending` | the client may not act now (disabled; or registered without the secret and not yet approved) |
//! | 429 | `too_many_pending` | a registration without the secret, while the organization already has `MAX_PENDING_CLIENTS` (100) clients awaiting approval: nothing stored; an administrator approves or denies some first |
//! | 503 | `read_only` / `database_unavailable` | passive server (naming the active); database down (a write: before its commit was sent, nothing changed) |
//! | 503 | `busy` | replay guard full; or a write found every write connection busy for `HA_WRITE_TIMEOUT_SECONDS` and never started (nothing changed) |
//! | 503 | `schema_behind` | the database lacks a table or column this kt uses: a passive upgraded before its active (upgrade the active's kt first; reads that need no new table go on) |
//! | 503 | `passive_unavailable` | synchronous replication is on and the passive is not connected (or did not let the write start in time): the write was refused before it began, nothing changed |
//! | 504 | `write_unconfirmed` | the write committed on the active but the passive did not confirm it within `HA_WRITE_TIMEOUT_SECONDS`: stored once, not to be sent again; a new deposit's `uuid` is in the answer. A retry with the same request id gets the recorded answer only once the passive confirms it (else this 504 again, with the `uuid`) |
//! | 504 | `write_outcome_unknown` | the connection to the database was lost after the commit was sent: stored or not, nobody knows; send it again with the same `X-KT-Request-Id` (new signature) to learn which, it is never written twice |
//!
//! Writes (`POST`, `PUT`, `DELETE` of deposits) may carry `X-KT-Request-Id`
//! (signed, see [`crate::auth`]): the answer is recorded with the write, in
//! its transaction, for a day, and a request with the same id (and the same
//! method, path and body) is answered from that record without a second
//! write. The request timeout covers reading and authenticating a write;
//! once it runs, only `HA_WRITE_TIMEOUT_SECONDS` bounds it (`Pool::write`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use pgp::composed::SignedPublicKey;

use crate::{approval, auth};
use crate::server::db::{DbError, NonceKey, Pool, RequestKey};
use crate::server::log::{error, info, warn};
use crate::server::replay::{ReplayGuard, Seen};

/// Limits of what one request may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub auth_window_seconds: i64,
    pub request_timeout: Duration,
    /// `MAX_PENDING_CLIENTS`: clients awaiting approval per organization.
    pub max_pending_clients: i64,
}

/// Everything the endpoints share.
pub struct AppState {
    pub fingerprint: String,
    pub pubkey_armored: String,
    pub pool: Pool,
    pub replay: ReplayGuard,
    /// Parsed client keys by fingerprint. A fingerprint names its key
    /// material, so an entry never goes stale; the client's state is read
    /// from the database on every request.
    pub keys: Mutex<HashMap<String, Arc<SignedPublicKey>>>,
    pub limits: Limits,
    /// On a passive: the active's host, named when a write is refused.
    pub ha_active: Option<String>,
    /// `HA_ROLE` passive: the database cannot take the shared replay
    /// guard's nonces, and need not (a passive is one node).
    pub passive: bool,
    /// `HA_WRITE_TIMEOUT_SECONDS`, named in the refusals it causes.
    pub ha_write_timeout: std::time::Duration,
    /// The last gate reading, for transitions in the log only.
    pub writes_open: std::sync::atomic::AtomicBool,
    /// `HOSTNAME`, named in the mail to contacts.
    pub hostname: String,
    /// The contact registration form's anti-forgery key and failure counts.
    pub registration: crate::registration::form::FormGuard,
    /// Set on SIGTERM: `/health` answers 503 `draining`.
    pub drain: crate::server::drain::Drain,
    /// The shared replay guard's queue of nonces.
    pub nonces: crate::server::nonces::SharedGuard,
    /// Client notices queued per organization (anyone can ask to register).
    pub notice_budget: crate::mail::budget::NoticeBudget,
}

type Resp = Response<Full<Bytes>>;

/// A refusal or failure, answered as JSON.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// A new deposit's uuid, when the write is stored but unconfirmed.
    uuid: Option<String>,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status, code, message: message.into(), uuid: None }
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        match e {
            DbError::ReadOnly => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "read_only",
                "this is a passive (read-only) server: send writes to the active one",
            ),
            DbError::PassiveUnavailable => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "passive_unavailable",
                "synchronous replication is on and the passive server is not connected: writes are refused until it is back (nothing was changed); reads go on",
            ),
            DbError::Unconfirmed(answer) => Refusal {
                uuid: answer.clone(),
                ..refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    "write_unconfirmed",
                    format!(
                        "the change{} is stored on the active but the passive did not confirm it in time: it is not lost and reaches the passive when it is back; do not send it again",
                        answer.map(|a| format!(" ({a})")).unwrap_or_default()
                    ),
                )
            },
            DbError::Busy => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "every write connection stayed busy for the write timeout: the write did not start, nothing was changed",
            ),
            DbError::OutcomeUnknown => refuse(
                StatusCode::GATEWAY_TIMEOUT,
                "write_outcome_unknown",
                "the connection to the database was lost while the change was being committed: it may or may not be stored; send the same request again with the same X-KT-Request-Id to learn which (it is never written twice)",
            ),
            DbError::RequestIdReused => refuse(
                StatusCode::CONFLICT,
                "request_id_reused",
                "this request id was first used for another request",
            ),
            DbError::SchemaBehind(why) => {
                error!("schema behind this kt: {why}");
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "schema_behind",
                    "the database schema is older than this server's kt: upgrade the active's kt first",
                )
            }
            DbError::Unavailable(why) => {
                error!("database unavailable: {why}");
                refuse(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable")
            }
            DbError::Other(why) => {
                // Internals go to the log, never to the client.
                error!("database error: {why}");
                refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(body: impl Into<Bytes>, content_type: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The refusal code of an answer (a response extension), for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct RefusalCode(pub &'static str);

impl Refusal {
    fn into_response(self) -> Resp {
        let mut body = serde_json::json!({"error": self.code, "message": self.message});
        if let Some(uuid) = self.uuid {
            body["uuid"] = uuid.into();
        }
        let mut resp = json(self.status, body);
        resp.extensions_mut().insert(RefusalCode(self.code));
        resp
    }
}

/// Entry point for every request: never fails, never panics the connection.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let deadline = tokio::time::Instant::now() + state.limits.request_timeout;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = route(&state, req, deadline).await;
    Ok(match result {
        Ok(resp) => resp,
        Err(mut refusal) => {
            if let (true, Some(active)) = (refusal.code == "read_only", &state.ha_active) {
                refusal.message = format!("this is a passive (read-only) server: send writes to the active one, {active}");
            }
            if refusal.status.as_u16() >= 401 && refusal.status.as_u16() != 404 {
                info!("refused {method} {path}: {} {}", refusal.status.as_u16(), refusal.code);
            }
            refusal.into_response()
        }
    })
}

/// `fut` within the request's deadline, else 408. Everything but a
/// write's statement runs under it: a write that has begun is bounded by
/// the write timeout alone, so that it never ends in a 408 whose statement
/// then commits.
async fn within<T>(deadline: tokio::time::Instant, fut: impl std::future::Future<Output = Result<T, Refusal>>) -> Result<T, Refusal> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .unwrap_or_else(|_| Err(refuse(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the request took too long")))
}

async fn route(state: &AppState, req: Request<Incoming>, deadline: tokio::time::Instant) -> Result<Resp, Refusal> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    // The contact key registration page (`?q=TOKEN`): HTML, not JSON.
    if let ([], Some(token)) = (segments.as_slice(), query_param(req.uri().query().unwrap_or(""), "q")) {
        return Ok(contact_page(state, req, &token, deadline).await);
    }
    match (req.method(), segments.as_slice()) {
        (&Method::GET, []) => public_query(state, req.uri().query().unwrap_or("")),
        (&Method::GET, ["health"]) => within(deadline, async { Ok(health(state).await) }).await,
        // Registering is idempotent (the same key answers its state again).
        (&Method::POST, ["register"]) => within(deadline, register(state, req)).await,
        (&Method::GET, ["deposits"]) => {
            within(deadline, async {
                let signed = authenticate(state, req).await?;
                list_deposits(state, &signed.client).await
            })
            .await
        }
        (&Method::POST, ["deposits"]) => {
            let name = query_param(req.uri().query().unwrap_or(""), "name")
                .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "bad_request", "missing ?name= for the new deposit"))?;
            if name.is_empty() || name.len() > 255 {
                return Err(refuse(StatusCode::BAD_REQUEST, "bad_request", "a deposit name has 1 to 255 bytes"));
            }
            let signed = within(deadline, authenticate(state, req)).await?;
            let (client, body) = (&signed.client, &signed.body);
            let uuid = state.pool.deposit_insert(signed.key(), client, &name, body).await?;
            Ok(json(StatusCode::CREATED, serde_json::json!({"uuid": uuid, "name": name, "size": body.len()})))
        }
        (m @ (&Method::GET | &Method::PUT | &Method::DELETE), ["deposits", uuid]) => {
            let method = m.clone();
            let uuid = uuid.to_ascii_lowercase();
            let signed = within(deadline, authenticate(state, req)).await?;
            let (client, body) = (&signed.client, &signed.body);
            // Malformed and foreign ids look the same as missing ones.
            let not_found = || refuse(StatusCode::NOT_FOUND, "not_found", "no such deposit");
            if !valid_uuid(&uuid) {
                return Err(not_found());
            }
            match method {
                Method::GET => match within(deadline, async { Ok(state.pool.deposit_get(&uuid, client).await?) }).await? {
                    Some(content) => Ok(text(content, "application/octet-stream")),
                    None => Err(not_found()),
                },
                Method::PUT => {
                    if state.pool.deposit_update(signed.key(), &uuid, client, body).await? {
                        Ok(json(StatusCode::OK, serde_json::json!({"uuid": uuid, "size": body.len()})))
                    } else {
                        Err(not_found())
                    }
                }
                _ => {
                    if state.pool.deposit_delete(signed.key(), &uuid, client).await? {
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = StatusCode::NO_CONTENT;
                        Ok(resp)
                    } else {
                        Err(not_found())
                    }
                }
            }
        }
        (_, [] | ["health"] | ["register"] | ["deposits"] | ["deposits", _]) => {
            Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here"))
        }
        _ => Err(refuse(StatusCode::NOT_FOUND, "not_found", "no such endpoint")),
    }
}

/// `GET` and `POST /?q=TOKEN` ([`crate::server::contact_page`]); any other
/// method gets the page's 405.
async fn contact_page(state: &AppState, req: Request<Incoming>, token: &str, deadline: tokio::time::Instant) -> Resp {
    use crate::server::contact_page as page;
    match *req.method() {
        Method::GET => page::get(state, token, deadline).await,
        Method::POST => page::post(state, token, req, deadline).await,
        _ => page::respond(crate::registration::page::refused(405, "Method not allowed", "Open the link in a browser.")),
    }
}

fn public_query(state: &AppState, query: &str) -> Result<Resp, Refusal> {
    match query_param(query, "a").as_deref() {
        Some("fingerprint") => Ok(text(state.fingerprint.clone(), "text/plain; charset=utf-8")),
        Some("pubkey") => Ok(text(state.pubkey_armored.clone(), "application/pgp-keys")),
        _ => Err(refuse(StatusCode::BAD_REQUEST, "bad_request", "ask ?a=fingerprint or ?a=pubkey")),
    }
}

async fn health(state: &AppState) -> Resp {
    let version = env!("CARGO_PKG_VERSION");
    if state.drain.is_draining() {
        // Before anything else: a load balancer must stop sending here.
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"draining": true, "version": version, "fingerprint": state.fingerprint}),
        );
    }
    match state.pool.health().await {
        Ok((in_recovery, schema)) => {
            use crate::storage::schema::{latest_version, standing_of, Standing};
            let role = if in_recovery { "passive" } else { "active" };
            // "behind" on a passive: its kt is newer than the active's
            // schema; it serves reads until the active is upgraded.
            let (schema_state, schema_ok) = match standing_of(schema) {
                Standing::Current => ("current", true),
                Standing::Behind(_) => ("behind", false),
                Standing::Ahead(_) => ("ahead", false),
            };
            let replication: Vec<_> = state
                .pool
                .replication()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(name, st, sync)| serde_json::json!({"standby": name, "state": st, "sync_state": sync}))
                .collect();
            let status = if in_recovery || !schema_ok { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            json(
                status,
                serde_json::json!({
                    "role": role,
                    "database": "ok",
                    "schema_version": schema,
                    "schema": schema_state,
                    "schema_expected": latest_version(),
                    "replication": replication,
                    "version": version,
                    "fingerprint": state.fingerprint,
                }),
            )
        }
        Err(e) => {
            let refusal: Refusal = e.into();
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"role": "unknown", "database": refusal.code, "version": version}),
            )
        }
    }
}

/// Reads the body within the size limit.
async fn read_body(state: &AppState, req: Request<Incoming>) -> Result<(hyper::http::request::Parts, Bytes), Refusal> {
    let max = state.limits.max_body_bytes;
    let too_large = || refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body exceeds {max} bytes"));
    if let Some(len) = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        if len > max as u64 {
            return Err(too_large());
        }
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(refuse(StatusCode::BAD_REQUEST, "bad_request", "the body could not be read")),
    }
}

fn header<'a>(parts: &'a hyper::http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// An authenticated request: who sent it, its body, and its request id
/// with the digest a retry must match.
struct Signed {
    client: String,
    body: Bytes,
    request: Option<(String, Vec<u8>)>,
}

impl Signed {
    fn key(&self) -> Option<RequestKey<'_>> {
        self.request.as_ref().map(|(id, digest)| RequestKey { client: &self.client, id, digest })
    }
}

/// Verified identity of a request: checks presence, freshness, key,
/// signature, state and nonce, in an order that lets no unauthenticated
/// party learn a client's state or burn its nonces.
async fn authenticate(state: &AppState, req: Request<Incoming>) -> Result<Signed, Refusal> {
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let method = req.method().as_str().to_string();
    let (parts, body) = read_body(state, req).await?;
    let signed = SignedParts::from(&parts)?;
    let fingerprint = signed.client.to_string();
    check_fresh(state, signed.timestamp)?;
    let row = state
        .pool
        .client(&fingerprint)
        .await?
        .ok_or_else(|| refuse(StatusCode::FORBIDDEN, "unknown_client", "no client is registered with this key"))?;
    let key = cached_key(state, &fingerprint, &row.public_key)?;
    let text = auth::canonical_with_id(&method, &path_and_query, signed.timestamp, signed.nonce, &body, signed.request_id);
    if !auth::verify(&key, &text, signed.signature) {
        return Err(refuse(StatusCode::FORBIDDEN, "forged", "the request signature does not verify"));
    }
    match row.state.as_str() {
        "active" => {}
        "pending" => {
            return Err(refuse(StatusCode::LOCKED, "client_pending", "this client awaits approval"));
        }
        _ => return Err(refuse(StatusCode::LOCKED, "client_disabled", "this client is disabled")),
    }
    let expires = check_nonce(state, &fingerprint, signed.nonce, signed.timestamp)?;
    claim_shared(state, NonceKey { client: &fingerprint, nonce: signed.nonce, expires }).await?;
    let request = signed.request_id.map(|id| (id.to_string(), auth::request_digest(&method, &path_and_query, &body)));
    Ok(Signed { client: fingerprint, body, request })
}

struct SignedParts<'a> {
    client: &'a str,
    timestamp: i64,
    nonce: &'a str,
    signature: &'a str,
    request_id: Option<&'a str>,
}

impl<'a> SignedParts<'a> {
    fn from(parts: &'a hyper::http::request::Parts) -> Result<SignedParts<'a>, Refusal> {
        let (Some(client), Some(timestamp), Some(nonce), Some(signature)) = (
            header(parts, auth::HEADER_CLIENT),
            header(parts, auth::HEADER_TIMESTAMP),
            header(parts, auth::HEADER_NONCE),
            header(parts, auth::HEADER_SIGNATURE),
        ) else {
            return Err(refuse(StatusCode::UNAUTHORIZED, "unsigned", "the request is not signed"));
        };
        let bad = |what: &str| refuse(StatusCode::BAD_REQUEST, "bad_request", format!("malformed {what} header"));
        if !auth::valid_fingerprint(client) {
            return Err(bad(auth::HEADER_CLIENT));
        }
        let timestamp = timestamp.parse::<i64>().map_err(|_| bad(auth::HEADER_TIMESTAMP))?;
        if !auth::valid_nonce(nonce) {
            return Err(bad(auth::HEADER_NONCE));
        }
        let request_id = match parts.headers.get(auth::HEADER_REQUEST_ID) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(id) if auth::valid_request_id(id) => Some(id),
                _ => return Err(bad(auth::HEADER_REQUEST_ID)),
            },
        };
        Ok(SignedParts { client, timestamp, nonce, signature, request_id })
    }
}

fn check_fresh(state: &AppState, timestamp: i64) -> Result<(), Refusal> {
    let now = crate::clock::unix_now();
    let window = state.limits.auth_window_seconds;
    if (timestamp - now).abs() > window {
        return Err(refuse(
            StatusCode::PRECONDITION_FAILED,
            "stale",
            format!("the request timestamp is more than {window} s away from the server's clock"),
        ));
    }
    Ok(())
}

/// The node's own replay guard: a replay to this node is refused here,
/// without a round trip to the database. The shared guard (the
/// `replay_nonces` table, [`claim_shared`]) is the authority across nodes.
/// Answers until when the nonce must be remembered.
fn check_nonce(state: &AppState, client: &str, nonce: &str, timestamp: i64) -> Result<i64, Refusal> {
    let now = crate::clock::unix_now();
    let expires = timestamp + state.limits.auth_window_seconds + 1;
    match state.replay.check(client, nonce, now, expires) {
        Seen::First => Ok(expires),
        Seen::Replayed => Err(replayed()),
        Seen::Full => Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many requests in the window")),
    }
}

fn replayed() -> Refusal {
    refuse(StatusCode::CONFLICT, "replayed", "this request was already received")
}

/// Takes an authenticated request's nonce in the shared replay guard
/// (src/server/nonces.rs), before the request does anything. A passive
/// (`HA_ROLE` passive) cannot write it: there the node's own guard is the
/// only one (a passive is one node; README, "Running several servers").
/// So is a passive's database whose schema lacks the table (a passive
/// upgraded before its active). Any other node fails closed: a read-only
/// database under it (DB_HOST naming a standby, a read-only default) is
/// no reason to let through what another node, which never saw the
/// nonce, would also let through.
async fn claim_shared(state: &AppState, nonce: NonceKey<'_>) -> Result<(), Refusal> {
    let passive = state.passive;
    match state.nonces.claim(nonce).await {
        Ok(true) => Ok(()),
        Err(DbError::ReadOnly) | Err(DbError::SchemaBehind(_)) if passive => Ok(()),
        Ok(false) => Err(replayed()),
        Err(DbError::ReadOnly) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "read_only",
            "the database is read-only and this server is no passive: it cannot record the request in the shared replay guard, so it takes no requests (is the database a standby?)",
        )),
        Err(e) => Err(e.into()),
    }
}

fn cached_key(state: &AppState, fingerprint: &str, key_bytes: &[u8]) -> Result<Arc<SignedPublicKey>, Refusal> {
    if let Some(key) = state.keys.lock().unwrap_or_else(|e| e.into_inner()).get(fingerprint) {
        return Ok(key.clone());
    }
    let key = crate::pgp::parse_public_key(key_bytes).map_err(|e| {
        error!("stored key of client {fingerprint} does not parse: {e}");
        refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    })?;
    let key = Arc::new(key);
    state.keys.lock().unwrap_or_else(|e| e.into_inner()).insert(fingerprint.to_string(), key.clone());
    Ok(key)
}

#[derive(serde::Deserialize)]
struct RegisterRequest {
    organization: String,
    auth_secret: String,
    public_key: String,
    /// The client's host name, shown to the administrator who approves it.
    #[serde(default)]
    host: Option<String>,
}

async fn register(state: &AppState, req: Request<Incoming>) -> Result<Resp, Refusal> {
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let (parts, body) = read_body(state, req).await?;
    let request: RegisterRequest = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad_request", format!("invalid registration JSON: {e}")))?;
    let key = crate::pgp::parse_public_key(request.public_key.as_bytes())
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let fingerprint = crate::pgp::fingerprint_hex(&key);
    // Proof of possession: the registration is signed with the key it registers.
    let signed = SignedParts::from(&parts)?;
    if signed.client != fingerprint {
        return Err(refuse(StatusCode::FORBIDDEN, "forged", "the request is not signed by the key it registers"));
    }
    check_fresh(state, signed.timestamp)?;
    let text = auth::canonical_with_id("POST", &path_and_query, signed.timestamp, signed.nonce, &body, signed.request_id);
    if !auth::verify(&key, &text, signed.signature) {
        return Err(refuse(StatusCode::FORBIDDEN, "forged", "the request signature does not verify"));
    }
    let expires = check_nonce(state, &fingerprint, signed.nonce, signed.timestamp)?;
    claim_shared(state, NonceKey { client: &fingerprint, nonce: signed.nonce, expires }).await?;
    let refused = || refuse(StatusCode::FORBIDDEN, "registration_refused", "unknown organization or wrong auth secret");
    if let Some(host) = &request.host {
        crate::hostname::validate(host).map_err(|_| refuse(StatusCode::BAD_REQUEST, "bad_request", "invalid host name"))?;
    }
    let org = state.pool.organization(&request.organization).await?.ok_or_else(refused)?;
    if org.state != "active" {
        return Err(refused());
    }
    let wanted = match approval::decide(&org.auth_secret, &request.auth_secret, || {
        constant_time_eq(&org.auth_secret, &request.auth_secret)
    }) {
        approval::Decision::Admit => "active",
        approval::Decision::Hold => "pending",
        approval::Decision::Refuse => return Err(refused()),
    };
    if wanted == "pending" {
        // Anyone who knows the organization's name can ask: the held
        // requests are capped (a key already registered is answered as is).
        let (pending, known) = state.pool.pending_clients(&org.uuid, &fingerprint).await?;
        if !known && pending >= state.limits.max_pending_clients {
            return Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending",
                "this organization has too many clients awaiting approval: ask its administrator to approve or deny them, or register with the auth secret",
            ));
        }
    }
    let stored = crate::pgp::serialize_public(&key).map_err(|_| refuse(StatusCode::BAD_REQUEST, "bad_request", "cannot encode the key"))?;
    let host = request.host.as_deref();
    let time_utc = crate::mail::messages::utc_now();
    let facts = crate::mail::messages::ClientFacts {
        organization: &request.organization,
        fingerprint: &fingerprint,
        host,
        time_utc: &time_utc,
        server: &state.hostname,
    };
    let notices = super::db::ClientNotices {
        registered: crate::mail::messages::client_registered(&facts),
        pending: crate::mail::messages::client_pending(&facts),
    };
    // Anyone can ask: the notices to the contacts are bounded per organization.
    let now = crate::clock::unix_now().max(0) as u64;
    let mail = state.notice_budget.available(&org.uuid, now);
    let (client_state, client_org, queued) =
        state.pool.register_client(&fingerprint, &org.uuid, &stored, wanted, host, mail.then_some(&notices)).await?;
    if queued {
        state.notice_budget.spend(&org.uuid, now);
    } else if !mail {
        warn!(
            "mail: the contacts of organization {} were not told of client {fingerprint}: they were sent {} client notices within the hour, the most (kt org clients lists every client)",
            request.organization,
            crate::mail::budget::MAX_NOTICES
        );
    }
    if client_org != org.uuid {
        return Err(refuse(StatusCode::CONFLICT, "already_registered", "this key is registered with another organization"));
    }
    info!("registered client {fingerprint} with organization {} ({client_state})", request.organization);
    let mut answer = serde_json::json!({"fingerprint": fingerprint, "state": client_state, "organization": request.organization});
    if client_state == "pending" {
        answer["status"] = "registration_pending".into();
        answer["message"] = format!(
            "the client awaits approval by an administrator of {}: kt org enable-client --fingerprint {fingerprint}",
            request.organization
        )
        .into();
        return Ok(json(StatusCode::ACCEPTED, answer));
    }
    Ok(json(StatusCode::OK, answer))
}

/// Compares secrets in constant time. Both sides are hashed first so that
/// not even the secret's length shows in the timing.
fn constant_time_eq(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(a.as_bytes()).ct_eq(&Sha256::digest(b.as_bytes())).into()
}

async fn list_deposits(state: &AppState, client: &str) -> Result<Resp, Refusal> {
    let deposits = state.pool.deposit_list(client).await?;
    let items: Vec<_> = deposits
        .into_iter()
        .map(|d| serde_json::json!({"uuid": d.uuid, "name": d.name, "size": d.size, "created": d.created, "updated": d.updated}))
        .collect();
    Ok(json(StatusCode::OK, serde_json::Value::Array(items)))
}

/// The decoded value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// Form-style decoding of a query value: `+` is a space, `%XX` a byte,
/// a malformed escape stays as written.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

fn valid_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode() {
        assert_eq!(query_param("a=fingerprint", "a").as_deref(), Some("fingerprint"));
        assert_eq!(query_param("x=1&name=my%20key+2", "name").as_deref(), Some("my key 2"));
        assert_eq!(query_param("name=%zz%4", "name").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("name=a%2Bb%2fc%C3%A9", "name").as_deref(), Some("a+b/c\u{e9}"));
        assert_eq!(query_param("b=1", "a"), None);
    }

    #[test]
    fn uuids_and_secrets() {
        assert!(valid_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!valid_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!valid_uuid("../../etc/passwd"));
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(!constant_time_eq("", "x"));
    }
}
