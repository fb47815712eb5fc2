use arrow::array::AsArray;
use strata_bus::Offsets;

use crate::tables_helpers::*;
use crate::Fault;
use crate::*;
use strata_sql::{format_batches, OutputFormat};
use strata_table::schema::OdsTable;
use strata_table::write::commit_with_position;

/// Two commits: 3 events, then 2 more. Returns the two snapshot ids and commit times (ms).
async fn two_snapshots(lake: &Lake) -> ((i64, i64), (i64, i64)) {
    let ident = OdsTable::Event.ident();
    let files = write_events(
        lake,
        &[(0, "Signed Up", 0), (1, "Followed", 0), (2, "Followed", 1)],
        0,
    )
    .await;
    let p1: Offsets = [(0, 3)].into_iter().collect();
    let t1 = commit_with_position(lake, &ident, files, "events", None, &p1, &[])
        .await
        .unwrap();
    // Distinct commit milliseconds for the timestamp lookups below.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let files = write_events(lake, &[(3, "Followed", 0), (4, "Liked", 2)], 3).await;
    let p2: Offsets = [(0, 5)].into_iter().collect();
    let t2 = commit_with_position(lake, &ident, files, "events", None, &p2, &[])
        .await
        .unwrap();
    let s1 = t1.metadata().current_snapshot().unwrap();
    let s2 = t2.metadata().current_snapshot().unwrap();
    (
        (s1.snapshot_id(), s1.timestamp_ms()),
        (s2.snapshot_id(), s2.timestamp_ms()),
    )
}

#[tokio::test]
async fn sql_reads_committed_tables() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    two_snapshots(&lake).await;
    let session = SqlSession::new(&lake).await.unwrap();
    let n = |sql: &'static str| {
        let session = &session;
        async move {
            eprintln!("running {sql}");
            scalar_i64(&session.run(sql).await.unwrap())
        }
    };
    assert_eq!(n("SELECT count(*) FROM ods.ods_event").await, 5);
    assert_eq!(n("SELECT count(*) FROM strata.ods.ods_event").await, 5);
    assert_eq!(
        n("SELECT count(*) FROM ods_event WHERE event_type = 'Followed'").await,
        3
    );
    assert_eq!(
        n("SELECT count(*) FROM ods.ods_event WHERE hr = 11").await,
        1
    );
    // Window function + QUALIFY: the latest event per user.
    assert_eq!(
        n("SELECT count(*) FROM (SELECT user_id FROM ods.ods_event \
           QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY event_ts DESC) = 1)")
        .await,
        5
    );
    // A join.
    assert_eq!(
        n("SELECT count(*) FROM ods.ods_event a JOIN ods.ods_event b ON a.user_id = b.user_id")
            .await,
        5
    );
    // Several statements: the last one's rows come back.
    assert_eq!(
        n("CREATE VIEW f AS SELECT * FROM ods.ods_event WHERE event_type = 'Followed'; SELECT count(*) FROM f").await,
        3
    );
    // CREATE TABLE … AS makes a lake table; the sink's own tables cannot be dropped, and
    // views cannot shadow lake tables.
    assert_eq!(
        n("CREATE TABLE copy AS SELECT * FROM ods_event; SELECT count(*) FROM ods.copy").await,
        5
    );
    let err = session.run("DROP TABLE ods.ods_event").await.unwrap_err();
    assert!(err.to_string().contains("lake sink"), "{err}");
    assert!(session
        .run("CREATE VIEW ods.ods_event AS SELECT 1")
        .await
        .is_err());
    assert_eq!(
        strata_sql::list_tables(lake.catalog().as_ref())
            .await
            .unwrap(),
        ["ods.copy", "ods.ods_event", "ods.ods_event_rejected"]
    );
    session.run("DROP TABLE ods.copy PURGE").await.unwrap();
    assert_eq!(
        n("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ods' AND table_name LIKE 'ods_event%' AND table_name NOT LIKE '%$%'").await,
        2
    );
    // Snapshot listing with the bus offsets.
    let batches = session
        .run(
            "SELECT snapshot_id, summary['strata.bus.events.offsets'] AS offsets \
              FROM ods.ods_event$snapshots ORDER BY committed_at",
        )
        .await
        .unwrap();
    let offsets: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(offsets, [r#"{"0":3}"#, r#"{"0":5}"#]);

    let err = session.run("SELECT * FROM ods.nope").await.unwrap_err();
    assert_eq!(err.fault(), Fault::User, "{err}");
    assert!(!err.retryable());
    let err = session.run("SELEKT 1").await.unwrap_err();
    assert_eq!(err.fault(), Fault::User, "{err}");
}

/// A session reads a table's metadata when a statement uses it, not when the session starts:
/// a table whose metadata cannot be read does not stop queries over the others, and a commit
/// made after the session started is seen by its next statement.
#[tokio::test]
async fn a_session_reads_table_metadata_when_a_statement_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = OdsTable::Event.ident();
    let files = write_events(&lake, &[(0, "Signed Up", 0), (1, "Followed", 0)], 0).await;
    let p1: Offsets = [(0, 2)].into_iter().collect();
    commit_with_position(&lake, &ident, files, "events", None, &p1, &[])
        .await
        .unwrap();
    let setup = SqlSession::new(&lake).await.unwrap();
    setup.run("CREATE SCHEMA app").await.unwrap();
    setup
        .run("CREATE TABLE app.broken AS SELECT 1 AS x")
        .await
        .unwrap();
    let broken = lake
        .load_table(&iceberg::TableIdent::from_strs(["app", "broken"]).unwrap())
        .await
        .unwrap();
    let location = broken.metadata_location().unwrap();
    std::fs::remove_file(location.strip_prefix("file://").unwrap_or(location)).unwrap();

    let session = SqlSession::new(&lake).await.unwrap();
    assert_eq!(
        scalar_i64(
            &session
                .run("SELECT count(*) FROM ods.ods_event")
                .await
                .unwrap()
        ),
        2
    );
    let err = session
        .run("SELECT x FROM app.broken")
        .await
        .expect_err("its metadata file is gone");
    assert!(
        err.to_string().contains("broken") || err.to_string().contains(".metadata.json"),
        "{err}"
    );

    let files = write_events(&lake, &[(2, "Liked", 1)], 2).await;
    let p2: Offsets = [(0, 3)].into_iter().collect();
    commit_with_position(&lake, &ident, files, "events", None, &p2, &[])
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(
            &session
                .run("SELECT count(*) FROM ods.ods_event")
                .await
                .unwrap()
        ),
        3
    );
}

