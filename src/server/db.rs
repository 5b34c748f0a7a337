//! The server's database access: a small pool of pipelined tokio-postgres
//! connections with their statements prepared once, and the queries the
//! endpoints need. A broken connection is replaced on next use; an
//! unreachable database fails the request fast (503), it never hangs it.
//!
//! Writes follow stricter rules (see [`Pool::write`]): every write ends
//! with an outcome the client can act on (done; refused with nothing
//! changed; stored but unconfirmed by the passive; or, only when the
//! connection was lost after the commit was sent, unknown), and a write
//! that carries a request id records its answer in the same transaction,
//! so that a retry with that id learns the outcome instead of writing twice.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use crate::server::log::warn;
use crate::storage::pgtls::MakeRustls;

mod contacts;

/// Why a database call failed, as the endpoints need to tell it.
#[derive(Debug)]
pub enum DbError {
    /// Cannot connect, or the connection broke.
    Unavailable(String),
    /// The database is a read-only standby (passive server).
    ReadOnly,
    /// Synchronous replication is on and no synchronous standby is
    /// connected: the write was refused before it began (nothing changed).
    PassiveUnavailable,
    /// The write committed on this database but the passive did not
    /// confirm it within the write timeout; the wait was cancelled. The
    /// change stays (it reaches the passive when it is back). Carries the
    /// statement's answer (a new deposit's uuid) when there is one.
    Unconfirmed(Option<String>),
    /// Every write connection stayed busy for the whole write timeout: the
    /// write never started (nothing changed).
    Busy,
    /// The write (or its commit) was sent and then the connection was lost
    /// or the database ended it before answering: it may or may not be
    /// stored. A write with a request id learns which by being sent again.
    OutcomeUnknown,
    /// A request id came back with another method, path or body than the
    /// request it first named.
    RequestIdReused,
    /// The database lacks a table or column this kt uses: its schema is
    /// older than this kt (a passive upgraded before its active).
    SchemaBehind(String),
    /// Anything else: a bug or a constraint kt did not expect.
    Other(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if db.code() == &tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION {
                return DbError::ReadOnly;
            }
            if db.code() == &SqlState::UNDEFINED_TABLE || db.code() == &SqlState::UNDEFINED_COLUMN {
                return DbError::SchemaBehind(db.message().to_string());
            }
            // The database going away (shut down, crashed, starting, a
            // failover) or the connection failing: 503, as a database that
            // does not answer is, never 500. (Writes decide between this
            // and an unknown outcome before they get here.)
            if unavailable_code(db.code()) {
                return DbError::Unavailable(format!("{}: {}", db.code().code(), db.message()));
            }
            return DbError::Other(format!("{}: {}", db.code().code(), db.message()));
        }
        if e.is_closed() {
            return DbError::Unavailable("the connection closed".into());
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        DbError::Unavailable(text)
    }
}

struct Statements {
    client_auth: Statement,
    deposit_get: Statement,
    deposit_insert: Statement,
    deposit_update: Statement,
    deposit_delete: Statement,
    deposit_list: Statement,
}

/// The statements on `write_requests` (schema version 2). Prepared on
/// first use, not with the connection: a passive whose kt is newer than
/// its schema (upgraded before its active) has no such table yet and must
/// still serve reads.
struct RequestStatements {
    /// Claims the id before the write runs (waits for a concurrent attempt
    /// with the id to end); no row back: an earlier attempt recorded it.
    claim: Statement,
    /// Records the write's answer on the claimed row.
    answer: Statement,
    /// Touches the recorded row, so that the commit of a retry answered
    /// from the record waits for the passive like a write does.
    confirm: Statement,
    lookup: Statement,
}

/// The statement on `replay_nonces` (schema version 6), prepared on first
/// use like [`RequestStatements`]: a batch of nonces in one insert, those
/// that were not taken yet come back.
struct NonceStatements {
    claim_batch: Statement,
}

struct Conn {
    client: Client,
    st: Statements,
    requests: tokio::sync::OnceCell<RequestStatements>,
    nonces: tokio::sync::OnceCell<NonceStatements>,
    /// Set when PostgreSQL warned that a commit's wait for the synchronous
    /// standby was cancelled (committed here, not confirmed). Read by the
    /// write after its commit: whoever sent the cancel (this write at its
    /// deadline, a late cancel meant for the previous write on the
    /// connection, an administrator), the write is not confirmed.
    sync_wait_cancelled: Arc<AtomicBool>,
    /// A cancel request goes over TLS like the session it cancels.
    tls: MakeRustls,
}

/// The start of PostgreSQL's warning when a commit's wait for the
/// synchronous standby is cancelled or terminated (src/backend/replication/
/// syncrep.c; the cluster's lc_messages is C, as kt's initdb sets it).
const SYNC_WAIT_CANCELLED: &str = "canceling wait for synchronous replication";

impl Conn {
    async fn nonces(&self) -> Result<&NonceStatements, tokio_postgres::Error> {
        self.nonces
            .get_or_try_init(|| async {
                Ok(NonceStatements {
                    claim_batch: self
                        .client
                        .prepare(
                            "INSERT INTO replay_nonces (client, nonce, expires) \
                             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) \
                             ON CONFLICT DO NOTHING RETURNING client, nonce",
                        )
                        .await?,
                })
            })
            .await
    }

