//! The `mail_outbox` table (migration 5): queueing, listing, delivering.
//!
//! Queueing happens inside the caller's transaction, so a message exists
//! exactly when the change that causes it commits. Delivery claims one due
//! row at a time with `FOR UPDATE SKIP LOCKED` (two servers, or two
//! threads, never send one message twice), sends it, and records the
//! outcome in the same transaction. A crash between the MTA's acceptance
//! and the commit sends that message again on the next attempt: delivery is
//! at least once, never silently lost.
//!
//! Retries: after a failed attempt n (1, 2, ...) the next comes
//! `MAIL_RETRY_SECONDS * 2^(n-1)` later, at most an hour later; a message
//! still undelivered `MAIL_GIVE_UP_HOURS` after it was queued is given up
//! (`failed`). Sent and given-up messages lose their body (a registration
//! body holds its link's token); their rows stay 30 days for `kt mail
//! queue --all`, then are deleted.

use serde::Serialize;

use super::messages::{self, Site, Text};
use crate::registration::token::LinkToken;
use crate::error::{Error, Result};

/// The longest wait between two attempts.
pub const MAX_BACKOFF_SECONDS: i64 = 3600;
/// How long sent and given-up rows are kept.
pub const KEEP_DAYS: i32 = 30;

fn db_error(what: &str) -> impl Fn(postgres::Error) -> Error + '_ {
    move |e| Error::env(what.to_string()).because_err(&e)
}

/// Queues the documented registration message to a contact just added to
/// organization `org_uuid` (`org_name`), with a fresh link token whose
/// hash is stored with its 12-hour expiry: all in `tx`.
pub fn queue_registration(
    tx: &mut postgres::Transaction<'_>,
    site: &Site,
    org_uuid: &str,
    org_name: &str,
    contact: &str,
) -> Result<()> {
    let token = LinkToken::new();
    let row = tx
        .query_one(
            "INSERT INTO contact_tokens (token_sha256, organization, contact, expires) \
             VALUES ($1, $2::text::uuid, $3, now() + make_interval(hours => $4)) \
             RETURNING to_char(expires AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
            &[&&token.hash()[..], &org_uuid, &contact, &(messages::LINK_VALID_HOURS as i32)],
        )
        .map_err(db_error("cannot store the contact's registration token"))?;
    let expires: String = row.get(0);
    let text = messages::registration(site, org_name, &token, &expires);
    queue(tx, "contact-registration", org_uuid, contact, &text, None)
}

/// Queues `text` to `recipient` in `tx`.
pub fn queue(
    tx: &mut postgres::Transaction<'_>,
    kind: &str,
    org_uuid: &str,
    recipient: &str,
    text: &Text,
    about_client: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO mail_outbox (kind, organization, recipient, subject, body, about_client) \
         VALUES ($1, $2::text::uuid, $3, $4, $5, $6)",
        &[&kind, &org_uuid, &recipient, &text.subject, &text.body, &about_client],
    )
    .map_err(db_error("cannot queue the message"))?;
    Ok(())
}

/// One row of `kt mail queue`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: String,
    pub kind: String,
    pub organization: Option<String>,
    pub recipient: String,
    pub subject: String,
    /// `queued`, `sent` or `failed` (given up).
    pub state: String,
    pub created: String,
    pub attempts: i32,
    /// When the next attempt is due (queued messages only).
    pub next_attempt: Option<String>,
    pub last_error: Option<String>,
    pub sent: Option<String>,
    pub mta_reply: Option<String>,
}

/// The messages not yet sent (queued and given up), oldest first; with
/// `all`, the sent ones still kept too.
pub fn list(db: &mut postgres::Client, all: bool) -> Result<Vec<Entry>> {
    let utc = |col: &str| format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
    let sql = format!(
        "SELECT m.id::text, m.kind, o.name, m.recipient, m.subject, m.state, {}, m.attempts, \
         CASE WHEN m.state = 'queued' THEN {} END, m.last_error, {}, m.mta_reply \
         FROM mail_outbox m LEFT JOIN organizations o ON o.uuid = m.organization \
         WHERE $1 OR m.state <> 'sent' ORDER BY m.created, m.id",
        utc("m.created"),
        utc("m.next_attempt"),
        utc("m.sent")
    );
    let rows = db.query(&sql, &[&all]).map_err(db_error("cannot read the mail queue"))?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            id: r.get(0),
            kind: r.get(1),
            organization: r.get(2),
            recipient: r.get(3),
            subject: r.get(4),
            state: r.get(5),
            created: r.get(6),
            attempts: r.get(7),
            next_attempt: r.get(8),
            last_error: r.get(9),
            sent: r.get(10),
            mta_reply: r.get(11),
        })
        .collect())
}

