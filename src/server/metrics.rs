//! `GET /metrics`: what the server does, in the Prometheus text format
//! (the `prometheus-client` crate writes it), on a listener of its own
//! (`METRICS_LISTEN`, plain HTTP on a loopback address only; off unless
//! set). Counters and histograms are updated on the request path (atomic
//! adds, no lock held across an await); what the database knows (pool
//! use, replication) is read when the metrics are asked for.
//!
//! | metric | what |
//! | --- | --- |
//! | `kt_http_requests_total{route,method,status}` | requests answered |
//! | `kt_http_request_duration_seconds{route,method,status}` | time to the answer's head |
//! | `kt_tls_handshake_failures_total` | handshakes that failed or timed out |
//! | `kt_auth_refusals_total{reason}` | refused authentications (`unsigned`, `forged`, `stale`, `replayed`, ...) |
//! | `kt_db_errors_total{code}` | requests refused because of the database |
//! | `kt_db_pool_connections{pool,state}` | open and busy connections (`read`, `write`) |
//! | `kt_db_up` | 1 when the database answered the scrape's query |
//! | `kt_ha_role{role}` | 1 for this node's role (`active`, `passive`) |
//! | `kt_replication_standby_lag_bytes{standby,state,sync_state}` | on an active: WAL not yet replayed by each standby |
//! | `kt_replication_standby_replay_lag_seconds{standby,state,sync_state}` | on an active: the standby's replay lag |
//! | `kt_replication_replay_delay_seconds` | on a passive: time since the last replayed change (0 when caught up) |
//! | `kt_server_key_info{fingerprint}` | the server's OpenPGP key |
//! | `kt_certificate_expiry_timestamp_seconds` | the served certificate's notAfter (Unix time) |

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::server::db::Pool;
use crate::server::log::warn;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StandbyLabels {
    standby: String,
    state: String,
    sync_state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    fingerprint: String,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The refusal codes that are authentication refusals (`kt_auth_refusals_total`).
const AUTH_REASONS: &[&str] = &[
    "unsigned",
    "forged",
    "unknown_client",
    "stale",
    "replayed",
    "client_disabled",
    "client_pending",
    "registration_refused",
];

/// The refusal codes that come from the database (`kt_db_errors_total`).
const DB_CODES: &[&str] = &[
    "database_unavailable",
    "internal",
    "schema_behind",
    "write_outcome_unknown",
    "write_unconfirmed",
    "passive_unavailable",
    "busy",
];

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    handshake_failures: Counter,
    auth_refusals: Family<ReasonLabels, Counter>,
    db_errors: Family<CodeLabels, Counter>,
    pool: Family<PoolLabels, Gauge>,
    db_up: Gauge,
    role: Family<RoleLabels, Gauge>,
    lag_bytes: Family<StandbyLabels, Gauge>,
    lag_seconds: Family<StandbyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    replay_delay: Gauge<f64, std::sync::atomic::AtomicU64>,
    cert_expiry: Gauge<i64, AtomicI64>,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new(fingerprint: &str) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("kt_http_requests", "Requests answered, by route, method and status", requests.clone());
        let durations: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register("kt_http_request_duration_seconds", "Time from a request to its answer's head", durations.clone());
        let handshake_failures = Counter::default();
        registry.register("kt_tls_handshake_failures", "TLS handshakes that failed or timed out", handshake_failures.clone());
        let auth_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register("kt_auth_refusals", "Refused authentications, by reason", auth_refusals.clone());
        let db_errors = Family::<CodeLabels, Counter>::default();
        registry.register("kt_db_errors", "Requests refused because of the database, by refusal code", db_errors.clone());
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register("kt_db_pool_connections", "Database connections of the server's pools", pool.clone());
        let db_up = Gauge::default();
        registry.register("kt_db_up", "Whether the database answered this scrape", db_up.clone());
        let role = Family::<RoleLabels, Gauge>::default();
        registry.register("kt_ha_role", "This node's role, from its database (active or passive)", role.clone());
        let lag_bytes = Family::<StandbyLabels, Gauge>::default();
        registry.register("kt_replication_standby_lag_bytes", "On an active: WAL bytes a standby has not replayed", lag_bytes.clone());
        let lag_seconds = Family::default();
        registry.register("kt_replication_standby_replay_lag_seconds", "On an active: a standby's replay lag", Family::clone(&lag_seconds));
        let replay_delay = Gauge::default();
        registry.register(
            "kt_replication_replay_delay_seconds",
            "On a passive: time since the last replayed change (0 when caught up)",
            replay_delay.clone(),
        );
        registry.register("kt_server_key", "The server's OpenPGP key", Info::new(KeyLabels { fingerprint: fingerprint.to_string() }));
        let cert_expiry = Gauge::<i64, AtomicI64>::default();
        registry.register("kt_certificate_expiry_timestamp_seconds", "The served certificate's notAfter, Unix time", cert_expiry.clone());
        for reason in AUTH_REASONS {
            let _ = auth_refusals.get_or_create(&ReasonLabels { reason });
        }
        Metrics {
            registry,
            requests,
            durations,
            handshake_failures,
            auth_refusals,
            db_errors,
            pool,
            db_up,
            role,
            lag_bytes,
            lag_seconds,
            replay_delay,
            cert_expiry,
        }
    }

    /// One answered request. `code` is the refusal code, if refused.
    pub fn request(&self, route: &'static str, method: &Method, status: u16, code: Option<&str>, elapsed: Duration) {
        let labels = RequestLabels { route, method: method_name(method), status };
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if let Some(code) = code {
            if let Some(reason) = AUTH_REASONS.iter().find(|r| **r == code) {
                self.auth_refusals.get_or_create(&ReasonLabels { reason }).inc();
            }
            if let Some(code) = DB_CODES.iter().find(|c| **c == code) {
                self.db_errors.get_or_create(&CodeLabels { code }).inc();
            }
        }
    }

    pub fn handshake_failed(&self) {
        self.handshake_failures.inc();
    }

    /// The served certificate (at start and after each SIGHUP).
    pub fn certificate(&self, leaf: &[u8]) {
        match crate::cert::info::CertInfo::parse(leaf) {
            Ok(info) => {
                self.cert_expiry.set(info.not_after);
            }
            Err(e) => warn!("metrics: cannot read the certificate's expiry: {e}"),
        }
    }

    /// Reads what the database knows, then writes every metric.
    async fn render(&self, pool: &Pool) -> String {
        let usage = pool.usage();
        for (pool_name, state, n) in [
            ("read", "open", usage.read_open),
            ("write", "open", usage.write_open),
            ("write", "busy", usage.write_busy),
        ] {
            self.pool.get_or_create(&PoolLabels { pool: pool_name, state }).set(n as i64);
        }
        self.role.clear();
        self.lag_bytes.clear();
        self.lag_seconds.clear();
        match pool.replication_metrics().await {
            Ok(rep) => {
                self.db_up.set(1);
                self.role.get_or_create(&RoleLabels { role: if rep.in_recovery { "passive" } else { "active" } }).set(1);
                self.replay_delay.set(rep.replay_delay_seconds);
                for s in rep.standbys {
                    let labels = StandbyLabels { standby: s.name, state: s.state, sync_state: s.sync_state };
                    self.lag_bytes.get_or_create(&labels).set(s.lag_bytes);
                    self.lag_seconds.get_or_create(&labels).set(s.lag_seconds);
                }
            }
            Err(_) => {
                self.db_up.set(0);
            }
        }
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            warn!("metrics: cannot encode: {e}");
        }
        text
    }
}

