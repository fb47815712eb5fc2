//! The seen cache shared through a real `redis-server` on 127.0.0.1 (the online store's Redis
//! backend): what one feed process served, another does not serve again; the embedded store
//! keeps it per process. Skipped without `redis-server` unless `STRATA_TEST_REQUIRE_REDIS=1`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::HashSet;
use std::time::Duration;

use strata_feed::catalog::IdSet;
use strata_feed::seen::Seen;
use strata_online::config::OnlineKind;
use strata_online::{OnlineConfig, OnlineStore};
use strata_testdb::RedisServer;

const S: i64 = 1_000_000;

async fn redis_store(server: &RedisServer, dir: &std::path::Path) -> OnlineStore {
    let config = OnlineConfig {
        kind: OnlineKind::Redis,
        url: Some(server.url()),
        prefix: "seen-test".into(),
        timeout: Duration::from_millis(500),
        ..OnlineConfig::default()
    };
    OnlineStore::open(&config, dir).await.unwrap()
}

/// Waits until `seen` holds `want` for `user` (the add goes to Redis in the background).
async fn eventually(seen: &Seen, user: u64, now: i64, want: &HashSet<u64>) -> HashSet<u64> {
    let mut got = HashSet::new();
    for _ in 0..500 {
        let (s, why) = seen.seen(user, now).await;
        assert_eq!(why, None, "the shared cache answered");
        got = s.into_iter().collect();
        if &got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got
}

#[tokio::test]
async fn two_processes_share_what_they_served_through_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two feed processes: each its own memory, one Redis.
    let a = Seen::new(
        3600,
        1000,
        Some(redis_store(&server, dir.path()).await),
        Duration::from_millis(500),
    );
    let b = Seen::new(
        3600,
        1000,
        Some(redis_store(&server, dir.path()).await),
        Duration::from_millis(500),
    );
    assert!(a.shared() && b.shared());
    a.record(7, &[100, 101], 1_000 * S);
    let want: HashSet<u64> = [100, 101].into();
    assert_eq!(eventually(&b, 7, 1_010 * S, &want).await, want);
    assert!(b.seen(8, 1_010 * S).await.0.is_empty(), "another user");
    b.record(7, &[102], 1_020 * S);
    let want: HashSet<u64> = [100, 101, 102].into();
    assert_eq!(eventually(&a, 7, 1_030 * S, &want).await, want);
    // Past the TTL the first two are not seen any more, in either process.
    let want: HashSet<u64> = [102].into();
    assert_eq!(eventually(&a, 7, 4_610 * S, &want).await, want);
    assert_eq!(eventually(&b, 7, 4_610 * S, &want).await, want);
}

#[tokio::test]
async fn a_failing_shared_cache_falls_back_to_memory_and_says_so() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let seen = Seen::new(
        3600,
        1000,
        Some(redis_store(&server, dir.path()).await),
        Duration::from_millis(200),
    );
    seen.record(7, &[100], 1_000 * S);
    drop(server);
    let (got, why) = seen.seen(7, 1_010 * S).await;
    assert_eq!(got, IdSet::from_iter([100]), "this process's memory");
    let why = why.expect("the answer says the shared cache was not used");
    assert!(why.starts_with("seen: the shared cache"), "{why}");
}

#[tokio::test]
async fn the_embedded_store_keeps_the_cache_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = OnlineStore::open(&OnlineConfig::default(), dir.path())
        .await
        .unwrap();
    let seen = Seen::new(3600, 1000, Some(store), Duration::from_millis(200));
    assert!(!seen.shared());
    seen.record(7, &[100], 1_000 * S);
    assert_eq!(
        seen.seen(7, 1_010 * S).await,
        (IdSet::from_iter([100]), None)
    );
}
