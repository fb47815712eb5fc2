//! The serving API on Redis: the same answers as on the embedded store, and Redis killed →
//! 503 naming the store, quickly (bounded by `online.timeout`), never a hang.

use std::time::Duration;

use serde_json::json;
use strata_core::tokens::Scope;
use strata_online::{FeatureType, Value};

use crate::support::*;

#[tokio::test]
async fn redis_serves_and_answers_503_when_it_is_down() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let env = Env::redis(&redis).await;
    fill(
        &env.store,
        "user_features",
        &[col("ctr_7d", FeatureType::Float64)],
        (0..1200)
            .map(|i| {
                (
                    vec![i.to_string()],
                    now_us(),
                    vec![Value::Float64(f64::from(i))],
                )
            })
            .collect(),
    )
    .await;
    let token = env.token("feed", &[Scope::Serve], &[], None);
    let base = start(env.server(vec![view(
        "user_features",
        "entity = \"user_id\"\nsource = \"ads.ads_user_features\"",
    )]))
    .await;
    let client = Client::new(&base, Some(&token));
    let ids: Vec<i64> = (0..1200).collect();
    let request = json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": ids}});
    let (status, answer) = client.post(request.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let values = column(&answer, "ctr_7d")["values"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(values.len(), 1200);
    assert_eq!(values[1199], json!(1199.0));

    redis.stop();
    // Generous bound: the answer must come back (503), not hang; online.timeout is 500 ms.
    let (status, answer) = tokio::time::timeout(Duration::from_secs(20), client.post(request))
        .await
        .expect("the server hung with Redis down");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "store_unavailable");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("online store unavailable"),
        "{answer}"
    );
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(20),
        client.get("/v1/features/user_features/1"),
    )
    .await
    .expect("the server hung with Redis down");
    assert_eq!(status, 503, "{answer}");
    let (status, _) = tokio::time::timeout(Duration::from_secs(20), client.get("/v1/features"))
        .await
        .expect("the server hung with Redis down");
    assert_eq!(status, 503);
}
