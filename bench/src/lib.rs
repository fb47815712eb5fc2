//! Shared parts of the benchmark harness: a keep-alive HTTP/1.1 load generator that sends
//! Segment batches with unique message ids, latency statistics, memory figures, the MERGE
//! benchmark ([`merge`]) and the suite's report ([`suite`]).

pub mod cdc;
pub mod demo;
pub mod features;
pub mod merge;
pub mod stream;
pub mod suite;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Width of the request counter patched into each message id.
const ID_DIGITS: usize = 12;

/// A Segment batch body with `events` track events of about `event_bytes` each. Message ids are
/// `<run>-<12-digit request number>-<index>`; [`BatchTemplate::render`] patches the request
/// number in place so making a new unique body costs one memcpy.
pub struct BatchTemplate {
    body: Vec<u8>,
    /// Byte offsets of each message id's request-number field.
    slots: Vec<usize>,
}

impl BatchTemplate {
    pub fn new(run: &str, events: usize, event_bytes: usize) -> BatchTemplate {
        let placeholder = "0".repeat(ID_DIGITS);
        let mut body = String::from("{\"batch\":[");
        let mut slots = Vec::with_capacity(events);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for i in 0..events {
            if i > 0 {
                body.push(',');
            }
            let start = body.len();
            body.push_str("{\"type\":\"track\",\"event\":\"Post Viewed\",\"messageId\":\"");
            body.push_str(run);
            body.push('-');
            slots.push(body.len());
            body.push_str(&placeholder);
            body.push_str(&format!(
                "-{i}\",\"userId\":\"user-{}\",\"timestamp\":\"{now}\",\"context\":{{\"userAgent\":\"Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36\",\"app\":{{\"version\":\"5.2.1\"}}}},\"properties\":{{\"post_id\":{},\"feed\":\"home\",\"pad\":\"",
                (i * 7919) % 100_000,
                i * 31
            ));
            let used = body.len() - start;
            let pad = event_bytes.saturating_sub(used + 3);
            body.push_str(&"x".repeat(pad));
            body.push_str("\"}}");
        }
        body.push_str(&format!("],\"sentAt\":\"{now}\"}}"));
        BatchTemplate {
            body: body.into_bytes(),
            slots,
        }
    }

    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    pub fn events(&self) -> usize {
        self.slots.len()
    }

    /// The body for request number `n` (unique message ids per `n`).
    pub fn render(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.body);
        let digits = format!("{n:0width$}", width = ID_DIGITS);
        for &slot in &self.slots {
            out[slot..slot + ID_DIGITS].copy_from_slice(digits.as_bytes());
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub events_acked: u64,
    pub elapsed: Duration,
    /// Ack latency of successful requests, sorted, microseconds.
    pub latencies_us: Vec<u64>,
}

impl LoadResult {
    pub fn events_per_sec(&self) -> f64 {
        self.events_acked as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[idx.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }
}

/// Sends batches over `connections` keep-alive connections for `duration`.
pub async fn run_load(
    addr: SocketAddr,
    write_key: &str,
    template: Arc<BatchTemplate>,
    connections: usize,
    duration: Duration,
    first_request: u64,
) -> Result<LoadResult> {
    let counter = Arc::new(AtomicU64::new(first_request));
    let auth = basic(write_key);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let template = template.clone();
        let counter = counter.clone();
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut failed = 0u64;
            let mut lat = Vec::new();
            let mut body = Vec::with_capacity(template.len());
            let mut conn: Option<Conn> = None;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                template.render(n, &mut body);
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match Conn::connect(addr).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let t = Instant::now();
                match c.post("/v1/batch", &auth, &body).await {
                    Ok(200) => {
                        ok += 1;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    Ok(503) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(_) => failed += 1,
                    Err(_) => {
                        failed += 1;
                        conn = None;
                    }
                }
            }
            (ok, failed, lat)
        }));
    }
    let mut result = LoadResult {
        requests_ok: 0,
        requests_failed: 0,
        events_acked: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (ok, failed, lat) = t.await.context("load task")?;
        result.requests_ok += ok;
        result.requests_failed += failed;
        result.latencies_us.extend(lat);
    }
    result.elapsed = start.elapsed();
    result.events_acked = result.requests_ok * template.events() as u64;
    result.latencies_us.sort_unstable();
    Ok(result)
}

