//! `kt serve`: the key server. tokio + hyper (HTTP/1.1, keep-alive) over
//! rustls, with the endpoints of [`api`], limits on every resource a client
//! can hold (connections, header and body size, idle and request time), a
//! SIGHUP that swaps the certificate without dropping connections, and a
//! graceful stop on SIGTERM/SIGINT.

pub mod api;
pub mod contact_page;
pub mod db;
pub mod drain;
pub mod log;
pub mod metrics;
pub mod nonces;
pub mod replay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::error::{Context, Error, Result};
use crate::instance::Instance;
use crate::cert::material::KeyMaterial;
use crate::tls::{self, ReloadableCert};
use log::{error, info, warn};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server reads whether the passive is there for writes.
const GATE_INTERVAL: Duration = Duration::from_millis(250);
/// How often recorded answers to writes with a request id older than
/// `db::REQUEST_RETENTION` are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// How long open connections get to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often nonces past the authentication window are deleted from the
/// shared replay guard.
const NONCE_PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Everything `serve` needs, read from the instance before any change.
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub key_material: KeyMaterial,
    /// Where the configuration is read again on SIGHUP.
    pub confdir: PathBuf,
    pub provider: rustls::crypto::CryptoProvider,
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    pub version_warning: Option<String>,
    /// What `CIPHERS` asked for that kt cannot offer, logged once at start.
    pub cipher_warnings: Vec<String>,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// `DRAIN_SECONDS`: /health at 503 before the listener closes on SIGTERM.
    pub drain: Duration,
    pub limits: api::Limits,
    /// The database (local or external) and how to reach it.
    pub db: crate::storage::endpoint::Endpoint,
    /// `METRICS_LISTEN`: where `/metrics` is served (None: nowhere).
    pub metrics_listen: Option<SocketAddr>,
    pub db_pool_size: usize,
    /// `HA_WRITE_TIMEOUT_SECONDS`: how long a write waits for the passive.
    pub ha_write_timeout: Duration,
    pub pgpass: PathBuf,
    pub fingerprint: String,
    pub pubkey_armored: String,
    /// `HA_ROLE` passive: the shared replay guard may be skipped.
    pub passive: bool,
    /// On a passive (`HA_ROLE` passive): the active's host, named when a
    /// write is refused.
    pub ha_active: Option<String>,
    /// `HOSTNAME`.
    pub hostname: String,
    /// The mail settings and the server's secret key (`secring.gpg`): the
    /// outbox worker signs and sends contact mail (src/mail/worker.rs).
    pub mail: crate::settings::MailSettings,
    pub secring: PathBuf,
    /// The contact registration form's guard, keyed from the server's
    /// secret key (the same on both servers of an HA pair).
    pub registration: crate::registration::form::FormGuard,
}

impl ServerSettings {
    /// Reads and checks every setting; any problem stops startup here.
    /// Types and ranges were checked when the instance was loaded
    /// (src/settings.rs); here what TLS makes of them.
    pub fn from_instance(instance: &Instance) -> Result<ServerSettings> {
        let s = &instance.settings;
        let (versions, version_warning) = tls::protocol_versions(&s.tls_min_version)?;
        let (provider, cipher_warnings) = tls::provider_with_warnings(&s.ciphers, &versions)?;
        let key_material = KeyMaterial::for_instance(instance)?;
        let public = crate::pgp::load_public_key(&instance.layout.pubring())?;
        let limits = &s.limits;
        Ok(ServerSettings {
            listen: s.listen,
            key_material,
            confdir: instance.layout.confdir.clone(),
            provider,
            versions,
            version_warning,
            cipher_warnings,
            max_header_bytes: limits.max_header_bytes as usize,
            max_connections: limits.max_connections as usize,
            idle_timeout: limits.idle_timeout(),
            drain: Duration::from_secs(limits.drain_seconds),
            limits: api::Limits {
                max_body_bytes: limits.max_body_bytes as usize,
                auth_window_seconds: limits.auth_window_seconds as i64,
                request_timeout: limits.request_timeout(),
                max_pending_clients: limits.max_pending_clients as i64,
            },
            db: crate::storage::endpoint::Endpoint::for_instance(instance),
            metrics_listen: s.metrics_listen,
            db_pool_size: limits.db_pool_size as usize,
            ha_write_timeout: Duration::from_secs(limits.ha_write_timeout_seconds),
            pgpass: instance.layout.pgpass(),
            fingerprint: crate::pgp::wire_fingerprint(&public),
            pubkey_armored: crate::pgp::armored(&public)?,
            passive: s.ha_role == Some(crate::settings::HaRole::Passive),
            ha_active: match s.ha_role {
                Some(crate::settings::HaRole::Passive) => s.ha_peer.as_deref().map(peer_host),
                _ => None,
            },
            hostname: s.hostname.clone(),
            mail: s.mail.clone(),
            secring: instance.layout.secring(),
            registration: registration_guard(instance)?,
        })
    }
}