/// A claimed message: the row stays locked until its outcome is recorded.
pub struct Due {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// The contact's registered key (armored), when there is one.
    pub contact_key: Option<String>,
    pub attempts: i32,
    /// Older than `MAIL_GIVE_UP_HOURS`: this is its last attempt.
    pub last_chance: bool,
}

impl std::fmt::Debug for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due").field("id", &self.id).field("recipient", &self.recipient).field("body", &"***").finish()
    }
}

/// Claims the oldest due message, skipping any another sender holds.
pub fn claim(tx: &mut postgres::Transaction<'_>, give_up_hours: u64) -> Result<Option<Due>> {
    let row = tx
        .query_opt(
            "SELECT m.id::text, m.recipient, m.subject, m.body, m.attempts, \
             m.created < now() - make_interval(hours => $1), \
             (SELECT k.armored FROM contact_keys k WHERE k.organization = m.organization \
              AND lower(k.contact) = lower(m.recipient)) \
             FROM mail_outbox m WHERE m.state = 'queued' AND m.next_attempt <= now() \
             ORDER BY m.next_attempt, m.created LIMIT 1 FOR UPDATE OF m SKIP LOCKED",
            &[&(give_up_hours as i32)],
        )
        .map_err(db_error("cannot read the mail queue"))?;
    Ok(row.map(|r| Due {
        id: r.get(0),
        recipient: r.get(1),
        subject: r.get(2),
        body: r.get::<_, Option<String>>(3).unwrap_or_default(),
        attempts: r.get(4),
        last_chance: r.get(5),
        contact_key: r.get(6),
    }))
}

/// Records a delivery: the body is blanked.
pub fn mark_sent(tx: &mut postgres::Transaction<'_>, id: &str, reply: &str) -> Result<()> {
    tx.execute(
        "UPDATE mail_outbox SET state = 'sent', body = NULL, sent = now(), mta_reply = $2, \
         attempts = attempts + 1, last_error = NULL WHERE id = $1::text::uuid",
        &[&id, &reply],
    )
    .map_err(db_error("cannot record the delivery"))?;
    Ok(())
}

/// Records a failed attempt: retried after the backoff, or given up.
pub fn mark_failed(tx: &mut postgres::Transaction<'_>, id: &str, error: &str, give_up: bool, retry_seconds: u64, attempts_before: i32) -> Result<()> {
    let delay = backoff_seconds(retry_seconds, attempts_before + 1);
    tx.execute(
        "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $2, \
         state = CASE WHEN $3 THEN 'failed' ELSE 'queued' END, \
         body = CASE WHEN $3 THEN NULL ELSE body END, \
         next_attempt = now() + make_interval(secs => $4) WHERE id = $1::text::uuid",
        &[&id, &error, &give_up, &(delay as f64)],
    )
    .map_err(db_error("cannot record the failed attempt"))?;
    Ok(())
}

/// The wait after failed attempt `n` (1-based): base * 2^(n-1), capped.
pub fn backoff_seconds(base: u64, n: i32) -> i64 {
    let shift = (n.max(1) - 1).min(20) as u32;
    (base as i64).saturating_mul(1 << shift).min(MAX_BACKOFF_SECONDS)
}

/// Deletes sent and given-up rows older than [`KEEP_DAYS`].
pub fn prune(db: &mut postgres::Client) -> Result<u64> {
    db.execute(
        "DELETE FROM mail_outbox WHERE state <> 'queued' AND created < now() - make_interval(days => $1)",
        &[&KEEP_DAYS],
    )
    .map_err(db_error("cannot prune the mail queue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!((1..=8).map(|n| backoff_seconds(60, n)).collect::<Vec<_>>(), [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff_seconds(1, 1), 1);
        assert_eq!(backoff_seconds(3600, 40), 3600);
    }
}
