//! `GET /?q=TOKEN` and `POST /?q=TOKEN`: the contact key registration
//! page ([`crate::registration`]) over HTTP.
//!
//! | answer | when |
//! | --- | --- |
//! | 200 form | `GET` with a valid token |
//! | 200 result | `POST` of a good key with a valid token: stored, fingerprint and user IDs shown |
//! | 400 | malformed token; a key refused by the checks (the form again, with the reason); a malformed form |
//! | 403 | a cross-site post, or a form not rendered by this server (anti-forgery field) |
//! | 404 | unknown token |
//! | 410 | expired or used token |
//! | 408 | the request (reading, checks) did not complete within `REQUEST_TIMEOUT_SECONDS` |
//! | 413 | a form larger than the key limit allows |
//! | 415 | a post that is not `application/x-www-form-urlencoded` |
//! | 429 | too many failed posts with this token within the hour |
//! | 503 | `POST` on a passive server (it cannot write; the active is named); the database is unavailable; synchronous replication without its standby, or no write connection free (nothing changed) |
//! | 504 | the key is stored on the active but the passive did not confirm it in time; or the connection was lost after the commit was sent (outcome unknown: the link's page tells) |
//!
//! The passive answers 503 rather than 409: nothing about the token or
//! the key conflicts with anything; this server cannot take writes, the
//! same status the JSON API gives a write sent to a passive. Every answer
//! is an HTML page with [`page::headers`]. A refused request changes
//! nothing; the token stays usable until it expires.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::{Request, Response};

use crate::registration::key::{self, CheckedKey};
use crate::registration::page::{self, Page};
use crate::registration::token::{self, Consumed, Holder, Lookup};
use crate::registration::form;
use crate::server::api::AppState;
use crate::server::db::DbError;
use crate::server::log::{error, info, warn};

/// The largest form body: the key limit, percent-encoded (up to three
/// bytes per byte), plus the anti-forgery field.
const MAX_FORM_BYTES: usize = 3 * key::MAX_KEY_BYTES + 1024;

type Resp = Response<Full<Bytes>>;

