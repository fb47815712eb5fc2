//! Crash safety with real processes: a child appends as fast as it can and prints every
//! acknowledged position; the parent kills it with SIGKILL at an arbitrary moment, reopens the
//! log, and checks that every acknowledged record is there, exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::{Log, Record};

const DIR_ENV: &str = "STRATA_BUS_CRASH_DIR";
const TOPIC: &str = "crash";
const PARTITIONS: u32 = 4;

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: 16 << 10,
        group_commit_window: Duration::from_millis(1),
        ..EmbeddedOptions::default()
    }
}

/// The child side: runs only when re-executed by the parent with `STRATA_BUS_CRASH_DIR` set.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = EmbeddedLog::open(std::path::Path::new(&dir), options())
            .await
            .unwrap();
        log.ensure_topic(TOPIC, PARTITIONS).await.unwrap();
        let run = std::process::id();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let batch: Vec<Record> = (0..10)
                        .map(|i| Record {
                            key: Bytes::from(format!("k{t}-{i}")),
                            value: Bytes::from(format!("{run}-{t}-{n}-{i}")),
                            timestamp_ms: 0,
                        })
                        .collect();
                    let values: Vec<Bytes> = batch.iter().map(|r| r.value.clone()).collect();
                    let positions = log.append(TOPIC, batch).await.unwrap();
                    let mut out = String::new();
                    for (v, p) in values.iter().zip(positions) {
                        out.push_str(&format!(
                            "ACK {} {} {}\n",
                            p.partition,
                            p.offset,
                            String::from_utf8_lossy(v)
                        ));
                    }
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(out.as_bytes()).unwrap();
                    stdout.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn kill_9_loses_no_acknowledged_append() {
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<(u32, u64), String> = HashMap::new();
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        // Kill after a varying number of acknowledgements, mid-stream.
        let kill_after = 200 + round * 170;
        while seen < kill_after {
            match next_line(&mut out) {
                Some(line) => seen += usize::from(record_ack(&line, &mut acked)),
                None => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
                               // Acknowledgements already in the pipe count too.
        while let Some(line) = next_line(&mut out) {
            record_ack(&line, &mut acked);
        }
        child.wait().unwrap();
        assert!(seen >= kill_after, "child died early in round {round}");
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = EmbeddedLog::open(dir.path(), options()).await.unwrap();
        let mut stored: HashMap<(u32, u64), String> = HashMap::new();
        let mut values = std::collections::HashSet::new();
        let ends = log.end_offsets(TOPIC).await.unwrap();
        for p in 0..PARTITIONS {
            let mut from = 0;
            while from < ends[&p] {
                let batch = log.read(TOPIC, p, from, 1000, 1 << 20).await.unwrap();
                for r in &batch {
                    assert_eq!(r.offset, from, "offsets contiguous");
                    let v = String::from_utf8_lossy(&r.value).into_owned();
                    assert!(values.insert(v.clone()), "record {v} stored twice");
                    stored.insert((p, r.offset), v);
                    from += 1;
                }
            }
        }
        for (pos, v) in &acked {
            assert_eq!(
                stored.get(pos),
                Some(v),
                "acknowledged record at {pos:?} lost"
            );
        }
        // And the log is writable after recovery.
        let pos = log
            .append(
                TOPIC,
                vec![Record {
                    key: Bytes::new(),
                    value: Bytes::from_static(b"after"),
                    timestamp_ms: 0,
                }],
            )
            .await
            .unwrap();
        assert_eq!(pos[0].offset, ends[&0]);
    });
}

/// The next complete line; `None` at end of output (a final line without its newline was
/// torn by the kill and is dropped).
fn next_line(out: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match out.read_line(&mut line) {
        Ok(n) if n > 0 && line.ends_with('\n') => {
            line.pop();
            Some(line)
        }
        _ => None,
    }
}

fn record_ack(line: &str, acked: &mut HashMap<(u32, u64), String>) -> bool {
    let mut parts = line.split(' ');
    if parts.next() != Some("ACK") {
        return false;
    }
    let (Some(p), Some(o), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false; // a line torn by the kill
    };
    let (Ok(p), Ok(o)) = (p.parse(), o.parse()) else {
        return false;
    };
    if let Some(prev) = acked.insert((p, o), v.to_string()) {
        panic!("position {p}/{o} acknowledged twice: {prev} and {v}");
    }
    true
}
