//! A full disk under ingest is a state `strata serve` leaves by itself: the data directory is
//! a small tmpfs, a client keeps sending, the file system is filled to the last byte and later
//! emptied again. Meanwhile the collector answers 503 naming the condition (never a path),
//! `/health` says not ready; afterwards both recover without a restart, and every acknowledged
//! event is in the lake exactly once. A second test fills only the catalog's disk.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

#[path = "../../strata-bus/tests/smallfs/mod.rs"]
mod smallfs;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// What the client saw.
#[derive(Default)]
struct Seen {
    acked: HashSet<String>,
    /// `code` of each 503 answer, counted.
    unavailable: BTreeMap<String, usize>,
    /// 503 bodies that mention the data directory (must stay empty).
    leaks: Vec<String>,
    batches: usize,
}

fn client(
    addr: SocketAddr,
    secret_path: String,
    seen: Arc<Mutex<Seen>>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut b = 0;
        while !done.load(Ordering::SeqCst) {
            let body = batch(&format!("full-{b}"), 40);
            // Retried with the same message ids until acknowledged, as SDKs do.
            loop {
                match post(addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body) {
                    Ok(r) if r.status == 200 => break,
                    Ok(r) => {
                        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                        assert_eq!(r.status, 503, "{}", r.body);
                        assert!(r.header("Retry-After").is_some(), "{:?}", r.headers);
                        let code = r.json()["code"].as_str().unwrap_or("").to_string();
                        *s.unavailable.entry(code).or_default() += 1;
                        if r.body.contains(&secret_path) || r.body.contains("/bus/") {
                            s.leaks.push(r.body.clone());
                        }
                    }
                    Err(e) => panic!("the server went away: {e}"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            s.acked.extend((0..40).map(|i| format!("full-{b}-{i}")));
            s.batches += 1;
            drop(s);
            b += 1;
        }
    })
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn full_disk_under_ingest_recovers_by_itself() {
    let Some(fs) = smallfs::SmallFs::mount(32 << 20) else {
        return;
    };
    let env = Env::new();
    // The data directory (with the app registry `strata apps create` made) on the small fs.
    std::fs::copy(env.data().join("apps.json"), fs.path().join("apps.json")).unwrap();
    let data = format!("\"{}\"", fs.path().display());
    env.set_keys("[data]", &[("dir", &data)]);
    // Flushes wait long enough that the sink holds rows when the disk fills: its Parquet
    // and catalog writes hit the full disk too, not only the bus.
    let server = env.serve("1s");

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let secret_path = fs.path().display().to_string();
    let sender = client(server.addr, secret_path.clone(), seen.clone(), done.clone());
    let batches = || seen.lock().unwrap_or_else(|e| e.into_inner()).batches;
    wait_until("first acknowledgements", Duration::from_secs(30), || {
        batches() >= 10
    });
    assert_eq!(get(server.addr, "/health").unwrap().status, 200);

    fs.fill();
    let mut health = None;
    wait_until(
        "/health to report the full disk",
        Duration::from_secs(30),
        || {
            let r = get(server.addr, "/health").unwrap();
            let ready = r.status == 200;
            health = Some(r);
            !ready
        },
    );
    let health = health.unwrap();
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(
        health.json()["reason"],
        "the server's disk is full; retry later",
        "{}",
        health.body
    );
    let disk_full = || {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .unavailable
            .get("disk_full")
            .copied()
            .unwrap_or(0)
    };
    wait_until("503 disk_full answers", Duration::from_secs(30), || {
        disk_full() >= 5
    });
    // Stay full past a flush of the sink (1 s): the lake's writes fail as well.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(server.addr, "/health").unwrap().status, 503);

    fs.free();
    wait_until("/health to recover", Duration::from_secs(30), || {
        get(server.addr, "/health").unwrap().status == 200
    });
    let after = batches();
    wait_until(
        "acknowledgements after space returned",
        Duration::from_secs(60),
        || batches() >= after + 10,
    );
    done.store(true, Ordering::SeqCst);
    sender.join().expect("client thread");

    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("client finished")
        .into_inner()
        .unwrap();
    assert!(
        seen.leaks.is_empty(),
        "503 bodies with paths: {:?}",
        seen.leaks
    );
    assert!(
        seen.unavailable
            .keys()
            .all(|c| c == "disk_full" || c == "unavailable"),
        "{:?}",
        seen.unavailable
    );
    let log = std::fs::read_to_string(env.dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("lake flush failed"),
        "the lake never hit the full disk:\n{log}"
    );

    // The server recovered by itself: the lake catches up with everything acknowledged while
    // it keeps running.
    let acked = seen.acked.len() as i64;
    env.wait_count(
        "SELECT count(DISTINCT message_id) FROM ods.ods_event",
        acked,
        Duration::from_secs(120),
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
    let missing: Vec<_> = seen.acked.difference(&ids).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(rows as usize, seen.acked.len());
    // Unmounted by `fs`'s drop, after the server is gone.
}

/// The catalog's own disk fills (catalog.db on a small tmpfs, everything else elsewhere): the
/// lake sink's commit is the write that fails, while the collector goes on acknowledging (the
/// bus is fine, so `/health` stays 200). Once space returns the sink commits by itself and
/// every acknowledged event is in the lake once.
#[test]
fn full_catalog_disk_recovers_by_itself() {
    let Some(fs) = smallfs::SmallFs::mount(4 << 20) else {
        return;
    };
    let env = Env::new();
    let catalog = format!("\"{}\"", fs.path().join("catalog.db").display());
    env.set_lake_keys(&[("catalog", &catalog)]);
    let server = env.serve("200ms");
    let mut acked = 0;
    let mut send = |name: &str| {
        let res = post(
            server.addr,
            "/v1/batch",
            &[basic_auth(WRITE_KEY)],
            &batch(name, 30),
        )
        .unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        acked += 30;
    };
    send("before");
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        30,
        Duration::from_secs(60),
    );

    fs.fill();
    let log_path = env.dir.path().join("serve.log");
    let failed = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            // SQLite's SQLITE_FULL, from the sink's catalog commit.
            .contains("database or disk is full")
    };
    for b in 0..20 {
        send(&format!("full-{b}"));
        if failed() && b >= 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until(
        "the catalog commit to fail",
        Duration::from_secs(30),
        failed,
    );
    assert_eq!(get(server.addr, "/health").unwrap().status, 200);
    send("still-full");

    fs.free();
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        acked,
        Duration::from_secs(120),
    );
    server.stop();
    let rows = env.sql_count("SELECT count(*) FROM ods.ods_event");
    let distinct = env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event");
    assert_eq!((rows, distinct), (acked, acked));
}
