//! The server's database access: a small pool of pipelined tokio-postgres
//! connections with their statements prepared once, and the queries the
//! endpoints need. A broken connection is replaced on next use; an
//! unreachable database fails the request fast (503), it never hangs it.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Statement};

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
    /// Anything else: a bug or a constraint kt did not expect.
    Other(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if db.code() == &tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION {
                return DbError::ReadOnly;
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

struct Conn {
    client: Client,
    st: Statements,
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

/// What a write statement answered, for [`DbError::Unconfirmed`].
trait Answer {
    fn answer(&self) -> Option<String> {
        None
    }
}
impl Answer for String {
    fn answer(&self) -> Option<String> {
        Some(self.clone())
    }
}
impl Answer for bool {}
impl Answer for Option<(String, String)> {}

/// A registered client as the authentication step needs it.
pub struct ClientRow {
    pub state: String,
    pub public_key: Vec<u8>,
}

/// One line of a deposit listing.
pub struct DepositInfo {
    pub uuid: String,
    pub name: String,
    pub size: i32,
    pub created: String,
    pub updated: String,
}

/// An organization as registration needs it.
pub struct OrgRow {
    pub uuid: String,
    pub auth_secret: String,
    pub state: String,
}

impl Pool {
    pub fn new(port: u16, user: &str, password: &str, database: &str, size: usize, write_timeout: Duration) -> Pool {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(user)
            .password(password)
            .dbname(database)
            .application_name("kt serve")
            .connect_timeout(Duration::from_secs(5));
        let slots = |n: usize| (0..n.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect();
        Pool {
            config,
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

    /// Runs one write statement under the HA rules: refused up front when
    /// the gate is closed; bounded by the write timeout, after which the
    /// commit's wait for the passive is cancelled and the outcome reported
    /// as [`DbError::Unconfirmed`] (committed here) or, when the cancel
    /// came before the commit, [`DbError::PassiveUnavailable`] (nothing
    /// changed).
    async fn write<T, F, Fut>(&self, run: F) -> Result<T, DbError>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
        T: Answer,
    {
        if self.gate.load(Ordering::Relaxed) == GATE_CLOSED {
            return Err(DbError::PassiveUnavailable);
        }
        let i = self.next_write.fetch_add(1, Ordering::Relaxed) % self.write_slots.len();
        let mut slot = self.write_slots[i].lock().await;
        let conn = match slot.as_ref() {
            Some(conn) if !conn.client.is_closed() => conn.clone(),
            _ => {
                let conn = self.connect().await?;
                *slot = Some(conn.clone());
                conn
            }
        };
        let fut = run(conn.clone());
        tokio::pin!(fut);
        match tokio::time::timeout(self.write_timeout, &mut fut).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                // Only this write runs on this connection: the cancel hits it.
                let _ = conn.client.cancel_token().cancel_query(tokio_postgres::NoTls).await;
                match tokio::time::timeout(CANCEL_GRACE, &mut fut).await {
                    // Success after a cancel: PostgreSQL committed locally
                    // and stopped waiting for the standby.
                    Ok(Ok(value)) => Err(DbError::Unconfirmed(value.answer())),
                    Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {
                        Err(DbError::PassiveUnavailable)
                    }
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => {
                        // The outcome is unknown: never reuse this connection.
                        *slot = None;
                        Err(DbError::Unconfirmed(None))
                    }
                }
            }
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
        let conn = self.connect().await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<Arc<Conn>, DbError> {
        let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the
            // next request through this slot reconnects.
            let _ = connection.await;
        });
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
        Ok(Arc::new(Conn { client, st }))
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

    pub async fn deposit_insert(&self, owner: &str, name: &str, content: &[u8]) -> Result<String, DbError> {
        self.write(|c| async move {
            let row = c.client.query_one(&c.st.deposit_insert, &[&owner, &name, &content]).await?;
            Ok(row.get::<_, String>(0))
        })
        .await
    }

    pub async fn deposit_update(&self, uuid: &str, owner: &str, content: &[u8]) -> Result<bool, DbError> {
        self.write(|c| async move { Ok(c.client.query_opt(&c.st.deposit_update, &[&uuid, &owner, &content]).await?.is_some()) })
            .await
    }

    pub async fn deposit_delete(&self, uuid: &str, owner: &str) -> Result<bool, DbError> {
        self.write(|c| async move { Ok(c.client.execute(&c.st.deposit_delete, &[&uuid, &owner]).await? == 1) }).await
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
    pub async fn register_client(
        &self,
        fingerprint: &str,
        org_uuid: &str,
        public_key: &[u8],
        state: &str,
        host: Option<&str>,
    ) -> Result<(String, String), DbError> {
        let inserted = self
            .write(|c| async move {
                c.client
                    .query_opt(
                        "INSERT INTO clients (fingerprint, organization, public_key, state, host) \
                 VALUES ($1, $2::text::uuid, $3, $4, $5) ON CONFLICT (fingerprint) DO UPDATE SET state = 'active' \
                 WHERE clients.state = 'pending' AND EXCLUDED.state = 'active' \
                 AND clients.organization = EXCLUDED.organization \
                 RETURNING state, organization::text",
                        &[&fingerprint, &org_uuid, &public_key, &state, &host],
                    )
                    .await
                    .map(|row| row.map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))))
            })
            .await?;
        match inserted {
            Some(pair) => Ok(pair),
            None => {
                let c = self.conn().await?;
                let row = c
                    .client
                    .query_one("SELECT state, organization::text FROM clients WHERE fingerprint = $1", &[&fingerprint])
                    .await?;
                Ok((row.get(0), row.get(1)))
            }
        }
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
