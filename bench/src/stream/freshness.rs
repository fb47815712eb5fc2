//! Freshness probes: a click for a probe user with a post id never used before; once the
//! collector acknowledged it, the probe reads `GET /v1/features/user_realtime/{user}` every
//! ~1 ms until `last_5_clicked_post_ids` holds that post. Latency: acknowledged → visible
//! (and sent → visible).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::events::one_click;
use super::summary_ms;
use crate::Conn;

/// Probe users: ids far above the background's, one per probe in turn over this many (each
/// gets a click every `PROBE_USERS / rate` seconds, far below the risk rule's rate).
pub const PROBE_USER_BASE: u64 = 900_000_000;
const PROBE_USERS: u64 = 1000;
/// How long a probe waits for its click before it counts as not visible.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how the probes run.
#[derive(Debug, Clone)]
pub struct Probes {
    pub addr: SocketAddr,
    /// `Basic …` of the write key.
    pub write_auth: String,
    /// `Bearer …` of a serve token.
    pub read_auth: String,
    /// Probes per second (open loop: probe `i` is due at start + i / rate).
    pub rate: f64,
    pub duration: Duration,
    /// Probes in flight at most (each with its own two connections).
    pub workers: usize,
    /// Post ids `post_base + i`: unique across the runs of one server.
    pub post_base: u64,
    /// Message-id prefix.
    pub run: String,
}

/// What the probes measured.
#[derive(Debug, Default)]
pub struct ProbeResult {
    pub sent: u64,
    /// Probes the collector did not accept (status or refusal).
    pub failed: u64,
    pub not_visible: u64,
    pub ack_to_visible_ms: Vec<f64>,
    pub send_to_visible_ms: Vec<f64>,
    pub ack_ms: Vec<f64>,
    /// Probes sent later than due by more than 5 ms (the workers were all busy).
    pub late_starts: u64,
    pub reads: u64,
}

impl ProbeResult {
    pub fn to_json(&self) -> Value {
        json!({
            "sent": self.sent,
            "failed": self.failed,
            "not_visible_within_10s": self.not_visible,
            "late_starts": self.late_starts,
            "feature_reads": self.reads,
            "ack_to_visible_ms": summary_ms(self.ack_to_visible_ms.clone()),
            "send_to_visible_ms": summary_ms(self.send_to_visible_ms.clone()),
            "probe_ack_ms": summary_ms(self.ack_ms.clone()),
        })
    }
}

/// Whether a feature answer's `last_5_clicked_post_ids` holds `post`.
pub fn shows_post(answer: &[u8], post: u64) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(answer) else {
        return false;
    };
    v["features"]["last_5_clicked_post_ids"]
        .as_array()
        .is_some_and(|ids| {
            ids.iter().any(|id| {
                id.as_u64() == Some(post) || id.as_str().is_some_and(|s| s == post.to_string())
            })
        })
}

