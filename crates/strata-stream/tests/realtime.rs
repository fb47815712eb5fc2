//! The realtime consumer end to end on the embedded bus and the embedded online store: rows
//! follow the bus, and a consumer killed half-way (its task aborted, nothing flushed on the
//! way out) and restarted ends with exactly the rows of one that ran through.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_bus::embedded::EmbeddedLog;
use strata_bus::{Log, Offsets, Record};
use strata_core::event::{RecordFormat, EVENTS_TOPIC};
use strata_core::{BusRecord, Event};
use strata_features::FeatureView;
use strata_online::{entity_key, LookupStatus, OnlineConfig, OnlineStore, Value};
use strata_stream::{Realtime, RealtimeOptions};
use tokio::sync::watch;

const USER_VIEW: &str = r#"
kind = "stream"
entity = "user_id"
key_type = "int64"
allowed_lateness = "1m"

[[aggregates]]
name = "clicks_5m"
function = "count"
window = "5m"
events = ["Post Clicked"]

[[aggregates]]
name = "likes_1h"
function = "count"
window = "1h"
events = ["Post Liked"]

[[aggregates]]
name = "dwell_max_1h"
function = "max"
window = "1h"
field = "properties.dwell_ms"
events = ["Post Clicked"]

[[aggregates]]
name = "last_3_clicked_post_ids"
function = "last"
n = 3
type = "int64"
field = "properties.post_id"
events = ["Post Clicked"]
"#;

const POST_VIEW: &str = r#"
kind = "stream"
entity = "post_id"
key = "properties.post_id"
key_type = "int64"

[[aggregates]]
name = "clicks_1h"
function = "count"
window = "1h"
tumbling = true
events = ["Post Clicked"]

[[aggregates]]
name = "users_1h"
function = "distinct_count"
window = "1h"
field = "user_id"
"#;

fn views() -> Vec<FeatureView> {
    [("user_realtime", USER_VIEW), ("post_trending", POST_VIEW)]
        .into_iter()
        .map(|(name, text)| {
            let file = toml::from_str(text).unwrap();
            FeatureView::from_file(file, name, &format!("features/{name}.toml")).unwrap()
        })
        .collect()
}

/// Deterministic events: 40 users, 15 posts, clicks and likes 150 ms apart, starting 10
/// minutes ahead of the wall clock so the idle clock (wall clock minus lateness) never moves
/// the windows and two runs at different times compute the same rows.
fn events(base_us: i64, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let user = (i * 7 % 40) + 1;
            let post = (i * 11 % 15) + 1;
            let name = if i % 4 == 0 {
                "Post Liked"
            } else {
                "Post Clicked"
            };
            let ts = base_us + i as i64 * 150_000;
            let e = Event {
                message_id: format!("m{i}"),
                app: "app".into(),
                kind: "track".into(),
                event: Some(name.into()),
                user_id: Some(user.to_string()),
                server_ts: ts,
                event_ts: ts,
                properties: Some(format!(r#"{{"post_id":{post},"dwell_ms":{}}}"#, i % 97)),
                ..Default::default()
            };
            Record {
                key: Bytes::from(user.to_string()),
                value: Bytes::from(BusRecord::Event(Box::new(e)).encode(RecordFormat::Binary)),
                timestamp_ms: ts / 1000,
            }
        })
        .collect()
}

struct World {
    _dir: tempfile::TempDir,
    log: Arc<dyn Log>,
    store: OnlineStore,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = EmbeddedLog::open(&dir.path().join("bus"), Default::default())
        .await
        .unwrap();
    log.ensure_topic(EVENTS_TOPIC, 3).await.unwrap();
    let store = OnlineStore::open(&OnlineConfig::default(), dir.path())
        .await
        .unwrap();
    World {
        _dir: dir,
        log,
        store,
    }
}

/// Starts the consumer; returns its task, its stop switch and its progress.
fn start(
    w: &World,
    options: RealtimeOptions,
) -> (
    tokio::task::JoinHandle<strata_stream::Result<()>>,
    watch::Sender<bool>,
    watch::Receiver<Offsets>,
) {
    let (stop, stopped) = watch::channel(false);
    let (progress, seen) = watch::channel(Offsets::new());
    let rt = Realtime::new(&views(), w.store.clone(), w.log.clone(), None, options)
        .with_progress(progress);
    (tokio::spawn(rt.run(stopped)), stop, seen)
}

