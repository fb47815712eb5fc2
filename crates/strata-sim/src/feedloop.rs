//! Feed mode: simulated users read a running Strata's feeds and react to them.
//!
//! Each session picks a user, asks `GET /v1/feed` for `n` items, lets the user react to the
//! list with the hidden preferences ([`World::react`]: the same click, like and dwell chances
//! as the organic feed, position included), and sends what happened through the collector
//! like the app would: a `Feed Impression` per item shown, `Post Clicked`, `Dwell` and
//! `Post Liked` for the items engaged, each carrying the feed's `request_id`. Sessions are
//! spread over one simulated day, so the lake gets that day's behaviour under Strata's own
//! recommendations, and the next day's models train on it.
//!
//! The report counts, per experiment variant, feeds, impressions, clicks and likes, and the
//! expected clicks of the lists under the hidden preferences (the noise-free CTR).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::http::{basic_auth, Conn, Target};
use crate::rng::Rng;
use crate::world::World;

/// Stream tag of the session draws.
const TAG_SESSIONS: u64 = 0xFEED_5E55;

/// What to run.
#[derive(Debug, Clone)]
pub struct FeedLoopOptions {
    /// Base URL of the server answering `GET /v1/feed`.
    pub feed_url: String,
    /// Bearer token with the serve scope.
    pub token: String,
    /// Base URL of the collector (often the same server).
    pub target: String,
    pub write_key: String,
    /// Feed requests.
    pub sessions: u64,
    /// Items per feed.
    pub n: usize,
    /// The simulated day the sessions are spread over (its midnight, µs since the epoch). A
    /// day that has begun is spread over its past only: a collector rejects events from the
    /// future.
    pub day_start_micros: i64,
    /// Seeds which users read and how they react.
    pub seed: u64,
    /// Concurrent sessions.
    pub concurrency: usize,
    /// Surface sent with the requests.
    pub surface: String,
}

/// Counts for one experiment variant (or `-` outside an experiment).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VariantCounts {
    pub feeds: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub likes: u64,
    /// Clicks / impressions.
    pub ctr: f64,
    /// Likes / impressions.
    pub likes_per_impression: f64,
    /// Mean expected clicks per impression under the hidden preferences.
    pub expected_ctr: f64,
    #[serde(skip)]
    expected_clicks: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FeedLoopReport {
    pub sessions: u64,
    /// Feed requests that did not answer 200 (after one retry).
    pub failed: u64,
    pub events_sent: u64,
    /// Events the collector refused (and dead-lettered), with its first reason.
    pub events_rejected: u64,
    pub first_rejection: Option<String>,
    pub variants: BTreeMap<String, VariantCounts>,
    pub feed_p50_ms: f64,
    pub feed_p99_ms: f64,
    pub seconds: f64,
}