impl Probes {
    pub async fn run(&self) -> Result<ProbeResult> {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(20);
        let end = start + self.duration;
        let mut tasks = Vec::new();
        for _ in 0..self.workers.max(1) {
            let (next, me) = (next.clone(), self.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = ProbeResult::default();
                let mut post_conn: Option<Conn> = None;
                let mut get_conn: Option<Conn> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(i as f64 / me.rate.max(1e-9));
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    if due.elapsed() > Duration::from_millis(5) {
                        out.late_starts += 1;
                    }
                    me.probe(i, &mut post_conn, &mut get_conn, &mut out).await;
                }
                out
            }));
        }
        let mut all = ProbeResult::default();
        for t in tasks {
            let r = t.await?;
            all.sent += r.sent;
            all.failed += r.failed;
            all.not_visible += r.not_visible;
            all.late_starts += r.late_starts;
            all.reads += r.reads;
            all.ack_to_visible_ms.extend(r.ack_to_visible_ms);
            all.send_to_visible_ms.extend(r.send_to_visible_ms);
            all.ack_ms.extend(r.ack_ms);
        }
        Ok(all)
    }

    async fn probe(
        &self,
        i: u64,
        post_conn: &mut Option<Conn>,
        get_conn: &mut Option<Conn>,
        out: &mut ProbeResult,
    ) {
        let user = PROBE_USER_BASE + i % PROBE_USERS;
        let post = self.post_base + i;
        let body = one_click(&format!("{}-probe-{i}", self.run), user, post);
        out.sent += 1;
        let Some(conn) = connected(post_conn, self.addr).await else {
            out.failed += 1;
            return;
        };
        let sent = Instant::now();
        let answer = conn.post_read("/v1/batch", &self.write_auth, &body).await;
        let acked = Instant::now();
        match answer {
            Ok((200, a)) => {
                let accepted = serde_json::from_slice::<Value>(&a)
                    .ok()
                    .and_then(|v| v["accepted"].as_u64());
                if accepted != Some(1) {
                    out.failed += 1;
                    return;
                }
            }
            Ok(_) => {
                out.failed += 1;
                return;
            }
            Err(_) => {
                *post_conn = None;
                out.failed += 1;
                return;
            }
        }
        out.ack_ms
            .push(acked.duration_since(sent).as_secs_f64() * 1e3);
        let path = format!("/v1/features/user_realtime/{user}");
        loop {
            if acked.elapsed() > VISIBLE_TIMEOUT {
                out.not_visible += 1;
                return;
            }
            if let Some(conn) = connected(get_conn, self.addr).await {
                out.reads += 1;
                match conn.get_read(&path, &self.read_auth).await {
                    Ok((200, a)) if shows_post(&a, post) => {
                        let visible = Instant::now();
                        out.ack_to_visible_ms
                            .push(visible.duration_since(acked).as_secs_f64() * 1e3);
                        out.send_to_visible_ms
                            .push(visible.duration_since(sent).as_secs_f64() * 1e3);
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => *get_conn = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The open connection in `slot`, or a new one (`None` if it cannot connect).
async fn connected(slot: &mut Option<Conn>, addr: SocketAddr) -> Option<&mut Conn> {
    if slot.is_none() {
        *slot = Conn::connect(addr).await.ok();
    }
    slot.as_mut()
}

/// Waits until one probe's click is visible (the realtime consumer runs and has caught up):
/// its ack → visible time in ms.
pub async fn wait_visible(
    addr: SocketAddr,
    write_auth: &str,
    read_auth: &str,
    post: u64,
    limit: Duration,
) -> Result<f64> {
    let started = Instant::now();
    let mut conn = loop {
        match Conn::connect(addr).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() > limit => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let user = PROBE_USER_BASE + PROBE_USERS + 1;
    let body = one_click(&format!("ready-{post}"), user, post);
    let acked = loop {
        match conn.post_read("/v1/batch", write_auth, &body).await {
            Ok((200, _)) => break Instant::now(),
            Ok((status, a)) if started.elapsed() > limit => anyhow::bail!(
                "the collector answered {status}: {}",
                String::from_utf8_lossy(&a)
            ),
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(e),
        }
    };
    let path = format!("/v1/features/user_realtime/{user}");
    loop {
        let (status, a) = conn.get_read(&path, read_auth).await?;
        if status == 200 && shows_post(&a, post) {
            return Ok(acked.elapsed().as_secs_f64() * 1e3);
        }
        if started.elapsed() > limit {
            anyhow::bail!(
                "the ready probe's click was not in user_realtime within {limit:?} (last answer {status}: {})",
                String::from_utf8_lossy(&a)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_shows_as_number_or_text() {
        let a = br#"{"features":{"clicks_5m":3,"last_5_clicked_post_ids":[7,12]}}"#;
        assert!(shows_post(a, 12));
        assert!(!shows_post(a, 13));
        let b = br#"{"features":{"last_5_clicked_post_ids":["12"]}}"#;
        assert!(shows_post(b, 12));
        assert!(!shows_post(br#"{"features":null}"#, 12));
    }
}
