//! The server's database access: a small pool of pipelined tokio-postgres
//! connections with their statements prepared once, and the queries the
//! endpoints need. A broken connection is replaced on next use; an
//! unreachable database fails the request fast (503), it never hangs it.

use std::sync::atomic::{AtomicUsize, Ordering};
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
pub struct Pool {
    config: tokio_postgres::Config,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

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
    pub fn new(port: u16, user: &str, password: &str, database: &str, size: usize) -> Pool {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(user)
            .password(password)
            .dbname(database)
            .application_name("kt serve")
            .connect_timeout(Duration::from_secs(5));
        Pool { config, slots: (0..size.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(), next: AtomicUsize::new(0) }
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
        let conn = Arc::new(Conn { client, st });
        *slot = Some(conn.clone());
        Ok(conn)
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
        let c = self.conn().await?;
        let row = c.client.query_one(&c.st.deposit_insert, &[&owner, &name, &content]).await?;
        Ok(row.get(0))
    }

    pub async fn deposit_update(&self, uuid: &str, owner: &str, content: &[u8]) -> Result<bool, DbError> {
        let c = self.conn().await?;
        Ok(c.client.query_opt(&c.st.deposit_update, &[&uuid, &owner, &content]).await?.is_some())
    }

    pub async fn deposit_delete(&self, uuid: &str, owner: &str) -> Result<bool, DbError> {
        let c = self.conn().await?;
        Ok(c.client.execute(&c.st.deposit_delete, &[&uuid, &owner]).await? == 1)
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

    /// Registers a client; an existing registration of the same key is
    /// returned as is (with its organization's uuid) instead.
    pub async fn register_client(
        &self,
        fingerprint: &str,
        org_uuid: &str,
        public_key: &[u8],
    ) -> Result<(String, String), DbError> {
        let c = self.conn().await?;
        let inserted = c
            .client
            .query_opt(
                "INSERT INTO clients (fingerprint, organization, public_key, state) \
                 VALUES ($1, $2::text::uuid, $3, 'active') ON CONFLICT (fingerprint) DO NOTHING \
                 RETURNING state, organization::text",
                &[&fingerprint, &org_uuid, &public_key],
            )
            .await?;
        let row = match inserted {
            Some(row) => row,
            None => {
                c.client
                    .query_one("SELECT state, organization::text FROM clients WHERE fingerprint = $1", &[&fingerprint])
                    .await?
            }
        };
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