#[tokio::test]
async fn time_travel_by_version_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ((id1, ms1), (id2, ms2)) = two_snapshots(&lake).await;
    assert!(ms2 > ms1);
    let session = SqlSession::new(&lake).await.unwrap();
    let n = |sql: String| {
        let session = &session;
        async move { scalar_i64(&session.run(&sql).await.unwrap()) }
    };
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM ods.ods_event VERSION AS OF {id1}"
        ))
        .await,
        3
    );
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM ods.ods_event VERSION AS OF {id2}"
        ))
        .await,
        5
    );
    let at1 = strata_core::time::format_micros(ms1 * 1000);
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM ods.ods_event TIMESTAMP AS OF '{at1}'"
        ))
        .await,
        3
    );
    // `YYYY-MM-DD HH:MM:SS.ffffff` without a zone is UTC.
    let at1_plain = at1.replace('T', " ").trim_end_matches('Z').to_string();
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM ods.ods_event FOR SYSTEM_TIME AS OF '{at1_plain}'"
        ))
        .await,
        3
    );
    assert_eq!(
        n("SELECT count(*) FROM ods.ods_event FOR SYSTEM_TIME AS OF now()".to_string()).await,
        5
    );
    assert_eq!(
        n(format!("SELECT count(*) FROM ods.ods_event TIMESTAMP AS OF TIMESTAMP '{at1_plain}' + INTERVAL '0 seconds'")).await,
        3
    );
    // Two versions of one table in one query, default alias = table name, and an explicit alias.
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM ods.ods_event e \
             WHERE e.message_id NOT IN (SELECT ods_event.message_id FROM strata.ods.ods_event VERSION AS OF {id1})"
        ))
        .await,
        2
    );
    assert_eq!(
        n(format!("SELECT count(old.message_id) FROM ods_event VERSION AS OF {id1} AS old WHERE old.event_type = 'Followed'")).await,
        2
    );
    // Temporary tables do not leak.
    assert!(session
        .context()
        .catalog("strata_time_travel")
        .unwrap()
        .schema("tt")
        .unwrap()
        .table_names()
        .is_empty());

    let err = session
        .run("SELECT count(*) FROM ods.ods_event VERSION AS OF 1")
        .await
        .unwrap_err();
    assert!(matches!(err, strata_table::Error::NotFound(_)), "{err}");
    let err = session
        .run("SELECT count(*) FROM ods.ods_event TIMESTAMP AS OF '2001-01-01'")
        .await
        .unwrap_err();
    assert!(matches!(err, strata_table::Error::NotFound(_)), "{err}");
    let err = session
        .run("SELECT count(*) FROM ods.ods_event TIMESTAMP AS OF 'yesterday-ish'")
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::User, "{err}");
}

