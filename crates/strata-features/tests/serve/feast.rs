//! Feast's protocol: Feast's own documented example, several views per request, full
//! feature names, TTLs, NOT_FOUND, the human endpoints, feature services, big batches.

use serde_json::json;
use strata_core::tokens::Scope;
use strata_features::service::{FeatureService, ServiceFeature};
use strata_features::view::KeyKind;
use strata_online::{FeatureType, Value};

use crate::support::*;

/// Feast's feature-server docs (`docs/reference/feature-servers/python-feature-server.md`):
/// `driver_hourly_stats` with `conv_rate`, `acc_rate`, `avg_daily_trips` for drivers
/// 1001–1003, event time 2021-12-31T23:00:00Z.
pub async fn driver_hourly_stats(env: &Env) {
    let at = ts("2021-12-31T23:00:00Z");
    fill(
        &env.store,
        "driver_hourly_stats",
        &[
            col("conv_rate", FeatureType::Float64),
            col("acc_rate", FeatureType::Float64),
            col("avg_daily_trips", FeatureType::Int64),
        ],
        vec![
            (
                vec!["1001".into()],
                at,
                vec![
                    Value::Float64(0.7037263512611389),
                    Value::Float64(0.8724706768989563),
                    Value::Int64(308),
                ],
            ),
            (
                vec!["1002".into()],
                at,
                vec![
                    Value::Float64(0.038169607520103455),
                    Value::Float64(0.48534533381462097),
                    Value::Int64(332),
                ],
            ),
            (
                vec!["1003".into()],
                at,
                vec![
                    Value::Float64(0.9665873050689697),
                    Value::Float64(0.7793770432472229),
                    Value::Int64(779),
                ],
            ),
        ],
    )
    .await;
}

/// Feast's documented feature service: every feature of `driver_hourly_stats`.
pub fn driver_activity() -> FeatureService {
    FeatureService {
        name: "driver_activity".into(),
        file: "features/services/driver_activity.toml".into(),
        description: String::new(),
        features: vec![ServiceFeature {
            view: "driver_hourly_stats".into(),
            feature: None,
        }],
    }
}

pub fn driver_view() -> strata_features::FeatureView {
    view(
        "driver_hourly_stats",
        "entity = \"driver_id\"\nsource = \"driver.driver_stats\"",
    )
}

#[tokio::test]
async fn feasts_documented_example_answers_in_feasts_shape() {
    let env = Env::embedded().await;
    driver_hourly_stats(&env).await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let base = start(
        env.server(vec![driver_view()])
            .with_services(vec![driver_activity()]),
    )
    .await;
    let client = Client::new(&base, Some(&token));

    // The request of Feast's docs, byte for byte.
    let (status, answer) = client
        .post_raw(
            r#"{
    "features": [
      "driver_hourly_stats:conv_rate",
      "driver_hourly_stats:acc_rate",
      "driver_hourly_stats:avg_daily_trips"
    ],
    "entities": {
      "driver_id": [1001, 1002, 1003]
    }
  }"#,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // Feast answers metadata and results, nothing else.
    let mut keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["metadata", "results"]);
    assert_eq!(
        answer["metadata"],
        json!({"feature_names": ["driver_id", "conv_rate", "acc_rate", "avg_daily_trips"]})
    );
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "one result per column (column-major)");
    for r in results {
        let mut keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["event_timestamps", "statuses", "values"]);
        assert_eq!(r["statuses"], json!(["PRESENT", "PRESENT", "PRESENT"]));
    }
    assert_eq!(results[0]["values"], json!([1001, 1002, 1003]));
    assert_eq!(
        results[0]["event_timestamps"],
        json!([
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z"
        ])
    );
    // The digits of Feast's example, parsed the way the answer was (exactly as printed).
    let parsed = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        results[1]["values"],
        parsed("[0.7037263512611389, 0.038169607520103455, 0.9665873050689697]")
    );
    assert_eq!(
        results[2]["values"],
        parsed("[0.8724706768989563, 0.48534533381462097, 0.7793770432472229]")
    );
    assert_eq!(results[3]["values"], json!([308, 332, 779]));
    for r in &results[1..] {
        assert_eq!(
            r["event_timestamps"],
            json!([
                "2021-12-31T23:00:00Z",
                "2021-12-31T23:00:00Z",
                "2021-12-31T23:00:00Z"
            ])
        );
    }

    // The docs' second example: a feature service instead of the list.
    let (status, by_service) = client
        .post(json!({"feature_service": "driver_activity", "entities": {"driver_id": [1001, 1002, 1003]}}))
        .await;
    assert_eq!(status, 200, "{by_service}");
    assert_eq!(
        by_service["metadata"]["feature_names"],
        json!(["driver_id", "conv_rate", "acc_rate", "avg_daily_trips"])
    );
    assert_eq!(by_service["results"], answer["results"]);

    // An unknown driver: null, NOT_FOUND, the zero timestamp; the entity column stays PRESENT.
    let (status, answer) = client
        .post(json!({"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": [1001, 9999]}}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["results"][0]["statuses"],
        json!(["PRESENT", "PRESENT"])
    );
    assert_eq!(
        column(&answer, "conv_rate"),
        &parsed(
            r#"{
            "values": [0.7037263512611389, null],
            "statuses": ["PRESENT", "NOT_FOUND"],
            "event_timestamps": ["2021-12-31T23:00:00Z", "1970-01-01T00:00:00Z"]
        }"#
        )
    );
}