    async fn requests(&self) -> Result<&RequestStatements, tokio_postgres::Error> {
        self.requests
            .get_or_try_init(|| async {
                Ok(RequestStatements {
                    claim: self
                        .client
                        .prepare(
                            "INSERT INTO write_requests (client, request_id, digest, answer) VALUES ($1, $2, $3, '') \
                             ON CONFLICT DO NOTHING RETURNING true",
                        )
                        .await?,
                    answer: self
                        .client
                        .prepare("UPDATE write_requests SET answer = $3 WHERE client = $1 AND request_id = $2")
                        .await?,
                    confirm: self
                        .client
                        .prepare(
                            "UPDATE write_requests SET created = created WHERE client = $1 AND request_id = $2 \
                             RETURNING digest, answer",
                        )
                        .await?,
                    lookup: self
                        .client
                        .prepare("SELECT digest, answer FROM write_requests WHERE client = $1 AND request_id = $2")
                        .await?,
                })
            })
            .await
    }
}

/// A fixed number of connections used round-robin; each one pipelines the
/// queries of every request that shares it.
///
/// Writes have connections of their own, one write at a time on each
/// (a PostgreSQL backend runs one statement at a time anyway): a write
/// whose commit waits for the passive holds up no read, and cancelling
/// that wait (after `write_timeout`) can only hit the write that timed out.
pub struct Pool {
    config: tokio_postgres::Config,
    /// TLS to an external database (src/storage/pgtls.rs); unused with
    /// the local one (sslmode disable).
    tls: MakeRustls,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
    write_slots: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next_write: AtomicUsize,
    write_timeout: Duration,
    /// [`GATE_OPEN`], [`GATE_CLOSED`]: set by [`Pool::refresh_gate`].
    gate: AtomicU8,
}

/// Writes go ahead (no synchronous replication, or the standby is there).
const GATE_OPEN: u8 = 0;
/// Synchronous replication is on and no synchronous standby streams.
const GATE_CLOSED: u8 = 1;
/// How long a cancelled commit wait may take to return.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// How often the cancel is sent again while the grace runs: a cancel that
/// reaches the backend between two statements of a transaction is ignored.
const CANCEL_REPEAT: Duration = Duration::from_millis(250);
/// How long recorded answers to writes with a request id are kept.
pub const REQUEST_RETENTION: &str = "24 hours";

/// What a write statement answered: shown in [`DbError::Unconfirmed`] and
/// recorded (as text) for a retry with the same request id.
pub trait Answer: Sized {
    fn encode(&self) -> String;
    fn decode(text: &str) -> Option<Self>;
    /// What [`DbError::Unconfirmed`] names (a new deposit's uuid).
    fn shown(&self) -> Option<String> {
        None
    }
}
impl Answer for String {
    fn encode(&self) -> String {
        self.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        Some(text.to_string())
    }
    fn shown(&self) -> Option<String> {
        Some(self.clone())
    }
}
impl Answer for bool {
    fn encode(&self) -> String {
        (if *self { "1" } else { "0" }).to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        match text {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        }
    }
}
impl Answer for Option<(String, String)> {
    fn encode(&self) -> String {
        self.as_ref().map(|(a, b)| format!("{a}\t{b}")).unwrap_or_default()
    }
    fn decode(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(None);
        }
        text.split_once('\t').map(|(a, b)| Some((a.to_string(), b.to_string())))
    }
}

/// One client operation across its retries: who, which id, and what the
/// request was ([`crate::auth::request_digest`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    pub client: &'a str,
    pub id: &'a str,
    pub digest: &'a [u8],
}

/// One authenticated request's nonce for the shared replay guard: taken
/// once per client across every node over the database, until `expires`
/// (Unix seconds: the request's timestamp plus the authentication window).
#[derive(Debug, Clone, Copy)]
pub struct NonceKey<'a> {
    pub client: &'a str,
    pub nonce: &'a str,
    pub expires: i64,
}

/// How far a write got, read when it fails: it says whether a lost
/// connection can have left the change stored.
const NOT_SENT: u8 = 0;
/// Inside an open transaction, COMMIT not sent: a loss rolls it back.
const IN_TRANSACTION: u8 = 1;
/// An autocommit statement or a COMMIT was sent: a loss leaves it unknown.
const COMMIT_SENT: u8 = 2;

/// What the write's own steps ended with.
enum Step<T> {
    Done(T),
    /// The request id was recorded by an earlier attempt: this one ran no
    /// write; it committed a touch of the record (confirmed by the passive
    /// like a write) and the record's answer (as text) answers.
    Recorded(String),
    /// The request id was recorded for another request: rolled back.
    Reused,
}

/// A write in flight on its connection. If the write's future is dropped
/// (the client went away, the server stops) while the statement runs, its
/// outcome would be unknown and its connection in an unknown state: the
/// guard cancels the query (a commit waiting for the passive then ends,
/// committed here) and discards the connection. A write with a request id
/// stays accounted for: its answer is recorded in its own transaction, and
/// a retry with the id reads it.
struct InFlight<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<Arc<Conn>>>,
    conn: Arc<Conn>,
    armed: bool,
    purpose: Purpose,
}

/// What runs on a write connection, for the log line of an abandoned one.
enum Purpose {
    /// A client's write, with its request id if it has one.
    Write(Option<String>),
    /// [`Pool::prune_requests`].
    Prune,
}

