//! A bounded load generator (`kt client bench`): N keep-alive connections
//! from this process, each sending signed requests as fast as the server
//! answers, until a request count or a time limit is reached, whichever
//! comes first. Reports throughput and latency percentiles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth;
use crate::client::https::{HttpsClient, Url};
use crate::client::ClientDir;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Fetch random existing deposits of this client.
    Get,
    /// Create new deposits.
    Put,
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub operation: Operation,
    pub connections: usize,
    pub duration: Duration,
    pub max_requests: u64,
    pub deposit_size: usize,
    /// Total requests per second to aim for (paced per connection), or
    /// None to send as fast as the server answers. Under a rate, a request
    /// sent late because the previous answer came late is timed from its
    /// scheduled time, so a server that falls behind is charged for the wait
    /// (no coordinated omission).
    pub rate: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Under a rate: the p99 counted from each request's scheduled time
    /// (a late answer delays the next requests of its connection, and they
    /// are charged for it). Equal to `p99` in spirit without a rate.
    pub p99_from_schedule: Duration,
}

pub fn run(dir: &ClientDir, options: &BenchOptions) -> Result<BenchReport> {
    if options.connections == 0 || options.max_requests == 0 {
        return Err(Error::usage("connections and requests must be at least 1"));
    }
    let mut session = dir.open()?;
    let settings = session.settings.clone();
    let url = Url::parse(&settings.servers[0])?;
    let trust = settings.trust();
    let uuids: Arc<Vec<String>> = Arc::new(match options.operation {
        Operation::Get => {
            let list = session.list()?;
            let uuids: Vec<String> = list.iter().filter_map(|d| d["uuid"].as_str().map(str::to_string)).collect();
            if uuids.is_empty() {
                return Err(Error::usage("this client has no deposits to fetch").with_hint("put some first, or bench put"));
            }
            uuids
        }
        Operation::Put => Vec::new(),
    });
    let key = Arc::new(session.key().clone());
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Every connection does its TLS handshake before the clock starts.
    let barrier = Arc::new(std::sync::Barrier::new(options.connections + 1));
    let clock: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
    let mut threads = Vec::new();
    for t in 0..options.connections {
        let (key, uuids, issued, errors, stop) = (key.clone(), uuids.clone(), issued.clone(), errors.clone(), stop.clone());
        let (barrier, clock) = (barrier.clone(), clock.clone());
        let mut client = HttpsClient::new(&url, &trust, Duration::from_secs(30))?.with_max_body(crate::client::store::MAX_ANSWER);
        let fingerprint = settings.fingerprint.clone();
        let options = options.clone();
        threads.push(std::thread::spawn(move || {
            let _ = client.request("GET", "/?a=fingerprint", &[], b"");
            barrier.wait();
            let start = *clock.wait();
            let deadline = start + options.duration;
            let mut latencies = Vec::new();
            let payload = vec![b'x'; options.deposit_size];
            let mut rng_state = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let interval = options.rate.map(|r| Duration::from_secs_f64(options.connections as f64 / r));
            // Stagger the connections across one interval.
            let mut scheduled = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(t as f64 / options.connections as f64));
            loop {
                // Behind schedule (the server was slow): the wait counts.
                // Ahead of it: sleep, and time from the actual send, so the
                // client's own wake-up jitter is not charged to the server.
                let mut behind = false;
                if interval.is_some() {
                    let now = Instant::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    } else {
                        behind = true;
                    }
                }
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                if issued.fetch_add(1, Ordering::Relaxed) >= options.max_requests {
                    break;
                }
                let (method, path, body): (&str, String, &[u8]) = match options.operation {
                    Operation::Get => {
                        rng_state ^= rng_state << 13;
                        rng_state ^= rng_state >> 7;
                        rng_state ^= rng_state << 17;
                        let uuid = &uuids[(rng_state % uuids.len() as u64) as usize];
                        ("GET", format!("/deposits/{uuid}"), b"")
                    }
                    Operation::Put => ("POST", "/deposits?name=bench".to_string(), &payload),
                };
                let sent = Instant::now();
                let begin = if behind { scheduled } else { sent };
                if let Some(step) = interval {
                    scheduled += step;
                }
                let ok = match auth::sign_request(&key, &fingerprint, method, &path, body) {
                    Ok(h) => {
                        let ts = h.timestamp.to_string();
                        let headers = [
                            (auth::HEADER_CLIENT, h.client.as_str()),
                            (auth::HEADER_TIMESTAMP, ts.as_str()),
                            (auth::HEADER_NONCE, h.nonce.as_str()),
                            (auth::HEADER_SIGNATURE, h.signature.as_str()),
                        ];
                        matches!(client.request(method, &path, &headers, body), Ok(r) if r.status == 200 || r.status == 201)
                    }
                    Err(_) => false,
                };
                latencies.push((begin.elapsed(), sent.elapsed()));
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let _ = clock.set(start);
    let mut scheduled: Vec<Duration> = Vec::new();
    let mut service: Vec<Duration> = Vec::new();
    for thread in threads {
        for (s, v) in thread.join().map_err(|_| Error::env("a load thread panicked"))? {
            scheduled.push(s);
            service.push(v);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    scheduled.sort();
    service.sort();
    let pick = |v: &[Duration], q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or_default();
    Ok(BenchReport {
        requests: service.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        per_second: service.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(&service, 0.50),
        p99: pick(&service, 0.99),
        max: service.last().copied().unwrap_or_default(),
        p99_from_schedule: pick(&scheduled, 0.99),
    })
}