#[tokio::test]
async fn output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    two_snapshots(&lake).await;
    let session = SqlSession::new(&lake).await.unwrap();
    let batches = session
        .run("SELECT event_type, count(*) AS n FROM ods.ods_event GROUP BY event_type ORDER BY event_type")
        .await
        .unwrap();
    let table = format_batches(&batches, OutputFormat::Table).unwrap();
    assert!(table.contains("| Followed   | 3 |"), "{table}");
    assert!(table.ends_with("+\n"), "{table}");
    let csv = format_batches(&batches, OutputFormat::Csv).unwrap();
    assert_eq!(csv, "event_type,n\nFollowed,3\nLiked,1\nSigned Up,1\n");
    let json = format_batches(&batches, OutputFormat::Json).unwrap();
    assert_eq!(
        json,
        "{\"event_type\":\"Followed\",\"n\":3}\n{\"event_type\":\"Liked\",\"n\":1}\n{\"event_type\":\"Signed Up\",\"n\":1}\n"
    );
    let _ = lake.catalog().list_namespaces(None).await.unwrap();
    assert_eq!(
        strata_sql::list_tables(lake.catalog().as_ref())
            .await
            .unwrap(),
        ["ods.ods_event", "ods.ods_event_rejected"]
    );
}

/// A sort of 4M rows (~100 MB in Arrow with its row numbers) under a 32 MiB query memory
/// limit: it completes by spilling to `lake.spill_dir` and stays exact. The same plan on a
/// runtime that may not spill fails, so the limit really binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_the_memory_limit_spill_instead_of_failing() {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.lake.query_memory_limit = 32 << 20;
    let lake = Lake::open(&c).await.unwrap();
    assert!(matches!(
        lake.runtime().memory_pool.memory_limit(),
        datafusion::execution::memory_pool::MemoryLimit::Finite(n) if n == 32 << 20
    ));
    let q = "SELECT count(*) AS n, sum(CASE WHEN rn = 4000001 - v THEN 1 ELSE 0 END) AS in_place
             FROM (SELECT v, row_number() OVER (ORDER BY h) AS rn
                   FROM (SELECT value AS v, 4000000 - value AS h, value * 3 AS w FROM generate_series(1, 4000000)))";
    let session = SqlSession::new(&lake).await.unwrap();
    let out = format_batches(&session.run(q).await.unwrap(), OutputFormat::Csv).unwrap();
    assert_eq!(out, "n,in_place\n4000000,4000000\n");
    assert!(c.spill_dir().is_dir());

    let no_spill = RuntimeEnvBuilder::new()
        .with_memory_pool(std::sync::Arc::new(FairSpillPool::new(32 << 20)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .unwrap();
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), no_spill);
    let err = ctx.sql(q).await.unwrap().collect().await.unwrap_err();
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("resources exhausted")
            || err.to_string().to_lowercase().contains("disk"),
        "{err}"
    );
}

