//! The warehouse end to end on a real lake in a temp dir: a small project over an ODS table,
//! run for two dates, re-run, broken on purpose.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use strata_lake::{format_batches, Lake, OutputFormat, SqlSession};
use strata_warehouse::backfill::backfill;
use strata_warehouse::{run, ModelStatus, Project, RunOptions};

async fn lake(dir: &Path) -> Lake {
    let mut config = strata_core::Config::default();
    config.data.dir = dir.to_path_buf();
    Lake::open(&config).await.unwrap()
}

async fn sql(lake: &Lake, q: &str) -> String {
    let session = SqlSession::new(lake).await.unwrap();
    format_batches(&session.run(q).await.unwrap(), OutputFormat::Csv).unwrap()
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn existing(lake: &Lake) -> HashSet<String> {
    strata_lake::list_tables(lake.catalog().as_ref())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// ods.clicks (user_id, ts, kind) with rows on 2026-11-20 and 2026-11-21.
async fn seed(lake: &Lake) {
    let session = SqlSession::new(lake).await.unwrap();
    session
        .run(
            "CREATE TABLE ods.clicks (user_id BIGINT, ts TIMESTAMP, kind STRING) PARTITIONED BY (day(ts));
             INSERT INTO ods.clicks VALUES
               (1, TIMESTAMP '2026-11-20 08:00:00', 'click'), (1, TIMESTAMP '2026-11-20 09:00:00', 'like'),
               (2, TIMESTAMP '2026-11-20 10:00:00', 'click'), (1, TIMESTAMP '2026-11-21 08:00:00', 'click'),
               (3, TIMESTAMP '2026-11-21 23:59:59', 'click')",
        )
        .await
        .unwrap();
}

fn project(root: &Path) {
    write(
        root,
        "models/dwd/dwd_click.sql",
        r#"/*
materialized = "incremental"
partition_by = "dt"
[[checks]]
type = "not_null"
columns = ["user_id"]
[[checks]]
type = "accepted_values"
column = "kind"
values = ["click", "like"]
*/
SELECT user_id, kind, ts, CAST(ts AS DATE) AS dt
FROM ods.clicks
WHERE ts >= $run_start AND ts < $run_end
"#,
    );
    write(
        root,
        "models/dws/dws_user_daily.sql",
        r#"/*
materialized = "incremental"
partition_by = "dt"
tags = ["daily"]
[[checks]]
type = "unique"
columns = ["user_id", "dt"]
[[checks]]
type = "consistency"
left = "SELECT sum(clicks) FROM dws.dws_user_daily WHERE dt = $run_date"
right = "SELECT count(*) FROM ods.clicks WHERE kind = 'click' AND CAST(ts AS DATE) = $run_date"
*/
SELECT user_id, dt, sum(CASE WHEN kind = 'click' THEN 1 ELSE 0 END) AS clicks, count(*) AS actions
FROM dwd_click
WHERE dt = $run_date
GROUP BY user_id, dt
"#,
    );
    write(
        root,
        "models/ads/ads_user_features.sql",
        "SELECT user_id, sum(clicks) AS clicks_total, max(dt) AS last_active FROM dws.dws_user_daily GROUP BY user_id\n",
    );
    write(
        root,
        "models/ads/ads_user_features.toml",
        "materialized = \"merge\"\nunique_key = [\"user_id\"]\n[[checks]]\ntype = \"row_count\"\nmin = 1\n",
    );
}

fn opts(d: &str) -> RunOptions {
    let mut o = RunOptions::new(date(d));
    o.retry_backoff = Duration::from_millis(10);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_runs_layers_in_order_and_reruns_replace() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("data")).await;
    seed(&lake).await;
    let root = dir.path().join("project");
    project(&root);
    let p = Project::load(&root, &existing(&lake).await).unwrap();
    let order: Vec<&str> = p.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(order, ["dwd_click", "dws_user_daily", "ads_user_features"]);
    assert_eq!(
        p.model("dws_user_daily")
            .unwrap()
            .upstream
            .iter()
            .collect::<Vec<_>>(),
        ["dwd_click"]
    );

    for d in ["2026-11-20", "2026-11-21", "2026-11-21"] {
        let r = run(&lake, &p, &opts(d)).await.unwrap();
        assert!(r.succeeded(), "{r:#?}");
        assert!(
            r.models
                .iter()
                .all(|m| m.checks.iter().all(|c| c.status == "pass")),
            "{r:#?}"
        );
    }
    // The re-run of 2026-11-21 replaced its partitions: no duplicates.
    assert_eq!(
        sql(&lake, "SELECT CAST(dt AS VARCHAR) AS dt, count(*) AS n FROM dwd.dwd_click GROUP BY dt ORDER BY dt").await,
        "dt,n\n2026-11-20,3\n2026-11-21,2\n"
    );
    assert_eq!(
        sql(&lake, "SELECT user_id, CAST(dt AS VARCHAR) AS dt, clicks, actions FROM dws.dws_user_daily ORDER BY dt, user_id").await,
        "user_id,dt,clicks,actions\n1,2026-11-20,1,2\n2,2026-11-20,1,1\n1,2026-11-21,1,1\n3,2026-11-21,1,1\n"
    );
    assert_eq!(
        sql(&lake, "SELECT user_id, clicks_total, CAST(last_active AS VARCHAR) AS d FROM ads.ads_user_features ORDER BY user_id").await,
        "user_id,clicks_total,d\n1,2,2026-11-21\n2,1,2026-11-20\n3,1,2026-11-21\n"
    );
    // History: three runs, every model, every check.
    assert_eq!(
        sql(
            &lake,
            "SELECT status, count(*) AS n FROM audit.dag_runs GROUP BY status"
        )
        .await,
        "status,n\nsuccess,3\n"
    );
    assert_eq!(
        sql(
            &lake,
            "SELECT count(*) AS n FROM audit.model_runs WHERE status = 'success'"
        )
        .await,
        "n\n9\n"
    );
    assert_eq!(
        sql(
            &lake,
            "SELECT count(*) AS n FROM audit.dq_results WHERE status = 'pass'"
        )
        .await,
        "n\n15\n"
    );

    // Selection: one model and what depends on it.
    let mut o = opts("2026-11-20");
    o.select = Some("dws_user_daily+".into());
    let r = run(&lake, &p, &o).await.unwrap();
    let ran: Vec<&str> = r.models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(ran, ["dws_user_daily", "ads_user_features"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_block_downstream_and_backfill_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("data")).await;
    seed(&lake).await;
    let root = dir.path().join("project");
    project(&root);
    // Plant a bad value on 2026-11-21: the accepted_values check (an error) must stop DWS.
    SqlSession::new(&lake)
        .await
        .unwrap()
        .run("INSERT INTO ods.clicks VALUES (4, TIMESTAMP '2026-11-21 12:00:00', 'bogus')")
        .await
        .unwrap();
    let p = Project::load(&root, &existing(&lake).await).unwrap();
    let mut base = opts("2026-11-20");
    base.select = None;
    let b = backfill(&lake, &p, date("2026-11-20"), date("2026-11-22"), &base)
        .await
        .unwrap();
    assert_eq!(b.runs.len(), 2, "stops at the failing date");
    let failed = b.runs.last().unwrap();
    assert_eq!(failed.date, date("2026-11-21"));
    let status: Vec<_> = failed.models.iter().map(|m| m.status.clone()).collect();
    assert_eq!(
        status,
        [
            ModelStatus::CheckFailed,
            ModelStatus::Skipped,
            ModelStatus::Skipped
        ]
    );
    assert!(sql(
        &lake,
        "SELECT observed FROM audit.dq_results WHERE status = 'fail'"
    )
    .await
    .contains("1 rows with other values"));

    // Fix the data; the backfill resumes at 2026-11-21.
    SqlSession::new(&lake)
        .await
        .unwrap()
        .run("DELETE FROM ods.clicks WHERE kind = 'bogus'")
        .await
        .unwrap();
    let b = backfill(&lake, &p, date("2026-11-20"), date("2026-11-22"), &base)
        .await
        .unwrap();
    assert_eq!(b.skipped, [date("2026-11-20")]);
    assert_eq!(b.runs.len(), 2);
    assert!(b.runs.iter().all(|r| r.succeeded()));
}

#[tokio::test]
async fn broken_projects_are_reported_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("data")).await;
    seed(&lake).await;
    let existing = existing(&lake).await;

    let root = dir.path().join("syntax");
    write(
        &root,
        "models/dwd/a.sql",
        "SELECT user_id\n  FROM ods.clicks WHERE user_id = = 1\n",
    );
    let err = Project::load(&root, &existing).unwrap_err().to_string();
    assert!(
        err.contains("models/dwd/a.sql") && err.contains("Line: 2"),
        "{err}"
    );

    let root = dir.path().join("unknown");
    write(&root, "models/dwd/a.sql", "SELECT * FROM ods.nope");
    write(
        &root,
        "models/dwd/b.sql",
        "SELECT * FROM a WHERE dt = $run_day",
    );
    let err = Project::load(&root, &existing).unwrap_err().to_string();
    assert!(
        err.contains("reads ods.nope, which no model produces"),
        "{err}"
    );
    assert!(err.contains("unknown parameter $run_day"), "{err}");

    let root = dir.path().join("cycle");
    write(&root, "models/dwd/a.sql", "SELECT * FROM dws.c");
    write(&root, "models/dws/b.sql", "SELECT * FROM dwd.a");
    write(&root, "models/dws/c.sql", "SELECT * FROM dws.b");
    let err = Project::load(&root, &existing).unwrap_err().to_string();
    assert!(err.contains("dependency cycle"), "{err}");
    for m in ["a", "b", "c"] {
        assert!(err.contains(m), "{err}");
    }

    let root = dir.path().join("config");
    write(
        &root,
        "models/dwd/a.sql",
        "/*\nmaterialized = \"incremental\"\n*/\nSELECT 1 AS x",
    );
    let err = Project::load(&root, &existing).unwrap_err().to_string();
    assert!(err.contains("partition_by = \"dt\""), "{err}");
}
