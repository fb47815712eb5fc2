//! An open-loop HTTP load generator over keep-alive connections ([`crate::Conn`]): request `i`
//! is due at `start + i / rate`; a free connection takes the next due request, waits for its
//! time and sends it. Latency counts from the due time, so a server that falls behind shows
//! its queueing in the figures (no coordinated omission); the time from sending to the answer
//! is kept beside it. With `rate = 0` the connections send back to back (closed loop).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use crate::Conn;

/// Makes the body of request `i`.
pub type BodyFn = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;
/// Makes the path (with its query string) of GET request `i`.
pub type PathFn = Arc<dyn Fn(u64) -> String + Send + Sync>;
/// Sees the body of every 200 answer (e.g. to collect the server's own timings).
pub type AnswerFn = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// One load run.
pub struct OpenLoop {
    pub addr: SocketAddr,
    pub path: String,
    /// `Authorization` header value.
    pub auth: String,
    /// Requests per second; 0: closed loop.
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    /// Stop after this many requests (else when `duration` is over).
    pub max_requests: Option<u64>,
    pub body: BodyFn,
    /// Send GETs to these paths instead of POSTing `body` to `path`.
    pub get: Option<PathFn>,
    pub on_answer: Option<AnswerFn>,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Due time → answer, µs (open loop); send → answer in closed loop.
    pub latency_us: Vec<u64>,
    /// Send → answer, µs.
    pub service_us: Vec<u64>,
    pub ok: u64,
    /// Answers other than 200, by the first such status seen.
    pub bad_status: u64,
    pub first_bad_status: Option<u16>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl OpenLoop {
    pub async fn run(&self) -> Result<LoadResult> {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(20);
        let end = start + self.duration;
        let mut tasks = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            let mut conn = Conn::connect(self.addr).await?;
            let next = next.clone();
            let body = self.body.clone();
            let get = self.get.clone();
            let on_answer = self.on_answer.clone();
            let path = self.path.clone();
            let auth = self.auth.clone();
            let rate = self.rate;
            let max = self.max_requests.unwrap_or(u64::MAX);
            tasks.push(tokio::spawn(async move {
                let mut out = LoadResult::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= max {
                        break;
                    }
                    let due = if rate > 0.0 {
                        start + Duration::from_secs_f64(i as f64 / rate)
                    } else {
                        Instant::now().max(start)
                    };
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let sent;
                    let answer = match &get {
                        Some(to) => {
                            let to = to(i);
                            sent = Instant::now();
                            conn.get_read(&to, &auth).await
                        }
                        None => {
                            let payload = body(i);
                            sent = Instant::now();
                            match &on_answer {
                                Some(_) => conn.post_read(&path, &auth, &payload).await,
                                None => {
                                    conn.post(&path, &auth, &payload).await.map(|s| (s, vec![]))
                                }
                            }
                        }
                    };
                    match answer {
                        Ok((status, answer)) => {
                            let done = Instant::now();
                            if status == 200 {
                                out.ok += 1;
                                if let Some(f) = &on_answer {
                                    f(&answer);
                                }
                            } else {
                                out.bad_status += 1;
                                out.first_bad_status.get_or_insert(status);
                            }
                            out.latency_us
                                .push(done.duration_since(due).as_micros() as u64);
                            out.service_us
                                .push(done.duration_since(sent).as_micros() as u64);
                        }
                        Err(_) => {
                            out.errors += 1;
                            // The connection is in an unknown state: open a new one.
                            match Conn::connect(conn.addr()).await {
                                Ok(c) => conn = c,
                                Err(_) => break,
                            }
                        }
                    }
                }
                out
            }));
        }
        let mut all = LoadResult::default();
        for t in tasks {
            let r = t.await?;
            all.latency_us.extend(r.latency_us);
            all.service_us.extend(r.service_us);
            all.ok += r.ok;
            all.bad_status += r.bad_status;
            all.errors += r.errors;
            if all.first_bad_status.is_none() {
                all.first_bad_status = r.first_bad_status;
            }
        }
        all.elapsed = Instant::now().saturating_duration_since(start);
        all.latency_us.sort_unstable();
        all.service_us.sort_unstable();
        Ok(all)
    }
}

/// The `p` quantile (0..1) of sorted samples, in ms.
pub fn quantile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

impl LoadResult {
    pub fn figures(&self, target_rate: f64) -> Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        json!({
            "target_rate": target_rate,
            "requests": self.latency_us.len(),
            "ok": self.ok,
            "bad_status": self.bad_status,
            "first_bad_status": self.first_bad_status,
            "errors": self.errors,
            "secs": secs,
            "throughput": self.ok as f64 / secs,
            "p50_ms": quantile_ms(&self.latency_us, 0.50),
            "p99_ms": quantile_ms(&self.latency_us, 0.99),
            "p999_ms": quantile_ms(&self.latency_us, 0.999),
            "max_ms": quantile_ms(&self.latency_us, 1.0),
            "service_p50_ms": quantile_ms(&self.service_us, 0.50),
            "service_p99_ms": quantile_ms(&self.service_us, 0.99),
        })
    }
}
