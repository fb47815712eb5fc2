//! Models end to end on a real lake (temp dir): training from lake tables with the time split,
//! determinism, the promotion gate, canary and rollback in the registry, and kNN recall over
//! HTTP with filters and an atomic swap to a newly promoted version.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use strata_core::tokens::{NewToken, Scope, Tokens};
use strata_models::registry::{self, DeploymentRow, Verdict};
use strata_models::serve::ModelServer;
use strata_models::{ModelSpec, TrainOptions};
use strata_online::{OnlineConfig, OnlineStore};
use strata_sql::SqlSession;
use strata_table::config::LakeOptions;
use strata_table::Lake;

async fn lake(dir: &Path) -> Lake {
    Lake::open(&LakeOptions::new(dir)).await.unwrap()
}

async fn sql(lake: &Lake, text: &str) {
    SqlSession::new(lake)
        .await
        .unwrap()
        .run(text)
        .await
        .unwrap();
}

async fn count(lake: &Lake, text: &str) -> i64 {
    let (_, batches) = SqlSession::new(lake)
        .await
        .unwrap()
        .query(text)
        .await
        .unwrap();
    let a = batches[0].column(0);
    arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(a).value(0)
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn quiet() -> strata_models::train::ProgressFn {
    Arc::new(|_: &str| {})
}

fn opts(date: NaiveDate) -> TrainOptions {
    TrainOptions {
        date: Some(date),
        threads: Some(2),
        ..TrainOptions::default()
    }
}

/// Samples over days 1..=5 of November: the label follows `x` (plus a deterministic noise),
/// `noise` carries nothing, `kind` is a category whose value 'b' adds to the odds.
async fn samples(lake: &Lake) {
    sql(lake, "CREATE NAMESPACE ads").await;
    sql(
        lake,
        "CREATE TABLE ads.samples (user_id BIGINT, x DOUBLE, noise DOUBLE, kind VARCHAR, label INT, dt DATE) PARTITIONED BY (dt)",
    )
    .await;
    for d in 1..=5 {
        sql(
            lake,
            &format!(
                "INSERT INTO ads.samples
                 SELECT value % 97 AS user_id,
                        CAST((value * 7919 + {d}) % 1000 AS DOUBLE) / 1000.0 AS x,
                        CAST((value * 104729 + {d} * 31) % 997 AS DOUBLE) / 997.0 AS noise,
                        CASE WHEN value % 3 = 0 THEN 'b' ELSE 'a' END AS kind,
                        CASE WHEN CAST((value * 7919 + {d}) % 1000 AS DOUBLE) / 1000.0
                                  + 0.35 * CAST((value * 2654435761 + {d}) % 1009 AS DOUBLE) / 1009.0
                                  + CASE WHEN value % 3 = 0 THEN 0.2 ELSE 0.0 END > 0.85
                             THEN 1 ELSE 0 END AS label,
                        DATE '2026-11-0{d}' AS dt
                 FROM generate_series(1, 2000)"
            ),
        )
        .await;
    }
}

fn gbdt_spec(name: &str, extra: &str) -> ModelSpec {
    let text = format!(
        r#"
kind = "gbdt"
source = "ads.samples"
label = "label"
exclude = ["user_id"]
categorical = ["kind"]
{extra}
[split]
train_days = 3
[params]
num_trees = 60
learning_rate = 0.1
num_leaves = 15
min_data_in_leaf = 20
"#
    );
    ModelSpec::parse(name, &format!("ml/{name}.toml"), &text).unwrap()
}

#[tokio::test]
async fn gbdt_trains_on_earlier_days_validates_on_the_run_date_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    samples(&lake).await;
    let spec = gbdt_spec("ctr", "");

    let first = strata_models::train(&lake, &spec, &opts(day(5)), quiet())
        .await
        .unwrap();
    // The split: validation is the run date only, training the three days before it.
    assert_eq!(first.valid, "2026-11-05");
    assert_eq!(first.train, "2026-11-02 .. 2026-11-04");
    let train_rows = count(
        &lake,
        "SELECT count(*) FROM ads.samples WHERE dt BETWEEN DATE '2026-11-02' AND DATE '2026-11-04'",
    )
    .await;
    assert_eq!(first.train_rows as i64, train_rows);
    assert_eq!(first.valid_rows, 2000);
    assert_eq!(first.version, 1);
    assert_eq!(first.verdict, Verdict::Promoted, "{}", first.reason);
    let auc = first.metrics["auc"];
    assert!(auc > 0.8, "validation AUC {auc}");
    assert!(first.metrics["logloss"] < first.metrics["baseline_logloss"]);

    // The same data and seed: byte-identical model; not worse, so promoted again.
    let second = strata_models::train(&lake, &spec, &opts(day(5)), quiet())
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.verdict, Verdict::Promoted);
    let cache = dir.path().join("cache");
    let a = registry::download(&lake, "ctr", 1, &cache).await.unwrap();
    let b = registry::download(&lake, "ctr", 2, &cache).await.unwrap();
    assert_eq!(
        std::fs::read(a.join("model.json")).unwrap(),
        std::fs::read(b.join("model.json")).unwrap()
    );

    // The registry rows say what was trained on.
    let versions = registry::versions(&lake, "ctr").await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions[0].snapshots.contains_key("ads.samples"));
    assert_eq!(versions[0].gate_metric, "auc");
    let state = registry::current(&registry::deployments(&lake, "ctr").await.unwrap());
    assert_eq!(state.promoted, Some(2));

    // Two trainings at once (the CLI beside the DAG) take turns numbering: versions 3 and 4,
    // each with its own artifacts.
    let (o1, o2) = (opts(day(5)), opts(day(5)));
    let (c, d) = tokio::join!(
        strata_models::train(&lake, &spec, &o1, quiet()),
        strata_models::train(&lake, &spec, &o2, quiet())
    );
    let mut numbers = [c.unwrap().version, d.unwrap().version];
    numbers.sort_unstable();
    assert_eq!(numbers, [3, 4]);
    let versions = registry::versions(&lake, "ctr").await.unwrap();
    let mut recorded: Vec<i64> = versions.iter().map(|v| v.version).collect();
    recorded.sort_unstable();
    assert_eq!(recorded, [1, 2, 3, 4]);
    for v in [3, 4] {
        registry::download(&lake, "ctr", v, &cache).await.unwrap();
    }
}