/// A hash join whose build side is an aggregate's output (1.5M groups, ~24 MB in Arrow) under
/// a 1 GiB limit, roomy enough that the aggregate does not spill (a spilled aggregate emits
/// fresh batches). DataFusion charges each 8,192-row slice the aggregate emits the whole batch
/// it was cut from (over 2 GB in all here), so plain DataFusion fails with resources
/// exhausted; the session's `CompactExec` under the build side makes the charge what the rows
/// hold, and the join completes with the right answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_built_on_an_aggregate_is_charged_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.lake.query_memory_limit = 1 << 30;
    let lake = Lake::open(&c).await.unwrap();
    // The probe side is four times the aggregate's input, so join selection keeps the
    // aggregate as the build side.
    let q = "WITH g AS (SELECT value % 1500000 AS k, max(value) AS m
                        FROM generate_series(1, 3000000) GROUP BY value % 1500000)
             SELECT count(*) AS n, sum(g.m) AS s
             FROM g JOIN (SELECT value AS k FROM generate_series(0, 12000000)) p ON g.k = p.k";
    let session = SqlSession::new(&lake).await.unwrap();
    let plan = explain(&session, q).await;
    assert!(plan.contains("CompactExec"), "{plan}");
    let out = format_batches(&session.run(q).await.unwrap(), OutputFormat::Csv).unwrap();
    // Each k in 0..1.5M has max(value) = k + 1.5M (k = 0: 3M): sum = 1.5M·1.5M + Σk + 1.5M.
    let n: i64 = 1_500_000;
    let s = n * n + (n - 1) * n / 2 + n;
    assert_eq!(out, format!("n,s\n{n},{s}\n"));

    plain_datafusion_runs_out_of_memory(q, 1 << 30, &dir.path().join("plain-spill")).await;
}

/// Iceberg scans report their snapshot's row count, so a LEFT JOIN of a fact table to a
/// small dimension builds its hash table on the dimension (the join is swapped to RIGHT),
/// not on the facts written first. Without the estimate the left input was always built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_build_on_the_smaller_lake_table() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&config(dir.path())).await.unwrap();
    let session = SqlSession::new(&lake).await.unwrap();
    session
        .run(
            "CREATE NAMESPACE app;
             CREATE TABLE app.facts AS SELECT value AS id, value % 100 AS dim_id FROM generate_series(1, 200000);
             CREATE TABLE app.dims AS SELECT value AS dim_id, 'd' || value AS name FROM generate_series(0, 99)",
        )
        .await
        .unwrap();
    let q = "SELECT count(*) AS n, count(d.name) AS named FROM app.facts f LEFT JOIN app.dims d ON d.dim_id = f.dim_id";
    let plan = explain(&session, q).await;
    assert!(plan.contains("rows=Inexact(200000)"), "{plan}");
    assert!(plan.contains("join_type=Right"), "{plan}");
    let out = format_batches(&session.run(q).await.unwrap(), OutputFormat::Csv).unwrap();
    assert_eq!(out, "n,named\n200000,200000\n");
}

/// A lake scan cuts a data file with several row groups between partitions, and every live row
/// is read exactly once — position deletes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_splits_a_file_between_partitions_and_reads_every_row_once() {
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    use datafusion::physical_plan::{collect_partitioned, ExecutionPlanProperties};
    use datafusion::prelude::{SessionConfig, SessionContext};
    use iceberg_datafusion::IcebergStaticTableProvider;

    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&config(dir.path())).await.unwrap();
    let session = SqlSession::new(&lake).await.unwrap();
    // 2.5M rows: more than two of the Parquet writer's 1,048,576-row groups.
    session
        .run(
            "CREATE NAMESPACE app;
             CREATE TABLE app.big AS SELECT value AS id FROM generate_series(1, 2500000);
             DELETE FROM app.big WHERE id % 10 = 0",
        )
        .await
        .unwrap();
    let table = lake
        .load_table(&iceberg::TableIdent::from_strs(["app", "big"]).unwrap())
        .await
        .unwrap();
    let summary = &table
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(
        summary.get("total-data-files").map(String::as_str),
        Some("1"),
        "{summary:?}"
    );
    assert_eq!(
        summary.get("total-position-deletes").map(String::as_str),
        Some("250000")
    );

    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    let provider = IcebergStaticTableProvider::try_new_from_table(table)
        .await
        .unwrap();
    ctx.register_table("big", std::sync::Arc::new(provider))
        .unwrap();
    let plan = ctx
        .sql("SELECT id FROM big")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let rule = strata_sql::scan::LakeScans { min_split_bytes: 1 };
    let plan = rule.optimize(plan, ctx.state().config_options()).unwrap();
    assert_eq!(plan.output_partitioning().partition_count(), 2);
    let parts = collect_partitioned(plan, ctx.task_ctx()).await.unwrap();
    let mut rows = Vec::new();
    let mut sum = 0i64;
    for part in &parts {
        rows.push(part.iter().map(|b| b.num_rows()).sum::<usize>());
        for batch in part {
            let ids = batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>();
            sum += ids.iter().flatten().sum::<i64>();
        }
    }
    assert!(
        rows.iter().all(|&n| n > 0),
        "each partition reads part of the file: {rows:?}"
    );
    assert_eq!(rows.iter().sum::<usize>(), 2_250_000, "{rows:?}");
    let all: i64 = (1..=2_500_000i64).filter(|v| v % 10 != 0).sum();
    assert_eq!(sum, all);
}