impl InFlight<'_> {
    /// The connection is clean again (the write ended with an answer from
    /// the database that leaves no transaction open).
    fn keep(mut self) {
        self.armed = false;
    }

    /// The connection's state is unknown (an error inside a transaction, a
    /// cancel that did not return): never reuse it.
    fn discard(mut self) {
        self.armed = false;
        *self.slot = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        *self.slot = None;
        let token = self.conn.client.cancel_token();
        let tls = self.conn.tls.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = token.cancel_query(tls).await;
            });
        }
        match &self.purpose {
            Purpose::Write(Some(id)) => warn!("a write was abandoned mid-statement (request id {id}): cancelled; a retry with this id reads its outcome"),
            Purpose::Write(None) => warn!("a write without a request id was abandoned mid-statement: cancelled; it may or may not be stored"),
            Purpose::Prune => warn!("pruning recorded write answers was abandoned mid-statement: cancelled; it runs again later"),
        }
    }
}

/// Whether an error means that the statement was refused as a whole
/// (rolled back, nothing changed) rather than that the session was lost or
/// ended under it (connection, operator intervention, crash), after which
/// a commit already sent may or may not have happened.
/// SQLSTATEs of a database that is not there to answer: class 08
/// (connection exception), 57P01 admin shutdown, 57P02 crash shutdown,
/// 57P03 cannot connect now.
fn unavailable_code(code: &SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || ["57P01", "57P02", "57P03"].contains(&code)
}

fn definite(e: &tokio_postgres::Error) -> bool {
    definite_code(e.code())
}

fn definite_code(code: Option<&SqlState>) -> bool {
    match code {
        None => false,
        // A cancel never aborts a commit once it began: a commit waiting
        // for the standby ends committed, with a warning, not this error.
        Some(code) if code == &SqlState::QUERY_CANCELED => true,
        Some(code) => !["08", "57", "58", "XX"].iter().any(|class| code.code().starts_with(class)),
    }
}

/// A registered client as the authentication step needs it.
pub struct ClientRow {
    pub state: String,
    pub public_key: Vec<u8>,
}

/// How many connections the pools hold, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolUsage {
    pub read_open: usize,
    pub write_open: usize,
    /// Write connections running a write now.
    pub write_busy: usize,
}

/// One standby as its primary sees it, for the metrics.
pub struct StandbyLag {
    pub name: String,
    pub state: String,
    pub sync_state: String,
    pub lag_bytes: i64,
    pub lag_seconds: f64,
}

/// The replication state of this node's database, for the metrics.
pub struct ReplicationMetrics {
    pub in_recovery: bool,
    /// On a standby: seconds since the last replayed change, 0 when it
    /// has replayed all it received.
    pub replay_delay_seconds: f64,
    /// On a primary: its standbys.
    pub standbys: Vec<StandbyLag>,
}

/// One line of a deposit listing.
pub struct DepositInfo {
    pub uuid: String,
    pub name: String,
    pub size: i32,
    pub created: String,
    pub updated: String,
}

/// The two texts a registration may queue to the organization's contacts:
/// which one depends on the state the statement stores.
#[derive(Debug)]
pub struct ClientNotices {
    pub registered: crate::mail::messages::Text,
    pub pending: crate::mail::messages::Text,
}

/// An organization as registration needs it.
pub struct OrgRow {
    pub uuid: String,
    pub auth_secret: String,
    pub state: String,
}

