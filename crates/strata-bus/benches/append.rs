//! Durable append throughput of the embedded log: 64 concurrent producers, each appending
//! batches of 100 records of 400 bytes to an 8-partition topic; every append waits for its
//! fsync. Prints records/s and fsyncs/s besides criterion's own report.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "criterion bench: a failed setup stops the measurement, and its closures cannot return errors"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::{Log, Record};

const PRODUCERS: usize = 64;
const BATCH: usize = 100;
const VALUE_BYTES: usize = 400;
const PARTITIONS: u32 = 8;

/// Counts fsyncs (samples of `strata_bus_fsync_seconds`); ignores everything else.
#[derive(Default)]
struct FsyncCounter(Arc<FsyncCount>);

#[derive(Default)]
struct FsyncCount(AtomicU64);

impl HistogramFn for FsyncCount {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Recorder for FsyncCounter {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() == "strata_bus_fsync_seconds" {
            Histogram::from_arc(self.0.clone())
        } else {
            Histogram::noop()
        }
    }
}

/// Runs `batches_per_producer` appends on each producer; returns the elapsed time.
async fn run(log: &Arc<EmbeddedLog>, batches_per_producer: usize) -> Duration {
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(PRODUCERS);
    for p in 0..PRODUCERS {
        let log = log.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..batches_per_producer {
                let batch: Vec<Record> = (0..BATCH)
                    .map(|i| Record {
                        key: Bytes::from(format!("user-{}", (p * 7919 + b * 31 + i) % 100_000)),
                        value: value.clone(),
                        timestamp_ms: 0,
                    })
                    .collect();
                // Overload is a normal answer under load: back off and retry.
                while let Err(e) = log.append("bench", batch.clone()).await {
                    assert!(e.retryable(), "{e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn append(c: &mut Criterion) {
    let fsyncs = Arc::new(FsyncCount::default());
    let _ = metrics::set_global_recorder(FsyncCounter(fsyncs.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir =
        tempfile::tempdir_in(std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let log = rt.block_on(async {
        let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
            .await
            .unwrap();
        log.ensure_topic("bench", PARTITIONS).await.unwrap();
        log
    });

    // A plain measurement first, printed as records/s and fsyncs/s.
    let batches = 40;
    let before = fsyncs.0.load(Ordering::Relaxed);
    let elapsed = rt.block_on(run(&log, batches));
    let syncs = fsyncs.0.load(Ordering::Relaxed) - before;
    let records = (PRODUCERS * batches * BATCH) as f64;
    println!(
        "embedded bus durable append: {records} records of {VALUE_BYTES} B in {:.2?}: {:.0} records/s, {:.0} fsyncs/s, {:.0} records/fsync",
        elapsed,
        records / elapsed.as_secs_f64(),
        syncs as f64 / elapsed.as_secs_f64(),
        records / syncs.max(1) as f64,
    );

    let mut group = c.benchmark_group("embedded_append");
    group.sample_size(10);
    group.throughput(Throughput::Elements((PRODUCERS * 10 * BATCH) as u64));
    group.bench_function("64_producers_x_100x400B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(run(&log, 10));
            }
            total
        })
    });
    group.finish();
    rt.block_on(log.close()).unwrap();
}

criterion_group!(benches, append);
criterion_main!(benches);
