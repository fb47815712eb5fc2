//! Pulls end to end: a real HTTP server on 127.0.0.1 (`server/`) that paginates in every
//! style, throttles with 429 + `Retry-After`, fails with 500 and answers too slowly, and a
//! real lake in a temp dir read back with SQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod server;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use server::{Fault, Server, RECORDS, TOKEN};
use strata_pull::config::PullConfig;
use strata_pull::state::{self, RunStatus};
use strata_pull::{parse_time, Pull, Runner, Window};
use strata_sql::{format_batches, OutputFormat, SqlSession};
use strata_table::config::LakeOptions;
use strata_table::Lake;

struct Env {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    lake: Lake,
    server: Server,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lake = Lake::open(&LakeOptions::new(&data)).await.unwrap();
    Env {
        _dir: dir,
        data,
        lake,
        server: Server::start().await,
    }
}

impl Env {
    fn runner(&self) -> Runner {
        self.runner_with_token(Some(TOKEN))
    }

    fn runner_with_token(&self, token: Option<&'static str>) -> Runner {
        Runner::new(self.lake.clone(), &self.data)
            .unwrap()
            .with_env(Arc::new(move |name: &str| {
                (name == "API_TOKEN")
                    .then(|| token.map(str::to_string))
                    .flatten()
            }))
    }

    /// A pull of `kind`'s endpoint; `extra` is more TOML keys.
    fn pull(&self, name: &str, kind: &str, extra: &str) -> Pull {
        let text = format!(
            r#"
name = "{name}"
schedule = "0 * * * *"
url = "{}"
headers = {{ Authorization = "Bearer ${{env:API_TOKEN}}" }}
timeout = "400ms"
backoff = "10ms"
max_backoff = "40ms"
{extra}
"#,
            self.server
                .url(&format!("/{kind}/items?start={{start}}&end={{end}}"))
        );
        let config: PullConfig = toml::from_str(&text).unwrap();
        Pull::new(&config, 0).unwrap()
    }

    async fn sql(&self, query: &str) -> String {
        let session = SqlSession::new(&self.lake).await.unwrap();
        format_batches(&session.run(query).await.unwrap(), OutputFormat::Csv).unwrap()
    }

    async fn snapshots(&self, table: &str) -> usize {
        let ident = strata_table::table::parse_table_name(table).unwrap();
        let t = self.lake.load_table(&ident).await.unwrap();
        t.metadata().snapshots().count()
    }
}

fn window(start: &str) -> Window {
    let start = parse_time(start).unwrap();
    Window {
        start,
        end: start + chrono::Duration::hours(1),
    }
}

fn at(text: &str) -> DateTime<Utc> {
    parse_time(text).unwrap()
}

const FIELDS: &str = r#"
fields = [
  { name = "id", type = "long" },
  { name = "amount", type = "double" },
  { name = "created", type = "timestamp" },
  { name = "tier", path = "$.customer.tier", type = "string" },
]
"#;

/// Gaps between consecutive hits on one key.
fn gaps(hits: &[server::Hit]) -> Vec<Duration> {
    hits.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test]
