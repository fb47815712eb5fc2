//! Syncing views from real lake tables (temp dirs) into the embedded online store: full on the
//! first run, incremental after appends (only the new files are read), full after an overwrite
//! or delete, nothing when the source did not change; query-sourced views with list features.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::path::Path;

use strata_features::materialize::{check_views, materialize, SyncOptions};
use strata_features::view::{FeatureView, ViewFile};
use strata_online::{entity_key, LookupStatus, OnlineConfig, OnlineStore, Value};
use strata_sql::SqlSession;
use strata_table::config::LakeOptions;
use strata_table::Lake;

async fn lake(dir: &Path) -> Lake {
    Lake::open(&LakeOptions::new(dir)).await.unwrap()
}

async fn store(dir: &Path) -> OnlineStore {
    OnlineStore::open(&OnlineConfig::default(), dir)
        .await
        .unwrap()
}

fn view(name: &str, text: &str) -> FeatureView {
    let file: ViewFile = toml::from_str(text).unwrap();
    FeatureView::from_file(file, name, &format!("features/{name}.toml")).unwrap()
}

async fn sql(lake: &Lake, text: &str) {
    SqlSession::new(lake)
        .await
        .unwrap()
        .run(text)
        .await
        .unwrap();
}

async fn value(store: &OnlineStore, view: &str, key: &str, feature: &str) -> Option<Value> {
    let rows = store.lookup(view, &[entity_key(&[key])]).await.unwrap();
    let row = &rows.rows[0];
    if row.status == LookupStatus::NotFound {
        return None;
    }
    let i = row.columns.iter().position(|c| c.name == feature).unwrap();
    Some(row.values[i].clone())
}

const USER_VIEW: &str = r#"
entity = "user_id"
source = "ads.uf"
timestamp = "dt"
ttl = "3d"
"#;

#[tokio::test]
async fn first_sync_is_full_then_appends_sync_incrementally_and_deletes_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    sync_scenario(dir.path(), store).await;
}

/// The same syncs into Redis: the store behaves the same on both.
#[tokio::test]
async fn the_same_syncs_into_redis() {
    let Some(server) = strata_testdb::RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = OnlineConfig {
        kind: strata_online::config::OnlineKind::Redis,
        url: Some(server.url()),
        ..OnlineConfig::default()
    };
    let store = OnlineStore::open(&config, dir.path()).await.unwrap();
    assert_eq!(store.kind(), "redis");
    sync_scenario(dir.path(), store).await;
}

async fn sync_scenario(dir: &Path, store: OnlineStore) {
    let lake = lake(dir).await;
    sql(&lake, "CREATE NAMESPACE ads").await;
    sql(&lake, "CREATE TABLE ads.uf (user_id BIGINT, ctr_7d DOUBLE, clicks BIGINT, dt DATE) PARTITIONED BY (dt)").await;
    sql(&lake, "INSERT INTO ads.uf VALUES (1, 0.1, 10, DATE '2026-11-20'), (2, 0.2, 20, DATE '2026-11-20'), (3, 0.3, 30, DATE '2026-11-20')").await;
    let v = view("uf", USER_VIEW);
    let opts = SyncOptions::default();

    let first = materialize(&lake, &store, &v, &opts).await.unwrap();
    assert_eq!(first.mode, "full");
    assert_eq!((first.written, first.entities, first.version), (3, 3, 1));
    assert_eq!(
        value(&store, "uf", "2", "ctr_7d").await,
        Some(Value::Float64(0.2))
    );
    // A DATE row counts as of the end of its day.
    let rows = store.lookup("uf", &[entity_key(&["1"])]).await.unwrap();
    assert_eq!(
        rows.rows[0].event_ts,
        Some(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 21)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        )
    );

    // Nothing changed: nothing is written.
    let same = materialize(&lake, &store, &v, &opts).await.unwrap();
    assert_eq!(
        (same.mode.as_str(), same.written, same.version),
        ("up_to_date", 0, 1)
    );

    // A new day (an append): only its file is read; users 1 and 4 change, 2 and 3 keep theirs.
    sql(&lake, "INSERT INTO ads.uf VALUES (1, 0.5, 15, DATE '2026-11-21'), (4, 0.4, 40, DATE '2026-11-21')").await;
    let inc = materialize(&lake, &store, &v, &opts).await.unwrap();
    assert_eq!(inc.mode, "incremental");
    assert_eq!((inc.files_read, inc.rows_read, inc.written), (1, 2, 2));
    assert_eq!(inc.entities, 4);
    assert_eq!(
        value(&store, "uf", "1", "ctr_7d").await,
        Some(Value::Float64(0.5))
    );
    assert_eq!(
        value(&store, "uf", "2", "clicks").await,
        Some(Value::Int64(20))
    );
    assert_eq!(
        value(&store, "uf", "4", "clicks").await,
        Some(Value::Int64(40))
    );

    // An older day appended late does not replace a newer row.
    sql(
        &lake,
        "INSERT INTO ads.uf VALUES (1, 0.9, 99, DATE '2026-11-19')",
    )
    .await;
    let late = materialize(&lake, &store, &v, &opts).await.unwrap();
    assert_eq!(late.mode, "incremental");
    assert_eq!(
        value(&store, "uf", "1", "ctr_7d").await,
        Some(Value::Float64(0.5))
    );

    // A delete is not an append: the view is read in full and the deleted users vanish.
    sql(&lake, "DELETE FROM ads.uf WHERE user_id IN (3, 4)").await;
    let full = materialize(&lake, &store, &v, &opts).await.unwrap();
    assert_eq!(full.mode, "full");
    assert_eq!(full.entities, 2);
    assert_eq!(value(&store, "uf", "3", "ctr_7d").await, None);
    assert_eq!(value(&store, "uf", "4", "ctr_7d").await, None);
    assert_eq!(
        value(&store, "uf", "1", "ctr_7d").await,
        Some(Value::Float64(0.5))
    );
    let status = store.meta("uf").await.unwrap().unwrap();
    assert!(status.pending.is_none());
    assert_eq!(status.published.unwrap().entities, 2);
}

