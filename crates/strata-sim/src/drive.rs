//! The load driver: posts a world's events to a Segment-compatible `/v1/batch` endpoint over
//! keep-alive HTTP/1.1 connections, paced by a token bucket, and measures what was
//! acknowledged and how fast.
//!
//! - One generator thread turns the event stream into batch bodies and paces them: it takes
//!   `batch` tokens from a bucket refilled at `rate` per second (burst: a tenth of a second's
//!   worth, at least one batch) and sleeps only when the bucket is empty.
//! - `connections` workers send them. A 429/5xx answer or a connection error is retried with
//!   the same body (hence the same message ids) after a bounded exponential backoff; other
//!   answers are final. Latency is measured per acknowledged request.
//! - When the simulated window is used up before `duration` ends, it is replayed with new
//!   message ids (`sim-<seed>-r<lap>-…`), same timestamps.
//!
//! Only `target` is contacted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};

use crate::error::{Error, Result};
use crate::http::{basic_auth, Conn, Target};
use crate::world::{World, WorldConfig};

/// Tries per batch before it counts as failed.
const MAX_ATTEMPTS: u32 = 8;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What to drive and how hard.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// `http://host:port[/prefix]` of a Segment-compatible collector.
    pub target: String,
    /// Write key (sent as Basic auth user).
    pub write_key: String,
    /// Events per second; 0 = as fast as the target acknowledges.
    pub rate: u64,
    /// How long to send.
    pub duration: Duration,
    /// Events per request.
    pub batch: usize,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Seed of the simulated world.
    pub seed: u64,
    /// Users of the simulated world.
    pub users: u32,
    /// Simulated days (the window ends at today 00:00 UTC).
    pub days: u32,
    /// Mean events per active user per simulated day.
    pub events_per_user: u32,
    /// Stop after this many events even if `duration` has not passed.
    pub max_events: Option<u64>,
    /// The first simulated day (default: `days` days before today, so the window ends
    /// yesterday).
    pub start_date: Option<chrono::NaiveDate>,
}

impl DriveOptions {
    /// Options with the defaults of `strata sim`.
    pub fn new(target: &str, write_key: &str) -> DriveOptions {
        DriveOptions {
            target: target.to_string(),
            write_key: write_key.to_string(),
            rate: 1000,
            duration: Duration::from_secs(60),
            batch: 100,
            connections: 8,
            seed: 1,
            users: 10_000,
            days: 1,
            events_per_user: WorldConfig::ending_today(1, 1, 1).events_per_user,
            max_events: None,
            start_date: None,
        }
    }

    /// The simulated world these options send from.
    pub fn world_config(&self) -> WorldConfig {
        let mut c = WorldConfig {
            events_per_user: self.events_per_user,
            ..WorldConfig::ending_today(self.seed, self.users, self.days)
        };
        if let Some(start) = self.start_date {
            c.start_date = start;
        }
        c
    }

    /// Checks the options without contacting anything.
    pub fn validate(&self) -> Result<()> {
        Target::parse(&self.target)?;
        if self.batch == 0 || self.batch > 10_000 {
            return Err(Error::Config("batch must be between 1 and 10,000".into()));
        }
        if self.connections == 0 || self.connections > 1024 {
            return Err(Error::Config(
                "connections must be between 1 and 1024".into(),
            ));
        }
        self.world_config().validate()
    }
}

/// Live counters of a running drive (read them for progress lines).
#[derive(Debug, Default)]
pub struct DriveStats {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    stop: AtomicBool,
}

/// A copy of [`DriveStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events put on the wire (first attempts).
    pub sent: u64,
    /// Events in requests answered 2xx.
    pub acked: u64,
    /// Events given up on (non-retryable answer or retries exhausted).
    pub failed: u64,
    /// Requests answered 2xx.
    pub requests: u64,
    /// Retried attempts.
    pub retries: u64,
}