fn basic(key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
    line: String,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
            addr,
            line: String::new(),
        })
    }

    /// The address the connection goes to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// POSTs `body`, returns the status and the response body.
    pub async fn post_read(
        &mut self,
        path: &str,
        auth: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let (status, len) = self.read_status_and_headers().await?;
        let mut out = vec![0u8; len];
        self.reader.read_exact(&mut out).await?;
        Ok((status, out))
    }

    /// POSTs `body`, reads the whole response, returns the status.
    pub async fn post(&mut self, path: &str, auth: &str, body: &[u8]) -> Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        self.read_response().await
    }

    /// GETs `path` with an `Authorization` header, returns the status and the response body.
    pub async fn get_read(&mut self, path: &str, auth: &str) -> Result<(u16, Vec<u8>)> {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\n\r\n",
            self.addr
        );
        self.reader.get_mut().write_all(head.as_bytes()).await?;
        let (status, len) = self.read_status_and_headers().await?;
        let mut out = vec![0u8; len];
        self.reader.read_exact(&mut out).await?;
        Ok((status, out))
    }

    pub async fn get(&mut self, path: &str) -> Result<(u16, String)> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.reader.get_mut().write_all(head.as_bytes()).await?;
        let status = self.read_status_and_headers().await?;
        let mut body = vec![0u8; status.1];
        self.reader.read_exact(&mut body).await?;
        Ok((status.0, String::from_utf8_lossy(&body).into_owned()))
    }

    async fn read_response(&mut self) -> Result<u16> {
        let (status, len) = self.read_status_and_headers().await?;
        let mut rest = len;
        let mut sink = [0u8; 4096];
        while rest > 0 {
            let n = rest.min(sink.len());
            self.reader.read_exact(&mut sink[..n]).await?;
            rest -= n;
        }
        Ok(status)
    }

    async fn read_status_and_headers(&mut self) -> Result<(u16, usize)> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).await? == 0 {
            bail!("connection closed");
        }
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let mut len = 0usize;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).await? == 0 {
                bail!("connection closed in headers");
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not supported by this client");
                }
            }
        }
        Ok((status, len))
    }
}

/// Peak resident set size (VmHWM) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(&format!("/proc/{pid}/status"), "VmHWM:")
}

fn status_mib(path: &str, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// This process's (current, peak) resident set size in MiB (VmRSS, VmHWM); NaN if unknown.
pub fn self_rss_mib() -> (f64, f64) {
    (
        status_mib("/proc/self/status", "VmRSS:").unwrap_or(f64::NAN),
        status_mib("/proc/self/status", "VmHWM:").unwrap_or(f64::NAN),
    )
}

/// Resets this process's peak RSS to its current RSS (Linux `clear_refs` 5), so the next
/// [`self_rss_mib`] peak covers only what ran in between. `false` if the kernel refused, in
/// which case the peak is the process's lifetime peak.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The machine the figures come from.
pub fn machine(note: &str) -> serde_json::Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let mem_gib = status_mib("/proc/meminfo", "MemTotal:").map(|m| (m / 1024.0).round());
    serde_json::json!({"cpus": cpus, "cpu": model, "memory_gib": mem_gib, "note": note})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_renders_unique_valid_json() {
        let t = BatchTemplate::new("r1", 100, 400);
        let mut a = Vec::new();
        let mut b = Vec::new();
        t.render(1, &mut a);
        t.render(2, &mut b);
        let va: serde_json::Value = serde_json::from_slice(&a).unwrap();
        let vb: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let batch = va["batch"].as_array().unwrap();
        assert_eq!(batch.len(), 100);
        assert_ne!(batch[0]["messageId"], vb["batch"][0]["messageId"]);
        let per_event = a.len() / 100;
        assert!(
            (380..=440).contains(&per_event),
            "{per_event} bytes per event"
        );
    }
}