/// `GROUP BY k, d` where `d` is a constant (as `WHERE dt = $run_date` makes it): DataFusion
/// plans the aggregate as sorted on `d` and, under a 32 MiB limit, fails instead of spilling.
/// The session plans it linear, so it spills and gets every group right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_grouped_by_a_constant_spills_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.lake.query_memory_limit = 32 << 20;
    let lake = Lake::open(&c).await.unwrap();
    let q = "SELECT count(*) AS groups, sum(users) AS users, sum(CASE WHEN d = DATE '2026-12-03' THEN 1 ELSE 0 END) AS on_day
             FROM (SELECT k, d, count(DISTINCT u) AS users
                   FROM (SELECT value % 300000 AS k, DATE '2026-12-03' AS d, value AS u
                         FROM generate_series(1, 3000000))
                   GROUP BY k, d)";
    let session = SqlSession::new(&lake).await.unwrap();
    let plan = explain(&session, q).await;
    assert!(plan.contains("PropertiesExec"), "{plan}");
    let out = format_batches(&session.run(q).await.unwrap(), OutputFormat::Csv).unwrap();
    assert_eq!(out, "groups,users,on_day\n300000,3000000,300000\n");

    plain_datafusion_runs_out_of_memory(q, 32 << 20, &dir.path().join("plain-spill")).await;
}

/// A CTE read more than once is computed once (`SharedExec`), and the answer is the same as
/// computing it at each reference. Under a pool too small to hold the shared results, each
/// reference computes them itself instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cte_read_twice_is_computed_once_or_recomputed_when_it_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&config(dir.path())).await.unwrap();
    let session = SqlSession::new(&lake).await.unwrap();
    // User u (0..1000) touches posts u..u+10 twice each: 10 distinct posts per user.
    session
        .run(
            "CREATE NAMESPACE app;
             CREATE TABLE app.ev AS
               SELECT value % 1000 AS u, value % 1000 + (value / 1000) % 10 AS p
               FROM generate_series(0, 19999)",
        )
        .await
        .unwrap();
    let q = "WITH ui AS (SELECT DISTINCT u, p FROM app.ev),
                  n AS (SELECT u, count(*) AS n FROM ui GROUP BY u)
             SELECT count(*) AS users, sum(a.n * b.n) AS s
             FROM n a JOIN n b ON a.u = b.u";
    let plan = explain(&session, q).await;
    assert!(plan.contains("SharedExec: readers=2"), "{plan}");
    let out = format_batches(&session.run(q).await.unwrap(), OutputFormat::Csv).unwrap();
    assert_eq!(out, "users,s\n1000,100000\n");

    // 400k groups (over 6 MB in Arrow) against a 4 MiB pool: the shared results cannot be
    // held, so both branches compute (and spill) the aggregate themselves.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.lake.query_memory_limit = 4 << 20;
    let lake = Lake::open(&c).await.unwrap();
    let session = SqlSession::new(&lake).await.unwrap();
    session
        .run(
            "CREATE NAMESPACE app;
             CREATE TABLE app.big AS SELECT value AS id FROM generate_series(1, 800000)",
        )
        .await
        .unwrap();
    let q = "WITH g AS (SELECT id % 400000 AS k, count(*) AS c FROM app.big GROUP BY id % 400000)
             SELECT 'groups' AS what, count(c) AS v FROM g
             UNION ALL SELECT 'rows', sum(c) FROM g
             ORDER BY what";
    let plan = explain(&session, q).await;
    assert!(plan.contains("SharedExec: readers=2"), "{plan}");
    let out = format_batches(&session.run(q).await.unwrap(), OutputFormat::Csv).unwrap();
    assert_eq!(out, "what,v\ngroups,400000\nrows,800000\n");
}

