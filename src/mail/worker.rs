//! The outbox's delivery loop, run by `kt serve` on a thread of its own so
//! that no request ever waits for an MTA. It sends only where the database
//! takes writes: a passive (a standby in recovery) never sends, and starts
//! to when it is promoted. Every round claims one due message (see
//! [`super::outbox`]), composes it (signed; encrypted to the contact's key
//! when registered), sends it and records the outcome: sent, retried after
//! the backoff, or given up (too old, or refused permanently by the MTA).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgp::composed::SignedSecretKey;

use super::compose;
use super::outbox;
use super::transport::{Refused, Sender};
use crate::account::Account;
use crate::error::Result;
use crate::settings::MailSettings;

/// How often the queue is read when it was empty.
const POLL: Duration = Duration::from_secs(2);
/// How often a passive checks whether it was promoted, and a broken
/// database connection or transport is tried again.
const IDLE_RETRY: Duration = Duration::from_secs(10);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where the worker writes its log lines: (level, message).
pub type Log = fn(&str, std::fmt::Arguments<'_>);

/// What the worker needs, read at server start.
pub struct WorkerSettings {
    /// The instance's database (password inside; redacted in Debug).
    pub db: postgres::Config,
    /// TLS to an external database (`storage::endpoint`).
    pub db_tls: crate::storage::pgtls::MakeRustls,
    pub mail: MailSettings,
    pub hostname: String,
    /// The server's secret key (`secring.gpg`), which signs every message.
    pub secring: PathBuf,
    /// Runs `MAIL_SMTP_PASSWORD_SCRIPT` (None: as the current user).
    pub account: Option<Account>,
}

/// Starts the worker; it stops soon after `stop` is set.
pub fn spawn(settings: WorkerSettings, stop: Arc<AtomicBool>, log: Log) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("kt-mail".into()).spawn(move || run(settings, stop, log))
}

fn run(settings: WorkerSettings, stop: Arc<AtomicBool>, log: Log) {
    let mut db: Option<postgres::Client> = None;
    let mut sender: Option<Sender> = None;
    let mut key: Option<SignedSecretKey> = None;
    let mut last_prune = Instant::now() - PRUNE_EVERY;
    let mut last_complaint = String::new();
    let mut complain = |level: &str, text: String| {
        // A lasting problem (MTA down, bad settings) is logged once, not every round.
        if text != last_complaint {
            log(level, format_args!("mail: {text}"));
            last_complaint = text;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let wait = match round(&settings, &mut db, &mut sender, &mut key, &mut last_prune, log) {
            Ok(Next::Now) => Duration::ZERO,
            Ok(Next::Poll) => POLL,
            Ok(Next::Passive) => IDLE_RETRY,
            Err(e) => {
                complain("WARN", describe(&e));
                IDLE_RETRY
            }
        };
        sleep(wait, &stop);
    }
}

fn sleep(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200).min(until.saturating_duration_since(Instant::now())));
    }
}

fn describe(e: &crate::Error) -> String {
    let mut s = e.to_string();
    if let Some(h) = e.hint() {
        s.push_str(&format!(" (hint: {h})"));
    }
    s
}

/// When the next round runs.
enum Next {
    /// A message was handled: more may be due.
    Now,
    /// Nothing was due.
    Poll,
    /// The database is a standby: its active sends; look again later (the
    /// wait is cut short by the stop flag like every other).
    Passive,
}

/// One delivery attempt.
fn round(
    s: &WorkerSettings,
    db: &mut Option<postgres::Client>,
    sender: &mut Option<Sender>,
    key: &mut Option<SignedSecretKey>,
    last_prune: &mut Instant,
    log: Log,
) -> Result<Next> {
    if db.as_ref().is_none_or(|c| c.is_closed()) {
        *db = Some(
            s.db.connect(s.db_tls.clone())
                .map_err(|e| crate::Error::env("the mail queue's database does not answer").because_err(&e))?,
        );
    }
    let client = db.as_mut().expect("connected above");
    let in_recovery: bool = match client.query_one("SELECT pg_is_in_recovery()", &[]) {
        Ok(row) => row.get(0),
        Err(e) => {
            *db = None;
            return Err(crate::Error::env("the mail queue's database does not answer").because_err(&e));
        }
    };
    if in_recovery {
        // A passive: its active sends.
        return Ok(Next::Passive);
    }
    if last_prune.elapsed() >= PRUNE_EVERY {
        *last_prune = Instant::now();
        if let Ok(n @ 1..) = outbox::prune(client) {
            log("INFO", format_args!("mail: deleted {n} sent or given-up messages older than {} days", outbox::KEEP_DAYS));
        }
    }
    if sender.is_none() {
        *sender = Some(Sender::new(&s.mail, &s.hostname, s.account.as_ref())?);
    }
    if key.is_none() {
        *key = Some(crate::pgp::load_secret_key(&s.secring)?);
    }
    let (sender, key) = (sender.as_ref().expect("set above"), key.as_ref().expect("set above"));
    if matches!(sender, Sender::Off) {
        return Ok(Next::Poll);
    }
    let mut tx = client.transaction().map_err(|e| crate::Error::env("cannot start a transaction").because_err(&e))?;
    let Some(due) = outbox::claim(&mut tx, s.mail.give_up_hours)? else {
        return Ok(Next::Poll);
    };
    let from = s.mail.from_address(&s.hostname);
    let mut note = String::new();
    let contact_key = match due.contact_key.as_deref().map(compose::contact_key) {
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            note = format!(" (not encrypted: the contact's registered key is unusable: {e})");
            None
        }
        None => None,
    };
    let composed = match compose::compose(&from, &due.recipient, &due.subject, &due.body, key, contact_key.as_ref()) {
        Ok(c) => Ok(c),
        Err(e) if contact_key.is_some() => {
            note = format!(" (not encrypted: {})", describe(&e));
            compose::compose(&from, &due.recipient, &due.subject, &due.body, key, None)
        }
        Err(e) => Err(e),
    };
    let outcome = match composed {
        Ok(c) => sender.send(&c.message).map(|reply| (reply, c.encrypted)),
        Err(e) => Err(Refused { reason: describe(&e), permanent: false }),
    };
    match outcome {
        Ok((reply, encrypted)) => {
            let reply = format!("{reply}{note}");
            outbox::mark_sent(&mut tx, &due.id, &reply)?;
            log(
                "INFO",
                format_args!(
                    "mail: sent {} to {} ({}{}): {reply}",
                    due.id,
                    due.recipient,
                    if encrypted { "signed, encrypted" } else { "signed" },
                    if due.attempts > 0 { format!(", attempt {}", due.attempts + 1) } else { String::new() }
                ),
            );
        }
        Err(Refused { reason, permanent }) => {
            // A permanent refusal (5xx: no such mailbox, relay denied) is
            // the same on every retry: given up at once, not for days.
            let give_up = due.last_chance || permanent;
            outbox::mark_failed(&mut tx, &due.id, &reason, give_up, s.mail.retry_seconds, due.attempts)?;
            if give_up {
                log("ERROR", format_args!("mail: gave up {} to {} after {} attempts: {reason}", due.id, due.recipient, due.attempts + 1));
            } else {
                log("WARN", format_args!("mail: attempt {} of {} to {} failed, will retry: {reason}", due.attempts + 1, due.id, due.recipient));
            }
        }
    }
    tx.commit().map_err(|e| crate::Error::env("cannot record the mail's outcome").because_err(&e))?;
    Ok(Next::Now)
}
