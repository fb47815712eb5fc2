//! `drive` against a tiny HTTP server on 127.0.0.1 that counts what it receives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_sim::{drive_with, DriveOptions, DriveStats};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the server answers.
#[derive(Clone, Copy)]
enum Mode {
    /// 503 to every third request (nothing recorded), else 200.
    SometimesBusy,
    /// 400 to everything.
    Refuse,
}

#[derive(Default)]
struct Seen {
    ids: Mutex<HashSet<String>>,
    events: AtomicU64,
    requests: AtomicU64,
    bad_auth: AtomicU64,
}

async fn serve(mode: Mode) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let seen = s.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(sock);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    assert!(line.starts_with("POST /v1/batch HTTP/1.1"), "{line}");
                    let mut len = 0usize;
                    let mut auth = String::new();
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).await.unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "authorization" => auth = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).await.unwrap();
                    if auth != "Basic a2V5Og==" {
                        seen.bad_auth.fetch_add(1, Ordering::Relaxed);
                    }
                    let n = seen.requests.fetch_add(1, Ordering::Relaxed);
                    let status = match mode {
                        Mode::Refuse => "400 Bad Request",
                        Mode::SometimesBusy if n % 3 == 1 => "503 Service Unavailable",
                        Mode::SometimesBusy => {
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            let batch = v["batch"].as_array().unwrap();
                            let mut ids = seen.ids.lock().unwrap();
                            for e in batch {
                                ids.insert(e["messageId"].as_str().unwrap().to_string());
                            }
                            seen.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
                            "200 OK"
                        }
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{{\"success\":true}}"
                    );
                    r.get_mut().write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (url, seen)
}

fn options(url: &str, rate: u64, max_events: u64) -> DriveOptions {
    DriveOptions {
        rate,
        // An upper bound only: the runs stop at `max_events`.
        duration: Duration::from_secs(120),
        batch: 100,
        connections: 4,
        users: 300,
        max_events: Some(max_events),
        ..DriveOptions::new(url, "key")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_arrived_exactly_once_despite_503s() {
    let (url, seen) = serve(Mode::SometimesBusy).await;
    let stats = Arc::new(DriveStats::default());
    let report = drive_with(&options(&url, 0, 2_550), stats.clone())
        .await
        .unwrap();
    let s = report.stats;
    assert_eq!(s.sent, 2_550);
    assert_eq!(s.acked, 2_550);
    assert_eq!(s.failed, 0);
    assert!(
        s.retries > 0,
        "the server answered 503s, so there were retries"
    );
    assert_eq!(seen.events.load(Ordering::Relaxed), 2_550);
    assert_eq!(seen.ids.lock().unwrap().len(), 2_550);
    assert_eq!(seen.bad_auth.load(Ordering::Relaxed), 0);
    assert_eq!(stats.snapshot(), s);
    assert!(report.latency_p50_ms <= report.latency_p99_ms);
    assert!(report.latency_p99_ms <= report.latency_p999_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_run_sends_exactly_what_was_asked() {
    let (url, seen) = serve(Mode::SometimesBusy).await;
    let report = drive_with(
        &options(&url, 20_000, 1_000),
        Arc::new(DriveStats::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.stats.acked, 1_000);
    assert_eq!(seen.ids.lock().unwrap().len(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_count_as_failed_without_retries() {
    let (url, seen) = serve(Mode::Refuse).await;
    let report = drive_with(&options(&url, 0, 500), Arc::new(DriveStats::default()))
        .await
        .unwrap();
    assert_eq!(report.stats.acked, 0);
    assert_eq!(report.stats.failed, 500);
    assert_eq!(report.stats.retries, 0);
    assert_eq!(seen.requests.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn bad_targets_are_refused_before_sending() {
    for target in ["https://127.0.0.1:1", "127.0.0.1:8080", "http://"] {
        let err = drive_with(
            &DriveOptions::new(target, "k"),
            Arc::new(DriveStats::default()),
        )
        .await
        .unwrap_err();
        assert!(!err.is_retryable(), "{target}: {err}");
    }
}
