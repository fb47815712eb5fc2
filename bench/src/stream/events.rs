//! `Post Clicked` events as a Segment SDK sends them (`POST /v1/batch`), and the open-loop
//! background load of many users clicking.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::mix;
use crate::features::load::{AnswerFn, OpenLoop};

/// The `Authorization` header of a write key (Segment's basic auth, key as user name).
pub fn basic_auth(write_key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
    )
}

/// One `Post Clicked` track event (no `timestamp`: the event time is the collector's receive
/// time, as for an SDK whose clock is right).
pub fn write_click(out: &mut Vec<u8>, message_id: &str, user: u64, post: u64, position: u64) {
    let _ = write!(
        out,
        "{{\"type\":\"track\",\"event\":\"Post Clicked\",\"messageId\":\"{message_id}\",\
         \"userId\":\"{user}\",\"context\":{{\"library\":{{\"name\":\"analytics-android\",\
         \"version\":\"4.11.3\"}},\"app\":{{\"version\":\"5.2.1\"}},\"os\":{{\"name\":\"Android\",\
         \"version\":\"14\"}}}},\"properties\":{{\"post_id\":{post},\"feed\":\"home\",\
         \"position\":{position}}}}}"
    );
}

/// A `/v1/batch` body holding one click.
pub fn one_click(message_id: &str, user: u64, post: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(400);
    out.extend_from_slice(b"{\"batch\":[");
    write_click(&mut out, message_id, user, post, 1);
    out.extend_from_slice(b"]}");
    out
}

/// The background: batches of `batch` clicks, each by one of `users` users (ids 1..=users) on
/// one of `posts` posts, message ids unique per run.
#[derive(Debug, Clone)]
pub struct Clicks {
    pub run: String,
    pub batch: usize,
    pub users: u64,
    pub posts: u64,
}

impl Clicks {
    /// The body of request `i`.
    pub fn body(&self, i: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.batch * 330 + 16);
        out.extend_from_slice(b"{\"batch\":[");
        for j in 0..self.batch as u64 {
            if j > 0 {
                out.push(b',');
            }
            let h = mix(i.wrapping_mul(1_000_003).wrapping_add(j));
            let user = 1 + h % self.users.max(1);
            let post = 1 + (h >> 32) % self.posts.max(1);
            let id = format!("{}-{i}-{j}", self.run);
            write_click(&mut out, &id, user, post, 1 + j % 20);
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// What the background load did.
#[derive(Debug)]
pub struct Background {
    pub target_events_per_sec: f64,
    /// `OpenLoop` figures (requests; latency from each request's due time).
    pub figures: Value,
    pub events_acked: u64,
    pub events_per_sec: f64,
    /// Events the collector refused in answers that were 200 (a risk block, a bad event).
    pub events_rejected: u64,
}

impl Background {
    pub fn to_json(&self) -> Value {
        json!({
            "target_events_per_sec": self.target_events_per_sec,
            "events_per_sec": self.events_per_sec,
            "events_acked": self.events_acked,
            "events_rejected": self.events_rejected,
            "requests": self.figures,
        })
    }
}

/// Open-loop background clicks at `events_per_sec` for `duration` over `connections`.
pub async fn background(
    addr: SocketAddr,
    auth: &str,
    clicks: Clicks,
    events_per_sec: f64,
    duration: Duration,
    connections: usize,
) -> Result<Background> {
    let batch = clicks.batch.max(1);
    let rate = events_per_sec / batch as f64;
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let (acc, rej) = (accepted.clone(), rejected.clone());
    let on_answer: AnswerFn = Arc::new(move |body: &[u8]| {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            acc.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
            rej.fetch_add(v["rejected"].as_u64().unwrap_or(0), Ordering::Relaxed);
        }
    });
    let clicks = Arc::new(clicks);
    let run = OpenLoop {
        addr,
        path: "/v1/batch".into(),
        auth: auth.to_string(),
        rate,
        duration,
        connections,
        max_requests: None,
        body: Arc::new(move |i| clicks.body(i)),
        get: None,
        on_answer: Some(on_answer),
    }
    .run()
    .await?;
    // Over the run's length at least: the last requests are due just before its end.
    let secs = run.elapsed.max(duration).as_secs_f64().max(1e-9);
    let events_acked = accepted.load(Ordering::Relaxed);
    Ok(Background {
        target_events_per_sec: events_per_sec,
        figures: run.figures(rate),
        events_acked,
        events_per_sec: events_acked as f64 / secs,
        events_rejected: rejected.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_segment_batches_of_clicks() {
        let c = Clicks {
            run: "r".into(),
            batch: 50,
            users: 1000,
            posts: 10,
        };
        let v: Value = serde_json::from_slice(&c.body(7)).unwrap();
        let batch = v["batch"].as_array().unwrap();
        assert_eq!(batch.len(), 50);
        assert_eq!(batch[3]["messageId"], "r-7-3");
        assert_eq!(batch[3]["event"], "Post Clicked");
        let user: u64 = batch[3]["userId"].as_str().unwrap().parse().unwrap();
        assert!((1..=1000).contains(&user));
        assert!((1..=10).contains(&batch[3]["properties"]["post_id"].as_u64().unwrap()));
        let one: Value = serde_json::from_slice(&one_click("m", 5, 9)).unwrap();
        assert_eq!(one["batch"][0]["userId"], "5");
        assert_eq!(one["batch"][0]["properties"]["post_id"], 9);
    }
}
