//! Every error answer: 400s naming what is wrong, 401, 403 (scope, namespace grants), 503 for
//! a view never materialized; garbage never panics the server; metrics count what happened.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use strata_core::tokens::Scope;
use strata_features::view::KeyKind;
use strata_online::{FeatureType, Value};

use crate::support::*;

async fn env_with_users() -> (Env, String) {
    let env = Env::embedded().await;
    fill(
        &env.store,
        "user_features",
        &[
            col("ctr_7d", FeatureType::Float64),
            col("clicks_7d", FeatureType::Int64),
        ],
        vec![(
            vec!["1".into()],
            now_us(),
            vec![Value::Float64(0.5), Value::Int64(3)],
        )],
    )
    .await;
    fill(
        &env.store,
        "u2u_cf",
        &[col("similar", FeatureType::Int64List)],
        vec![(
            vec!["1".into()],
            now_us(),
            vec![Value::Int64List(vec![Some(2), Some(3)])],
        )],
    )
    .await;
    let views = vec![
        view(
            "user_features",
            "entity = \"user_id\"\nsource = \"ads.ads_user_features\"",
        ),
        view(
            "u2u_cf",
            "entity = \"user_id\"\nquery = \"SELECT user_id, array_agg(other) AS similar FROM ads.ads_recall_u2u_cf JOIN dws.dws_users USING (user_id) GROUP BY user_id\"",
        ),
        view(
            "later",
            "entity = \"user_id\"\nsource = \"ads.ads_later\"",
        ),
        view(
            "offline",
            "entity = \"user_id\"\nsource = \"ads.ads_offline\"\nonline = false",
        ),
    ];
    let base = start(
        env.server(views)
            .with_key_kinds("user_features", vec![KeyKind::Integer])
            .max_entities(100),
    )
    .await;
    (env, base)
}

async fn error_of(client: &Client, body: serde_json::Value) -> (u16, String) {
    let (status, answer) = client.post(body).await;
    (
        status,
        answer["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn bad_requests_are_400_naming_what_is_wrong() {
    let (env, base) = env_with_users().await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let client = Client::new(&base, Some(&token));
    let cases = [
        (
            json!({"features": ["nope:ctr_7d"], "entities": {"user_id": [1]}}),
            "unknown feature view nope",
        ),
        (
            json!({"features": ["user_features:nope"], "entities": {"user_id": [1]}}),
            "feature view user_features has no feature nope",
        ),
        (
            json!({"features": ["offline:x"], "entities": {"user_id": [1]}}),
            "offline is not served online",
        ),
        (
            json!({"features": ["ctr_7d"], "entities": {"user_id": [1]}}),
            "must be view:feature",
        ),
        (
            json!({"features": ["user_features:ctr_7d"], "entities": {"post_id": [1]}}),
            "post_id is not the entity of any feature view",
        ),
        (
            json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": ["1"]}}),
            "entity user_id: \"1\" is not an integer",
        ),
        (
            json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": [1.5]}}),
            "entity user_id: 1.5 is not an integer",
        ),
        (
            json!({"features": ["user_features:ctr_7d", "u2u_cf:similar"], "entities": {"user_id": [1, 2]}}),
            "",
        ),
        (
            json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": [1, 2], "user_id_2": [1]}}),
            "same length",
        ),
        (
            json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": (0..101).collect::<Vec<_>>()}}),
            "101 entities in one request; the most is 100",
        ),
        (
            json!({"features": ["user_features:ctr_7d"], "entities": {}}),
            "entities is empty",
        ),
        (json!({"entities": {"user_id": [1]}}), "give features"),
        (
            json!({"features": ["user_features:ctr_7d"], "feature_service": "x", "entities": {"user_id": [1]}}),
            "not both",
        ),
        (
            json!({"feature_service": "nope", "entities": {"user_id": [1]}}),
            "unknown feature service nope",
        ),
        (
            json!({"features": ["user_features:ctr_7d", "user_features:ctr_7d"], "entities": {"user_id": [1]}}),
            "",
        ),
        (
            json!({"features": "user_features:ctr_7d", "entities": {"user_id": [1]}}),
            "malformed request body",
        ),
        (
            json!({"features": ["user_features:ctr_7d"]}),
            "missing field `entities`",
        ),
    ];
    for (body, needle) in cases {
        let (status, error) = error_of(&client, body.clone()).await;
        if needle.is_empty() {
            // Valid requests among the bad ones: two views of one entity; a repeated feature
            // is deduplicated by view, and answered once.
            assert!(status == 200 || status == 400, "{body}: {status} {error}");
            continue;
        }
        assert_eq!(status, 400, "{body}: {error}");
        assert!(error.contains(needle), "{body}: {error:?} lacks {needle:?}");
    }
    let (status, answer) = client.post_raw("{\"features\": [").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("malformed request body: EOF"),
        "{answer}"
    );
    let (status, answer) = client
        .post(json!({"features": ["later:x"], "entities": {"user_id": [1]}}))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "not_materialized");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("run `strata features materialize later`"));
}