/// The registration form's guard, its key derived from the server's
/// secret key file (read once; the bytes are wiped after).
fn registration_guard(instance: &Instance) -> Result<crate::registration::form::FormGuard> {
    let path = instance.layout.secring();
    let secret = zeroize::Zeroizing::new(std::fs::read(&path).map_err(|e| {
        Error::env(format!("cannot read the server key {}", path.display())).because_err(&e)
    })?);
    Ok(crate::registration::form::FormGuard::new(&secret))
}

/// Runs the server until SIGTERM or SIGINT. `on_ready` runs once the
/// socket is bound (the pid file is written there).
pub fn serve(settings: ServerSettings, on_ready: impl FnOnce() -> Result<()> + Send) -> Result<()> {
    // glibc gives every thread that allocates its own arena and keeps freed
    // memory in each: with a few arenas the server's footprint stays flat.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    check_schema(&settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kt-serve")
        .build()
        .env_context(|| "cannot start the async runtime")?;
    runtime.block_on(run(settings, on_ready))
}

async fn run(settings: ServerSettings, on_ready: impl FnOnce() -> Result<()>) -> Result<()> {
    for warning in settings.version_warning.iter().chain(&settings.cipher_warnings) {
        warn!("{warning}");
    }
    let certified = settings.key_material.load(&settings.provider)?;
    let metrics = Arc::new(metrics::Metrics::new(&settings.fingerprint));
    if let Some(leaf) = certified.cert.first() {
        metrics.certificate(leaf);
    }
    let cert = ReloadableCert::new(certified);
    let tls_config = tls::server_config(settings.provider.clone(), &settings.versions, cert.clone())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let password = settings.db.password(&settings.pgpass)?;
    let db_tls = settings.db.tls()?;
    let state = Arc::new(api::AppState {
        fingerprint: settings.fingerprint.clone(),
        pubkey_armored: settings.pubkey_armored.clone(),
        ha_active: settings.ha_active.clone(),
        passive: settings.passive,
        ha_write_timeout: settings.ha_write_timeout,
        writes_open: std::sync::atomic::AtomicBool::new(true),
        pool: db::Pool::new(settings.db.async_config(&password, "kt serve"), db_tls, settings.db_pool_size, settings.ha_write_timeout),
        replay: replay::ReplayGuard::new(2_000_000),
        keys: Default::default(),
        limits: settings.limits.clone(),
        hostname: settings.hostname.clone(),
        registration: settings.registration,
        drain: Default::default(),
        nonces: Default::default(),
        notice_budget: Default::default(),
    });
    state.nonces.start(state.clone());
    if let Err(e) = state.pool.warm_up().await {
        warn!("the database does not answer yet ({e:?}); requests will get 503 until it does");
    }
    let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
        Error::env(format!("cannot listen on {}", settings.listen))
            .because_err(&e)
            .with_hint("is another server running? see `kt server status`, or change LISTEN in keytrustee.conf")
    })?;
    if let Some(addr) = settings.metrics_listen {
        metrics::listen(addr, metrics.clone(), state.clone()).await?;
        info!("metrics on http://{addr}/metrics");
    }
    on_ready()?;
    // Contact mail leaves from its own thread: no request waits for an MTA.
    let mail_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = crate::mail::worker::WorkerSettings {
        db: postgres::Config::from(settings.db.async_config(&password, "kt serve mail")),
        db_tls: settings.db.tls()?,
        mail: settings.mail.clone(),
        hostname: settings.hostname.clone(),
        secring: settings.secring.clone(),
        // `kt serve` runs as the service account already.
        account: None,
    };
    if let Some(warning) = crate::mail::transport::downgrade_warning(&settings.mail) {
        warn!("{warning}");
    }
    if let Err(e) = crate::mail::worker::spawn(worker, mail_stop.clone(), log::line) {
        error!("cannot start the mail worker: {e}; contact mail stays queued");
    }
    info!(
        "kt {} serving https://{} (key {}, up to {} connections)",
        env!("CARGO_PKG_VERSION"),
        settings.listen,
        settings.fingerprint,
        settings.max_connections
    );

    let mut sighup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut purge = tokio::time::interval(Duration::from_secs(10));
    let mut prune_nonces = tokio::time::interval(NONCE_PRUNE_INTERVAL);
    prune_nonces.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Set by the first SIGTERM when DRAIN_SECONDS is not 0: the end of the drain.
    let mut drained: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Whether writes may go ahead (synchronous replication with the
    // passive there, or none): read a few times a second, off the request path.
    let mut gate = tokio::time::interval(GATE_INTERVAL);
    gate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        error!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    warn!("connection limit ({}) reached: closing the connection from {peer}", settings.max_connections);
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let state = state.clone();
                let metrics = metrics.clone();
                let mut stop = stop_rx.clone();
                let idle = settings.idle_timeout;
                let max_header = settings.max_header_bytes;
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        // Failed handshakes (scanners, wrong versions or ciphers) are routine.
                        Ok(Err(_)) | Err(_) => {
                            metrics.handshake_failed();
                            return;
                        }
                    };
                    let service = service_fn(move |req| measured(state.clone(), metrics.clone(), req));
                    let mut builder = http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .keep_alive(true)
                        // Also the idle timeout: it runs while a kept-alive
                        // connection waits for its next request.
                        .header_read_timeout(idle)
                        .max_buf_size(max_header)
                        .max_headers(64);
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    tokio::pin!(conn);
                    let stopping = tokio::select! {
                        _ = conn.as_mut() => false,
                        _ = stop.changed() => true,
                    };
                    if stopping {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
                    }
                });
            }
            _ = sighup.recv() => {
                // The configuration is read again: a replace may have
                // changed the paths or the password script.
                let fresh = crate::instance::Layout::new(Some(&settings.confdir))
                    .and_then(|layout| layout.load())
                    .and_then(|instance| KeyMaterial::for_instance(&instance));
                match fresh.and_then(|material| material.load(&settings.provider)) {
                    Ok(new) => {
                        if let Some(leaf) = new.cert.first() {
                            metrics.certificate(leaf);
                        }
                        cert.replace(new);
                        info!("SIGHUP: reloaded the certificate, key and CA");
                    }
                    Err(e) => error!("SIGHUP: reload failed, still serving the old certificate: {}", describe(&e)),
                }
            }
            _ = sigterm.recv() => {
                if settings.drain.is_zero() || drained.is_some() {
                    break;
                }
                state.drain.begin();
                info!("SIGTERM: draining: /health answers 503 for {} s, then no new connections", settings.drain.as_secs());
                drained = Some(Box::pin(tokio::time::sleep(settings.drain)));
            }
            _ = async { drained.as_mut().expect("guarded").await }, if drained.is_some() => break,
            _ = sigint.recv() => break,
            _ = prune_nonces.tick() => {
                let state = state.clone();
                tokio::spawn(async move {
                    // A passive deletes nothing: it gets the active's deletes.
                    let before = nonces::prune_before(crate::clock::unix_now(), state.limits.auth_window_seconds);
                    match state.pool.prune_nonces(before).await {
                        Ok(_) | Err(db::DbError::ReadOnly) | Err(db::DbError::SchemaBehind(_)) => {}
                        Err(e) => warn!("pruning the shared replay guard failed: {e:?}"),
                    }
                });
            }
            _ = purge.tick() => state.replay.purge(crate::clock::unix_now()),
            _ = prune.tick() => {
                let state = state.clone();
                tokio::spawn(async move {
                    // A passive (read-only) prunes nothing: it gets the active's deletes.
                    match state.pool.prune_requests().await {
                        Ok(0) | Err(db::DbError::ReadOnly) => {}
                        Ok(n) => info!("pruned {n} recorded write answers older than {}", db::REQUEST_RETENTION),
                        Err(e) => warn!("pruning recorded write answers failed: {e:?}"),
                    }
                });
            }
            _ = gate.tick() => {
                let state = state.clone();
                tokio::spawn(async move {
                    let was = state.writes_open.load(std::sync::atomic::Ordering::Relaxed);
                    // An unreachable database fails writes by itself.
                    if let Ok(open) = state.pool.refresh_gate().await {
                        state.writes_open.store(open, std::sync::atomic::Ordering::Relaxed);
                        if was != open {
                            if open {
                                info!("writes accepted again: the passive is the synchronous standby");
                            } else {
                                warn!("writes refused: synchronous replication is on and the passive is not connected");
                            }
                        }
                    }
                });
            }
        }
    }
    state.drain.begin();
    info!("stopping: no new connections, letting open ones finish");
    mail_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(listener);
    let _ = stop_tx.send(true);
    let all = settings.max_connections as u32;
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), connections.acquire_many(all)).await.is_err() {
        warn!("some connections did not finish in time");
    }
    info!("stopped");
    Ok(())
}

