//! Masking by the token's role (the same masks a SQL session run as that role reads, checked
//! against a real SQL session over a real lake table) and the access log (one row per
//! request, refusals included, in `audit.access_log`).

use std::time::Duration;

use serde_json::json;
use strata_core::governance::GovernanceConfig;
use strata_core::tokens::Scope;
use strata_online::{FeatureType, Value};
use strata_sql::audit::AuditLog;
use strata_sql::masking::Masking;
use strata_sql::SqlSession;
use strata_table::config::LakeOptions;
use strata_table::Lake;

use crate::support::*;

const GOVERNANCE: &str = r#"
[[tags]]
name = "pii"
mask = "hash"
columns = ["ads.ads_user_features.phone", "ads.ads_user_features.score"]

[[tags]]
name = "contact"
mask = "partial"
columns = ["ads.ads_user_features.email"]

[[tags]]
name = "secret"
mask = "null"
columns = ["ads.ads_user_features.income", "features.u2u_cf.similar"]

[[roles]]
name = "analyst"

[[roles]]
name = "support"
unmask = ["contact"]
"#;

/// One text cell of a query's only row, by column name (`None`: NULL).
async fn sql_row(session: &SqlSession, query: &str) -> serde_json::Map<String, serde_json::Value> {
    let batches = session.run(query).await.unwrap();
    let batch = batches.iter().find(|b| b.num_rows() > 0).unwrap();
    assert_eq!(batch.num_rows(), 1);
    let mut out = serde_json::Map::new();
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let column = batch.column(i);
        let value = if column.is_null(0) {
            serde_json::Value::Null
        } else {
            json!(arrow::util::display::array_value_to_string(column, 0).unwrap())
        };
        out.insert(field.name().clone(), value);
    }
    out
}

#[tokio::test]
async fn roles_read_the_masks_sql_reads() {
    let env = Env::embedded().await;
    let lake = Lake::open(&LakeOptions::new(env.dir.path().join("lake")))
        .await
        .unwrap();
    let owner = SqlSession::new(&lake).await.unwrap();
    owner.run("CREATE SCHEMA ads").await.unwrap();
    owner
        .run(
            "CREATE TABLE ads.ads_user_features AS SELECT CAST(1 AS BIGINT) AS user_id, \
             '+1 555 0100' AS phone, 'ada@example.com' AS email, CAST(52000 AS BIGINT) AS income, \
             CAST(0.375 AS DOUBLE) AS score, CAST(0.5 AS DOUBLE) AS ctr_7d",
        )
        .await
        .unwrap();
    let governance: GovernanceConfig = toml::from_str(GOVERNANCE).unwrap();
    governance.validate().unwrap();
    let key = strata_sql::masking::load_or_create_key(&env.dir.path().join("mask.key")).unwrap();

    fill(
        &env.store,
        "user_features",
        &[
            col("phone", FeatureType::String),
            col("email", FeatureType::String),
            col("income", FeatureType::Int64),
            col("score", FeatureType::Float64),
            col("ctr_7d", FeatureType::Float64),
        ],
        vec![(
            vec!["1".into()],
            now_us(),
            vec![
                Value::String("+1 555 0100".into()),
                Value::String("ada@example.com".into()),
                Value::Int64(52000),
                Value::Float64(0.375),
                Value::Float64(0.5),
            ],
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
            vec![Value::Int64List(vec![Some(7)])],
        )],
    )
    .await;
    let analyst = env.token("analyst-app", &[Scope::Serve], &[], Some("analyst"));
    let support = env.token("support-app", &[Scope::Serve], &[], Some("support"));
    let owner_token = env.token("owner-app", &[Scope::Serve], &[], None);
    let ghost = env.token("ghost-app", &[Scope::Serve], &[], Some("ghost"));
    let views = vec![
        view(
            "user_features",
            "entity = \"user_id\"\nsource = \"ads.ads_user_features\"",
        ),
        view(
            "u2u_cf",
            "entity = \"user_id\"\nquery = \"SELECT user_id, array_agg(other) AS similar FROM ads.ads_recall_u2u_cf GROUP BY user_id\"",
        ),
    ];
    let base = start(
        env.server(views)
            .with_governance(governance.clone(), key.clone()),
    )
    .await;
    let request = json!({
        "features": ["user_features:phone", "user_features:email", "user_features:income",
                     "user_features:score", "user_features:ctr_7d", "u2u_cf:similar"],
        "entities": {"user_id": [1]},
    });
    let served = |answer: &serde_json::Value, name: &str| column(answer, name)["values"][0].clone();

    for (role, token) in [("analyst", &analyst), ("support", &support)] {
        let (status, answer) = Client::new(&base, Some(token)).post(request.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let session = SqlSession::as_role(
            &lake,
            Masking::new(governance.clone(), role, key.clone()).unwrap(),
        )
        .await
        .unwrap();
        let sql = sql_row(
            &session,
            "SELECT phone, email, income, score FROM ads.ads_user_features WHERE user_id = 1",
        )
        .await;
        for feature in ["phone", "email", "score"] {
            assert_eq!(served(&answer, feature), sql[feature], "{role}: {feature}");
        }
        assert_eq!(served(&answer, "income"), json!(null), "{role}");
        assert_eq!(sql["income"], json!(null), "{role}");
        assert_eq!(served(&answer, "ctr_7d"), json!(0.5), "{role}");
        assert_eq!(
            served(&answer, "similar"),
            json!(null),
            "{role}: query view"
        );
    }
    let (_, answer) = Client::new(&base, Some(&analyst))
        .post(request.clone())
        .await;
    assert!(served(&answer, "phone")
        .as_str()
        .unwrap()
        .starts_with("mask:"));
    assert_eq!(served(&answer, "email"), json!("***********.com"));
    let (_, answer) = Client::new(&base, Some(&support))
        .post(request.clone())
        .await;
    assert_eq!(served(&answer, "email"), json!("ada@example.com"));

    // No role: the lake's owner reads everything.
    let (_, answer) = Client::new(&base, Some(&owner_token))
        .post(request.clone())
        .await;
    assert_eq!(served(&answer, "phone"), json!("+1 555 0100"));
    assert_eq!(served(&answer, "income"), json!(52000));
    assert_eq!(served(&answer, "similar"), json!([7]));
    // The human endpoint masks alike.
    let (status, one) = Client::new(&base, Some(&analyst))
        .get("/v1/features/user_features/1")
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["features"]["income"], json!(null));
    assert!(one["features"]["phone"]
        .as_str()
        .unwrap()
        .starts_with("mask:"));
    // A role [governance] does not define: refused, not served unmasked.
    let (status, answer) = Client::new(&base, Some(&ghost)).post(request).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("ghost"),
        "{answer}"
    );
}