impl DriveStats {
    /// Asks the drive to stop producing (in-flight batches still finish). E.g. on Ctrl-C.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// What a drive did.
#[derive(Debug, Clone, PartialEq)]
pub struct DriveReport {
    /// Final counters.
    pub stats: StatsSnapshot,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Acknowledged events per second over `elapsed`.
    pub events_per_sec: f64,
    /// Ack latency percentiles of acknowledged requests, milliseconds (NaN when none).
    pub latency_p50_ms: f64,
    /// 99th percentile.
    pub latency_p99_ms: f64,
    /// 99.9th percentile.
    pub latency_p999_ms: f64,
}

/// Drives `target` with the default world size (see [`DriveOptions::new`]).
pub async fn drive(
    target: &str,
    write_key: &str,
    rate: u64,
    duration: Duration,
    batch: usize,
    connections: usize,
    seed: u64,
) -> Result<DriveReport> {
    let opts = DriveOptions {
        rate,
        duration,
        batch,
        connections,
        seed,
        ..DriveOptions::new(target, write_key)
    };
    drive_with(&opts, Arc::new(DriveStats::default())).await
}

/// A batch body and how many events it holds.
struct Batch {
    body: Vec<u8>,
    events: u64,
}

/// Drives with full options; `stats` is updated live.
pub async fn drive_with(opts: &DriveOptions, stats: Arc<DriveStats>) -> Result<DriveReport> {
    opts.validate()?;
    let target = Target::parse(&opts.target)?;
    let config = opts.world_config();
    let world = tokio::task::spawn_blocking(move || World::generate(&config))
        .await
        .map_err(|e| Error::Internal(format!("world generation: {e}")))?;
    let world = Arc::new(world);

    let (tx, rx) = mpsc::channel::<Batch>(opts.connections * 2);
    let start = Instant::now();
    let generator = {
        let (world, stats, opts) = (world.clone(), stats.clone(), opts.clone());
        std::thread::Builder::new()
            .name("strata-sim-gen".into())
            .spawn(move || generate(&world, &opts, start, &stats.stop, tx))
            .map_err(Error::Io)?
    };

    let rx = Arc::new(Mutex::new(rx));
    let auth = Arc::new(basic_auth(&opts.write_key));
    let path = Arc::new(format!("{}/v1/batch", target.prefix));
    let target = Arc::new(target);
    let mut workers = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections {
        let (rx, auth, path, target, stats) = (
            rx.clone(),
            auth.clone(),
            path.clone(),
            target.clone(),
            stats.clone(),
        );
        workers.push(tokio::spawn(async move {
            worker(&rx, &target, &path, &auth, &stats).await
        }));
    }
    let mut hist = Histogram::default();
    let mut worker_error = None;
    for w in workers {
        match w.await {
            Ok(h) => hist.merge(&h),
            Err(e) => worker_error = Some(Error::Internal(format!("worker: {e}"))),
        }
    }
    let elapsed = start.elapsed();
    let _ = tokio::task::spawn_blocking(move || generator.join()).await;
    if let Some(e) = worker_error {
        return Err(e);
    }
    let snapshot = stats.snapshot();
    Ok(DriveReport {
        stats: snapshot,
        elapsed,
        events_per_sec: snapshot.acked as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_p50_ms: hist.percentile_ms(0.5),
        latency_p99_ms: hist.percentile_ms(0.99),
        latency_p999_ms: hist.percentile_ms(0.999),
    })
}

/// The generator thread: serializes batches and paces them with a token bucket.
fn generate(
    world: &World,
    opts: &DriveOptions,
    start: Instant,
    stop: &AtomicBool,
    tx: mpsc::Sender<Batch>,
) {
    let deadline = start + opts.duration;
    let limit = opts.max_events.unwrap_or(u64::MAX);
    let rate = opts.rate as f64;
    let burst = (rate / 10.0).max(opts.batch as f64);
    let mut tokens = opts.batch as f64;
    let mut last = Instant::now();
    let mut produced = 0u64;
    let mut lap = 0u64;
    'laps: loop {
        let prefix = if lap == 0 {
            format!("sim-{}-", opts.seed)
        } else {
            format!("sim-{}-r{lap}-", opts.seed)
        };
        let mut stream = world.events_with_prefix(&prefix).peekable();
        if stream.peek().is_none() {
            return;
        }
        loop {
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline || produced >= limit {
                return;
            }
            let want = (opts.batch as u64).min(limit - produced) as usize;
            let mut body = Vec::with_capacity(want * 600 + 16);
            body.extend_from_slice(b"{\"batch\":[");
            let mut n = 0usize;
            while n < want {
                let Some(event) = stream.next() else { break };
                if n > 0 {
                    body.push(b',');
                }
                if serde_json::to_writer(&mut body, &event).is_err() {
                    continue;
                }
                n += 1;
            }
            body.extend_from_slice(b"]}");
            if n > 0 {
                if rate > 0.0 {
                    // Token bucket: refill, then wait only for the missing tokens.
                    let now = Instant::now();
                    tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
                    last = now;
                    if tokens < n as f64 {
                        let wait = (n as f64 - tokens) / rate;
                        std::thread::sleep(Duration::from_secs_f64(wait));
                        tokens = n as f64;
                        last = Instant::now();
                    }
                    tokens -= n as f64;
                    if Instant::now() >= deadline {
                        return;
                    }
                }
                produced += n as u64;
                let batch = Batch {
                    body,
                    events: n as u64,
                };
                if tx.blocking_send(batch).is_err() {
                    return;
                }
            }
            if n < want {
                lap += 1;
                continue 'laps;
            }
        }
    }
}

