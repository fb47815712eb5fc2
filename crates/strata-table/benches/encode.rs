//! The lake sink's CPU cost per event after the bus: 100k decoded events (12 event types over
//! 4 hours, realistic string columns) into per-partition Arrow builders, then each partition's
//! batch encoded as Parquet (zstd, the settings of every data file Strata writes) into memory.
//! Prints events/s for both steps besides criterion's report.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark: criterion closures cannot return errors"
)]

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use iceberg::arrow::schema_to_arrow_schema;
use parquet::arrow::ArrowWriter;
use strata_core::Event;
use strata_table::batch::{BusPosition, EventBuffer};
use strata_table::{writer_properties, OdsTable};

const EVENTS: usize = 100_000;
const NAMES: [&str; 12] = [
    "Post Viewed",
    "Post Clicked",
    "Post Liked",
    "Post Shared",
    "User Followed",
    "Session Started",
    "Session Ended",
    "Message Sent",
    "Order Completed",
    "Profile Updated",
    "Search Performed",
    "Notification Opened",
];
/// 2026-11-22 00:00:00 UTC
const T0: i64 = 1_795_305_600_000_000;

fn events() -> Vec<Event> {
    (0..EVENTS)
        .map(|i| {
            let ts = T0 + (i as i64 % 4) * 3_600_000_000 + i as i64 * 1_000;
            Event {
                message_id: format!("0193a6f0-{i:08x}-7c2e-9d4b-5e6f7a8b9c0d"),
                app: "ios".into(),
                kind: "track".into(),
                event: Some(NAMES[i % NAMES.len()].into()),
                user_id: Some(format!("user-{}", i % 20_000)),
                anonymous_id: Some(format!("anon-{}", i % 25_000)),
                client_ts: Some(ts - 2_000_000),
                sent_at: Some(ts - 1_000_000),
                server_ts: ts,
                event_ts: ts,
                ip: Some(format!("81.2.{}.{}", i % 250, i % 200)),
                country: Some("FR".into()),
                region: Some("IDF".into()),
                city: Some("Paris".into()),
                user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148".into()),
                os: Some("iPhone".into()),
                os_version: Some("17.4".into()),
                browser: Some("Safari".into()),
                browser_version: Some("17.4".into()),
                device: Some("smartphone".into()),
                app_version: Some("5.12.0".into()),
                library_name: Some("analytics-ios".into()),
                library_version: Some("4.1.8".into()),
                locale: Some("fr-FR".into()),
                timezone: Some("Europe/Paris".into()),
                properties: Some(format!(
                    r#"{{"post_id":{},"dwell_ms":{},"position":{},"feed":"home"}}"#,
                    i % 50_000,
                    1000 + i % 9000,
                    i % 40
                )),
                context: Some(r#"{"app":{"version":"5.12.0"},"library":{"name":"analytics-ios","version":"4.1.8"},"device":{"model":"iPhone15,2"}}"#.into()),
                ..Event::default()
            }
        })
        .collect()
}

fn buffer(events: &[Event]) -> EventBuffer {
    let mut b = EventBuffer::default();
    for (i, e) in events.iter().enumerate() {
        b.push(
            e,
            BusPosition {
                partition: (i % 4) as u32,
                offset: i as u64,
            },
        );
    }
    b
}

fn encode(c: &mut Criterion) {
    let schema = Arc::new(schema_to_arrow_schema(&OdsTable::Event.schema().unwrap()).unwrap());
    let events = events();
    let to_batches = |mut b: EventBuffer| {
        b.take_groups()
            .into_iter()
            .map(|(_, cols)| cols.finish(schema.clone()).unwrap())
            .collect::<Vec<_>>()
    };
    let to_parquet = |batches: &[arrow::record_batch::RecordBatch]| {
        let mut bytes = 0;
        for batch in batches {
            let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(writer_properties()))
                .unwrap();
            w.write(batch).unwrap();
            bytes += w.into_inner().unwrap().len();
        }
        bytes
    };

    // A plain measurement first.
    let start = Instant::now();
    let batches = to_batches(buffer(&events));
    let arrow_time = start.elapsed();
    let start = Instant::now();
    let bytes = to_parquet(&batches);
    let parquet_time = start.elapsed();
    println!(
        "sink Arrow build: {EVENTS} events in {arrow_time:.2?} ({:.0} events/s); Parquet zstd encode of {} partition files: {parquet_time:.2?} ({:.0} events/s, {:.0} B/event)",
        EVENTS as f64 / arrow_time.as_secs_f64(),
        batches.len(),
        EVENTS as f64 / parquet_time.as_secs_f64(),
        bytes as f64 / EVENTS as f64,
    );

    let mut group = c.benchmark_group("lake_sink");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("arrow_build_100k_events", |b| {
        b.iter(|| to_batches(buffer(&events)))
    });
    group.bench_function("parquet_zstd_encode_100k_events", |b| {
        b.iter_batched(
            || batches.clone(),
            |batches| to_parquet(&batches),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