#[tokio::test]
async fn tokens_scopes_and_namespace_grants() {
    let (env, base) = env_with_users().await;
    let request = json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": [1]}});
    let catalog = env.token(
        "spark",
        &[Scope::CatalogRead, Scope::CatalogWrite],
        &[],
        None,
    );
    let ads_only = env.token("ads-reader", &[Scope::Serve], &["ads"], None);
    let admin = env.token("root", &[Scope::Admin], &[], None);

    let (status, answer) = Client::new(&base, None).post(request.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("missing bearer token"));
    let (status, answer) = Client::new(&base, Some("stk_wrong"))
        .post(request.clone())
        .await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = Client::new(&base, Some(&catalog))
        .post(request.clone())
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("lacks the serve scope"));
    let (status, _) = Client::new(&base, Some(&catalog)).get("/v1/features").await;
    assert_eq!(status, 403);

    // Namespace grants: ads.* views yes; the query view also reads dws.dws_users: no.
    let ads = Client::new(&base, Some(&ads_only));
    let (status, answer) = ads.post(request.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = ads
        .post(json!({"features": ["u2u_cf:similar"], "entities": {"user_id": [1]}}))
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("dws.dws_users"),
        "{answer}"
    );
    let (status, answer) = ads.get("/v1/features/u2u_cf/1").await;
    assert_eq!(status, 403, "{answer}");
    let (status, list) = ads.get("/v1/features").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"u2u_cf"), "{names:?}");
    assert!(names.contains(&"user_features"), "{names:?}");

    let (status, answer) = Client::new(&base, Some(&admin))
        .post(json!({"features": ["u2u_cf:similar"], "entities": {"user_id": [1]}}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        crate::support::column(&answer, "similar")["values"],
        json!([[2, 3]])
    );

    // Revoking takes effect at once.
    let path = env.tokens_path();
    let mut tokens = strata_core::tokens::Tokens::load(&path).unwrap();
    assert!(tokens.revoke("ads-reader"));
    tokens.save(&path).unwrap();
    let (status, _) = ads.post(request).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn garbage_never_panics_the_server() {
    let (env, base) = env_with_users().await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let client = Client::new(&base, Some(&token));
    let bodies = [
        "",
        "null",
        "[]",
        "42",
        "{\"entities\": null, \"features\": null}",
        "{\"entities\": {\"user_id\": null}, \"features\": [\"user_features:ctr_7d\"]}",
        "{\"entities\": {\"user_id\": [[1]]}, \"features\": [\"user_features:ctr_7d\"]}",
        "{\"entities\": {\"user_id\": [{\"a\": 1}]}, \"features\": [\"user_features:ctr_7d\"]}",
        "{\"entities\": {\"user_id\": [1e400]}, \"features\": [\"user_features:ctr_7d\"]}",
        "{\"entities\": {\"user_id\": [18446744073709551616]}, \"features\": [\"user_features:ctr_7d\"]}",
        "{\"entities\": {\"user_id\": [true]}, \"features\": [\"user_features:ctr_7d\"]}",
        "{\"entities\": {\"user_id\": [1]}, \"features\": [\":\", \"a:\", \":b\", \"a:b:c\"]}",
        "{\"entities\": {\"user_id\": [\"\\u001f\"]}, \"features\": [\"u2u_cf:similar\"]}",
    ];
    for body in bodies {
        let (status, answer) = client.post_raw(body).await;
        assert!((400..500).contains(&status), "{body}: {status} {answer}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
    }
    // Not UTF-8 at all.
    let r = client
        .http
        .post(format!("{base}/get-online-features"))
        .bearer_auth(&token)
        .body(vec![0xff, 0xfe, 0x00, 0x7b])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A body over the limit.
    let r = client
        .http
        .post(format!("{base}/get-online-features"))
        .bearer_auth(&token)
        .body(vec![b' '; strata_features::server::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // Still serving.
    let (status, _) = client
        .post(json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": [1]}}))
        .await;
    assert_eq!(status, 200);
}

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

/// The value of the counter line starting with `prefix` (0 when absent).
fn counter(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn metrics_count_lookups_entities_errors_and_time() {
    let handle = recorder();
    let env = Env::embedded().await;
    let rows = (0..1200)
        .map(|i| (vec![i.to_string()], now_us(), vec![Value::Int64(i)]))
        .collect();
    fill(
        &env.store,
        "metric_posts",
        &[col("likes", FeatureType::Int64)],
        rows,
    )
    .await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let base = start(env.server(vec![view(
        "metric_posts",
        "entity = \"post_id\"\nsource = \"ads.metric_posts\"",
    )]))
    .await;
    let client = Client::new(&base, Some(&token));
    let before = handle.render();
    let ids: Vec<i64> = (100..1300).collect();
    let (status, _) = client
        .post(json!({"features": ["metric_posts:likes"], "entities": {"post_id": ids}}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = client
        .post(json!({"features": ["metric_posts:nope"], "entities": {"post_id": [1]}}))
        .await;
    assert_eq!(status, 400);
    let after = handle.render();
    let delta = |prefix: &str| counter(&after, prefix) - counter(&before, prefix);
    // 1,200 entities in one request: one lookup (plus one for the bad request).
    assert_eq!(
        delta("strata_features_lookups_total{view=\"metric_posts\"}"),
        2,
        "{after}"
    );
    assert_eq!(
        delta("strata_features_entities_total{view=\"metric_posts\",status=\"present\"}"),
        1100
    );
    assert_eq!(
        delta("strata_features_entities_total{view=\"metric_posts\",status=\"not_found\"}"),
        100
    );
    assert!(delta("strata_features_errors_total{code=\"bad_request\"}") >= 1);
    assert!(
        after.contains("strata_features_request_duration_seconds"),
        "{after}"
    );
}