#[tokio::test]
async fn query_views_serve_lists_and_a_schema_change_resyncs_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let store = store(dir.path()).await;
    sql(&lake, "CREATE NAMESPACE ads").await;
    sql(
        &lake,
        "CREATE TABLE ads.cf (user_id BIGINT, similar_user_id BIGINT, score DOUBLE, rank BIGINT)",
    )
    .await;
    sql(
        &lake,
        "INSERT INTO ads.cf VALUES (1, 7, 0.9, 1), (1, 8, 0.5, 2), (1, 9, 0.1, 3), (2, 1, 0.7, 1)",
    )
    .await;
    let v = view(
        "cf",
        r#"
entity = "user_id"
query = "SELECT user_id, array_agg(similar_user_id ORDER BY rank) AS similar_users, array_agg(score ORDER BY rank) AS scores FROM ads.cf GROUP BY user_id"
"#,
    );
    let r = materialize(&lake, &store, &v, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((r.mode.as_str(), r.entities), ("full", 2));
    assert_eq!(
        value(&store, "cf", "1", "similar_users").await,
        Some(Value::Int64List(vec![Some(7), Some(8), Some(9)]))
    );
    assert_eq!(
        value(&store, "cf", "2", "scores").await,
        Some(Value::Float64List(vec![Some(0.7)]))
    );
    // The same view with fewer features is a new schema: synced in full although nothing
    // changed in the lake.
    let narrower = view(
        "cf",
        r#"
entity = "user_id"
query = "SELECT user_id, array_agg(similar_user_id ORDER BY rank) AS similar_users FROM ads.cf GROUP BY user_id"
"#,
    );
    let r = materialize(&lake, &store, &narrower, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(r.mode, "full");
    let rows = store.lookup("cf", &[entity_key(&["1"])]).await.unwrap();
    assert_eq!(rows.rows[0].columns.len(), 1);
}

#[tokio::test]
async fn views_are_checked_against_the_lake_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    sql(&lake, "CREATE NAMESPACE ads").await;
    sql(
        &lake,
        "CREATE TABLE ads.uf (user_id BIGINT, ctr_7d DOUBLE, dt DATE)",
    )
    .await;
    let views = vec![
        view("ok", USER_VIEW),
        view("gone", "entity = \"user_id\"\nsource = \"ads.nope\""),
        view(
            "later",
            "entity = \"user_id\"\nsource = \"ads.built_later\"",
        ),
        view(
            "cols",
            "entity = \"uid\"\nsource = \"ads.uf\"\nfeatures = [\"ctr_30d\"]",
        ),
    ];
    let produced = ["ads.built_later".to_string()].into();
    let (problems, notes) = check_views(&lake, &views, &produced).await;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("source table ads.nope does not exist"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("entity column uid is not in ads.uf"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("feature column ctr_30d"),
        "{problems:?}"
    );
    assert_eq!(notes.len(), 1, "{notes:?}");
}

#[tokio::test]
async fn erasure_removes_users_from_views_keyed_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    let store = store(dir.path()).await;
    sql(&lake, "CREATE NAMESPACE ads").await;
    sql(
        &lake,
        "CREATE TABLE ads.uf (user_id BIGINT, ctr_7d DOUBLE, dt DATE)",
    )
    .await;
    sql(
        &lake,
        "INSERT INTO ads.uf VALUES (1, 0.1, DATE '2026-11-20'), (2, 0.2, DATE '2026-11-20')",
    )
    .await;
    sql(
        &lake,
        "CREATE TABLE ads.pair (user_id BIGINT, post_id BIGINT, score DOUBLE)",
    )
    .await;
    sql(
        &lake,
        "INSERT INTO ads.pair VALUES (1, 10, 0.5), (1, 11, 0.6), (2, 10, 0.7)",
    )
    .await;
    let uf = view("uf", USER_VIEW);
    let pair = view(
        "pair",
        "entity = [\"user_id\", \"post_id\"]\nsource = \"ads.pair\"",
    );
    for v in [&uf, &pair] {
        materialize(&lake, &store, v, &SyncOptions::default())
            .await
            .unwrap();
    }
    let removed = strata_features::erase::forget_users(
        &store,
        &[uf, pair],
        |_| vec!["user_id".to_string()],
        &["1".to_string()],
    )
    .await
    .unwrap();
    assert_eq!(removed, 3);
    assert_eq!(value(&store, "uf", "1", "ctr_7d").await, None);
    assert_eq!(
        value(&store, "uf", "2", "ctr_7d").await,
        Some(Value::Float64(0.2))
    );
    let rows = store
        .lookup(
            "pair",
            &[entity_key(&["1", "10"]), entity_key(&["2", "10"])],
        )
        .await
        .unwrap();
    assert_eq!(rows.rows[0].status, LookupStatus::NotFound);
    assert_eq!(rows.rows[1].status, LookupStatus::Present);
}
