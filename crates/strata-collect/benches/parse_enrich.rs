//! The collector's CPU cost per event, without the bus: a Segment `/v1/batch` request of 100
//! track events (about 600 B each, with a real user agent) through the real router in-process —
//! auth, JSON parse, validation, enrichment (user-agent parse through its cache, client IP; no
//! geo database configured: its lookup is once per request), dedup and the bus record
//! encoding — into a log that only counts what it is given. Prints events/s on one core
//! besides criterion's report: the ceiling the collector puts on ingest before any fsync.
//! Measured three times in the same run: as is, with `[collector.pii]` hashing four fields of
//! every event (user id, anonymous id, a property, the user agent), and with a JSON Schema
//! registered for the events' subject (`Post Viewed`: four typed properties, one an enum) so
//! every event is validated (issue #28: validation may cost at most 10 % of ingest).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "criterion bench: a failed setup stops the measurement, and its closures cannot return errors"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata_bus::{Log, Offsets, Partition, Position, Record, StoredRecord};
use strata_collect::config::CollectorOptions as Config;
use strata_collect::Collector;
use strata_core::apps::{App, Apps};
use tower::ServiceExt;

const EVENTS: usize = 100;
const WRITE_KEY: &str = "wk_bench";
const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

/// Accepts every append and counts the records; reads see an empty log.
#[derive(Default)]
struct CountingLog(AtomicU64);

#[async_trait]
impl Log for CountingLog {
    async fn ensure_topic(&self, _: &str, _: u32) -> strata_bus::Result<()> {
        Ok(())
    }
    async fn partitions(&self, _: &str) -> strata_bus::Result<u32> {
        Ok(1)
    }
    async fn append(&self, _: &str, records: Vec<Record>) -> strata_bus::Result<Vec<Position>> {
        let first = self.0.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok((0..records.len() as u64)
            .map(|i| Position {
                partition: 0,
                offset: first + i,
            })
            .collect())
    }
    async fn read(
        &self,
        _: &str,
        _: Partition,
        _: u64,
        _: usize,
        _: usize,
    ) -> strata_bus::Result<Vec<StoredRecord>> {
        Ok(Vec::new())
    }
    async fn wait_for(&self, _: &str, _: Partition, _: u64, t: Duration) -> strata_bus::Result<()> {
        tokio::time::sleep(t).await;
        Ok(())
    }
    async fn end_offsets(&self, _: &str) -> strata_bus::Result<Offsets> {
        Ok(Offsets::new())
    }
    async fn start_offsets(&self, _: &str) -> strata_bus::Result<Offsets> {
        Ok(Offsets::new())
    }
    async fn commit(&self, _: &str, _: &str, _: &Offsets) -> strata_bus::Result<()> {
        Ok(())
    }
    async fn committed(&self, _: &str, _: &str) -> strata_bus::Result<Offsets> {
        Ok(Offsets::new())
    }
    async fn close(&self) -> strata_bus::Result<()> {
        Ok(())
    }
}

/// A `/v1/batch` body of [`EVENTS`] track events with message ids unique to `batch`.
fn body(batch: u64) -> Vec<u8> {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            format!(
                r#"{{"type":"track","event":"Post Viewed","messageId":"b{batch}-{i}","userId":"user-{u}","anonymousId":"anon-{u}","timestamp":"2026-11-22T10:{m:02}:00.000Z","properties":{{"post_id":{p},"dwell_ms":{d},"position":{i},"feed":"home"}},"context":{{"app":{{"version":"5.12.0","build":"5120"}},"library":{{"name":"analytics-ios","version":"4.1.8"}},"locale":"fr-FR","timezone":"Europe/Paris","userAgent":"{UA}","device":{{"model":"iPhone15,2"}}}}}}"#,
                u = (batch * 7 + i as u64) % 10_000,
                m = i % 60,
                p = (batch * 31 + i as u64) % 50_000,
                d = 1000 + i * 13,
            )
        })
        .collect();
    format!(
        r#"{{"batch":[{}],"sentAt":"2026-11-22T10:59:59.000Z"}}"#,
        events.join(",")
    )
    .into_bytes()
}

/// Paths hashed in the PII variant: two ids, a nested property and a context column.
const PII_PATHS: [&str; 4] = [
    "userId",
    "anonymousId",
    "properties.post_id",
    "context.userAgent",
];