/// An HTML page with the page headers.
pub fn respond(page: Page) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(page.html)));
    *resp.status_mut() = hyper::StatusCode::from_u16(page.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in page::headers() {
        resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    resp
}

fn malformed() -> Page {
    page::refused(400, "This link is not valid", "The link is malformed: open it again from the registration mail, whole (a mail program may have cut it at a line end).")
}

/// The page for a token that is not valid (never for [`Lookup::Valid`]).
fn not_valid(lookup: &Lookup) -> Page {
    match lookup {
        Lookup::Unknown | Lookup::Valid(_) => page::refused(
            404,
            "Unknown link",
            "This registration link is not known to this server. Ask the server's administrator for a new one.",
        ),
        Lookup::Expired(h) => page::refused(
            410,
            "This link has expired",
            &format!("This registration link for {} expired at {}. Ask the server's administrator for a new one.", h.contact, h.expires),
        ),
        Lookup::Used(h) => page::refused(
            410,
            "This link was already used",
            &format!("A key for {} was already registered with this link; a link works once. Ask the server's administrator for a new one to register another key.", h.contact),
        ),
    }
}

fn unavailable(e: DbError) -> Page {
    match e {
        DbError::ReadOnly => passive(None),
        DbError::Unconfirmed(_) => page::refused(
            504,
            "Key stored, not yet confirmed",
            "Your key is stored on this server but its standby server did not confirm it in time; it is not lost. Do not send it again.",
        ),
        DbError::PassiveUnavailable | DbError::Busy => page::refused(
            503,
            "Try again later",
            "The server cannot store keys right now (its standby server is not connected, or it is busy). Nothing was changed; try again in a few minutes.",
        ),
        DbError::OutcomeUnknown => page::refused(
            504,
            "Outcome unknown",
            "The connection to the database was lost while your key was being stored: it may or may not be stored. Open the link again: if it says the link was already used, your key is registered; if it shows the form, send the key again.",
        ),
        other => {
            error!("registration page: database: {other:?}");
            page::refused(503, "Try again later", "The server cannot reach its database right now. Nothing was changed; try again in a few minutes.")
        }
    }
}

fn passive(active: Option<&str>) -> Page {
    let active = active.map(|a| format!(", {a}")).unwrap_or_default();
    page::refused(
        503,
        "This is the standby server",
        &format!("This server is the passive (standby) server of a pair and cannot store keys. Nothing was changed: open the same link on the active server{active}."),
    )
}

fn too_long() -> Page {
    page::refused(408, "The request took too long", "Nothing was changed; try again.")
}

/// `GET /?q=TOKEN`: the form, or why not, within the request's deadline.
pub async fn get(state: &AppState, token: &str, deadline: tokio::time::Instant) -> Resp {
    if !token::well_formed(token) {
        return respond(malformed());
    }
    let page = tokio::time::timeout_at(deadline, state.pool.contact_token(&token::hash(token))).await;
    respond(match page {
        Ok(Ok(Lookup::Valid(holder))) => page::form(&holder, token, &state.registration.field(token), None),
        Ok(Ok(other)) => not_valid(&other),
        Ok(Err(e)) => unavailable(e),
        Err(_) => too_long(),
    })
}

/// `POST /?q=TOKEN`: checks, then stores. Everything before the write is
/// bounded by the request's deadline; the write by the write timeout.
pub async fn post(state: &AppState, token: &str, req: Request<Incoming>, deadline: tokio::time::Instant) -> Resp {
    let checked = tokio::time::timeout_at(deadline, check_post(state, token, req)).await.unwrap_or_else(|_| Err(too_long()));
    let (hash, holder, key) = match checked {
        Ok(ready) => ready,
        Err(page) => return respond(page),
    };
    match state.pool.register_contact_key(&hash, &key).await {
        Ok(Consumed::Stored(stored)) => {
            info!(
                "registered the OpenPGP key {} of contact {} of organization {}",
                key.fingerprint, stored.contact, stored.organization
            );
            respond(page::registered(&stored, &key))
        }
        Ok(Consumed::Refused(lookup)) => {
            warn!("registration for contact {} of organization {} lost to a concurrent use or expiry", holder.contact, holder.organization);
            respond(not_valid(&lookup))
        }
        Err(e) => respond(unavailable(e)),
    }
}

/// Every check of a post, in an order that changes nothing and reveals
/// nothing before the token is known: the token's form, the server's role,
/// the token, the failure limit, the browser's site headers, the body, the
/// anti-forgery field, the key.
async fn check_post(state: &AppState, token: &str, req: Request<Incoming>) -> Result<([u8; 32], Holder, CheckedKey), Page> {
    if !token::well_formed(token) {
        return Err(malformed());
    }
    if state.ha_active.is_some() {
        return Err(passive(state.ha_active.as_deref()));
    }
    let hash = token::hash(token);
    let holder = match state.pool.contact_token(&hash).await.map_err(unavailable)? {
        Lookup::Valid(holder) => holder,
        other => return Err(not_valid(&other)),
    };
    let now = crate::clock::unix_now().max(0) as u64;
    let guard = &state.registration;
    if !guard.allowed(&hash, now) {
        return Err(page::refused(
            429,
            "Too many attempts",
            &format!("Too many keys were refused for this link in the last hour (at most {}). Nothing was changed; try again later.", form::MAX_FAILURES),
        ));
    }
    let failed = |page: Page| {
        guard.failed(&hash, now);
        page
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(why) = form::cross_site(header("origin"), header("sec-fetch-site"), header("host")) {
        warn!("refused a registration post for contact {}: {why}", holder.contact);
        return Err(failed(page::refused(403, "Refused", &format!("{why}: keys are registered only through this server's own page. Open the link from your mail again."))));
    }
    let content_type = header("content-type").unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(failed(page::refused(415, "Unsupported form", "The form must be sent as application/x-www-form-urlencoded, as the page's own form does.")));
    }
    let body = read_form(req).await.map_err(&failed)?;
    let mut posted = form::parse(&body).map_err(|why| failed(page::refused(400, "Malformed form", why)))?;
    if !guard.field_ok(token, &posted.form) {
        return Err(failed(page::refused(
            403,
            "Refused",
            "This form was not sent from this server's registration page (or the server's key changed since it was shown). Open the link from your mail again.",
        )));
    }
    // Checking a pasted key verifies its signatures: CPU work whose cost
    // the key's author chooses (large parameters), so it runs off the
    // runtime's threads, where it cannot stall other requests.
    let text = std::mem::take(&mut posted.key);
    let checked = tokio::task::spawn_blocking(move || key::check(&text, std::time::SystemTime::now()))
        .await
        .map_err(|_| failed(page::refused(500, "Internal error", "The key could not be checked. Try again.")))?;
    let key = checked.map_err(|problem| failed(page::form(&holder, token, &guard.field(token), Some(&problem.to_string()))))?;
    Ok((hash, holder, key))
}

async fn read_form(req: Request<Incoming>) -> Result<Bytes, Page> {
    let too_large = || page::refused(413, "The key is too large", &format!("A key of at most {} KiB is accepted.", key::MAX_KEY_BYTES / 1024));
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_FORM_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(page::refused(400, "Malformed form", "The form could not be read.")),
    }
}
