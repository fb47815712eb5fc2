//! The online store's conformance suite: the same tests on the embedded store (a temp dir)
//! and on a real `redis-server` each test starts on 127.0.0.1 (`STRATA_REDIS_SERVER_BIN`, or
//! `redis-server` on PATH; with `STRATA_TEST_REQUIRE_REDIS=1` a missing server fails the Redis
//! half instead of skipping it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use strata_online::backend::{Backend, Entries, RecentAdd, Write};
use strata_online::config::OnlineKind;
use strata_online::meta::Column;
use strata_online::{
    entity_key, Error, FeatureType, LookupStatus, OnlineConfig, OnlineStore, SyncRow, Value,
};

// ---------------------------------------------------------------- servers and harness

use strata_testdb::RedisServer;

enum Kind {
    Embedded,
    Redis(RedisServer),
}

/// One store to run a conformance test against.
struct Harness {
    kind: Kind,
    data: tempfile::TempDir,
    config: OnlineConfig,
}

impl Harness {
    fn embedded() -> Harness {
        Harness {
            kind: Kind::Embedded,
            data: tempfile::tempdir().unwrap(),
            config: OnlineConfig::default(),
        }
    }

    fn redis() -> Option<Harness> {
        let server = RedisServer::start()?;
        let config = OnlineConfig {
            kind: OnlineKind::Redis,
            url: Some(server.url()),
            prefix: "conformance".into(),
            timeout: Duration::from_millis(500),
            ..OnlineConfig::default()
        };
        Some(Harness {
            kind: Kind::Redis(server),
            data: tempfile::tempdir().unwrap(),
            config,
        })
    }

    async fn open(&self) -> OnlineStore {
        OnlineStore::open(&self.config, self.data.path())
            .await
            .unwrap()
    }

    /// What happens when the process holding `view`'s sync lock dies: the embedded store's
    /// file lock goes with the process (here: with the last handle on the store, which is
    /// reopened); Redis's lease expires (here: the lock key is removed as expiry would).
    async fn holder_died(&self, store: OnlineStore, view: &str) -> OnlineStore {
        match &self.kind {
            Kind::Embedded => {
                drop(store);
                self.open().await
            }
            Kind::Redis(server) => {
                let client = redis::Client::open(server.url()).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let removed: u64 = redis::cmd("DEL")
                    .arg(format!("{}:{view}:lock", self.config.prefix))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(removed, 1, "the killed sync's lock was held");
                store
            }
        }
    }
}

/// Each test, once per backend: `name::embedded` and `name::redis`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn embedded() {
                super::$name(&super::Harness::embedded()).await;
            }

            #[tokio::test]
            async fn redis() {
                if let Some(h) = super::Harness::redis() {
                    super::$name(&h).await;
                }
            }
        }
    )*};
}

conformance!(
    published_rows_are_served_and_unknown_keys_are_not_found,
    a_sync_switches_atomically_on_publish,
    a_killed_sync_leaves_the_old_version_and_the_next_sync_writes_over_it,
    the_later_event_time_wins,
    one_sync_per_view_at_a_time,
    forget_drop_view_and_views,
    a_scan_returns_every_entry_once_a_call,
    publish_counts_each_entity_once_when_a_scan_repeats_keys,
    a_write_batch_applies_its_writes_in_order,
    recent_items_expire_and_keep_the_newest,
);

// ---------------------------------------------------------------- helpers

fn columns() -> Vec<Column> {
    vec![
        Column {
            name: "clicks".into(),
            ty: FeatureType::Int64,
        },
        Column {
            name: "country".into(),
            ty: FeatureType::String,
        },
    ]
}

fn key(i: u32) -> Vec<u8> {
    entity_key(&[format!("user-{i}")])
}

fn row(i: u32, clicks: i64, ts: i64) -> SyncRow {
    SyncRow {
        key: key(i),
        event_ts: ts,
        values: Some(vec![Value::Int64(clicks), Value::String(format!("c{i}"))]),
    }
}