/// A sender: takes batches until the generator is done, sends each with retries.
async fn worker(
    rx: &Mutex<mpsc::Receiver<Batch>>,
    target: &Target,
    path: &str,
    auth: &str,
    stats: &DriveStats,
) -> Histogram {
    let mut hist = Histogram::default();
    let mut conn: Option<Conn> = None;
    loop {
        let next = rx.lock().await.recv().await;
        let Some(batch) = next else { break };
        stats.sent.fetch_add(batch.events, Ordering::Relaxed);
        let mut acked = false;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                let backoff = BASE_BACKOFF.saturating_mul(1 << (attempt - 1).min(10));
                tokio::time::sleep(backoff.min(MAX_BACKOFF)).await;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Conn::connect(target).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::debug!(error = %e, "connect failed");
                        continue;
                    }
                },
            };
            let sent_at = Instant::now();
            let result = c.post(path, auth, &batch.body).await;
            if c.closed || result.is_err() {
                conn = None;
            }
            match result {
                Ok(status) if (200..300).contains(&status) => {
                    hist.record(sent_at.elapsed());
                    acked = true;
                    break;
                }
                Ok(status) if status == 429 || status >= 500 => {
                    tracing::debug!(status, attempt, "target busy, retrying");
                }
                Ok(status) => {
                    tracing::warn!(status, events = batch.events, "batch refused");
                    break;
                }
                Err(e) => tracing::debug!(error = %e, attempt, "request failed"),
            }
        }
        if acked {
            stats.acked.fetch_add(batch.events, Ordering::Relaxed);
            stats.requests.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(batch.events, Ordering::Relaxed);
        }
    }
    hist
}

/// Log-linear latency histogram in microseconds: exact below 64 µs, then 32 buckets per
/// power of two (about 3% resolution). Fixed size, whatever the run length.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB_BUCKETS: u64 = 32;
const BUCKETS: usize = 64 + 58 * SUB_BUCKETS as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < 64 {
            return us as usize;
        }
        let e = 63 - u64::from(us.leading_zeros()); // >= 6
        let m = (us >> (e - 5)) & (SUB_BUCKETS - 1);
        ((64 + (e - 6) * SUB_BUCKETS + m) as usize).min(BUCKETS - 1)
    }

    fn lower_bound(index: usize) -> u64 {
        let i = index as u64;
        if i < 64 {
            return i;
        }
        let e = (i - 64) / SUB_BUCKETS + 6;
        let m = (i - 64) % SUB_BUCKETS;
        (SUB_BUCKETS + m) << (e - 5)
    }

    /// Adds one observation.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[Self::index(us)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's observations.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `p` quantile (0..=1) in milliseconds; NaN when empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower_bound(i) as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_resolution() {
        for us in [
            0u64, 1, 63, 64, 65, 100, 1000, 12_345, 1_000_000, 60_000_000,
        ] {
            let lb = Histogram::lower_bound(Histogram::index(us));
            assert!(lb <= us, "{us} -> {lb}");
            assert!(us - lb <= us / 30 + 1, "{us} -> {lb}");
        }
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.percentile_ms(0.5);
        assert!((480.0..=500.0).contains(&p50), "{p50}");
        assert!(h.percentile_ms(0.999) <= 1000.0);
        assert!(Histogram::default().percentile_ms(0.5).is_nan());
    }
}