#[tokio::test]
async fn every_request_is_in_the_access_log() {
    let env = Env::embedded().await;
    let lake = Lake::open(&LakeOptions::new(env.dir.path().join("lake")))
        .await
        .unwrap();
    fill(
        &env.store,
        "user_features",
        &[col("ctr_7d", FeatureType::Float64)],
        vec![(vec!["1".into()], now_us(), vec![Value::Float64(0.5)])],
    )
    .await;
    let feed = env.token("feed", &[Scope::Serve], &[], None);
    let spark = env.token("spark", &[Scope::CatalogWrite], &[], None);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (audit, task) = AuditLog::start(lake.clone(), Duration::from_millis(50), stopped);
    let base = start(
        env.server(vec![view(
            "user_features",
            "entity = \"user_id\"\nsource = \"ads.ads_user_features\"",
        )])
        .with_audit(audit),
    )
    .await;
    let request = json!({"features": ["user_features:ctr_7d"], "entities": {"user_id": [1, 2]}});
    assert_eq!(
        Client::new(&base, Some(&feed))
            .post(request.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        Client::new(&base, Some(&feed))
            .get("/v1/features/user_features/1")
            .await
            .0,
        200
    );
    assert_eq!(
        Client::new(&base, Some(&feed))
            .post(json!({"features": ["nope:x"], "entities": {"user_id": [1]}}))
            .await
            .0,
        400
    );
    assert_eq!(Client::new(&base, None).post(request.clone()).await.0, 401);
    assert_eq!(Client::new(&base, Some(&spark)).post(request).await.0, 403);
    stop.send(true).unwrap();
    task.await.unwrap();

    let session = SqlSession::new(&lake).await.unwrap();
    let batches = session
        .run(
            "SELECT actor, surface, action, object, outcome, status, rows, detail \
             FROM audit.access_log ORDER BY ts",
        )
        .await
        .unwrap();
    let text = strata_sql::format_batches(&batches, strata_sql::OutputFormat::Csv).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        "feed,serve,get_online_features,user_features,ok,200,2,"
    );
    assert_eq!(lines[1], "feed,serve,get_feature,user_features,ok,200,1,");
    assert!(
        lines[2].starts_with("feed,serve,get_online_features,nope,rejected,400,,"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("-,serve,get_online_features,,denied,401,,"),
        "{text}"
    );
    assert!(
        lines[4].starts_with("spark,serve,get_online_features,,denied,403,,"),
        "{text}"
    );
    assert!(lines[4].contains("lacks the serve scope"), "{text}");
}