async fn next_links_through_throttling_errors_and_timeouts_land_exactly_once() {
    let env = env().await;
    let pull = env.pull(
        "orders",
        "next",
        &format!("records = \"$.data\"\npagination = {{ kind = \"next_link\", next = \"$.links.next\" }}\n{FIELDS}"),
    );
    let w = window("2026-12-06T10:00:00Z");
    let start = w.start_text();
    let api = &env.server.api;
    // Page 2: throttled (wait 1 s); page 3: a 500, then an answer slower than the timeout.
    api.fault("next", &start, 1, &[Fault::Throttle(1)]);
    api.fault(
        "next",
        &start,
        2,
        &[Fault::ServerError, Fault::Slow(Duration::from_secs(3))],
    );
    let runs = env.runner().run_windows(&pull, &[w], |_| {}).await.unwrap();
    let run = &runs[0];
    assert_eq!(run.status, RunStatus::Ok, "{:?}", run.error);
    assert_eq!((run.rows, run.pages), (RECORDS, 3));
    assert_eq!((run.requests, run.retries), (6, 3));
    // One amount is "n/a": NULL in its column, kept in the JSON.
    assert_eq!(run.bad_values, 1);
    assert_eq!(
        run.bad_example.as_deref(),
        Some("field amount: \"n/a\" is not a double")
    );
    // Retry-After: 1 was honoured.
    let throttled = api.hits(&format!("next:{start}:1"));
    assert_eq!(throttled.len(), 2);
    assert!(
        gaps(&throttled)[0] >= Duration::from_secs(1),
        "{throttled:?}"
    );
    assert_eq!(throttled[0].status, 429);

    let table = "ods.ods_pull_orders";
    let expect = format!("n,ids,windows,gold,null_amounts\n{RECORDS},{RECORDS},1,12,1\n");
    let count = format!(
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, count(DISTINCT window_start) AS windows, \
         sum(CASE WHEN tier = 'gold' THEN 1 ELSE 0 END) AS gold, \
         sum(CASE WHEN amount IS NULL THEN 1 ELSE 0 END) AS null_amounts FROM {table}"
    );
    assert_eq!(env.sql(&count).await, expect);
    assert_eq!(
        env.sql(&format!(
            "SELECT DISTINCT window_start, window_end, dt FROM {table}"
        ))
        .await,
        "window_start,window_end,dt\n2026-12-06T10:00:00Z,2026-12-06T11:00:00Z,2026-12-06\n"
    );
    // The JSON text is the record as the API sent it.
    let records = server::records(w.start.timestamp());
    let id = records[7]["id"].as_i64().unwrap();
    let text = env
        .sql(&format!("SELECT record FROM {table} WHERE id = {id}"))
        .await;
    let json: Value = serde_json::from_str(&csv_field(text.lines().nth(1).unwrap())).unwrap();
    assert_eq!(json, records[7]);
    assert_eq!(env.snapshots(table).await, 1);

    // A re-run (with a throttled page again) replaces the partition: no duplicates, one
    // more commit.
    api.fault("next", &start, 0, &[Fault::Throttle(0)]);
    let again = env.runner().run_windows(&pull, &[w], |_| {}).await.unwrap();
    assert_eq!(again[0].status, RunStatus::Ok);
    assert_eq!(again[0].retries, 1);
    assert_eq!(env.sql(&count).await, expect);
    assert_eq!(env.snapshots(table).await, 2);
    let st = state::load(&env.data, "orders").unwrap();
    assert_eq!(st.windows_ok, 2);
    assert!(st.failed.is_empty());
}

/// The CSV field of a one-column row (quotes undone).
fn csv_field(line: &str) -> String {
    let inner = line
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or(line);
    inner.replace("\"\"", "\"")
}

#[tokio::test]
async fn link_header_pages_and_an_http_date_retry_after() {
    let env = env().await;
    let pull = env.pull(
        "linked",
        "link",
        "pagination = { kind = \"next_link\" }\nfields = [{ name = \"id\", type = \"long\" }]\n",
    );
    let w = window("2026-12-06T11:00:00Z");
    let start = w.start_text();
    env.server
        .api
        .fault("link", &start, 0, &[Fault::ThrottleUntil(2)]);
    let runs = env.runner().run_windows(&pull, &[w], |_| {}).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Ok, "{:?}", runs[0].error);
    assert_eq!(
        (runs[0].rows, runs[0].pages, runs[0].retries),
        (RECORDS, 3, 1)
    );
    let first = env.server.api.hits(&format!("link:{start}:0"));
    // The date is whole seconds, two ahead: at least one second was waited.
    assert!(gaps(&first)[0] >= Duration::from_secs(1), "{first:?}");
    assert_eq!(
        env.sql("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM ods.ods_pull_linked")
            .await,
        "n,ids\n23,23\n"
    );
}