async fn users_and_posts(env: &Env) {
    let now = now_us();
    fill(
        &env.store,
        "user_features",
        &[
            col("ctr_7d", FeatureType::Float64),
            col("clicks_7d", FeatureType::Int64),
            col("country", FeatureType::String),
        ],
        vec![
            (
                vec!["1".into()],
                now,
                vec![
                    Value::Float64(0.5),
                    Value::Int64(10),
                    Value::String("de".into()),
                ],
            ),
            (
                vec!["2".into()],
                now,
                vec![
                    Value::Float64(0.25),
                    Value::Null,
                    Value::String("fr".into()),
                ],
            ),
        ],
    )
    .await;
    fill(
        &env.store,
        "post_features",
        &[
            col("ctr_7d", FeatureType::Float64),
            col("tags", FeatureType::StringList),
        ],
        vec![(
            vec!["10".into()],
            now,
            vec![
                Value::Float64(0.125),
                Value::StringList(vec![Some("cats".into()), None]),
            ],
        )],
    )
    .await;
}

fn user_and_post_views() -> Vec<strata_features::FeatureView> {
    vec![
        view(
            "user_features",
            "entity = \"user_id\"\nsource = \"ads.ads_user_features\"\nttl = \"1d\"",
        ),
        view(
            "post_features",
            "entity = \"post_id\"\nsource = \"ads.ads_post_features\"",
        ),
    ]
}