impl Pool {
    /// `config` and `tls` from [`crate::storage::endpoint::Endpoint`].
    pub fn new(config: tokio_postgres::Config, tls: MakeRustls, size: usize, write_timeout: Duration) -> Pool {
        let slots = |n: usize| (0..n.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect();
        Pool {
            config,
            tls,
            slots: slots(size),
            next: AtomicUsize::new(0),
            write_slots: slots(size),
            next_write: AtomicUsize::new(0),
            write_timeout,
            gate: AtomicU8::new(GATE_OPEN),
        }
    }

    /// Reads whether writes may go ahead: closed when synchronous
    /// replication is configured on this (primary) database and no standby
    /// is synchronous. The server calls it a few times a second, so that a
    /// write is refused up front, fast and with nothing changed, instead of
    /// committing locally and waiting for a passive that is not there.
    pub async fn refresh_gate(&self) -> Result<bool, DbError> {
        let c = self.conn().await?;
        let row = c
            .client
            .query_one(crate::ha::syncrep::WRITES_WOULD_WAIT_SQL, &[])
            .await?;
        let closed: bool = row.get(0);
        self.gate.store(if closed { GATE_CLOSED } else { GATE_OPEN }, Ordering::Relaxed);
        Ok(!closed)
    }

    /// Runs one write statement under the HA rules, within one deadline
    /// of `write_timeout` from the call:
    ///
    /// - refused up front when the gate is closed ([`DbError::PassiveUnavailable`]);
    /// - a write that cannot get a write connection before the deadline
    ///   never starts ([`DbError::Busy`], nothing changed);
    /// - at the deadline the statement (or the commit's wait for the
    ///   passive) is cancelled: committed here is [`DbError::Unconfirmed`],
    ///   cancelled before the commit is [`DbError::PassiveUnavailable`];
    /// - a connection lost after the commit was sent is
    ///   [`DbError::OutcomeUnknown`]; lost before, [`DbError::Unavailable`].
    ///
    /// With a request id the statement runs in a transaction with the row
    /// that records its answer; when an earlier attempt with that id
    /// committed, this one rolls back and answers from that record.
    async fn write<T, F, Fut>(&self, key: Option<RequestKey<'_>>, run: F) -> Result<T, DbError>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
        T: Answer,
    {
        match self.write_unchecked(key, run).await {
            // A statement on a table or column this schema lacks: on a
            // passive (upgraded before its active) that is a write sent
            // to the read-only side, and says so.
            Err(DbError::SchemaBehind(why)) => match self.health().await {
                Ok((true, _)) => Err(DbError::ReadOnly),
                _ => Err(DbError::SchemaBehind(why)),
            },
            other => other,
        }
    }

    async fn write_unchecked<T, F, Fut>(&self, key: Option<RequestKey<'_>>, run: F) -> Result<T, DbError>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
        T: Answer,
    {
        let deadline = Instant::now() + self.write_timeout;
        if self.gate.load(Ordering::Relaxed) == GATE_CLOSED {
            // A retry of a write that was stored is told so, but the
            // passive cannot confirm it now: unconfirmed, not done.
            if let Some(key) = key {
                if let Some(value) = self.recorded::<T>(key).await? {
                    return Err(DbError::Unconfirmed(value.shown()));
                }
            }
            return Err(DbError::PassiveUnavailable);
        }
        let (slot, conn) = self.write_slot(deadline).await?;
        let guard = InFlight { slot, conn: conn.clone(), armed: true, purpose: Purpose::Write(key.map(|k| k.id.to_string())) };
        let phase = AtomicU8::new(NOT_SENT);
        conn.sync_wait_cancelled.store(false, Ordering::SeqCst);
        let fut = steps(&conn, key, &phase, run);
        tokio::pin!(fut);
        let (result, cancelled) = match tokio::time::timeout_at(deadline, &mut fut).await {
            Ok(result) => (Some(result), false),
            Err(_) => {
                // Only this write runs on this connection: the cancel hits it.
                let grace = Instant::now() + CANCEL_GRACE;
                let mut result = None;
                while Instant::now() < grace {
                    let _ = conn.client.cancel_token().cancel_query(conn.tls.clone()).await;
                    let until = (Instant::now() + CANCEL_REPEAT).min(grace);
                    if let Ok(r) = tokio::time::timeout_at(until, &mut fut).await {
                        result = Some(r);
                        break;
                    }
                }
                (result, true)
            }
        };
        let phase = phase.load(Ordering::Relaxed);
        // Committed here but the wait for the passive was cut short, by
        // this write's cancel or another one: not confirmed.
        let unconfirmed = cancelled || conn.sync_wait_cancelled.swap(false, Ordering::SeqCst);
        // After cancels were sent, a late one could reach the backend during
        // the next write on this connection: it is not reused.
        let keep = |guard: InFlight<'_>| if cancelled { guard.discard() } else { guard.keep() };
        match result {
            Some(Ok(Step::Done(value))) => {
                keep(guard);
                if unconfirmed {
                    // Success after a cancel: PostgreSQL committed locally
                    // and stopped waiting for the standby.
                    Err(DbError::Unconfirmed(value.shown()))
                } else {
                    Ok(value)
                }
            }
            Some(Ok(Step::Recorded(answer))) => {
                keep(guard);
                let value = T::decode(&answer)
                    .ok_or_else(|| DbError::Other(format!("a recorded answer does not parse: {answer}")))?;
                if unconfirmed {
                    // The touch committed here; the passive did not confirm
                    // it (nor, so, the write it answers for) in time.
                    Err(DbError::Unconfirmed(value.shown()))
                } else {
                    Ok(value)
                }
            }
            Some(Ok(Step::Reused)) => {
                keep(guard);
                Err(DbError::RequestIdReused)
            }
            Some(Err(e)) => {
                // Inside a transaction an error leaves it aborted: rolled
                // back when the connection still answers, else not reused
                // (closing it rolls back).
                let clean = match phase {
                    NOT_SENT => true,
                    IN_TRANSACTION if definite(&e) => matches!(
                        tokio::time::timeout(CANCEL_REPEAT, conn.client.batch_execute("ROLLBACK")).await,
                        Ok(Ok(()))
                    ),
                    _ => key.is_none() && definite(&e),
                };
                if clean {
                    keep(guard);
                } else {
                    guard.discard();
                }
                if e.code() == Some(&SqlState::QUERY_CANCELED) {
                    return Err(if cancelled { DbError::PassiveUnavailable } else { DbError::Other(e.to_string()) });
                }
                if !definite(&e) {
                    return Err(if phase == COMMIT_SENT {
                        DbError::OutcomeUnknown
                    } else {
                        DbError::Unavailable(e.to_string())
                    });
                }
                Err(e.into())
            }
            None => {
                // The cancel did not return in time: never reuse this connection.
                guard.discard();
                if phase == COMMIT_SENT {
                    Err(DbError::OutcomeUnknown)
                } else {
                    // Closing the connection rolls the open transaction back.
                    Err(DbError::Busy)
                }
            }
        }
    }

    /// The recorded answer to an earlier attempt with this request id.
    async fn recorded<T: Answer>(&self, key: RequestKey<'_>) -> Result<Option<T>, DbError> {
        let c = self.conn().await?;
        let lookup = &c.requests().await?.lookup;
        let Some(row) = c.client.query_opt(lookup, &[&key.client, &key.id]).await? else {
            return Ok(None);
        };
        let digest: Vec<u8> = row.get(0);
        if digest != key.digest {
            return Err(DbError::RequestIdReused);
        }
        let answer: String = row.get(1);
        T::decode(&answer).map(Some).ok_or_else(|| DbError::Other(format!("a recorded answer does not parse: {answer}")))
    }

    /// A write connection of its own, got before `deadline` (else
    /// [`DbError::Busy`]: nothing started). The caller wraps it in an
    /// [`InFlight`] guard before sending anything on it.
    async fn write_slot(&self, deadline: Instant) -> Result<(tokio::sync::MutexGuard<'_, Option<Arc<Conn>>>, Arc<Conn>), DbError> {
        let i = self.next_write.fetch_add(1, Ordering::Relaxed) % self.write_slots.len();
        let mut slot = tokio::time::timeout_at(deadline, self.write_slots[i].lock()).await.map_err(|_| DbError::Busy)?;
        let conn = match slot.as_ref() {
            Some(conn) if !conn.client.is_closed() => conn.clone(),
            _ => {
                let conn = tokio::time::timeout_at(deadline, self.connect()).await.map_err(|_| DbError::Busy)??;
                *slot = Some(conn.clone());
                conn
            }
        };
        if Instant::now() >= deadline {
            // The wait used the whole write timeout: do not start now.
            return Err(DbError::Busy);
        }
        Ok((slot, conn))
    }

    /// Deletes recorded answers older than [`REQUEST_RETENTION`]. Local
    /// commit only (the passive gets it anyway, and bookkeeping must not
    /// wait for it); skipped when the gate is closed or no write
    /// connection comes free within the write timeout, tried again at the
    /// next call. A delete that outlasts the write timeout is cancelled
    /// and its connection discarded, as a write's would be.
    pub async fn prune_requests(&self) -> Result<u64, DbError> {
        if self.gate.load(Ordering::Relaxed) == GATE_CLOSED {
            return Ok(0);
        }
        let deadline = Instant::now() + self.write_timeout;
        let (slot, conn) = match self.write_slot(deadline).await {
            Ok(pair) => pair,
            Err(DbError::Busy) => return Ok(0),
            Err(e) => return Err(e),
        };
        let guard = InFlight { slot, conn: conn.clone(), armed: true, purpose: Purpose::Prune };
        let sql = format!(
            "BEGIN; SET LOCAL synchronous_commit TO local; \
             DELETE FROM write_requests WHERE created < now() - interval '{REQUEST_RETENTION}'; COMMIT"
        );
        match tokio::time::timeout_at(deadline, conn.client.simple_query(&sql)).await {
            Ok(Ok(messages)) => {
                guard.keep();
                Ok(messages
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                        _ => None,
                    })
                    .sum())
            }
            Ok(Err(e)) => {
                // The transaction may be left open: never reuse the connection.
                guard.discard();
                Err(e.into())
            }
            // The guard cancels the statement and discards the connection.
            Err(_) => Err(DbError::Busy),
        }
    }

    /// Opens every connection now, so the first requests do not pay for
    /// connection set-up (SCRAM authentication, statement preparation).
    pub async fn warm_up(&self) -> Result<(), DbError> {
        for i in 0..self.slots.len() {
            self.slot_conn(i).await?;
        }
        Ok(())
    }

    async fn conn(&self) -> Result<Arc<Conn>, DbError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slot_conn(i).await
    }