fn sources(snapshot: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([("lake.ads_user_features".to_string(), snapshot)])
}

/// The `clicks` each key shows (`None`: not found).
async fn clicks(store: &OnlineStore, view: &str, keys: &[u32]) -> Vec<Option<i64>> {
    let keys: Vec<Vec<u8>> = keys.iter().map(|&i| key(i)).collect();
    let rows = store.lookup(view, &keys).await.unwrap();
    rows.rows
        .iter()
        .map(|r| match (r.status, r.values.first()) {
            (LookupStatus::Present, Some(Value::Int64(c))) => Some(*c),
            (LookupStatus::Present, other) => panic!("unexpected value {other:?}"),
            (LookupStatus::NotFound, _) => None,
        })
        .collect()
}

/// A full sync of `rows` (in batches of 3), published.
async fn full_sync(store: &OnlineStore, view: &str, rows: Vec<SyncRow>) -> u64 {
    let mut w = store
        .begin_sync(view, &columns(), sources(1), true, 3)
        .await
        .unwrap();
    for batch in rows.chunks(3) {
        w.write(batch.to_vec()).await.unwrap();
    }
    w.publish().await.unwrap().entities
}

/// Every key a whole scan of the view returns.
async fn all_keys(store: &OnlineStore, view: &str) -> std::collections::HashSet<Vec<u8>> {
    let mut keys = std::collections::HashSet::new();
    let mut cursor = None;
    loop {
        let (batch, next) = store.backend().scan(view, cursor, 100).await.unwrap();
        keys.extend(batch.into_iter().map(|(k, _)| k));
        match next {
            Some(c) => cursor = Some(c),
            None => return keys,
        }
    }
}

// ---------------------------------------------------------------- the tests

async fn published_rows_are_served_and_unknown_keys_are_not_found(h: &Harness) {
    let store = h.open().await;
    // Never synced: every key is not found, nothing published.
    let none = store.lookup("users", &[key(1)]).await.unwrap();
    assert!(none.published.is_none());
    assert_eq!(none.rows[0].status, LookupStatus::NotFound);

    let rows: Vec<SyncRow> = (0..10)
        .map(|i| row(i, i64::from(i) * 10, 1_000 + i64::from(i)))
        .collect();
    assert_eq!(full_sync(&store, "users", rows).await, 10);

    let found = store
        .lookup("users", &[key(3), key(99), key(7)])
        .await
        .unwrap();
    let published = found.published.unwrap();
    assert_eq!(
        (published.version, published.entities, published.written),
        (1, 10, 10)
    );
    assert_eq!(found.rows[0].status, LookupStatus::Present);
    assert_eq!(found.rows[0].event_ts, Some(1_003));
    assert_eq!(
        found.rows[0].values,
        vec![Value::Int64(30), Value::String("c3".into())]
    );
    assert_eq!(found.rows[0].columns.as_slice(), columns().as_slice());
    assert_eq!(found.rows[1].status, LookupStatus::NotFound);
    assert_eq!(found.rows[1].event_ts, None);
    assert_eq!(found.rows[2].event_ts, Some(1_007));
    // Another view of the same store does not see these keys.
    assert_eq!(clicks(&store, "posts", &[3]).await, vec![None]);
    store.ping().await.unwrap();
}