#[tokio::test]
async fn several_views_in_one_request_and_full_feature_names() {
    let env = Env::embedded().await;
    users_and_posts(&env).await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let base = start(env.server(user_and_post_views())).await;
    let client = Client::new(&base, Some(&token));

    // Both views have ctr_7d: without full names that is a collision, refused with the fix.
    // (Raw text: the entity columns answer in the request's order.)
    let request = |full: bool| {
        format!(
            r#"{{"features": ["user_features:ctr_7d", "post_features:ctr_7d", "user_features:country", "post_features:tags"],
               "entities": {{"user_id": [1, 2, 3], "post_id": [10, 11, 10]}}, "full_feature_names": {full}}}"#
        )
    };
    let (status, answer) = client.post_raw(&request(false)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("full_feature_names"),
        "{answer}"
    );

    let (status, answer) = client.post_raw(&request(true)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["metadata"]["feature_names"],
        json!([
            "user_id",
            "post_id",
            "user_features__ctr_7d",
            "post_features__ctr_7d",
            "user_features__country",
            "post_features__tags"
        ])
    );
    assert_eq!(answer["results"][0]["values"], json!([1, 2, 3]));
    assert_eq!(answer["results"][1]["values"], json!([10, 11, 10]));
    let user_ctr = column(&answer, "user_features__ctr_7d");
    assert_eq!(user_ctr["values"], json!([0.5, 0.25, null]));
    assert_eq!(
        user_ctr["statuses"],
        json!(["PRESENT", "PRESENT", "NOT_FOUND"])
    );
    let post_ctr = column(&answer, "post_features__ctr_7d");
    assert_eq!(post_ctr["values"], json!([0.125, null, 0.125]));
    assert_eq!(
        post_ctr["statuses"],
        json!(["PRESENT", "NOT_FOUND", "PRESENT"])
    );
    assert_eq!(
        column(&answer, "post_features__tags")["values"],
        json!([["cats", null], null, ["cats", null]])
    );
    assert_eq!(
        column(&answer, "user_features__country")["values"],
        json!(["de", "fr", null])
    );

    // A found row with a null feature is PRESENT with null, as in Feast.
    let (status, answer) = client
        .post(json!({"features": ["user_features:clicks_7d"], "entities": {"user_id": [1, 2]}}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(column(&answer, "clicks_7d")["values"], json!([10, null]));
    assert_eq!(
        column(&answer, "clicks_7d")["statuses"],
        json!(["PRESENT", "PRESENT"])
    );
}

#[tokio::test]
async fn rows_older_than_the_ttl_are_outside_max_age() {
    let env = Env::embedded().await;
    let now = now_us();
    let hour = 3_600_000_000i64;
    fill(
        &env.store,
        "fresh",
        &[col("score", FeatureType::Float64)],
        vec![
            (vec!["1".into()], now - hour / 6, vec![Value::Float64(1.0)]),
            (vec!["2".into()], now - 2 * hour, vec![Value::Float64(2.0)]),
        ],
    )
    .await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let base = start(env.server(vec![view(
        "fresh",
        "entity = \"user_id\"\nsource = \"ads.fresh\"\nttl = \"1h\"",
    )]))
    .await;
    let client = Client::new(&base, Some(&token));
    let (status, answer) = client
        .post(json!({"features": ["fresh:score"], "entities": {"user_id": [1, 2, 3]}}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let score = column(&answer, "score");
    assert_eq!(score["values"], json!([1.0, null, null]));
    assert_eq!(
        score["statuses"],
        json!(["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"])
    );
    let times = score["event_timestamps"].as_array().unwrap();
    assert_ne!(
        times[1], "1970-01-01T00:00:00Z",
        "an expired row keeps its time"
    );
    assert_eq!(times[2], "1970-01-01T00:00:00Z");

    let (status, one) = client.get("/v1/features/fresh/2").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["status"], "OUTSIDE_MAX_AGE");
    assert_eq!(one["features"], json!({"score": null}));
}

#[tokio::test]
async fn human_endpoints_list_views_and_answer_one_entity() {
    let env = Env::embedded().await;
    users_and_posts(&env).await;
    fill(
        &env.store,
        "pair",
        &[col("affinity", FeatureType::Float64)],
        vec![(
            vec!["1".into(), "a,b".into()],
            now_us(),
            vec![Value::Float64(0.75)],
        )],
    )
    .await;
    let token = env.token("me", &[Scope::Serve], &[], None);
    let mut views = user_and_post_views();
    views.push(view(
        "pair",
        "entity = [\"user_id\", \"topic\"]\nsource = \"ads.pair\"",
    ));
    views.push(view(
        "declared_only",
        "entity = \"user_id\"\nsource = \"ads.later\"",
    ));
    let base = start(
        env.server(views)
            .with_key_kinds("pair", vec![KeyKind::Integer, KeyKind::Text]),
    )
    .await;
    let client = Client::new(&base, Some(&token));

    let (status, one) = client.get("/v1/features/user_features/1").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["view"], "user_features");
    assert_eq!(one["entity"], json!({"user_id": 1}));
    assert_eq!(one["status"], "PRESENT");
    assert_eq!(
        one["features"],
        json!({"ctr_7d": 0.5, "clicks_7d": 10, "country": "de"})
    );
    assert!(one["event_timestamp"].as_str().unwrap().ends_with('Z'));

    let (status, missing) = client.get("/v1/features/user_features/404").await;
    assert_eq!(status, 200, "{missing}");
    assert_eq!(missing["status"], "NOT_FOUND");

    // Composite entities go in the query string (text keys may hold commas).
    let (status, pair) = client.get("/v1/features/pair?user_id=1&topic=a%2Cb").await;
    assert_eq!(status, 200, "{pair}");
    assert_eq!(pair["features"], json!({"affinity": 0.75}));
    assert_eq!(pair["entity"], json!({"user_id": 1, "topic": "a,b"}));
    let (status, err) = client.get("/v1/features/pair").await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("?user_id=…&topic=…"),
        "{err}"
    );
    let (status, err) = client.get("/v1/features/pair/1").await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]
        .as_str()
        .unwrap()
        .contains("/v1/features/pair?user_id="));
    let (status, err) = client.get("/v1/features/pair?user_id=x&topic=a").await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("not an integer"),
        "{err}"
    );

    let (status, list) = client.get("/v1/features").await;
    assert_eq!(status, 200, "{list}");
    let views = list["views"].as_array().unwrap();
    let names: Vec<&str> = views.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["declared_only", "pair", "post_features", "user_features"]
    );
    let user = &views[3];
    assert_eq!(user["entity"], json!(["user_id"]));
    assert_eq!(user["source"], "ads.ads_user_features");
    assert_eq!(user["ttl_seconds"], 86_400);
    assert_eq!(
        user["features"],
        json!([
            {"name": "ctr_7d", "type": "float64"},
            {"name": "clicks_7d", "type": "int64"},
            {"name": "country", "type": "string"}
        ])
    );
    assert_eq!(user["published"]["rows"], 2);
    assert_eq!(user["published"]["version"], 1);
    assert_eq!(
        user["published"]["snapshots"],
        json!({"ads.user_features": 1})
    );
    assert!(views[0]["published"].is_null());
    assert!(views[0]["hint"]
        .as_str()
        .unwrap()
        .contains("strata features materialize declared_only"));
}