/// `ROW_NUMBER() … QUALIFY rn <= K` keeps K rows per key without sorting them all, and gives
/// what the full sort gives: `rank()` over a unique ordering numbers rows the same way and is
/// left to the sort, so the two must agree row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_k_per_window_partition_keeps_what_the_full_sort_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&config(dir.path())).await.unwrap();
    let session = SqlSession::new(&lake).await.unwrap();
    // 997 keys, 300 rows each, scores scattered so every key's best rows arrive late and early.
    session
        .run(
            "CREATE NAMESPACE app;
             CREATE TABLE app.pairs AS
               SELECT value % 997 AS g, (value * 7919) % 100003 AS score, value AS v
               FROM generate_series(1, 299100)",
        )
        .await
        .unwrap();
    let query = |func: &str, filter: &str| {
        format!(
            "SELECT count(*) AS n, sum(v) AS sv, sum(rn * v) AS srv, sum(rn * score) AS srs
             FROM (SELECT g, v, score,
                          {func}() OVER (PARTITION BY g ORDER BY score DESC, v) AS rn
                   FROM app.pairs QUALIFY {filter})"
        )
    };
    for filter in ["rn <= 3", "rn < 21", "rn = 1", "2 >= rn"] {
        let topk = query("row_number", filter);
        let sorted = query("rank", filter);
        let plan = explain(&session, &topk).await;
        assert!(plan.contains("PartitionedTopKExec"), "{filter}: {plan}");
        assert!(!plan.contains("SortExec"), "{filter}: {plan}");
        assert!(!explain(&session, &sorted)
            .await
            .contains("PartitionedTopKExec"));
        let got = format_batches(&session.run(&topk).await.unwrap(), OutputFormat::Csv).unwrap();
        let want = format_batches(&session.run(&sorted).await.unwrap(), OutputFormat::Csv).unwrap();
        assert_eq!(got, want, "{filter}");
    }
    let k20 = format_batches(
        &session.run(&query("row_number", "rn <= 20")).await.unwrap(),
        OutputFormat::Csv,
    )
    .unwrap();
    assert!(k20.starts_with("n,sv,srv,srs\n19940,"), "{k20}");

    // Another window function beside row_number would see fewer rows: the sort stays, and the
    // answer is the full sort's.
    let mixed = |func: &str| {
        format!(
            "SELECT count(*) AS n, sum(s) AS ss FROM (
               SELECT g, {func}() OVER (PARTITION BY g ORDER BY v) AS rn,
                      sum(v) OVER (PARTITION BY g ORDER BY v) AS s
               FROM app.pairs QUALIFY rn <= 3)"
        )
    };
    let plan = explain(&session, &mixed("row_number")).await;
    assert!(!plan.contains("PartitionedTopKExec"), "{plan}");
    let got = session.run(&mixed("row_number")).await.unwrap();
    let want = session.run(&mixed("rank")).await.unwrap();
    assert_eq!(
        format_batches(&got, OutputFormat::Csv).unwrap(),
        format_batches(&want, OutputFormat::Csv).unwrap()
    );
}

/// `q` on plain DataFusion (a fair spill pool of `pool` bytes, spilling to `spill`) fails with
/// resources exhausted: what the session's rules are there to prevent.
async fn plain_datafusion_runs_out_of_memory(q: &str, pool: usize, spill: &std::path::Path) {
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    let plain = RuntimeEnvBuilder::new()
        .with_memory_pool(std::sync::Arc::new(FairSpillPool::new(pool)))
        .with_temp_file_path(spill)
        .build_arc()
        .unwrap();
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), plain);
    let err = ctx.sql(q).await.unwrap().collect().await.unwrap_err();
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("resources exhausted"),
        "{err}"
    );
}

/// The session's physical plan of `q`, as CSV.
async fn explain(session: &SqlSession, q: &str) -> String {
    format_batches(
        &session.run(&format!("EXPLAIN {q}")).await.unwrap(),
        OutputFormat::Csv,
    )
    .unwrap()
}