#[tokio::test]
async fn cursor_pages_over_a_backfill_range() {
    let env = env().await;
    let pull = env.pull(
        "cursored",
        "cursor",
        "records = \"$.items\"\npagination = { kind = \"cursor\", cursor = \"$.meta.next_cursor\", param = \"after\" }\nfields = [{ name = \"id\", type = \"long\" }]\n",
    );
    // --start 09:30 --end 13:00: the whole windows 10, 11 and 12.
    let windows = strata_pull::windows_for(
        &pull,
        Some(at("2026-12-06T09:30:00Z")),
        Some(at("2026-12-06T13:00:00Z")),
        at("2026-12-07T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(windows.len(), 3);
    let api = &env.server.api;
    api.fault(
        "cursor",
        &windows[1].start_text(),
        2,
        &[Fault::ServerError, Fault::Throttle(0)],
    );
    let mut seen = Vec::new();
    let runs = env
        .runner()
        .run_windows(&pull, &windows, |r| seen.push(r.window))
        .await
        .unwrap();
    assert_eq!(seen, windows);
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Ok && r.rows == RECORDS));
    assert_eq!(runs[1].retries, 2);
    assert_eq!(
        env.sql(
            "SELECT window_start, count(*) AS n, count(DISTINCT id) AS ids FROM ods.ods_pull_cursored \
             GROUP BY window_start ORDER BY window_start"
        )
        .await,
        "window_start,n,ids\n2026-12-06T10:00:00Z,23,23\n2026-12-06T11:00:00Z,23,23\n2026-12-06T12:00:00Z,23,23\n"
    );
    // The cursor went out as ?after=c-1, c-2.
    assert_eq!(
        api.hits(&format!("cursor:{}:", windows[0].start_text()))
            .len(),
        3
    );
    // A range with no whole window says which window it is in.
    let err = strata_pull::windows_for(
        &pull,
        Some(at("2026-12-06T09:30:00Z")),
        Some(at("2026-12-06T10:30:00Z")),
        at("2026-12-07T00:00:00Z"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no whole window of pull cursored's schedule \"0 * * * *\" in that range (the window around the start is [2026-12-06T09:00:00Z, 2026-12-06T10:00:00Z))"),
        "{err}"
    );
}

#[tokio::test]
async fn page_numbers_stop_at_a_short_page_or_an_empty_one() {
    let env = env().await;
    let sized = env.pull(
        "paged",
        "page",
        "records = \"$.results\"\npagination = { kind = \"page\", size_param = \"per_page\", page_size = 10 }\n",
    );
    let w = window("2026-12-06T10:00:00Z");
    let runs = env
        .runner()
        .run_windows(&sized, &[w], |_| {})
        .await
        .unwrap();
    assert_eq!(
        (runs[0].rows, runs[0].pages, runs[0].requests),
        (RECORDS, 3, 3)
    );
    // Without a page size, the empty fourth page ends it.
    let to_empty = env.pull(
        "paged_to_empty",
        "page",
        "records = \"$.results\"\npagination = { kind = \"page\", first_page = 1 }\n",
    );
    let runs = env
        .runner()
        .run_windows(&to_empty, &[w], |_| {})
        .await
        .unwrap();
    assert_eq!(
        (runs[0].rows, runs[0].pages, runs[0].requests),
        (RECORDS, 4, 4)
    );
    assert_eq!(
        env.sql("SELECT count(DISTINCT record) AS n FROM ods.ods_pull_paged_to_empty")
            .await,
        "n\n23\n"
    );
}

#[tokio::test]
async fn a_window_that_keeps_failing_writes_nothing_and_says_why() {
    let env = env().await;
    let pull = env.pull(
        "flaky",
        "next",
        "records = \"$.data\"\npagination = { kind = \"next_link\", next = \"$.links.next\" }\nmax_attempts = 3\nretry_failed_after = \"10m\"\n",
    );
    let w1 = window("2026-12-06T10:00:00Z");
    let w2 = window("2026-12-06T11:00:00Z");
    let runner = env.runner();
    runner.run_windows(&pull, &[w1], |_| {}).await.unwrap();
    let table = "ods.ods_pull_flaky";
    let before = env.snapshots(table).await;
    // w1 breaks: its re-run fails and leaves the rows it had; w2 fails from the start.
    env.server.api.break_window(&w1.start_text(), true);
    env.server.api.break_window(&w2.start_text(), true);
    let runs = runner.run_windows(&pull, &[w1, w2], |_| {}).await.unwrap();
    for run in &runs {
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!((run.rows, run.requests, run.retries), (0, 3, 2));
        let error = run.error.as_deref().unwrap();
        assert!(
            error.starts_with("gave up after 3 attempts: GET http://127.0.0.1:")
                && error.ends_with("HTTP 500: this window is broken"),
            "{error}"
        );
        assert_eq!(run.fault.as_deref(), Some("external"));
    }
    assert_eq!(env.snapshots(table).await, before);
    assert_eq!(
        env.sql(&format!(
            "SELECT window_start, count(*) AS n FROM {table} GROUP BY window_start"
        ))
        .await,
        "window_start,n\n2026-12-06T10:00:00Z,23\n"
    );
    let st = state::load(&env.data, "flaky").unwrap();
    assert_eq!(st.last.as_ref().unwrap().status, RunStatus::Failed);
    assert_eq!(
        st.failed.iter().map(|f| f.window).collect::<Vec<_>>(),
        [w1, w2]
    );
    assert!(st.failed[1].error.contains("HTTP 500"));

    // The scheduler retries failed windows once retry_failed_after has passed.
    env.server.api.break_window(&w1.start_text(), false);
    env.server.api.break_window(&w2.start_text(), false);
    let now = Utc::now();
    let runs = runner.run_due(&pull, now).await.unwrap();
    // Not yet: the last try was just now. (The new windows it pulls are the latest hour's.)
    assert!(runs.iter().all(|r| r.window != w1 && r.window != w2));
    let later = now + chrono::Duration::minutes(11);
    let runs = runner.run_due(&pull, later).await.unwrap();
    let retried: Vec<Window> = runs
        .iter()
        .filter(|r| r.window == w1 || r.window == w2)
        .map(|r| r.window)
        .collect();
    assert_eq!(retried, [w1, w2]);
    assert!(runs.iter().all(|r| r.status == RunStatus::Ok));
    let st = state::load(&env.data, "flaky").unwrap();
    assert!(st.failed.is_empty(), "{:?}", st.failed);
    assert_eq!(
        env.sql(&format!(
            "SELECT count(*) AS n FROM {table} WHERE window_start < TIMESTAMP '2026-12-06T12:00:00Z'"
        ))
        .await,
        "n\n46\n"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried_and_a_missing_secret_is_named() {
    let env = env().await;
    let pull = env.pull("secret", "next", "records = \"$.data\"\n");
    let w = window("2026-12-06T10:00:00Z");
    let runs = env
        .runner_with_token(Some("wrong"))
        .run_windows(&pull, &[w], |_| {})
        .await
        .unwrap();
    assert_eq!(runs[0].requests, 1);
    let error = runs[0].error.as_deref().unwrap();
    assert!(error.contains("HTTP 401: no or wrong token"), "{error}");
    assert_eq!(runs[0].fault.as_deref(), Some("user"));
    let runs = env
        .runner_with_token(None)
        .run_windows(&pull, &[w], |_| {})
        .await
        .unwrap();
    assert_eq!(runs[0].requests, 0);
    assert_eq!(
        runs[0].error.as_deref(),
        Some("pulls.secret.headers.authorization: environment variable API_TOKEN is not set")
    );
    // Nothing was written: the table was never created.
    let ident = strata_table::table::parse_table_name("ods.ods_pull_secret").unwrap();
    assert!(!env.lake.catalog().table_exists(&ident).await.unwrap());
}

#[tokio::test]
async fn the_scheduler_catches_up_missed_windows() {
    let env = env().await;
    let pull = env.pull(
        "caught_up",
        "page",
        "records = \"$.results\"\npagination = { kind = \"page\" }\nstart = \"2026-12-06T00:00:00Z\"\ndelay = \"10m\"\n",
    );
    let runner = env.runner();
    // Down since midnight: at 03:15 the windows 00, 01 and 02 are due (03 is due at 04:10).
    let runs = runner
        .run_due(&pull, at("2026-12-06T03:15:00Z"))
        .await
        .unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| r.window.start_text())
            .collect::<Vec<_>>(),
        [
            "2026-12-06T00:00:00Z",
            "2026-12-06T01:00:00Z",
            "2026-12-06T02:00:00Z"
        ]
    );
    let st = state::load(&env.data, "caught_up").unwrap();
    assert_eq!(st.next_start, Some(at("2026-12-06T03:00:00Z")));
    assert_eq!(
        strata_pull::next_due(&pull, &st, at("2026-12-06T03:15:00Z")),
        Some(at("2026-12-06T04:10:00Z"))
    );
    // Nothing more is due yet; then one window.
    assert!(runner
        .run_due(&pull, at("2026-12-06T04:09:00Z"))
        .await
        .unwrap()
        .is_empty());
    let runs = runner
        .run_due(&pull, at("2026-12-06T04:10:00Z"))
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        env.sql(
            "SELECT count(*) AS n, count(DISTINCT window_start) AS w FROM ods.ods_pull_caught_up"
        )
        .await,
        "n,w\n92,4\n"
    );
}