/// [`api::handle`] with its answer counted and timed in [`metrics`].
async fn measured(
    state: Arc<api::AppState>,
    metrics: Arc<metrics::Metrics>,
    req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    let started = std::time::Instant::now();
    let route = metrics::route_of(req.uri().path());
    let method = req.method().clone();
    let resp = api::handle(state, req).await?;
    let code = resp.extensions().get::<api::RefusalCode>().map(|c| c.0);
    metrics.request(route, &method, resp.status().as_u16(), code, started.elapsed());
    Ok(resp)
}

/// An instance made by an older kt has an older schema: on an active it is
/// brought up to this kt's before the server takes requests, and a schema
/// that cannot be brought up, or that is newer than this kt, stops the
/// start (exit 3) rather than leave a server that fails every request. A
/// passive's standby gets the migration from its active: a passive whose
/// kt is newer than its active's schema serves reads and says so
/// (`/health`), and writes are the active's anyway. A database that does
/// not answer yet is not checked: requests get 503 until it does.
/// Runs before the async runtime exists (the sync client makes its own).
fn check_schema(settings: &ServerSettings) -> Result<()> {
    use crate::storage::schema::{self, Standing};
    let password = settings.db.password(&settings.pgpass)?;
    let config = postgres::Config::from(settings.db.async_config(&password, "kt serve"));
    let mut client = match config.connect(settings.db.tls()?) {
        Ok(client) => client,
        Err(e) => {
            warn!("the schema was not checked for migrations: the database does not answer ({e})");
            return Ok(());
        }
    };
    let refuse = |e: Error| {
        error!("cannot start: {}", describe(&e));
        e
    };
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .map_err(|e| Error::env("cannot read whether the database is a standby").because_err(&e))
        .map_err(refuse)?
        .get(0);
    match schema::standing(&mut client).map_err(refuse)? {
        Standing::Current => Ok(()),
        Standing::Ahead(v) => Err(refuse(schema::newer_than_this_kt(v))),
        Standing::Behind(v) if in_recovery => {
            warn!(
                "schema behind: the database is at version {v}, this kt expects {}: serving reads only until the active's kt is upgraded (upgrade the active first)",
                schema::latest_version()
            );
            Ok(())
        }
        Standing::Behind(v) => {
            let applied = schema::upgrade(&mut client).map_err(|e| {
                refuse(
                    Error::env(format!(
                        "the database schema is at version {v} and could not be upgraded to this kt's ({})",
                        schema::latest_version()
                    ))
                    .because(describe(&e))
                    .with_hint("fix the cause above and start again; `kt db start` runs the same upgrade"),
                )
            })?;
            info!("schema migrated: applied {applied:?}");
            Ok(())
        }
    }
}

/// The host of `HA_PEER` (HOST:DBPORT or [V6]:DBPORT).
fn peer_host(peer: &str) -> String {
    if let Some(rest) = peer.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    peer.rsplit_once(':').map(|(h, _)| h).unwrap_or(peer).to_string()
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).env_context(|| "cannot install a signal handler")
}

/// One line for the log: message, causes, hint.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    if let Some(hint) = e.hint() {
        s.push_str(&format!(" (hint: {hint})"));
    }
    s
}