    async fn slot_conn(&self, i: usize) -> Result<Arc<Conn>, DbError> {
        let mut slot = self.slots[i].lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.client.is_closed() {
                return Ok(conn.clone());
            }
        }
        let conn = self.connect_for(true).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<Arc<Conn>, DbError> {
        self.connect_for(false).await
    }

    /// A connection; `reads` for the shared pool, whose only inserts are
    /// the replay guard's nonces: committed without waiting for the disk
    /// or the passive (`synchronous_commit` off). What a crash of the
    /// database can lose is the last fraction of a second of nonces; a
    /// failover, those the passive had not received.
    async fn connect_for(&self, reads: bool) -> Result<Arc<Conn>, DbError> {
        let (client, mut connection) = self.config.connect(self.tls.clone()).await?;
        let sync_wait_cancelled = Arc::new(AtomicBool::new(false));
        let flag = sync_wait_cancelled.clone();
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the
            // next request through this slot reconnects. A notice is read
            // before the messages after it, so the flag is set before the
            // commit's answer reaches the write.
            while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                    if notice.message().starts_with(SYNC_WAIT_CANCELLED) {
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            }
        });
        if reads {
            client.batch_execute("SET synchronous_commit TO off").await?;
        }
        let st = Statements {
            client_auth: client.prepare("SELECT state, public_key FROM clients WHERE fingerprint = $1").await?,
            deposit_get: client
                .prepare("SELECT content FROM deposits WHERE uuid = $1::text::uuid AND owner = $2")
                .await?,
            deposit_insert: client
                .prepare("INSERT INTO deposits (owner, name, content) VALUES ($1, $2, $3) RETURNING uuid::text")
                .await?,
            deposit_update: client
                .prepare(
                    "UPDATE deposits SET content = $3, updated = now() \
                     WHERE uuid = $1::text::uuid AND owner = $2 RETURNING uuid::text",
                )
                .await?,
            deposit_delete: client.prepare("DELETE FROM deposits WHERE uuid = $1::text::uuid AND owner = $2").await?,
            deposit_list: client
                .prepare(
                    "SELECT uuid::text, name, octet_length(content), \
                     to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                     to_char(updated AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                     FROM deposits WHERE owner = $1 ORDER BY created, uuid",
                )
                .await?,
        };
        Ok(Arc::new(Conn {
            client,
            st,
            requests: tokio::sync::OnceCell::new(),
            nonces: tokio::sync::OnceCell::new(),
            sync_wait_cancelled,
            tls: self.tls.clone(),
        }))
    }

    /// Takes a batch of nonces in the shared replay guard, in one
    /// statement (src/server/nonces.rs gathers them): for each, whether it
    /// was free (a `false` is a replay; of two equal ones in the batch,
    /// the second). A passive cannot insert: [`DbError::ReadOnly`].
    pub async fn claim_nonces(&self, batch: &[NonceKey<'_>]) -> Result<Vec<bool>, DbError> {
        let c = self.conn().await?;
        let st = c.nonces().await?;
        let clients: Vec<&str> = batch.iter().map(|n| n.client).collect();
        let nonces: Vec<&str> = batch.iter().map(|n| n.nonce).collect();
        let expires: Vec<i64> = batch.iter().map(|n| n.expires).collect();
        let rows = c.client.query(&st.claim_batch, &[&clients, &nonces, &expires]).await?;
        let mut free: std::collections::HashSet<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(batch.iter().map(|n| free.remove(&(n.client.to_string(), n.nonce.to_string()))).collect())
    }

    /// Deletes the nonces that expired before `before` (Unix seconds;
    /// `nonces::prune_before`: a window after their requests turned stale,
    /// so that other nodes' clocks may differ). Every node runs it; they do
    /// not collide (a row deleted twice is deleted once).
    pub async fn prune_nonces(&self, before: i64) -> Result<u64, DbError> {
        let c = self.conn().await?;
        Ok(c.client.execute("DELETE FROM replay_nonces WHERE expires < $1", &[&before]).await?)
    }

    pub async fn client(&self, fingerprint: &str) -> Result<Option<ClientRow>, DbError> {
        let c = self.conn().await?;
        let row = c.client.query_opt(&c.st.client_auth, &[&fingerprint]).await?;
        Ok(row.map(|r| ClientRow { state: r.get(0), public_key: r.get(1) }))
    }

    pub async fn deposit_get(&self, uuid: &str, owner: &str) -> Result<Option<Vec<u8>>, DbError> {
        let c = self.conn().await?;
        let row = c.client.query_opt(&c.st.deposit_get, &[&uuid, &owner]).await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn deposit_insert(
        &self,
        key: Option<RequestKey<'_>>,
        owner: &str,
        name: &str,
        content: &[u8],
    ) -> Result<String, DbError> {
        self.write(key, |c| async move {
            let row = c.client.query_one(&c.st.deposit_insert, &[&owner, &name, &content]).await?;
            Ok(row.get::<_, String>(0))
        })
        .await
    }

    pub async fn deposit_update(
        &self,
        key: Option<RequestKey<'_>>,
        uuid: &str,
        owner: &str,
        content: &[u8],
    ) -> Result<bool, DbError> {
        self.write(key, |c| async move { Ok(c.client.query_opt(&c.st.deposit_update, &[&uuid, &owner, &content]).await?.is_some()) })
            .await
    }

    pub async fn deposit_delete(&self, key: Option<RequestKey<'_>>, uuid: &str, owner: &str) -> Result<bool, DbError> {
        self.write(key, |c| async move { Ok(c.client.execute(&c.st.deposit_delete, &[&uuid, &owner]).await? == 1) }).await
    }

    pub async fn deposit_list(&self, owner: &str) -> Result<Vec<DepositInfo>, DbError> {
        let c = self.conn().await?;
        let rows = c.client.query(&c.st.deposit_list, &[&owner]).await?;
        Ok(rows
            .iter()
            .map(|r| DepositInfo { uuid: r.get(0), name: r.get(1), size: r.get(2), created: r.get(3), updated: r.get(4) })
            .collect())
    }

    pub async fn organization(&self, name: &str) -> Result<Option<OrgRow>, DbError> {
        let c = self.conn().await?;
        let row = c
            .client
            .query_opt("SELECT uuid::text, auth_secret, state FROM organizations WHERE name = $1", &[&name])
            .await?;
        Ok(row.map(|r| OrgRow { uuid: r.get(0), auth_secret: r.get(1), state: r.get(2) }))
    }

    /// Registers a client in `state` (`active`, or `pending` approval); an
    /// existing registration of the same key is returned as is (with its
    /// organization's uuid) instead, except that a pending one becomes
    /// active when this registration carries the right secret.
    ///
    /// The organization's contacts are told (src/mail/): the message is
    /// queued by the same statement that stores the registration, so it
    /// exists exactly when the registration does. A repeated request of a
    /// pending key queues a reminder, at most one an hour per client, in a
    /// statement of its own whose failure is logged, not answered. Without
    /// `notices` (the organization's notice budget is spent,
    /// [`crate::mail::budget`]) nothing is queued. The third value tells
    /// whether a notice was queued.
    pub async fn register_client(
        &self,
        fingerprint: &str,
        org_uuid: &str,
        public_key: &[u8],
        state: &str,
        host: Option<&str>,
        notices: Option<&ClientNotices>,
    ) -> Result<(String, String, bool), DbError> {
        let empty = crate::mail::messages::Text { subject: String::new(), body: String::new() };
        let (pending, active) = notices.map_or((&empty, &empty), |n| (&n.pending, &n.registered));
        let mail = notices.is_some();
        let inserted = self
            .write(None, |c| async move {
                c.client
                    .query_opt(
                        "WITH reg AS (INSERT INTO clients (fingerprint, organization, public_key, state, host) \
                 VALUES ($1, $2::text::uuid, $3, $4, $5) ON CONFLICT (fingerprint) DO UPDATE SET state = 'active' \
                 WHERE clients.state = 'pending' AND EXCLUDED.state = 'active' \
                 AND clients.organization = EXCLUDED.organization \
                 RETURNING state, organization), \
                 mail AS (INSERT INTO mail_outbox (kind, organization, recipient, subject, body, about_client) \
                 SELECT CASE WHEN reg.state = 'pending' THEN 'client-pending' ELSE 'client-registered' END, \
                 o.uuid, contact, \
                 CASE WHEN reg.state = 'pending' THEN $6 ELSE $8 END, \
                 CASE WHEN reg.state = 'pending' THEN $7 ELSE $9 END, $1 \
                 FROM reg JOIN organizations o ON o.uuid = reg.organization, unnest(o.contacts) AS contact \
                 WHERE $10) \
                 SELECT state, organization::text FROM reg",
                        &[
                            &fingerprint,
                            &org_uuid,
                            &public_key,
                            &state,
                            &host,
                            &pending.subject,
                            &pending.body,
                            &active.subject,
                            &active.body,
                            &mail,
                        ],
                    )
                    .await
                    .map(|row| row.map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))))
            })
            .await?;
        match inserted {
            // A row is stored (or a pending one admitted): its notice went
            // to every contact.
            Some((state, org)) => Ok((state, org, mail)),
            None => {
                let c = self.conn().await?;
                let row = c
                    .client
                    .query_one("SELECT state, organization::text FROM clients WHERE fingerprint = $1", &[&fingerprint])
                    .await?;
                let (state, org): (String, String) = (row.get(0), row.get(1));
                let mut queued = false;
                if state == "pending" && org == org_uuid && mail {
                    match self.remind_pending(fingerprint, org_uuid, pending).await {
                        Ok(q) => queued = q,
                        Err(e) => crate::server::log::warn!("mail: the reminder about pending client {fingerprint} was not queued: {e:?}"),
                    }
                }
                Ok((state, org, queued))
            }
        }
    }

    /// Queues the pending notice again for a client that keeps asking,
    /// unless one was queued in the last hour.
    async fn remind_pending(&self, fingerprint: &str, org_uuid: &str, text: &crate::mail::messages::Text) -> Result<bool, DbError> {
        self.write(None, |c| async move {
            c.client
                .execute(
                    "INSERT INTO mail_outbox (kind, organization, recipient, subject, body, about_client) \
                     SELECT 'client-pending', o.uuid, contact, $3, $4, $1 \
                     FROM clients cl JOIN organizations o ON o.uuid = cl.organization, unnest(o.contacts) AS contact \
                     WHERE cl.fingerprint = $1 AND cl.state = 'pending' AND cl.organization = $2::text::uuid \
                     AND NOT EXISTS (SELECT 1 FROM mail_outbox m WHERE m.about_client = $1 \
                     AND m.kind = 'client-pending' AND m.created > now() - interval '1 hour')",
                    &[&fingerprint, &org_uuid, &text.subject, &text.body],
                )
                .await
                .map(|n| n > 0)
        })
        .await
    }

    /// `(pending clients of the organization, whether this key is
    /// registered)`: the cap on pending clients holds back new keys only.
    pub async fn pending_clients(&self, org_uuid: &str, fingerprint: &str) -> Result<(i64, bool), DbError> {
        let c = self.conn().await?;
        let row = c
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM clients WHERE organization = $1::text::uuid AND state = 'pending'), \
                 EXISTS (SELECT 1 FROM clients WHERE fingerprint = $2)",
                &[&org_uuid, &fingerprint],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// `(in recovery, schema version)`: a database in recovery is a
    /// passive server's standby.
    pub async fn health(&self) -> Result<(bool, i32), DbError> {
        let c = self.conn().await?;
        let row = c
            .client
            .query_one("SELECT pg_is_in_recovery(), (SELECT max(version) FROM schema_version)", &[])
            .await?;
        Ok((row.get(0), row.get::<_, Option<i32>>(1).unwrap_or(0)))
    }

    /// The pools' connections now (a write slot that is locked runs a
    /// write; a read slot is locked only while it connects).
    pub fn usage(&self) -> PoolUsage {
        let open = |conn: &Option<Arc<Conn>>| conn.as_ref().is_some_and(|c| !c.client.is_closed());
        let mut usage = PoolUsage::default();
        for slot in &self.slots {
            if slot.try_lock().map(|g| open(&g)).unwrap_or(false) {
                usage.read_open += 1;
            }
        }
        for slot in &self.write_slots {
            match slot.try_lock() {
                Ok(g) => usage.write_open += usize::from(open(&g)),
                Err(_) => {
                    usage.write_open += 1;
                    usage.write_busy += 1;
                }
            }
        }
        usage
    }

    /// Role, standbys and lag, read for `/metrics` (the queries of
    /// `kt ha status`, src/ha/status.rs, from this node's pool).
    pub async fn replication_metrics(&self) -> Result<ReplicationMetrics, DbError> {
        let c = self.conn().await?;
        let row = c
            .client
            .query_one(
                "SELECT pg_is_in_recovery(), CASE WHEN NOT pg_is_in_recovery() \
                 OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                 ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8",
                &[],
            )
            .await?;
        let in_recovery: bool = row.get(0);
        let mut standbys = Vec::new();
        if !in_recovery {
            let rows = c
                .client
                .query(
                    "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''), \
                     coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint, \
                     coalesce(extract(epoch FROM replay_lag), 0)::float8 FROM pg_stat_replication",
                    &[],
                )
                .await?;
            standbys = rows
                .iter()
                .map(|r| StandbyLag { name: r.get(0), state: r.get(1), sync_state: r.get(2), lag_bytes: r.get(3), lag_seconds: r.get(4) })
                .collect();
        }
        Ok(ReplicationMetrics { in_recovery, replay_delay_seconds: row.get(1), standbys })
    }

    /// The replication state seen from this database, as JSON-ready rows.
    pub async fn replication(&self) -> Result<Vec<(String, String, String)>, DbError> {
        let c = self.conn().await?;
        let rows = c
            .client
            .query(
                "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, '') \
                 FROM pg_stat_replication",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

/// The steps of one write on its connection; `phase` tells the caller how
/// far they got when they fail.
async fn steps<T, F, Fut>(conn: &Arc<Conn>, key: Option<RequestKey<'_>>, phase: &AtomicU8, run: F) -> Result<Step<T>, tokio_postgres::Error>
where
    F: FnOnce(Arc<Conn>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    T: Answer,
{
    let Some(key) = key else {
        phase.store(COMMIT_SENT, Ordering::Relaxed);
        return run(conn.clone()).await.map(Step::Done);
    };
    let rq = conn.requests().await?;
    conn.client.batch_execute("BEGIN").await?;
    phase.store(IN_TRANSACTION, Ordering::Relaxed);
    // The id is claimed before the write runs: the claim waits for a
    // concurrent attempt with the same id to end, and when an attempt
    // committed, the write does not run at all.
    let claimed = conn.client.query_opt(&rq.claim, &[&key.client, &key.id, &key.digest]).await?;
    if claimed.is_none() {
        let row = conn.client.query_one(&rq.confirm, &[&key.client, &key.id]).await?;
        let digest: Vec<u8> = row.get(0);
        if digest != key.digest {
            conn.client.batch_execute("ROLLBACK").await?;
            phase.store(NOT_SENT, Ordering::Relaxed);
            return Ok(Step::Reused);
        }
        // The touch's commit waits for the passive like a write's: once
        // it is confirmed, so is every earlier commit, the recorded write's too.
        phase.store(COMMIT_SENT, Ordering::Relaxed);
        conn.client.batch_execute("COMMIT").await?;
        return Ok(Step::Recorded(row.get(1)));
    }
    let value = run(conn.clone()).await?;
    conn.client.execute(&rq.answer, &[&key.client, &key.id, &value.encode()]).await?;
    phase.store(COMMIT_SENT, Ordering::Relaxed);
    conn.client.batch_execute("COMMIT").await?;
    Ok(Step::Done(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_going_away_is_unavailable_not_internal() {
        for code in [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW, SqlState::CONNECTION_FAILURE] {
            assert!(unavailable_code(&code), "{}", code.code());
        }
        for code in [SqlState::UNIQUE_VIOLATION, SqlState::QUERY_CANCELED, SqlState::READ_ONLY_SQL_TRANSACTION] {
            assert!(!unavailable_code(&code), "{}", code.code());
        }
    }

    #[test]
    fn answers_survive_their_record() {
        for s in ["123e4567-e89b-12d3-a456-426614174000".to_string(), String::new()] {
            assert_eq!(String::decode(&s.encode()), Some(s.clone()));
            assert_eq!(s.shown(), Some(s.clone()));
        }
        for b in [true, false] {
            assert_eq!(bool::decode(&b.encode()), Some(b));
            assert_eq!(b.shown(), None);
        }
        assert_eq!(bool::decode("yes"), None);
        for pair in [None, Some(("active".to_string(), "u-1".to_string()))] {
            assert_eq!(<Option<(String, String)>>::decode(&pair.encode()), Some(pair.clone()));
        }
    }

    #[test]
    fn only_refusals_are_definite() {
        assert!(!definite_code(None), "an I/O error or a closed connection");
        for lost in [SqlState::ADMIN_SHUTDOWN, SqlState::CONNECTION_FAILURE, SqlState::CRASH_SHUTDOWN, SqlState::INTERNAL_ERROR] {
            assert!(!definite_code(Some(&lost)), "{lost:?}");
        }
        for refused in [SqlState::QUERY_CANCELED, SqlState::UNIQUE_VIOLATION, SqlState::READ_ONLY_SQL_TRANSACTION] {
            assert!(definite_code(Some(&refused)), "{refused:?}");
        }
    }
}