#[tokio::test]
async fn a_worse_version_stays_a_candidate_and_the_promoted_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    samples(&lake).await;
    let good = strata_models::train(&lake, &gbdt_spec("ctr", ""), &opts(day(5)), quiet())
        .await
        .unwrap();
    assert_eq!(good.verdict, Verdict::Promoted);
    // The same model name, now only on the column that carries nothing.
    let blind = gbdt_spec("ctr", "").clone();
    let blind = ModelSpec {
        features: strata_models::spec::Features::Only(vec!["noise".into()]),
        categorical: Vec::new(),
        ..blind
    };
    let worse = strata_models::train(&lake, &blind, &opts(day(5)), quiet())
        .await
        .unwrap();
    assert_eq!(worse.version, 2);
    assert_eq!(worse.verdict, Verdict::Candidate);
    assert!(
        worse.reason.contains("worse than promoted version 1"),
        "{}",
        worse.reason
    );
    let state = registry::current(&registry::deployments(&lake, "ctr").await.unwrap());
    assert_eq!(
        state.promoted,
        Some(1),
        "the candidate did not replace the promoted version"
    );
    let versions = registry::versions(&lake, "ctr").await.unwrap();
    assert_eq!(versions[1].verdict, "candidate");
}

#[tokio::test]
async fn training_with_no_rows_in_the_window_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    samples(&lake).await;
    // 2026-11-01 has no earlier days: no training rows.
    let e = strata_models::train(&lake, &gbdt_spec("ctr", ""), &opts(day(1)), quiet())
        .await
        .unwrap_err();
    assert!(matches!(e, strata_models::Error::NotEnoughData(_)), "{e}");
    // A feature that is not a column is named.
    let bad = ModelSpec {
        features: strata_models::spec::Features::Only(vec!["nope".into()]),
        categorical: Vec::new(),
        ..gbdt_spec("ctr", "")
    };
    let e = strata_models::train(&lake, &bad, &opts(day(5)), quiet())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

async fn deploy(lake: &Lake, name: &str, promoted: i64, canary: Option<(i64, i32)>) {
    registry::record_deployment(
        lake,
        &DeploymentRow {
            name: name.into(),
            at: Utc::now(),
            action: "test".into(),
            promoted: Some(promoted),
            canary: canary.map(|c| c.0),
            canary_percent: canary.map_or(0, |c| c.1),
            actor: "test".into(),
            reason: None,
        },
    )
    .await
    .unwrap();
}