#[tokio::test]
async fn twelve_hundred_posts_are_one_call_and_one_lookup() {
    let env = Env::embedded().await;
    let now = now_us();
    let rows = (0..1500)
        .map(|i| {
            (
                vec![i.to_string()],
                now,
                vec![
                    Value::Float64(f64::from(i) / 1000.0),
                    Value::Int64(i64::from(i) * 3),
                ],
            )
        })
        .collect();
    fill(
        &env.store,
        "post_features",
        &[
            col("ctr_7d", FeatureType::Float64),
            col("likes", FeatureType::Int64),
        ],
        rows,
    )
    .await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let base = start(env.server(vec![view(
        "post_features",
        "entity = \"post_id\"\nsource = \"ads.ads_post_features\"",
    )]))
    .await;
    let client = Client::new(&base, Some(&token));
    // 1,200 posts, the last 100 of which do not exist.
    let ids: Vec<i64> = (400..1600).collect();
    let (status, answer) = client
        .post(json!({"features": ["post_features:ctr_7d", "post_features:likes"], "entities": {"post_id": ids}}))
        .await;
    assert_eq!(status, 200);
    let likes = column(&answer, "likes");
    let values = likes["values"].as_array().unwrap();
    assert_eq!(values.len(), 1200);
    for (i, id) in ids.iter().enumerate() {
        if *id < 1500 {
            assert_eq!(values[i], json!(id * 3), "post {id}");
            assert_eq!(likes["statuses"][i], "PRESENT");
        } else {
            assert_eq!(values[i], json!(null), "post {id}");
            assert_eq!(likes["statuses"][i], "NOT_FOUND");
        }
    }
    assert_eq!(
        column(&answer, "ctr_7d")["values"][0],
        json!(0.4),
        "ctr of post 400"
    );
}
