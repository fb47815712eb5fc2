//! The lake on S3 end to end on the real binary, against moto on loopback: HTTP → bus → Iceberg
//! tables on S3 → `strata sql`; `strata check` on S3 settings; a clear start failure when S3 is
//! unreachable; and S3 going away under load and coming back (the bus keeps accepting, the lake
//! sink retries and catches up, nothing lost or doubled).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::s3server::{self, Outage, S3Server};
use common::*;

const BUCKET: &str = "strata-e2e";

fn check(env: &Env) -> std::process::Output {
    Command::new(strata_bin())
        .args(["check", "-c"])
        .arg(&env.config)
        .output()
        .expect("strata check")
}

#[test]
fn serve_on_s3_events_are_queryable_exactly_once() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket(BUCKET);
    let env = Env::new();
    env.use_s3(&s3.endpoint(), BUCKET, &[]);
    let out = check(&env);
    assert!(
        out.status.success(),
        "check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The effective config it prints never shows the secret.
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains(s3server::SECRET_KEY) && shown.contains("<redacted>"),
        "{shown}"
    );

    let server = env.serve("200ms");
    let mut acked = 0;
    for b in 0..10 {
        let body = batch(&format!("s3-{b}"), 50);
        let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).expect("post");
        assert_eq!(res.status, 200, "{}", res.body);
        acked += 50;
    }
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        acked,
        Duration::from_secs(60),
    );
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        acked
    );
    server.stop();
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), acked);

    // The table files are on S3; locally there is no warehouse directory at all.
    let keys = s3.keys(BUCKET, "lake/ods/ods_event/");
    assert!(
        keys.iter()
            .any(|k| k.contains("/data/") && k.ends_with(".parquet")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(".metadata.json")),
        "{keys:?}"
    );
    assert!(!env.data().join("lake").exists(), "a local lake dir exists");
    assert_eq!(lake_files(&env.data()), 0);
}

#[test]
fn check_refuses_plain_http_to_a_remote_endpoint() {
    let env = Env::new();
    env.use_s3("http://10.1.2.3:9000", BUCKET, &[]);
    let out = check(&env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not loopback") && err.contains("s3_allow_http"),
        "{err}"
    );
    // Allowed explicitly: the config is valid (check does not connect).
    env.set_lake_keys(&[("s3_allow_http", "true")]);
    let out = check(&env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_with_unreachable_s3_fails_at_start_naming_the_endpoint() {
    let env = Env::new();
    let dead = format!("http://127.0.0.1:{}", s3server::free_port());
    env.use_s3(&dead, BUCKET, &[]);
    let out = Command::new(strata_bin())
        .args(["serve", "-c"])
        .arg(&env.config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("strata serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dead) && err.contains("not reachable"),
        "{err}"
    );
}

/// S3 becomes unreachable (the relay in front of moto is cut: new connections refused, open
/// ones dropped) while a client keeps sending, then comes back. The collector keeps
/// acknowledging (the embedded bus holds the events), the lake sink's flushes fail and are
/// retried with backoff, and once S3 answers again it catches up by itself: every
/// acknowledged event is in the lake exactly once. moto keeps its buckets in memory, so this
/// cuts the network path rather than restarting the server.
#[test]
fn s3_outage_under_load_recovers_by_itself() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket(BUCKET);
    let relay = Outage::new(s3.port);
    let env = Env::new();
    env.use_s3(
        &relay.endpoint(),
        BUCKET,
        &[("s3_max_retries", "1"), ("s3_retry_timeout", "\"2s\"")],
    );
    let server = env.serve("200ms");
    let addr = server.addr;
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let batches = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let client = {
        let acked = acked.clone();
        let batches = batches.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut b = 0;
            while !done.load(Ordering::SeqCst) {
                let body = batch(&format!("outage-{b}"), 20);
                loop {
                    match post(addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body) {
                        Ok(r) if r.status == 200 => break,
                        _ => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
                let mut a = acked.lock().unwrap_or_else(|e| e.into_inner());
                for i in 0..20 {
                    a.insert(format!("outage-{b}-{i}"));
                }
                b += 1;
                batches.store(b, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let wait_batches = |n: usize| {
        let start = std::time::Instant::now();
        while batches.load(Ordering::SeqCst) < n {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "client stuck at {} batches",
                batches.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_batches(20);
    // The sink has committed to S3 before the cut.
    let start = std::time::Instant::now();
    while env.sql_count("SELECT count(*) FROM ods.ods_event") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nothing committed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    relay.cut();
    let during = batches.load(Ordering::SeqCst);
    // The collector keeps acknowledging while S3 is away.
    wait_batches(during + 40);
    // The sink saw the outage (its flushes failed) and is still running.
    let log_path = env.dir.path().join("serve.log");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("lake flush failed")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no failed flush while S3 was cut:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    relay.restore();
    let after = batches.load(Ordering::SeqCst);
    wait_batches(after + 20);
    done.store(true, Ordering::SeqCst);
    client.join().expect("client");
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();

    // Caught up by itself, before any shutdown flush.
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        acked.len() as i64,
        Duration::from_secs(120),
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        log.contains("lake sink resumed after a storage failure"),
        "{log}"
    );
    server.stop();
    let rows = env.sql_count("SELECT count(*) FROM ods.ods_event");
    let distinct = env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event");
    assert_eq!(rows, distinct, "duplicates in the lake");
    let ids: HashSet<String> = env
        .sql("SELECT message_id FROM ods.ods_event")
        .into_iter()
        .filter_map(|r| r["message_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, acked);
}