/// Users click items of their own group (user % 4 == item % 4): the two-tower model must find
/// that structure; items carry an `author_id` payload and a creation time.
async fn pairs(lake: &Lake) {
    sql(lake, "CREATE NAMESPACE ml_test").await;
    sql(
        lake,
        "CREATE TABLE ml_test.clicks (user_id BIGINT, post_id BIGINT, activity DOUBLE, dt DATE) PARTITIONED BY (dt)",
    )
    .await;
    sql(
        lake,
        "CREATE TABLE ml_test.posts (post_id BIGINT, author_id BIGINT, created_at TIMESTAMP)",
    )
    .await;
    sql(
        lake,
        "INSERT INTO ml_test.posts SELECT value AS post_id, value % 10 AS author_id,
                CAST(to_timestamp_seconds(1790812800 + value * 3600) AS TIMESTAMP) AS created_at
         FROM generate_series(1, 400)",
    )
    .await;
    for d in 1..=4 {
        sql(
            lake,
            &format!(
                "INSERT INTO ml_test.clicks
                 SELECT u AS user_id,
                        (((value / 200) * 7 + u * 3 + {d} * 11) % 100) * 4 + (u % 4) + 1 AS post_id,
                        CAST(u % 7 AS DOUBLE) AS activity,
                        DATE '2026-11-0{d}' AS dt
                 FROM (SELECT value % 200 AS u, value FROM generate_series(1, 3000))"
            ),
        )
        .await;
    }
}

fn two_tower_spec(epochs: usize) -> ModelSpec {
    let text = format!(
        r#"
kind = "two_tower"
source = "ml_test.clicks"
[split]
train_days = 3
[user]
id = "user_id"
categorical = [{{ name = "user_id", buckets = 1000, dim = 16 }}]
[item]
id = "post_id"
categorical = [{{ name = "post_id", buckets = 1000, dim = 16 }}]
[items]
source = "ml_test.posts"
created_at = "created_at"
payload = ["author_id"]
[params]
dim = 16
hidden = [32]
epochs = {epochs}
batch_size = 128
learning_rate = 0.02
"#
    );
    ModelSpec::parse("recall", "ml/recall.toml", &text).unwrap()
}