/// Runs the sessions against `world` (which must be the world the lake was built from).
pub async fn feed_loop(
    world: std::sync::Arc<World>,
    opts: &FeedLoopOptions,
) -> Result<FeedLoopReport> {
    if opts.sessions == 0 || opts.n == 0 || opts.n > 100 {
        return Err(Error::Config(
            "sessions must be positive and n between 1 and 100".into(),
        ));
    }
    let feed = Target::parse(&opts.feed_url)?;
    let collector = Target::parse(&opts.target)?;
    let now = chrono::Utc::now().timestamp_micros();
    if opts.day_start_micros > now {
        return Err(Error::Config(
            "the day has not begun: a collector rejects events from the future; pick a day up to today"
                .into(),
        ));
    }
    // The part of the day that has passed (all of it for an earlier day).
    let span = (now - opts.day_start_micros).min(86_400_000_000);
    let started = Instant::now();
    let users = world.user_count() as u64;
    let workers = opts.concurrency.clamp(1, 64) as u64;
    let mut tasks = Vec::new();
    // Each worker takes sessions w, w + workers, …; a session's user and reactions depend only
    // on (seed, session), so the run is the same whatever the concurrency.
    for w in 0..workers {
        let (feed, collector, opts, world) =
            (feed.clone(), collector.clone(), opts.clone(), world.clone());
        let day = opts.day_start_micros / 86_400_000_000;
        tasks.push(tokio::spawn(async move {
            let mut out = Partial::default();
            let mut fconn: Option<Conn> = None;
            let mut cconn: Option<Conn> = None;
            let bearer = format!("Bearer {}", opts.token);
            let basic = basic_auth(&opts.write_key);
            let mut s = w;
            while s < opts.sessions {
                let mut rng = Rng::derive(opts.seed, &[TAG_SESSIONS, s]);
                let user = 1 + rng.below(users.max(1));
                let at = opts.day_start_micros + (span * s as i64) / opts.sessions.max(1) as i64;
                let path = format!(
                    "/v1/feed?user_id={user}&n={}&surface={}",
                    opts.n, opts.surface
                );
                let t = Instant::now();
                let answer = get(&feed, &mut fconn, &path, &bearer).await;
                out.latencies.push(t.elapsed());
                let body = match answer {
                    Ok((200, body)) => body,
                    _ => {
                        out.failed += 1;
                        s += workers;
                        continue;
                    }
                };
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let request_id = v["request_id"].as_str().unwrap_or_default().to_string();
                let variant = v["experiment"]["variant"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string();
                let items: Vec<(u64, u64)> = v["items"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|i| Some((i["post_id"].as_u64()?, i["author_id"].as_u64()?)))
                    .collect();
                let posts: Vec<u64> = items.iter().map(|i| i.0).collect();
                let reactions = world.react(user, &posts, at, opts.seed ^ s);
                let expected = world.score_list(user, &posts, at).expected_clicks;
                let mut events = Vec::new();
                // The same session of the same day sends the same ids (a rerun is a retry).
                let id = |k: &str, i: usize| format!("simfeed-{}-{day}-{s}-{i}-{k}", opts.seed);
                let ts = |offset_ms: i64| crate::events::format_ts(at + offset_ms * 1000);
                let c = out.variants.entry(variant).or_default();
                c.feeds += 1;
                c.expected_clicks += expected;
                for (i, (r, &(post, author))) in reactions.iter().zip(&items).enumerate() {
                    let base = i as i64 * 2000;
                    events.push(json!({
                        "type": "track", "event": "Feed Impression", "userId": user.to_string(),
                        "messageId": id("imp", i), "timestamp": ts(base),
                        "properties": {"post_id": post, "author_id": author, "position": r.position,
                                       "feed": opts.surface, "request_id": request_id},
                    }));
                    c.impressions += 1;
                    if r.clicked {
                        c.clicks += 1;
                        events.push(json!({
                            "type": "track", "event": "Post Clicked", "userId": user.to_string(),
                            "messageId": id("click", i), "timestamp": ts(base + 500),
                            "properties": {"post_id": post, "position": r.position,
                                           "feed": opts.surface, "request_id": request_id},
                        }));
                        events.push(json!({
                            "type": "track", "event": "Dwell", "userId": user.to_string(),
                            "messageId": id("dwell", i), "timestamp": ts(base + 600 + r.dwell_ms as i64),
                            "properties": {"post_id": post, "dwell_ms": r.dwell_ms, "request_id": request_id},
                        }));
                    }
                    if r.liked {
                        c.likes += 1;
                        events.push(json!({
                            "type": "track", "event": "Post Liked", "userId": user.to_string(),
                            "messageId": id("like", i), "timestamp": ts(base + 700 + r.dwell_ms as i64),
                            "properties": {"post_id": post, "author_id": author, "request_id": request_id},
                        }));
                    }
                }
                if !events.is_empty() {
                    let body = json!({"batch": events}).to_string();
                    match post(&collector, &mut cconn, "/v1/batch", &basic, body.as_bytes()).await
                    {
                        Ok((200, answer)) => {
                            out.events += events.len() as u64;
                            let a: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                            let rejected = a["rejected"].as_u64().unwrap_or(0);
                            if rejected > 0 {
                                out.rejected += rejected;
                                if out.first_rejection.is_none() {
                                    out.first_rejection =
                                        a["errors"][0]["reason"].as_str().map(str::to_string);
                                }
                            }
                        }
                        Ok((status, _)) => {
                            return Err(Error::Http(format!(
                                "the collector answered {status} to a batch"
                            )))
                        }
                        Err(e) => return Err(e),
                    }
                }
                s += workers;
            }
            Ok(out)
        }));
    }
    let mut report = FeedLoopReport {
        sessions: opts.sessions,
        ..FeedLoopReport::default()
    };
    let mut latencies = Vec::new();
    for t in tasks {
        let part = t
            .await
            .map_err(|e| Error::Http(format!("session task: {e}")))??;
        report.failed += part.failed;
        report.events_sent += part.events;
        report.events_rejected += part.rejected;
        if report.first_rejection.is_none() {
            report.first_rejection = part.first_rejection;
        }
        latencies.extend(part.latencies);
        for (k, v) in part.variants {
            let c = report.variants.entry(k).or_default();
            c.feeds += v.feeds;
            c.impressions += v.impressions;
            c.clicks += v.clicks;
            c.likes += v.likes;
            c.expected_clicks += v.expected_clicks;
        }
    }
    for c in report.variants.values_mut() {
        let n = c.impressions.max(1) as f64;
        c.ctr = c.clicks as f64 / n;
        c.likes_per_impression = c.likes as f64 / n;
        c.expected_ctr = c.expected_clicks / n;
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    report.feed_p50_ms = pct(0.5);
    report.feed_p99_ms = pct(0.99);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[derive(Default)]
struct Partial {
    failed: u64,
    events: u64,
    rejected: u64,
    first_rejection: Option<String>,
    variants: BTreeMap<String, VariantCounts>,
    latencies: Vec<Duration>,
}

/// A GET on a kept-alive connection, reconnecting (once) when the server closed it.
async fn get(
    target: &Target,
    conn: &mut Option<Conn>,
    path: &str,
    auth: &str,
) -> Result<(u16, Vec<u8>)> {
    for attempt in 0..2 {
        if conn.as_ref().is_none_or(|c| c.closed) {
            *conn = Some(Conn::connect(target).await?);
        }
        let Some(c) = conn.as_mut() else { continue };
        match c.get(&format!("{}{path}", target.prefix), Some(auth)).await {
            Ok(r) => return Ok(r),
            Err(e) if attempt == 1 => return Err(e),
            Err(_) => *conn = None,
        }
    }
    Err(Error::Http("unreachable".into()))
}

async fn post(
    target: &Target,
    conn: &mut Option<Conn>,
    path: &str,
    auth: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    for attempt in 0..3 {
        if conn.as_ref().is_none_or(|c| c.closed) {
            *conn = Some(Conn::connect(target).await?);
        }
        let Some(c) = conn.as_mut() else { continue };
        match c
            .post_read(&format!("{}{path}", target.prefix), auth, body)
            .await
        {
            Ok((s, _)) if s == 429 || s >= 500 => {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Ok(r) => return Ok(r),
            Err(e) if attempt == 2 => return Err(e),
            Err(_) => *conn = None,
        }
    }
    Err(Error::Http("the collector kept refusing a batch".into()))
}