async fn caught_up(w: &World, seen: &mut watch::Receiver<Offsets>) {
    let end = w.log.end_offsets(EVENTS_TOPIC).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        seen.wait_for(|p| {
            end.iter()
                .all(|(k, o)| p.get(k).copied().unwrap_or(0) >= *o)
        }),
    )
    .await
    .expect("the consumer caught up within a minute")
    .unwrap();
}

type Rows = BTreeMap<(String, i64), Vec<Value>>;

async fn rows(store: &OnlineStore) -> Rows {
    let mut out = BTreeMap::new();
    for (view, n) in [("user_realtime", 40), ("post_trending", 15)] {
        let keys: Vec<Vec<u8>> = (1..=n).map(|k| entity_key(&[k.to_string()])).collect();
        let got = store.lookup(view, &keys).await.unwrap();
        for (k, row) in (1..=n).zip(got.rows) {
            assert_eq!(row.status, LookupStatus::Present, "{view} {k}");
            out.insert((view.to_string(), k), row.values);
        }
    }
    out
}

async fn append(w: &World, records: Vec<Record>) {
    for chunk in records.chunks(100) {
        w.log.append(EVENTS_TOPIC, chunk.to_vec()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_follow_the_bus() {
    let w = world().await;
    let base = strata_core::time::now_micros() + 600_000_000;
    let all = events(base, 3000);
    append(&w, all.clone()).await;
    let (task, stop, mut seen) = start(&w, RealtimeOptions::default());
    caught_up(&w, &mut seen).await;
    let got = rows(&w.store).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();

    // Recompute two users' rows by hand: the clock is the last event's time. (A user's events
    // are all clicks or all likes: user 2 clicks, user 1 likes.)
    let now = base + 2999 * 150_000;
    for user in [1usize, 2] {
        let mut clicks_5m = 0;
        let mut likes_1h = 0;
        let mut dwell_max: Option<f64> = None;
        let mut last = Vec::new();
        for i in 0..3000usize {
            if (i * 7 % 40) + 1 != user {
                continue;
            }
            let ts = base + i as i64 * 150_000;
            if i % 4 == 0 {
                likes_1h += 1;
                continue;
            }
            // 5m sliding by 30s: the slices from floor(now/30s)*30s + 30s - 5m on.
            let slide = 30_000_000;
            if ts >= now.div_euclid(slide) * slide + slide - 300_000_000 {
                clicks_5m += 1;
            }
            dwell_max = Some(dwell_max.unwrap_or(f64::MIN).max((i % 97) as f64));
            last.insert(0, Some(((i * 11 % 15) + 1) as i64));
        }
        last.truncate(3);
        assert_eq!(
            got[&("user_realtime".to_string(), user as i64)],
            vec![
                Value::Int64(clicks_5m),
                Value::Int64(likes_1h),
                dwell_max.map_or(Value::Null, Value::Float64),
                Value::Int64List(last),
            ],
            "user {user}"
        );
    }
    assert!(matches!(
        got[&("user_realtime".to_string(), 2)][0],
        Value::Int64(n) if n > 0
    ));
    // Every user appears in the 15 posts' distinct-user counts: 40 users, each post seen by
    // several.
    let Value::Int64(users) = got[&("post_trending".to_string(), 1)][1] else {
        panic!("distinct count is an integer")
    };
    assert!(users > 1 && users <= 40, "{users}");
}

/// Kills the consumer half-way (after it wrote rows and state, before its next checkpoint),
/// restarts it, and compares every row with an uninterrupted run.
async fn crash_and_compare(checkpoint_interval: Duration) {
    let base = strata_core::time::now_micros() + 600_000_000;
    let all = events(base, 4000);
    let options = RealtimeOptions {
        checkpoint_interval,
        max_records: 97,
        ..RealtimeOptions::default()
    };

    let straight = world().await;
    append(&straight, all.clone()).await;
    let (task, stop, mut seen) = start(&straight, options.clone());
    caught_up(&straight, &mut seen).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let want = rows(&straight.store).await;

    let mut crashed = world().await;
    append(&crashed, all[..2500].to_vec()).await;
    let (task, _stop, mut seen) = start(&crashed, options.clone());
    caught_up(&crashed, &mut seen).await;
    // Like kill -9: the task is dropped where it stands, nothing runs on the way out; the
    // store is closed and opened again as by a new process (which drops the view locks the
    // dead one held).
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    crashed.store = OnlineStore::open(&OnlineConfig::default(), crashed._dir.path())
        .await
        .unwrap();
    append(&crashed, all[2500..].to_vec()).await;
    let (task, stop, mut seen) = start(&crashed, options);
    caught_up(&crashed, &mut seen).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let got = rows(&crashed.store).await;
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        assert_eq!(&got[k], v, "{k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_last_checkpoint_replays_into_the_same_rows() {
    // The only checkpoint is the one written at the start: the restart re-reads every record,
    // and each entity's stored state says which records it already holds.
    crash_and_compare(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_frequent_checkpoints_replays_into_the_same_rows() {
    crash_and_compare(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_starts_the_view_over() {
    let w = world().await;
    let base = strata_core::time::now_micros() + 600_000_000;
    append(&w, events(base, 500)).await;
    let (task, stop, mut seen) = start(&w, RealtimeOptions::default());
    caught_up(&w, &mut seen).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let before = rows(&w.store).await;

    // A narrower filter: only clicks with dwell 0..10 count as clicks_5m now.
    let changed = USER_VIEW.replace(
        "window = \"5m\"\nevents = [\"Post Clicked\"]",
        "window = \"5m\"\nevents = [\"Post Clicked\"]\nwhere = { \"properties.dwell_ms\" = 3 }",
    );
    assert_ne!(changed, USER_VIEW);
    let file = toml::from_str(&changed).unwrap();
    let user =
        FeatureView::from_file(file, "user_realtime", "features/user_realtime.toml").unwrap();
    let mut views = views();
    views[0] = user;
    let (stop, stopped) = watch::channel(false);
    let (progress, mut seen) = watch::channel(Offsets::new());
    let rt = Realtime::new(
        &views,
        w.store.clone(),
        w.log.clone(),
        None,
        RealtimeOptions::default(),
    )
    .with_progress(progress);
    let task = tokio::spawn(rt.run(stopped));
    append(&w, events(base + 500 * 150_000, 1)).await;
    caught_up(&w, &mut seen).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let after = rows(&w.store).await;
    let clicks = |r: &Rows, u: i64| r[&("user_realtime".to_string(), u)][0].clone();
    let total_before: i64 = (1..=40)
        .map(|u| match clicks(&before, u) {
            Value::Int64(n) => n,
            _ => 0,
        })
        .sum();
    let total_after: i64 = (1..=40)
        .map(|u| match clicks(&after, u) {
            Value::Int64(n) => n,
            _ => 0,
        })
        .sum();
    assert!(
        total_after < total_before / 10,
        "{total_after} vs {total_before}"
    );
    assert!(total_after > 0);
}

/// A new view is initialised from the lake (the events the sink committed) and continues from
/// the bus exactly where the lake's snapshot ends: every event counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_view_backfills_from_the_lake_and_continues_from_the_bus() {
    let w = world().await;
    let base = strata_core::time::now_micros() + 600_000_000;
    let all = events(base, 3000);
    let lake_options = strata_table::config::LakeOptions::new(w._dir.path());
    let lake = strata_table::Lake::open(&lake_options).await.unwrap();
    // The first 2,000 events reach the lake; the sink stops (draining the bus) before the rest.
    append(&w, all[..2000].to_vec()).await;
    let (stop_sink, sink_stopped) = watch::channel(false);
    let sink = strata_sink::LakeSink::new(&lake, w.log.clone(), &lake_options.lake)
        .await
        .unwrap();
    let sink = tokio::spawn(sink.run(sink_stopped));
    stop_sink.send(true).unwrap();
    sink.await.unwrap().unwrap();
    append(&w, all[2000..].to_vec()).await;

    let (stop, stopped) = watch::channel(false);
    let (progress, mut seen) = watch::channel(Offsets::new());
    let rt = Realtime::new(
        &views(),
        w.store.clone(),
        w.log.clone(),
        Some(lake.clone()),
        RealtimeOptions::default(),
    )
    .with_progress(progress);
    let task = tokio::spawn(rt.run(stopped));
    caught_up(&w, &mut seen).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let got = rows(&w.store).await;

    // The same rows as a consumer that read everything from the bus.
    let straight = world().await;
    append(&straight, all).await;
    let (task, stop, mut seen) = start(&straight, RealtimeOptions::default());
    caught_up(&straight, &mut seen).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(got, rows(&straight.store).await);

    // The checkpoint says the view was backfilled, up to the lake's position.
    let cp: strata_stream::Checkpoint = serde_json::from_slice(
        &w.store
            .backend()
            .read("user_realtime~state", &[])
            .await
            .unwrap()
            .0
            .unwrap(),
    )
    .unwrap();
    let backfilled: u64 = cp.backfilled_to.unwrap().values().sum();
    assert_eq!(backfilled, 2000);
}
