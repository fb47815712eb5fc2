//! The warehouse end to end on a real lake in a temp dir: a small project over an ODS table,
//! run for two dates, re-run, broken on purpose.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_table::config::LakeOptions;

use chrono::{NaiveDate, Utc};
use iceberg::{NamespaceIdent, TableIdent};
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::{Log, Record};
use strata_cdc::merge::{cdc_lag, CdcMerger, CdcTable};
use strata_core::cdc::{
    CdcRecord, Change, ColumnSchema, ColumnType, Op, SourcePosition, TableSchema, Value,
};
use strata_core::event::{BusRecord, Event, EVENTS_TOPIC};
use strata_sink::LakeSink;
use strata_sql::{format_batches, OutputFormat, SqlSession};
use strata_table::Lake;
use strata_warehouse::alert::Alerter;
use strata_warehouse::backfill::backfill;
use strata_warehouse::config::WarehouseConfig;
use strata_warehouse::schedule::{scheduled_run, sentinel, CdcInputs, Inputs};
use strata_warehouse::{run, ModelStatus, Project, RunOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn lake(dir: &Path) -> Lake {
    let config = LakeOptions::new(dir);
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
    strata_sql::list_tables(lake.catalog().as_ref())
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

/// A click of a kind dwd_click's accepted_values check refuses, on 2026-11-21.
async fn plant_bogus_click(lake: &Lake) {
    SqlSession::new(lake)
        .await
        .unwrap()
        .run("INSERT INTO ods.clicks VALUES (4, TIMESTAMP '2026-11-21 12:00:00', 'bogus')")
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

/// A temp dir with a lake seeded with `ods.clicks` and the project of [`project`] beside it.
async fn seeded() -> (tempfile::TempDir, Lake, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("data")).await;
    seed(&lake).await;
    let root = dir.path().join("project");
    project(&root);
    (dir, lake, root)
}

fn opts(d: &str) -> RunOptions {
    let mut o = RunOptions::new(date(d));
    o.retry_backoff = Duration::from_millis(10);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_runs_layers_in_order_and_reruns_replace() {
    let (_dir, lake, root) = seeded().await;
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
async fn new_columns_after_the_old_ones_are_added_and_other_changes_refused() {
    let (_dir, lake, root) = seeded().await;
    let p = Project::load(&root, &existing(&lake).await).unwrap();
    assert!(run(&lake, &p, &opts("2026-11-20"))
        .await
        .unwrap()
        .succeeded());

    // The incremental and the merge model each gain a column after their existing ones.
    let dwd = std::fs::read_to_string(root.join("models/dwd/dwd_click.sql")).unwrap();
    write(
        &root,
        "models/dwd/dwd_click.sql",
        &dwd.replace(
            "CAST(ts AS DATE) AS dt\n",
            "CAST(ts AS DATE) AS dt, extract(hour FROM ts) AS hour\n",
        ),
    );
    write(
        &root,
        "models/ads/ads_user_features.sql",
        "SELECT user_id, sum(clicks) AS clicks_total, max(dt) AS last_active, sum(actions) AS actions_total FROM dws.dws_user_daily GROUP BY user_id\n",
    );
    let p = Project::load(&root, &existing(&lake).await).unwrap();
    let r = run(&lake, &p, &opts("2026-11-21")).await.unwrap();
    assert!(r.succeeded(), "{r:#?}");
    // The day written before reads the new column as NULL; the new day has it.
    assert_eq!(
        sql(&lake, "SELECT CAST(dt AS VARCHAR) AS dt, count(*) AS n, count(hour) AS with_hour FROM dwd.dwd_click GROUP BY dt ORDER BY dt").await,
        "dt,n,with_hour\n2026-11-20,3,0\n2026-11-21,2,2\n"
    );
    assert_eq!(
        sql(&lake, "SELECT user_id, clicks_total, actions_total FROM ads.ads_user_features ORDER BY user_id").await,
        "user_id,clicks_total,actions_total\n1,2,3\n2,1,1\n3,1,1\n"
    );

    // A column taken away (or moved) is not an append: refused, the table as it was.
    write(
        &root,
        "models/dwd/dwd_click.sql",
        &dwd.replace("SELECT user_id, kind, ts,", "SELECT user_id, ts,"),
    );
    let p = Project::load(&root, &existing(&lake).await).unwrap();
    let r = run(&lake, &p, &opts("2026-11-21")).await.unwrap();
    assert!(!r.succeeded());
    let failed = r.models.iter().find(|m| m.model == "dwd_click").unwrap();
    let error = failed.error.as_deref().unwrap_or_default();
    assert!(error.contains("differ from table dwd.dwd_click"), "{error}");
    assert_eq!(
        sql(
            &lake,
            "SELECT count(*) AS n, count(kind) AS k FROM dwd.dwd_click"
        )
        .await,
        "n,k\n5,5\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_block_downstream_and_backfill_resumes() {
    let (_dir, lake, root) = seeded().await;
    // A bad value on 2026-11-21: the accepted_values check (an error) must stop DWS.
    plant_bogus_click(&lake).await;
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

/// `unique` finds duplicates through a hash of the key first; what it reports must still be
/// the exact number of duplicated keys, NULLs grouping together as in GROUP BY, and only
/// within the run date's partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_checks_count_duplicated_keys_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("data")).await;
    SqlSession::new(&lake)
        .await
        .unwrap()
        .run(
            "CREATE TABLE ods.keys (k1 STRING, k2 BIGINT, dt DATE);
             INSERT INTO ods.keys VALUES
               ('a', 1, DATE '2026-11-20'), ('a', 1, DATE '2026-11-20'), ('a', 2, DATE '2026-11-20'),
               (NULL, 1, DATE '2026-11-20'), (NULL, 1, DATE '2026-11-20'), ('b', NULL, DATE '2026-11-20'),
               ('b', 1, DATE '2026-11-20'), ('b', 1, DATE '2026-11-21')",
        )
        .await
        .unwrap();
    let root = dir.path().join("project");
    write(
        &root,
        "models/dwd/dwd_keys.sql",
        r#"/*
materialized = "incremental"
partition_by = "dt"
[[checks]]
type = "unique"
name = "pair"
columns = ["k1", "k2"]
severity = "warn"
[[checks]]
type = "unique"
name = "first"
columns = ["k1"]
severity = "warn"
[[checks]]
type = "unique"
name = "whole row"
columns = ["k1", "k2", "dt"]
severity = "warn"
scope = "table"
[[checks]]
type = "unique"
name = "second on its own day"
columns = ["k2"]
severity = "warn"
*/
SELECT k1, k2, dt FROM ods.keys WHERE dt = $run_date
"#,
    );
    let p = Project::load(&root, &existing(&lake).await).unwrap();
    let observed = |r: &strata_warehouse::DagRun| -> Vec<(String, String, String)> {
        r.models[0]
            .checks
            .iter()
            .map(|c| (c.name.clone(), c.status.to_string(), c.observed.clone()))
            .collect()
    };
    let r = run(&lake, &p, &opts("2026-11-20")).await.unwrap();
    let row = |name: &str, status: &str, observed: &str| {
        (name.to_string(), status.to_string(), observed.to_string())
    };
    assert_eq!(
        observed(&r),
        [
            // ('a', 1) and (NULL, 1)
            row("pair", "fail", "2 duplicated keys"),
            // 'a', NULL and 'b'
            row("first", "fail", "3 duplicated keys"),
            row("whole row", "fail", "2 duplicated keys"),
            // 1 and 2 and NULL: 1 repeats
            row("second on its own day", "fail", "1 duplicated keys"),
        ]
    );
    let r = run(&lake, &p, &opts("2026-11-21")).await.unwrap();
    assert_eq!(
        observed(&r),
        [
            row("pair", "pass", "0 duplicated keys"),
            row("first", "pass", "0 duplicated keys"),
            // Table scope: 2026-11-20's duplicates are still there, and ('b', 1) on two
            // days is two keys, not a duplicate.
            row("whole row", "fail", "2 duplicated keys"),
            row("second on its own day", "pass", "0 duplicated keys"),
        ]
    );
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

/// A Slack-style webhook on 127.0.0.1: keeps every JSON body POSTed to it, answers 200.
async fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/alerts", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    assert!(head.starts_with("post /hooks/alerts "), "{head}");
                    assert!(head.contains("content-type: application/json"), "{head}");
                    let body = serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                    kept.lock().unwrap().push(body);
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_run_alerts_missing_inputs_and_failed_checks_to_the_webhook() {
    let (_dir, lake, root) = seeded().await;
    plant_bogus_click(&lake).await;
    let (url, alerts) = webhook().await;
    let config = WarehouseConfig {
        project: root,
        sentinel_timeout: Duration::ZERO,
        retry_backoff: Duration::from_millis(10),
        alert_webhook: url.clone(),
        ..WarehouseConfig::default()
    };
    let r = scheduled_run(
        &lake,
        &config,
        None,
        None,
        &Alerter::new(&url),
        date("2026-11-21"),
    )
    .await
    .expect("the run starts although the sentinel gave up");
    assert_eq!(r.status, "failed", "{r:#?}");

    let alerts = alerts.lock().unwrap().clone();
    let texts: Vec<&str> = alerts.iter().map(|a| a["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    // No ods.ods_event at all: the sentinel names the missing events.
    assert!(
        texts[0].starts_with(":warning: warehouse run for 2026-11-21: inputs not complete"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("2026-11-22 00:10:00"), "{}", texts[0]);
    // The summary: which model failed, which check, what it saw; what was skipped.
    assert!(texts[1].starts_with(":x: warehouse run"), "{}", texts[1]);
    assert!(texts[1].contains("0/3 models ok"), "{}", texts[1]);
    assert!(texts[1].contains("dwd_click check_failed"), "{}", texts[1]);
    assert!(
        texts[1].contains("1 rows with other values"),
        "{}",
        texts[1]
    );
    assert!(texts[1].contains("dws_user_daily skipped"), "{}", texts[1]);
}

fn cdc_change(id: i64, name: &str, commit_ts: i64, pos: u64) -> CdcRecord {
    let row = [
        ("id".to_string(), Value::Int(id)),
        ("name".to_string(), Value::Str(name.to_string())),
    ]
    .into_iter()
    .collect();
    CdcRecord::Change(Box::new(Change {
        op: Op::Create,
        before: None,
        after: Some(row),
        position: SourcePosition {
            file: "binlog.000001".into(),
            pos,
            row: 0,
            snapshot: false,
        },
        txid: None,
        commit_ts,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_waits_for_cdc_tables_to_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir.path().join("data")).await;
    let log: Arc<dyn Log> = EmbeddedLog::open(&dir.path().join("bus"), EmbeddedOptions::default())
        .await
        .unwrap();
    // Events are complete: the lake sink commits one received after the run date's end.
    let event = BusRecord::Event(Box::new(Event {
        message_id: "m-1".into(),
        app: "web".into(),
        kind: "track".into(),
        event: Some("Post Viewed".into()),
        user_id: Some("u1".into()),
        server_ts: 1_795_307_400_000_000, // 2026-11-22 00:30:00 UTC
        event_ts: 1_795_307_400_000_000,
        ..Event::default()
    }));
    log.ensure_topic(EVENTS_TOPIC, 1).await.unwrap();
    log.append(
        EVENTS_TOPIC,
        vec![Record {
            key: bytes::Bytes::new(),
            value: event.to_json().into(),
            timestamp_ms: 0,
        }],
    )
    .await
    .unwrap();
    let (_stop, drain) = tokio::sync::watch::channel(true);
    let sink_config = strata_table::config::LakeConfig::default();
    LakeSink::new(&lake, log.clone(), &sink_config)
        .await
        .unwrap()
        .run(drain.clone())
        .await
        .unwrap();
    let topic = strata_core::cdc::topic("app", "users");
    log.ensure_topic(&topic, 1).await.unwrap();
    let schema = CdcRecord::Schema(TableSchema {
        source: "app".into(),
        database: "app".into(),
        table: "users".into(),
        columns: vec![
            ColumnSchema {
                name: "id".into(),
                source_type: "bigint(20)".into(),
                kind: ColumnType::Long,
                nullable: false,
            },
            ColumnSchema {
                name: "name".into(),
                source_type: "varchar(64)".into(),
                kind: ColumnType::String,
                nullable: true,
            },
        ],
        primary_key: vec!["id".into()],
    });
    let hour_ago = Utc::now().timestamp_micros() - 3_600_000_000;
    let records = [
        schema,
        cdc_change(1, "ada", hour_ago, 100),
        cdc_change(2, "bo", hour_ago + 1, 200),
    ]
    .iter()
    .map(|r| Record {
        key: bytes::Bytes::new(),
        value: r.to_json().into(),
        timestamp_ms: 0,
    })
    .collect();
    log.append(&topic, records).await.unwrap();

    let target = TableIdent::new(NamespaceIdent::new("ods".into()), "ods_users".into());
    let cdc = CdcInputs {
        log: log.clone(),
        tables: vec![(topic.clone(), target.clone())],
    };
    let inputs = Inputs {
        ready_at: "2026-11-22T00:10:00Z".parse().unwrap(),
        cdc: Some(&cdc),
        cdc_max_lag: Duration::from_secs(300),
    };
    // Nothing merged yet: the oldest pending change is an hour old.
    let missing = sentinel(&lake, &inputs, Duration::ZERO).await.unwrap_err();
    assert!(
        missing.contains("ods_users trails cdc.app.users by 1h"),
        "{missing}"
    );
    assert!(missing.contains("3 records pending"), "{missing}");
    assert!(
        !missing.contains("events"),
        "events are complete: {missing}"
    );

    // The merger applies everything on the bus (a stopping merger drains the topic first).
    let table = CdcTable {
        source: "app".into(),
        table: "users".into(),
        topic: topic.clone(),
        target: target.clone(),
        changelog: None,
        commit_interval: Duration::from_millis(10),
    };
    CdcMerger::new(&lake, log.clone(), vec![table])
        .run(drain)
        .await
        .unwrap();
    let lag = cdc_lag(&lake, &log, &topic, &target).await.unwrap();
    assert_eq!((lag.applied, lag.end, lag.pending()), (Some(3), 3, 0));
    // The merger holds its position as a bus group, so retention keeps what it has not read.
    let held = log
        .committed(strata_cdc::merge::CDC_GROUP, &topic)
        .await
        .unwrap();
    assert_eq!(held.get(&0), Some(&3));
    assert_eq!(lag.applied_commit_ts, Some(hour_ago + 1));
    assert_eq!(lag.lag(Utc::now().timestamp_micros()), Some(Duration::ZERO));
    sentinel(&lake, &inputs, Duration::ZERO).await.unwrap();

    // A new change lands on the bus but not in the table: pending again, and fresh.
    log.append(
        &topic,
        vec![Record {
            key: bytes::Bytes::new(),
            value: cdc_change(3, "cy", Utc::now().timestamp_micros(), 300)
                .to_json()
                .into(),
            timestamp_ms: 0,
        }],
    )
    .await
    .unwrap();
    let lag = cdc_lag(&lake, &log, &topic, &target).await.unwrap();
    assert_eq!(lag.pending(), 1);
    assert!(lag.lag(Utc::now().timestamp_micros()).unwrap() < Duration::from_secs(60));
    sentinel(&lake, &inputs, Duration::ZERO).await.unwrap();
    log.close().await.unwrap();
}

/// When the memory pool cannot hold 8 bytes per row for the sorted-hash pass, the `unique`
/// check groups the keys in SQL instead (which can spill), and still counts exactly.
#[tokio::test]
async fn unique_checks_count_exactly_when_the_hashes_do_not_fit_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakeOptions::new(dir.path().join("data"));
    // 1,000,000 hashes need 8 MB; the whole pool is 4 MiB, enough for the GROUP BY to spill.
    config.lake.query_memory_limit = 4 << 20;
    let lake = Lake::open(&config).await.unwrap();
    SqlSession::new(&lake)
        .await
        .unwrap()
        .run(
            "CREATE TABLE ods.many (k BIGINT, dt DATE);
             INSERT INTO ods.many SELECT value % 999993, DATE '2026-11-20'
               FROM generate_series(0, 999999)",
        )
        .await
        .unwrap();
    let root = dir.path().join("project");
    write(
        &root,
        "models/dwd/dwd_many.sql",
        r#"/*
materialized = "incremental"
partition_by = "dt"
[[checks]]
type = "unique"
name = "k"
columns = ["k"]
severity = "warn"
*/
SELECT k, dt FROM ods.many WHERE dt = $run_date
"#,
    );
    let p = Project::load(&root, &existing(&lake).await).unwrap();
    let r = run(&lake, &p, &opts("2026-11-20")).await.unwrap();
    let checks: Vec<(String, String)> = r.models[0]
        .checks
        .iter()
        .map(|c| (c.status.to_string(), c.observed.clone()))
        .collect();
    // Keys 0..=6 occur twice (999,993 + 7 = 1,000,000 rows).
    assert_eq!(
        checks,
        [("fail".to_string(), "7 duplicated keys".to_string())]
    );
}

/// A step that counts its runs and fails (retryable or not) as told.
#[derive(Debug)]
struct CountingStep {
    name: String,
    after: std::collections::BTreeSet<String>,
    runs: Arc<std::sync::atomic::AtomicU32>,
    fail: Option<bool>,
}

#[async_trait::async_trait]
impl strata_warehouse::Step for CountingStep {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &str {
        "test"
    }
    fn after(&self) -> &std::collections::BTreeSet<String> {
        &self.after
    }
    fn describe(&self) -> String {
        "counts".into()
    }
    async fn run(&self, lake: &Lake, _date: NaiveDate) -> Result<u64, strata_warehouse::StepError> {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // It runs after its model: the model's table exists and is filled.
        let n = sql(lake, "SELECT count(*) AS n FROM ads.ads_pit").await;
        assert!(n.contains('\n'), "{n}");
        match self.fail {
            None => Ok(7),
            Some(retryable) => Err(strata_warehouse::StepError {
                message: "the store is down".into(),
                retryable,
            }),
        }
    }
}

#[tokio::test]
async fn point_in_time_models_depend_on_their_arguments_and_steps_run_after_their_models() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path()).await;
    seed(&lake).await;
    let root = dir.path().join("project");
    write(
        &root,
        "dwd/dwd_labels.sql",
        "SELECT user_id, ts FROM ods.clicks",
    );
    write(
        &root,
        "dws/dws_feats.sql",
        "SELECT user_id, count(*) AS n, max(ts) AS at FROM ods.clicks GROUP BY user_id",
    );
    write(
        &root,
        "ads/ads_pit.sql",
        "SELECT * FROM point_in_time('dwd.dwd_labels', 'ts', 'SELECT user_id, n, at FROM dws.dws_feats', 'user_id', 'at')",
    );
    let mut p = Project::load(&root, &existing(&lake).await).unwrap();
    let pit = p.model("ads_pit").unwrap();
    assert_eq!(
        pit.upstream,
        ["dwd_labels".to_string(), "dws_feats".to_string()].into(),
        "the tables inside point_in_time's arguments are dependencies"
    );
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let failing_runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    p.attach_steps(vec![
        Arc::new(CountingStep {
            name: "sync.ok".into(),
            after: ["ads_pit".to_string()].into(),
            runs: runs.clone(),
            fail: None,
        }),
        Arc::new(CountingStep {
            name: "sync.down".into(),
            after: ["ads_pit".to_string()].into(),
            runs: failing_runs.clone(),
            fail: Some(true),
        }),
    ])
    .unwrap();
    let err = p
        .clone()
        .attach_steps(vec![Arc::new(CountingStep {
            name: "ads_pit".into(),
            after: ["nope".to_string()].into(),
            runs: runs.clone(),
            fail: None,
        })])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the name is taken") && err.contains("model nope"),
        "{err}"
    );

    let mut o = opts("2026-11-22");
    o.retry_backoff = Duration::from_millis(10);
    let r = run(&lake, &p, &o).await.unwrap();
    let step = |n: &str| r.models.iter().find(|m| m.model == n).unwrap().clone();
    assert_eq!(step("sync.ok").status, ModelStatus::Success);
    assert_eq!(step("sync.ok").rows_written, 7);
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A retryable failure is retried with the project's retries (2), then fails the run.
    assert_eq!(step("sync.down").status, ModelStatus::Failed);
    assert_eq!(failing_runs.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(r.status, "failed");
    let recorded = sql(
        &lake,
        "SELECT count(*) AS n FROM audit.model_runs WHERE model = 'sync.down'",
    )
    .await;
    assert!(recorded.contains('3'), "{recorded}");
}
