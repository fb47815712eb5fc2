//! Model-based test of the embedded log: random appends, reads, commits and reopens (with
//! and without a clean close), checked against a plain in-memory model.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::{Log, Offsets, Record, StoredRecord};

fn rec(key: &str, value: &str, ts: i64) -> Record {
    Record {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        timestamp_ms: ts,
    }
}

async fn read_all(log: &EmbeddedLog, topic: &str, partition: u32) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut from = log.start_offsets(topic).await.unwrap()[&partition];
    loop {
        let batch = log.read(topic, partition, from, 7, 1 << 20).await.unwrap();
        let Some(last) = batch.last() else { break };
        from = last.offset + 1;
        out.extend(batch);
    }
    out
}

/// A tiny deterministic PRNG (xorshift64*), so failures replay from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random appends, reads, commits and reopens checked against an in-memory model.
#[tokio::test]
async fn model_based_random_operations() {
    for seed in 1..=6u64 {
        run_model(seed).await;
    }
}

async fn run_model(seed: u64) {
    const PARTS: u32 = 3;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_bytes: 300 + rng.below(2000),
        group_commit_window: Duration::ZERO,
        ..EmbeddedOptions::default()
    };
    let mut model: Vec<Vec<Record>> = vec![Vec::new(); PARTS as usize];
    let mut groups: std::collections::HashMap<String, Offsets> = Default::default();
    let mut log: Arc<EmbeddedLog> = EmbeddedLog::open(dir.path(), opts.clone()).await.unwrap();
    log.ensure_topic("m", PARTS).await.unwrap();
    for step in 0..150 {
        match rng.below(10) {
            0..=4 => {
                let n = 1 + rng.below(12) as usize;
                let batch: Vec<Record> = (0..n)
                    .map(|i| {
                        let klen = rng.below(6) as usize;
                        let key: String = (0..klen)
                            .map(|_| (b'a' + rng.below(26) as u8) as char)
                            .collect();
                        let cap = if rng.below(20) == 0 { 3000 } else { 80 };
                        let vlen = rng.below(cap) as usize;
                        rec(
                            &key,
                            &format!("{seed}:{step}:{i}:{}", "z".repeat(vlen)),
                            rng.next() as i64,
                        )
                    })
                    .collect();
                let positions = log.append("m", batch.clone()).await.unwrap();
                for (r, pos) in batch.into_iter().zip(positions) {
                    let part = &mut model[pos.partition as usize];
                    assert_eq!(pos.offset, part.len() as u64, "seed {seed} step {step}");
                    part.push(r);
                }
            }
            5..=6 => {
                let p = rng.below(u64::from(PARTS)) as u32;
                let len = model[p as usize].len() as u64;
                let from = rng.below(len + 1);
                let max_records = 1 + rng.below(20) as usize;
                let max_bytes = 1 + rng.below(4000) as usize;
                let got = log
                    .read("m", p, from, max_records, max_bytes)
                    .await
                    .unwrap();
                if from < len {
                    assert!(!got.is_empty(), "seed {seed} step {step}: empty read");
                }
                assert!(got.len() <= max_records);
                for (i, r) in got.iter().enumerate() {
                    let want = &model[p as usize][from as usize + i];
                    assert_eq!(r.offset, from + i as u64);
                    assert_eq!(
                        (&r.key, &r.value, r.timestamp_ms),
                        (&want.key, &want.value, want.timestamp_ms)
                    );
                }
            }
            7 => {
                let group = format!("g{}", rng.below(3));
                let p = rng.below(u64::from(PARTS)) as u32;
                let o = rng.below(model[p as usize].len() as u64 + 1);
                let offsets: Offsets = [(p, o)].into_iter().collect();
                log.commit(&group, "m", &offsets).await.unwrap();
                groups.entry(group).or_default().insert(p, o);
            }
            8 => {
                for (g, want) in &groups {
                    assert_eq!(&log.committed(g, "m").await.unwrap(), want);
                }
                let ends = log.end_offsets("m").await.unwrap();
                for p in 0..PARTS {
                    assert_eq!(ends[&p], model[p as usize].len() as u64);
                }
            }
            _ => {
                if rng.below(2) == 0 {
                    log.close().await.unwrap();
                }
                drop(log);
                log = EmbeddedLog::open(dir.path(), opts.clone()).await.unwrap();
            }
        }
    }
    for p in 0..PARTS {
        let all = read_all(&log, "m", p).await;
        assert_eq!(all.len(), model[p as usize].len(), "seed {seed}");
        for (r, want) in all.iter().zip(&model[p as usize]) {
            assert_eq!(r.value, want.value);
        }
    }
}