#[tokio::test]
async fn two_tower_recall_serves_over_http_with_filters_canary_and_an_atomic_swap() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    pairs(&lake).await;
    let spec = two_tower_spec(6);
    let out = strata_models::train(&lake, &spec, &opts(day(4)), quiet())
        .await
        .unwrap();
    assert_eq!(out.verdict, Verdict::Promoted, "{}", out.reason);
    eprintln!("two-tower metrics: {:?}", out.metrics);
    let recall = out.metrics["recall@100"];
    let popular = out.metrics["popularity_recall@100"];
    assert!(
        recall > 2.0 * popular,
        "two-tower recall@100 {recall} vs popularity {popular}"
    );
    // Every item is embedded into the lake table, once per version.
    let rows = count(
        &lake,
        "SELECT count(*) FROM ml.recall_item_embeddings WHERE version = 1",
    )
    .await;
    assert_eq!(rows, 400);

    // The server, with a serve token.
    let store = OnlineStore::open(&OnlineConfig::default(), dir.path())
        .await
        .unwrap();
    let tokens_path = dir.path().join("catalog_tokens.json");
    let mut tokens = Tokens::load(&tokens_path).unwrap();
    let token = tokens
        .create(
            "reader",
            NewToken {
                scopes: vec![Scope::Serve],
                namespaces: Vec::new(),
                expires_at: None,
                role: None,
            },
        )
        .unwrap();
    let catalog_only = tokens
        .create(
            "catalog",
            NewToken {
                scopes: vec![Scope::CatalogRead],
                namespaces: Vec::new(),
                expires_at: None,
                role: None,
            },
        )
        .unwrap();
    tokens.save(&tokens_path).unwrap();
    let server = ModelServer::new(
        lake.clone(),
        store,
        vec![spec.clone()],
        dir.path().join("models"),
        tokens_path,
    );
    assert!(server.refresh().await.is_empty());
    let server = Arc::new(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = server.clone().router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let post = |body: serde_json::Value, token: Option<String>| knn(base.clone(), body, token);
    // A user's recall comes mostly from the user's own group.
    let (status, body) = post(
        serde_json::json!({"user_id": 6, "k": 20}),
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["variant"], "promoted");
    let ids: Vec<u64> = serde_json::from_value(body["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 20);
    let own = ids.iter().filter(|&&id| (id - 1) % 4 == 6 % 4).count();
    assert!(
        own >= 15,
        "{own} of 20 recalled items are from the user's group: {ids:?}"
    );

    // Filters apply inside the search: excluded ids and other authors never come back, and a
    // filter matching few items still fills k from those that match.
    let excluded: Vec<u64> = ids[..10].to_vec();
    let (status, body) = post(
        serde_json::json!({"user_id": 6, "k": 20, "filter": {"exclude_ids": excluded, "author_id": [3, 7]}}),
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let filtered: Vec<u64> = serde_json::from_value(body["ids"].clone()).unwrap();
    assert_eq!(filtered.len(), 20);
    assert!(filtered.iter().all(|id| !excluded.contains(id)));
    assert!(
        filtered.iter().all(|id| [3, 7].contains(&(id % 10))),
        "{filtered:?}"
    );
    let (status, body) = post(
        serde_json::json!({"user_id": 6, "k": 50, "filter": {"created_after": "2026-10-17T00:00:00Z"}}),
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let recent: Vec<u64> = serde_json::from_value(body["ids"].clone()).unwrap();
    // Posts are created one an hour from 2026-10-01 01:00: after 10-17 00:00 means id > 384.
    assert_eq!(recent.len(), 16);
    assert!(recent.iter().all(|&id| id > 384), "{recent:?}");

    // Bad requests are 4xx with a reason; tokens are checked.
    for bad in [
        serde_json::json!({"k": 10}),
        serde_json::json!({"user_id": 1, "vector": [0.1], "k": 10}),
        serde_json::json!({"user_id": 1, "k": 0}),
        serde_json::json!({"vector": [0.1, 0.2], "k": 10}),
        serde_json::json!({"user_id": 1, "filter": {"created_after": "later"}}),
        serde_json::json!({"user_id": 1, "filter": {"colour": "red"}}),
        serde_json::json!({"model": "nope", "user_id": 1}),
        serde_json::json!({"user_id": 1, "surprise": true}),
    ] {
        let (status, body) = post(bad.clone(), Some(token.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(post(serde_json::json!({"user_id": 1}), None).await.0, 401);
    assert_eq!(
        post(serde_json::json!({"user_id": 1}), Some(catalog_only))
            .await
            .0,
        403
    );

    // A second version, canaried to 30 % of users: each user's variant is stable.
    let v2 = strata_models::train(&lake, &two_tower_spec(2), &opts(day(4)), quiet())
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    deploy(&lake, "recall", 1, Some((2, 30))).await;
    assert!(server.refresh().await.is_empty());
    let mut on_canary = 0;
    for user in 0..60 {
        let (status, first) = post(
            serde_json::json!({"user_id": user, "k": 5}),
            Some(token.clone()),
        )
        .await;
        assert_eq!(status, 200, "{first}");
        let (_, again) = post(
            serde_json::json!({"user_id": user, "k": 5}),
            Some(token.clone()),
        )
        .await;
        assert_eq!(
            first["version"], again["version"],
            "user {user} switched versions"
        );
        let expected = registry::route(
            &server.snapshot("recall").unwrap().deployment,
            "recall",
            &user.to_string(),
        )
        .unwrap();
        assert_eq!(first["version"], expected.0);
        if first["variant"] == "canary" {
            assert_eq!(first["version"], 2);
            on_canary += 1;
        }
    }
    assert!(
        (5..=35).contains(&on_canary),
        "{on_canary} of 60 users on a 30 % canary"
    );

    // Promote version 2: after a refresh every request is answered by it, and requests racing
    // the swap are answered wholly by one version or the other.
    deploy(&lake, "recall", 2, None).await;
    let racing = {
        let base = base.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            for user in 0..40 {
                let (status, body) = knn(
                    base.clone(),
                    serde_json::json!({"user_id": user, "k": 5}),
                    Some(token.clone()),
                )
                .await;
                assert_eq!(status, 200, "{body}");
                seen.insert(body["version"].as_i64().unwrap());
            }
            seen
        })
    };
    assert!(server.refresh().await.is_empty());
    let seen = racing.await.unwrap();
    assert!(seen.iter().all(|v| [1, 2].contains(v)), "{seen:?}");
    for user in 0..20 {
        let (_, body) = post(
            serde_json::json!({"user_id": user, "k": 5}),
            Some(token.clone()),
        )
        .await;
        assert_eq!(body["version"], 2);
        assert_eq!(body["variant"], "promoted");
    }
}

async fn knn(
    base: String,
    body: serde_json::Value,
    token: Option<String>,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{base}/v1/recall/knn"))
        .json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json::<serde_json::Value>().await.unwrap())
}