async fn a_sync_switches_atomically_on_publish(h: &Harness) {
    let store = h.open().await;
    let all: Vec<u32> = (0..8).collect();
    full_sync(
        &store,
        "users",
        all.iter().map(|&i| row(i, 1, 10)).collect(),
    )
    .await;
    assert_eq!(clicks(&store, "users", &all).await, vec![Some(1); 8]);

    // Version 2 writes keys 0..6 with new values and not 6, 7; plus a new key 8.
    let mut w = store
        .begin_sync("users", &columns(), sources(2), true, 3)
        .await
        .unwrap();
    w.write((0..6).map(|i| row(i, 2, 20)).collect())
        .await
        .unwrap();
    w.write(vec![row(8, 2, 20)]).await.unwrap();
    let mut with_new = all.clone();
    with_new.push(8);
    let before = clicks(&store, "users", &with_new).await;
    let mut expected = vec![Some(1); 8];
    expected.push(None);
    assert_eq!(before, expected, "before publish every key shows version 1");

    let published = w.publish().await.unwrap();
    assert_eq!(
        (published.version, published.entities, published.written),
        (2, 7, 7)
    );
    let after = clicks(&store, "users", &with_new).await;
    assert_eq!(
        after,
        vec![
            Some(2),
            Some(2),
            Some(2),
            Some(2),
            Some(2),
            Some(2),
            None,
            None,
            Some(2)
        ],
        "after publish: version 2, and the keys the full sync did not write are gone"
    );

    // An incremental sync changes only what it writes; a `None` row removes an entity.
    let mut w = store
        .begin_sync("users", &columns(), sources(3), false, 3)
        .await
        .unwrap();
    w.write(vec![
        row(0, 3, 30),
        SyncRow {
            key: key(1),
            event_ts: 30,
            values: None,
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        clicks(&store, "users", &[0, 1, 2]).await,
        vec![Some(2), Some(2), Some(2)]
    );
    let published = w.publish().await.unwrap();
    assert_eq!((published.version, published.entities), (3, 6));
    assert_eq!(
        clicks(&store, "users", &[0, 1, 2]).await,
        vec![Some(3), None, Some(2)]
    );
}

async fn a_killed_sync_leaves_the_old_version_and_the_next_sync_writes_over_it(h: &Harness) {
    let store = h.open().await;
    full_sync(&store, "users", (0..6).map(|i| row(i, 1, 10)).collect()).await;

    // Sync 2 rewrites keys 0..3, adds keys 10 and 11, and dies before publishing.
    let mut killed = store
        .begin_sync("users", &columns(), sources(2), false, 3)
        .await
        .unwrap();
    killed
        .write(vec![
            row(0, 2, 20),
            row(1, 2, 20),
            row(2, 2, 20),
            row(10, 2, 20),
            row(11, 2, 20),
        ])
        .await
        .unwrap();
    drop(killed);
    let store = h.holder_died(store, "users").await;
    let keys = [0, 1, 2, 3, 4, 5, 10, 11];
    let v1 = vec![
        Some(1),
        Some(1),
        Some(1),
        Some(1),
        Some(1),
        Some(1),
        None,
        None,
    ];
    assert_eq!(
        clicks(&store, "users", &keys).await,
        v1,
        "the old version is served"
    );
    let meta = store.meta("users").await.unwrap().unwrap();
    assert!(
        meta.pending.is_some(),
        "the killed sync is recorded as pending"
    );

    // Sync 3 (incremental) writes keys 1 and 4 only.
    let mut w = store
        .begin_sync("users", &columns(), sources(3), false, 3)
        .await
        .unwrap();
    assert!(w.version() > 2, "a killed sync's version is not reused");
    w.write(vec![row(1, 3, 30), row(4, 3, 30)]).await.unwrap();
    assert_eq!(
        clicks(&store, "users", &keys).await,
        v1,
        "still the old version meanwhile"
    );
    let published = w.publish().await.unwrap();
    assert_eq!(
        clicks(&store, "users", &keys).await,
        vec![
            Some(1),
            Some(3),
            Some(1),
            Some(1),
            Some(3),
            Some(1),
            None,
            None
        ],
        "its own rows and the untouched old rows; nothing of the killed sync"
    );
    assert_eq!(published.entities, 6);
    assert!(store
        .meta("users")
        .await
        .unwrap()
        .unwrap()
        .pending
        .is_none());

    // The same after a killed sync followed by a full sync.
    let mut killed = store
        .begin_sync("users", &columns(), sources(4), true, 3)
        .await
        .unwrap();
    killed
        .write(vec![row(0, 4, 40), row(12, 4, 40)])
        .await
        .unwrap();
    drop(killed);
    let store = h.holder_died(store, "users").await;
    let published = full_sync(&store, "users", vec![row(2, 5, 50), row(3, 5, 50)]).await;
    assert_eq!(published, 2);
    assert_eq!(
        clicks(&store, "users", &[0, 1, 2, 3, 4, 12]).await,
        vec![None, None, Some(5), Some(5), None, None]
    );
}

async fn the_later_event_time_wins(h: &Harness) {
    let store = h.open().await;
    let mut w = store
        .begin_sync("users", &columns(), sources(1), true, 100)
        .await
        .unwrap();
    // In one batch, the later row first and the earlier after it (and the reverse).
    w.write(vec![
        row(1, 100, 200),
        row(1, 50, 100),
        row(2, 50, 100),
        row(2, 100, 200),
    ])
    .await
    .unwrap();
    // Across batches: an earlier row after a later one does not win; a later one does.
    w.write(vec![row(3, 100, 200)]).await.unwrap();
    w.write(vec![row(3, 50, 100), row(1, 10, 50)])
        .await
        .unwrap();
    w.write(vec![row(2, 300, 300)]).await.unwrap();
    let published = w.publish().await.unwrap();
    assert_eq!(published.entities, 3);
    assert_eq!(
        clicks(&store, "users", &[1, 2, 3]).await,
        vec![Some(100), Some(300), Some(100)]
    );
    let rows = store.lookup("users", &[key(2)]).await.unwrap();
    assert_eq!(rows.rows[0].event_ts, Some(300));
}

async fn one_sync_per_view_at_a_time(h: &Harness) {
    let store = h.open().await;
    let first = store
        .begin_sync("users", &columns(), sources(1), true, 10)
        .await
        .unwrap();
    let err = store
        .begin_sync("users", &columns(), sources(1), true, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(!err.retryable());
    // Another view syncs meanwhile.
    let other = store
        .begin_sync("posts", &columns(), sources(1), true, 10)
        .await
        .unwrap();
    other.abandon().await.unwrap();
    first.publish().await.unwrap();
    // Released on publish (and on abandon): the next sync starts.
    let again = store
        .begin_sync("users", &columns(), sources(2), true, 10)
        .await
        .unwrap();
    again.abandon().await.unwrap();
    store
        .begin_sync("users", &columns(), sources(2), true, 10)
        .await
        .unwrap()
        .abandon()
        .await
        .unwrap();
}

async fn forget_drop_view_and_views(h: &Harness) {
    let store = h.open().await;
    assert!(store.views().await.unwrap().is_empty());
    full_sync(&store, "users", (0..5).map(|i| row(i, 1, 10)).collect()).await;
    full_sync(&store, "posts", (0..3).map(|i| row(i, 7, 10)).collect()).await;
    assert_eq!(
        store.views().await.unwrap(),
        vec!["posts".to_string(), "users".to_string()]
    );

    // A sync running while an entity is erased: the entity is gone from the published
    // version and from the one being written.
    let mut w = store
        .begin_sync("users", &columns(), sources(2), false, 10)
        .await
        .unwrap();
    w.write(vec![row(1, 2, 20), row(2, 2, 20)]).await.unwrap();
    assert_eq!(
        store
            .forget("users", &[key(1), key(3), key(42)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        clicks(&store, "users", &[0, 1, 2, 3]).await,
        vec![Some(1), None, Some(1), None]
    );
    w.publish().await.unwrap();
    assert_eq!(
        clicks(&store, "users", &[0, 1, 2, 3]).await,
        vec![Some(1), None, Some(2), None]
    );
    // Other views keep their rows.
    assert_eq!(clicks(&store, "posts", &[1]).await, vec![Some(7)]);

    store.drop_view("users").await.unwrap();
    assert_eq!(store.views().await.unwrap(), vec!["posts".to_string()]);
    let gone = store.lookup("users", &[key(0), key(2)]).await.unwrap();
    assert!(gone.published.is_none());
    assert!(gone.rows.iter().all(|r| r.status == LookupStatus::NotFound));
    assert!(
        all_keys(&store, "users").await.is_empty(),
        "no entry outlives its view"
    );
    assert_eq!(clicks(&store, "posts", &[0, 1, 2]).await, vec![Some(7); 3]);
    // A new view of the same name starts from nothing.
    assert_eq!(full_sync(&store, "users", vec![row(9, 9, 90)]).await, 1);
    assert_eq!(clicks(&store, "users", &[0, 9]).await, vec![None, Some(9)]);
}

async fn a_scan_returns_every_entry_once_a_call(h: &Harness) {
    let store = h.open().await;
    full_sync(&store, "users", (0..250).map(|i| row(i, 1, 10)).collect()).await;
    full_sync(&store, "other", (0..40).map(|i| row(i, 1, 10)).collect()).await;
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    for _ in 0..10_000 {
        let (batch, next) = store.backend().scan("users", cursor, 16).await.unwrap();
        let mut in_call = std::collections::HashSet::new();
        for (k, _) in batch {
            assert!(in_call.insert(k.clone()), "one call repeats a key");
            if !store.backend().scan_may_repeat() {
                assert!(!seen.contains(&k), "a scan repeats a key");
            }
            seen.insert(k);
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: std::collections::HashSet<Vec<u8>> = (0..250).map(key).collect();
    assert_eq!(seen, expected, "every entry of the view, none of another");
}

async fn a_write_batch_applies_its_writes_in_order(h: &Harness) {
    let store = h.open().await;
    let b = store.backend();
    let kv = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
    b.put("a", vec![kv("gone", "1"), kv("kept", "1")])
        .await
        .unwrap();
    b.write_batch(Vec::new()).await.unwrap();
    b.write_batch(vec![
        Write::Put {
            view: "a".into(),
            entries: vec![kv("kept", "2"), kv("new", "1"), kv("put-then-deleted", "1")],
        },
        Write::Delete {
            view: "a".into(),
            keys: vec![
                b"gone".to_vec(),
                b"put-then-deleted".to_vec(),
                b"absent".to_vec(),
            ],
        },
        Write::Put {
            view: "b".into(),
            entries: Vec::new(),
        },
        Write::Put {
            view: "b".into(),
            entries: vec![kv("gone", "b")],
        },
        Write::Meta {
            view: "b".into(),
            meta: b"meta of b".to_vec(),
        },
        Write::Delete {
            view: "b".into(),
            keys: Vec::new(),
        },
    ])
    .await
    .unwrap();
    let keys = |ks: &[&str]| ks.iter().map(|k| k.as_bytes().to_vec()).collect::<Vec<_>>();
    let text = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8(v).unwrap());
    let (meta_a, a) = b
        .read("a", &keys(&["gone", "kept", "new", "put-then-deleted"]))
        .await
        .unwrap();
    assert_eq!(meta_a, None);
    assert_eq!(
        a.into_iter().map(text).collect::<Vec<_>>(),
        vec![None, Some("2".into()), Some("1".into()), None]
    );
    let (meta_b, bs) = b.read("b", &keys(&["gone"])).await.unwrap();
    assert_eq!(text(meta_b).as_deref(), Some("meta of b"));
    assert_eq!(
        bs.into_iter().map(text).collect::<Vec<_>>(),
        vec![Some("b".into())]
    );
    assert!(b.views().await.unwrap().contains(&"b".to_string()));
}

async fn recent_items_expire_and_keep_the_newest(h: &Harness) {
    let store = h.open().await;
    let b = store.backend();
    let keep = Duration::from_secs(60);
    let s = 1_000_000i64;
    let add = |key: &str, items: &[u64], at: i64| RecentAdd {
        key: key.as_bytes().to_vec(),
        items: items.to_vec(),
        at_us: at * s,
    };
    let kept = b
        .add_recent(
            "seen",
            vec![add("u1", &[10, 11], 100), add("u2", &[20], 100)],
            keep,
            3,
        )
        .await
        .unwrap();
    if matches!(h.kind, Kind::Embedded) {
        // The embedded store keeps no shared sets: the feed keeps them in memory.
        assert!(!kept);
        assert_eq!(b.recent("seen", b"u1", 0).await.unwrap(), None);
        return;
    }
    assert!(kept);
    assert_eq!(
        b.recent("seen", b"u1", 50 * s).await.unwrap(),
        Some(vec![10, 11])
    );
    assert_eq!(b.recent("seen", b"u3", 0).await.unwrap(), Some(vec![]));
    // Re-served items move to their new time; past the cap the oldest go.
    b.add_recent(
        "seen",
        vec![add("u1", &[12, 13], 130), add("u1", &[10], 140)],
        keep,
        3,
    )
    .await
    .unwrap();
    assert_eq!(
        b.recent("seen", b"u1", 0).await.unwrap(),
        Some(vec![12, 13, 10])
    );
    // Reading from `since` leaves out what is older; adding drops what expired.
    assert_eq!(
        b.recent("seen", b"u1", 135 * s).await.unwrap(),
        Some(vec![10])
    );
    b.add_recent("seen", vec![add("u1", &[14], 195)], keep, 3)
        .await
        .unwrap();
    assert_eq!(
        b.recent("seen", b"u1", 0).await.unwrap(),
        Some(vec![10, 14])
    );
    assert_eq!(b.recent("seen", b"u2", 0).await.unwrap(), Some(vec![20]));
    assert!(b
        .add_recent("bad:set", vec![add("u1", &[1], 1)], keep, 3)
        .await
        .is_err());
}

// ---------------------------------------------------------------- Redis only

#[tokio::test]
async fn redis_down_is_unavailable_quickly_and_the_store_recovers() {
    let Some(mut h) = Harness::redis() else {
        return;
    };
    let store = h.open().await;
    full_sync(&store, "users", vec![row(1, 1, 10)]).await;
    let Kind::Redis(server) = &mut h.kind else {
        unreachable!()
    };
    server.stop();

    let lookup = tokio::time::timeout(Duration::from_secs(10), store.lookup("users", &[key(1)]))
        .await
        .expect("a lookup with Redis down returns instead of hanging");
    let err = lookup.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(err.retryable());
    let begin = tokio::time::timeout(
        Duration::from_secs(10),
        store.begin_sync("users", &columns(), sources(2), true, 10),
    )
    .await
    .expect("a sync with Redis down fails instead of hanging");
    assert!(matches!(begin.unwrap_err(), Error::Unavailable(_)));

    // Back on the same port (empty: it keeps nothing on disk), the same store reconnects.
    server.restart();
    let mut back = false;
    for _ in 0..100 {
        if store.ping().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the store reconnects when Redis is back");
    assert_eq!(clicks(&store, "users", &[1]).await, vec![None]);
    full_sync(&store, "users", vec![row(1, 2, 20)]).await;
    assert_eq!(clicks(&store, "users", &[1]).await, vec![Some(2)]);
}

#[tokio::test]
async fn redis_down_at_start_fails_quickly_without_the_password() {
    let config = OnlineConfig {
        kind: OnlineKind::Redis,
        url: Some(format!("redis://strata:s3cret@127.0.0.1:{}", free_port())),
        timeout: Duration::from_millis(300),
        ..OnlineConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let opened = tokio::time::timeout(
        Duration::from_secs(10),
        OnlineStore::open(&config, dir.path()),
    )
    .await
    .expect("opening with Redis down returns instead of hanging");
    let err = opened.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    let message = err.to_string();
    assert!(!message.contains("s3cret"), "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");
}

#[tokio::test]
async fn redis_lock_lease_expires_and_only_its_owner_extends_or_releases_it() {
    let Some(h) = Harness::redis() else { return };
    let store = h.open().await;
    let backend = store.backend();
    assert!(backend
        .try_lock("users", "a", Duration::from_millis(300))
        .await
        .unwrap());
    assert!(!backend
        .try_lock("users", "b", Duration::from_secs(60))
        .await
        .unwrap());
    // Another owner's unlock does nothing.
    backend.unlock("users", "b").await.unwrap();
    assert!(!backend
        .try_lock("users", "b", Duration::from_secs(60))
        .await
        .unwrap());
    // The holder extends its lease.
    assert!(backend
        .try_lock("users", "a", Duration::from_secs(60))
        .await
        .unwrap());
    backend.unlock("users", "a").await.unwrap();
    assert!(backend
        .try_lock("users", "b", Duration::from_millis(200))
        .await
        .unwrap());
    // A holder that never comes back loses the lock when its lease runs out.
    let mut taken = false;
    for _ in 0..100 {
        if backend
            .try_lock("users", "c", Duration::from_secs(60))
            .await
            .unwrap()
        {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "the lease of a dead holder expires");
}

#[tokio::test]
async fn redis_password_comes_from_the_environment_when_the_url_has_none() {
    // A password-protected server.
    let Some(server) = RedisServer::start_with(&["--requirepass", "envpass"]) else {
        return;
    };
    let config = OnlineConfig {
        kind: OnlineKind::Redis,
        url: Some(server.url()),
        ..OnlineConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    // nextest runs each test in its own process: the variable is this test's alone.
    std::env::remove_var("STRATA_ONLINE_PASSWORD");
    let err = OnlineStore::open(&config, dir.path()).await.unwrap_err();
    assert!(!err.to_string().is_empty());
    std::env::set_var("STRATA_ONLINE_PASSWORD", "envpass");
    let store = OnlineStore::open(&config, dir.path()).await.unwrap();
    store.ping().await.unwrap();
    // A password in the URL wins over the environment.
    let wrong = OnlineConfig {
        url: Some(format!("redis://:wrong@127.0.0.1:{}", server.port())),
        ..config.clone()
    };
    let err = OnlineStore::open(&wrong, dir.path()).await.unwrap_err();
    assert!(!err.to_string().contains("wrong"), "{err}");
}

/// The store's backend, with every scan step also returning the previous step's entries
/// again (what Redis's `SCAN` may do when Redis shrinks its table mid-scan).
#[derive(Debug)]
struct RepeatingScan(std::sync::Arc<dyn Backend>);

#[async_trait::async_trait]
impl Backend for RepeatingScan {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    async fn read(
        &self,
        view: &str,
        keys: &[Vec<u8>],
    ) -> strata_online::Result<(Option<Vec<u8>>, Vec<Option<Vec<u8>>>)> {
        self.0.read(view, keys).await
    }
    async fn put_meta(&self, view: &str, meta: Vec<u8>) -> strata_online::Result<()> {
        self.0.put_meta(view, meta).await
    }
    async fn put(&self, view: &str, entries: Entries) -> strata_online::Result<()> {
        self.0.put(view, entries).await
    }
    async fn scan(
        &self,
        view: &str,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> strata_online::Result<(Entries, Option<Vec<u8>>)> {
        // The cursor is `[1 + length of the step's cursor | 0 at the start][its cursor]
        // [the inner cursor]`: each step also repeats the step before it.
        let (repeat, inner): (Option<Option<Vec<u8>>>, Option<Vec<u8>>) = match &cursor {
            None => (None, None),
            Some(c) => {
                let n = usize::from(c[0]);
                let (previous, rest) = if n == 0 {
                    (None, &c[1..])
                } else {
                    (Some(c[1..n].to_vec()), &c[n..])
                };
                (Some(previous), Some(rest.to_vec()))
            }
        };
        let (mut entries, next) = self.0.scan(view, inner.clone(), limit).await?;
        if let Some(previous) = repeat {
            let (again, _) = self.0.scan(view, previous, limit).await?;
            entries.extend(again);
        }
        let next = next.map(|n| {
            let mut c = match &inner {
                None => vec![0],
                Some(i) => {
                    let mut c = vec![u8::try_from(i.len() + 1).unwrap()];
                    c.extend_from_slice(i);
                    c
                }
            };
            c.extend(n);
            c
        });
        Ok((entries, next))
    }
    fn scan_may_repeat(&self) -> bool {
        true
    }
    async fn delete(&self, view: &str, keys: &[Vec<u8>]) -> strata_online::Result<u64> {
        self.0.delete(view, keys).await
    }
    async fn drop_view(&self, view: &str) -> strata_online::Result<()> {
        self.0.drop_view(view).await
    }
    async fn views(&self) -> strata_online::Result<Vec<String>> {
        self.0.views().await
    }
    async fn ping(&self) -> strata_online::Result<()> {
        self.0.ping().await
    }
    async fn try_lock(
        &self,
        view: &str,
        owner: &str,
        lease: Duration,
    ) -> strata_online::Result<bool> {
        self.0.try_lock(view, owner, lease).await
    }
    async fn unlock(&self, view: &str, owner: &str) -> strata_online::Result<()> {
        self.0.unlock(view, owner).await
    }
}

async fn publish_counts_each_entity_once_when_a_scan_repeats_keys(h: &Harness) {
    let store = h.open().await;
    let repeating = OnlineStore::new(std::sync::Arc::new(RepeatingScan(store.backend().clone())));
    let steps = all_keys(&repeating, "users").await;
    assert!(steps.is_empty());
    // Version 1: 20 entities written in batches of 3, so the publish scan takes many steps.
    assert_eq!(
        full_sync(
            &repeating,
            "users",
            (0..20).map(|i| row(i, 1, 10)).collect()
        )
        .await,
        20
    );
    // Incremental: 5 rewritten, 1 removed, 2 new; the rest are counted from the scan.
    let mut w = repeating
        .begin_sync("users", &columns(), sources(2), false, 3)
        .await
        .unwrap();
    let mut rows: Vec<SyncRow> = (0..5).map(|i| row(i, 2, 20)).collect();
    rows.push(SyncRow {
        key: key(5),
        event_ts: 20,
        values: None,
    });
    rows.extend([row(30, 2, 20), row(31, 2, 20)]);
    w.write(rows).await.unwrap();
    assert_eq!(w.publish().await.unwrap().entities, 21);
}

#[tokio::test]
async fn redis_a_sync_that_lost_its_lock_does_not_publish() {
    let Some(h) = Harness::redis() else { return };
    let store = h.open().await;
    full_sync(&store, "users", vec![row(1, 1, 10)]).await;
    let mut stale = store
        .begin_sync("users", &columns(), sources(2), false, 10)
        .await
        .unwrap();
    stale.write(vec![row(1, 2, 20)]).await.unwrap();
    // Its lease runs out (its process hung); another sync takes the view.
    let store = h.holder_died(store, "users").await;
    let mut next = store
        .begin_sync("users", &columns(), sources(3), false, 10)
        .await
        .unwrap();
    next.write(vec![row(1, 3, 30)]).await.unwrap();
    let err = stale.publish().await.unwrap_err();
    assert!(err.to_string().contains("lost its lock"), "{err}");
    assert_eq!(clicks(&store, "users", &[1]).await, vec![Some(1)]);
    next.publish().await.unwrap();
    assert_eq!(clicks(&store, "users", &[1]).await, vec![Some(3)]);
}

#[tokio::test]
async fn redis_tls_to_a_plain_server_is_an_error_not_a_hang() {
    let Some(h) = Harness::redis() else { return };
    let Kind::Redis(server) = &h.kind else {
        unreachable!()
    };
    let config = OnlineConfig {
        url: Some(format!("rediss://127.0.0.1:{}", server.port())),
        ..h.config.clone()
    };
    let opened = tokio::time::timeout(
        Duration::from_secs(10),
        OnlineStore::open(&config, h.data.path()),
    )
    .await
    .expect("a TLS handshake with a plain server returns");
    assert!(opened.is_err());
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