/// A route's name for the labels: the endpoint without the ids in it, so
/// that the label values stay few.
pub fn route_of(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        [] => "/",
        ["health"] => "/health",
        ["register"] => "/register",
        ["deposits"] => "/deposits",
        ["deposits", _] => "/deposits/{uuid}",
        _ => "other",
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// Serves `GET /metrics` on `addr` (plain HTTP: loopback only, checked by
/// the settings) until the runtime ends.
pub async fn listen(addr: SocketAddr, metrics: Arc<Metrics>, state: Arc<crate::server::api::AppState>) -> crate::error::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        crate::error::Error::env(format!("cannot listen on {addr} for metrics"))
            .because_err(&e)
            .with_hint("change METRICS_LISTEN in keytrustee.conf, or remove it to turn metrics off")
    })?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let metrics = metrics.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    let state = state.clone();
                    async move {
                        let resp = if req.method() == Method::GET && req.uri().path() == "/metrics" {
                            let mut resp = Response::new(Full::new(Bytes::from(metrics.render(&state.pool).await)));
                            resp.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                            );
                            resp
                        } else {
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"only GET /metrics here\n")));
                            *resp.status_mut() = StatusCode::NOT_FOUND;
                            resp
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_ids() {
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/deposits/123e4567-e89b-12d3-a456-426614174000"), "/deposits/{uuid}");
        assert_eq!(route_of("/deposits/"), "/deposits");
        assert_eq!(route_of("/a/b/c"), "other");
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let m = Metrics::new("ABC");
        m.request("/deposits", &Method::GET, 409, Some("replayed"), Duration::from_millis(2));
        m.request("/deposits", &Method::GET, 200, None, Duration::from_millis(2));
        m.request("/deposits", &Method::PUT, 503, Some("database_unavailable"), Duration::from_millis(2));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).unwrap();
        assert!(text.contains("kt_auth_refusals_total{reason=\"replayed\"} 1"), "{text}");
        assert!(text.contains("kt_auth_refusals_total{reason=\"forged\"} 0"), "{text}");
        assert!(text.contains("kt_db_errors_total{code=\"database_unavailable\"} 1"), "{text}");
        assert!(text.contains("kt_http_requests_total{route=\"/deposits\",method=\"GET\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("kt_server_key_info{fingerprint=\"ABC\"} 1"), "{text}");
    }
}