/// The schema of the schema variant: every property of the bench's events, typed.
const SCHEMA: &str = r#"{"type":"object","required":["post_id","feed"],"properties":{
    "post_id":{"type":"integer","minimum":0},"dwell_ms":{"type":"integer","minimum":0},
    "position":{"type":"integer"},"feed":{"type":"string","enum":["home","following","trending"]}}}"#;

/// What a variant adds to the plain collector.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Plain,
    Pii,
    Schema,
}

fn collector(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    variant: Variant,
) -> (axum::Router, Arc<CountingLog>) {
    let pii = variant == Variant::Pii;
    if variant == Variant::Schema {
        let registry = strata_schema::Registry::open(dir, Default::default()).unwrap();
        registry.register("Post Viewed", SCHEMA).unwrap();
    }
    let mut apps = Apps::default();
    apps.add(App {
        name: "bench".into(),
        write_key: WRITE_KEY.into(),
        secret: None,
        created_at: "2026-11-22T00:00:00Z".into(),
    })
    .unwrap();
    let mut config = Config::new(dir);
    apps.save(&config.apps_path()).unwrap();
    // Events dated 2026-11-22 stay valid whenever the bench runs.
    config.collector.max_event_age = Duration::from_secs(3650 * 86_400);
    if pii {
        let key = dir.parent().unwrap_or(dir).join("bench-pii.key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
        config.collector.pii.key_file = Some(key);
        config.collector.pii.paths = PII_PATHS.iter().map(|p| p.to_string()).collect();
    }
    let log = Arc::new(CountingLog::default());
    let c = rt
        .block_on(Collector::new(&config, log.clone() as Arc<dyn Log>))
        .unwrap();
    (c.router(), log)
}

fn request(body: Vec<u8>) -> Request<Body> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"));
    let mut req = Request::post("/v1/batch")
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {auth}"))
        .header("user-agent", UA)
        .body(Body::from(body))
        .unwrap();
    let peer: SocketAddr = "81.2.69.160:52000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn parse_enrich(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let variants: Vec<_> = [
        (Variant::Plain, "batch_100_track_events"),
        (Variant::Pii, "batch_100_track_events_pii"),
        (Variant::Schema, "batch_100_track_events_schema"),
    ]
    .into_iter()
    .map(|(variant, name)| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (router, log) = collector(&rt, &dir, variant);
        (variant, name, router, log, AtomicU64::new(0))
    })
    .collect();
    let bytes = body(0).len();

    // A plain measurement first: bodies prepared up front, then sent one after another; the
    // variants alternate for three rounds and the best round of each counts (the machine may
    // be shared).
    let mut best = [Duration::MAX; 3];
    for _round in 0..3 {
        for (i, (_, _, router, log, next)) in variants.iter().enumerate() {
            let requests: Vec<_> = (0..2_000)
                .map(|_| request(body(next.fetch_add(1, Ordering::Relaxed))))
                .collect();
            let before = log.0.load(Ordering::Relaxed);
            let start = Instant::now();
            rt.block_on(async {
                for req in requests {
                    let res = router.clone().oneshot(req).await.unwrap();
                    assert_eq!(res.status(), 200);
                }
            });
            best[i] = best[i].min(start.elapsed());
            assert_eq!(
                log.0.load(Ordering::Relaxed) - before,
                (2_000 * EVENTS) as u64
            );
        }
    }
    let events = 2_000 * EVENTS;
    for ((variant, ..), elapsed) in variants.iter().zip(best) {
        let what = match variant {
            Variant::Plain => "",
            Variant::Pii => ", 4 pii fields hashed",
            Variant::Schema => ", every event validated against its schema",
        };
        println!(
            "collector parse + validate + enrich + encode (no bus{what}): {events} events in {elapsed:.2?} (best of 3): {:.0} events/s on one core, {:.1} µs/event, {bytes} B per {EVENTS}-event request",
            events as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / events as f64,
        );
    }
    println!(
        "pii hashing costs {:.2}x the time of the same requests without it",
        best[1].as_secs_f64() / best[0].as_secs_f64()
    );
    println!(
        "schema validation costs {:.2}x the time of the same requests without it (collector CPU only, no bus)",
        best[2].as_secs_f64() / best[0].as_secs_f64()
    );

    let mut group = c.benchmark_group("collector");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (_, name, router, _, next) in &variants {
        let fresh = || request(body(next.fetch_add(1, Ordering::Relaxed)));
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter_batched(
                fresh,
                |req| {
                    let router = router.clone();
                    async move {
                        let res = router.oneshot(req).await.unwrap();
                        assert_eq!(res.status(), 200);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, parse_enrich);
criterion_main!(benches);