#[tokio::test]
async fn the_serve_loop_runs_due_windows_and_stops_on_shutdown() {
    let env = env().await;
    // Minute windows from three minutes ago: due at once.
    let start = Utc::now() - chrono::Duration::minutes(3);
    let config: PullConfig = toml::from_str(&format!(
        r#"
name = "live"
schedule = "* * * * *"
start = "{}"
url = "{}"
headers = {{ Authorization = "Bearer ${{env:API_TOKEN}}" }}
records = "$.results"
backoff = "10ms"
max_backoff = "40ms"
"#,
        start.to_rfc3339(),
        env.server.url("/page/items?start={start}&end={end}")
    ))
    .unwrap();
    let pull = Pull::new(&config, 0).unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(strata_pull::schedule::scheduler(
        env.runner(),
        vec![pull],
        shutdown,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let st = state::load(&env.data, "live").unwrap();
        if st.windows_ok >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the scheduler stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn fields_declared_later_become_columns_and_a_type_clash_is_an_error() {
    let env = env().await;
    let records =
        "records = \"$.data\"\npagination = { kind = \"next_link\", next = \"$.links.next\" }\n";
    let first = env.pull(
        "evolving",
        "next",
        &format!("{records}fields = [{{ name = \"id\", type = \"long\" }}]\n"),
    );
    let runner = env.runner();
    let w1 = window("2026-12-06T10:00:00Z");
    let w2 = window("2026-12-06T11:00:00Z");
    runner.run_windows(&first, &[w1], |_| {}).await.unwrap();
    let second = env.pull(
        "evolving",
        "next",
        &format!(
            "{records}fields = [{{ name = \"id\", type = \"long\" }}, {{ name = \"tier\", path = \"customer.tier\", type = \"string\" }}]\n"
        ),
    );
    let runs = runner.run_windows(&second, &[w2], |_| {}).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Ok, "{:?}", runs[0].error);
    assert_eq!(
        env.sql(
            "SELECT window_start, count(tier) AS tiers, count(id) AS ids FROM ods.ods_pull_evolving \
             GROUP BY window_start ORDER BY window_start"
        )
        .await,
        "window_start,tiers,ids\n2026-12-06T10:00:00Z,0,23\n2026-12-06T11:00:00Z,23,23\n"
    );
    let clash = env.pull(
        "evolving",
        "next",
        &format!("{records}fields = [{{ name = \"id\", type = \"string\" }}]\n"),
    );
    let runs = runner.run_windows(&clash, &[w1], |_| {}).await.unwrap();
    let error = runs[0].error.as_deref().unwrap();
    assert!(
        error.contains(
            "ods.ods_pull_evolving has column id as Int64, but pulls.evolving declares it Utf8"
        ),
        "{error}"
    );
    // The clash wrote nothing: w1 still has its 23 rows.
    assert_eq!(
        env.sql("SELECT count(*) AS n FROM ods.ods_pull_evolving")
            .await,
        "n\n46\n"
    );
}
