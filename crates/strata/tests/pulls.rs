//! `strata pulls` on the real binary against a real HTTP API on 127.0.0.1: `strata check`
//! judging `[[pulls]]` offline (bad entries, an unset secret), a backfill of daily windows
//! with next links, a re-run that duplicates nothing, a failing window (exit code 1, nothing
//! written) and `strata pulls status` saying why.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::json;

const TOKEN: &str = "t0k3n-for-tests";

/// Two pages a day (3 + 2 records); the day `broken` names answers 500 while it is set.
async fn orders(
    State(broken): State<Arc<AtomicBool>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    let day = q.get("day").cloned().unwrap_or_default();
    if day == "2026-12-02" && broken.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance").into_response();
    }
    let n: i64 = day.replace('-', "").parse().unwrap_or(0);
    let page2 = q.get("page").map(String::as_str) == Some("2");
    let (ids, next) = if page2 {
        (3..5, serde_json::Value::Null)
    } else {
        (0..3, json!(format!("/orders?day={day}&page=2")))
    };
    let data: Vec<_> = ids.map(|i| json!({"id": n * 10 + i, "day": day})).collect();
    axum::Json(json!({"data": data, "next": next})).into_response()
}

async fn start_api() -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let broken = Arc::new(AtomicBool::new(false));
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(orders))
        .with_state(broken.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, broken)
}

fn strata(env: &Env, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(strata_bin());
    cmd.args(args).arg("-c").arg(&env.config);
    cmd.env_remove("ORDERS_TOKEN");
    if let Some(t) = token {
        cmd.env("ORDERS_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn append(env: &Env, toml: &str) {
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(toml);
    std::fs::write(&env.config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_backfill_rerun_fail_and_report() {
    let (addr, broken) = start_api().await;
    let env = Env::new();
    let original = std::fs::read_to_string(&env.config).unwrap();

    // Offline checks: every problem of a bad entry at once.
    append(
        &env,
        "\n[[pulls]]\nname = \"orders\"\nschedule = \"0 0 * *\"\nurl = \"http://x/{day}\"\n\
         pagination = { kind = \"cursor\" }\n",
    );
    let out = strata(&env, &["check"], None);
    assert!(!out.status.success());
    let report = text(&out);
    for wanted in [
        "3 problems",
        "pulls.orders.schedule: \"0 0 * *\": a cron expression has 5 fields",
        "pulls.orders.url: {day} is not a window variable",
        "pulls.orders.pagination.cursor: is required for kind = \"cursor\"",
    ] {
        assert!(report.contains(wanted), "{wanted}: {report}");
    }

    std::fs::write(&env.config, &original).unwrap();
    append(
        &env,
        &format!(
            "\n[[pulls]]\nname = \"orders\"\nschedule = \"0 0 * * *\"\n\
             url = \"http://{addr}/orders?day={{ds}}\"\n\
             headers = {{ Authorization = \"Bearer ${{env:ORDERS_TOKEN}}\" }}\n\
             records = \"$.data\"\npagination = {{ kind = \"next_link\", next = \"$.next\" }}\n\
             backoff = \"10ms\"\nmax_backoff = \"20ms\"\nmax_attempts = 2\n\
             fields = [{{ name = \"id\", type = \"long\" }}]\n"
        ),
    );
    // The secret comes from the environment: check says when it is not set, and never
    // prints it.
    let out = strata(&env, &["check"], None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pulls.orders: environment variable ORDERS_TOKEN is not set"),
        "{}",
        text(&out)
    );
    let out = strata(&env, &["check"], Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(TOKEN));

    // A backfill of three daily windows, then the same again: 15 rows, not 30.
    for _ in 0..2 {
        let out = strata(
            &env,
            &[
                "pulls",
                "run",
                "orders",
                "--start",
                "2026-12-01",
                "--end",
                "2026-12-04",
            ],
            Some(TOKEN),
        );
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.lines().count(), 3, "{stdout}");
        assert!(
            stdout.contains(
                "[2026-12-01T00:00:00Z, 2026-12-02T00:00:00Z)  ok  5 rows, 2 pages, 2 requests"
            ),
            "{stdout}"
        );
        assert_eq!(
            env.sql_count("SELECT count(*) AS n FROM ods.ods_pull_orders"),
            15
        );
        assert_eq!(
            env.sql_count("SELECT count(DISTINCT id) AS n FROM ods.ods_pull_orders"),
            15
        );
    }

    // One day breaks: that window fails, writes nothing, the others are replaced as before.
    broken.store(true, Ordering::SeqCst);
    let out = strata(
        &env,
        &[
            "pulls",
            "run",
            "orders",
            "--start",
            "2026-12-01",
            "--end",
            "2026-12-04",
        ],
        Some(TOKEN),
    );
    assert!(!out.status.success());
    let all = text(&out);
    assert!(
        all.contains("1 of 3 windows failed and wrote nothing"),
        "{all}"
    );
    assert!(
        all.contains("[2026-12-02T00:00:00Z, 2026-12-03T00:00:00Z)  FAILED after 2 requests (1 retried): gave up after 2 attempts"),
        "{all}"
    );
    assert_eq!(
        env.sql_count("SELECT count(*) AS n FROM ods.ods_pull_orders WHERE dt = DATE '2026-12-02'"),
        5
    );
    let out = strata(&env, &["pulls", "status"], None);
    assert!(out.status.success(), "{}", text(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    for wanted in [
        "pull orders → ods.ods_pull_orders (schedule \"0 0 * * *\", delay 0s)",
        "last window:  [2026-12-03T00:00:00Z, 2026-12-04T00:00:00Z)  ok  5 rows",
        "failing:      1 window waiting for a retry:",
        "HTTP 500: down for maintenance",
        "next due:",
    ] {
        assert!(status.contains(wanted), "{wanted}: {status}");
    }
    let out = strata(&env, &["pulls", "status", "--json"], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["state"]["failed"][0]["failures"], 1);
    assert_eq!(json[0]["state"]["windows_ok"], 8);

    // An unknown name lists the pulls there are.
    let out = strata(&env, &["pulls", "run", "nope"], Some(TOKEN));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no pull named \"nope\""),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("pulls: orders"), "{}", text(&out));
}

/// `strata serve` runs the schedule: a pull whose `start` is minutes ago catches up its missed
/// minute windows in the background, and stops with the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_catches_up_missed_windows() {
    let (addr, _) = start_api().await;
    let env = Env::new();
    let start = chrono::Utc::now() - chrono::Duration::minutes(3);
    append(
        &env,
        &format!(
            "\n[[pulls]]\nname = \"orders\"\nschedule = \"* * * * *\"\nstart = \"{}\"\n\
             url = \"http://{addr}/orders?day={{ds}}\"\n\
             headers = {{ Authorization = \"Bearer ${{env:ORDERS_TOKEN}}\" }}\n\
             records = \"$.data\"\npagination = {{ kind = \"next_link\", next = \"$.next\" }}\n",
            start.to_rfc3339()
        ),
    );
    let server = env.serve_with_env("1s", &[("ORDERS_TOKEN", TOKEN)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let state = loop {
        let out = strata(&env, &["pulls", "status", "--json"], None);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if json[0]["state"]["windows_ok"].as_u64().unwrap_or(0) >= 2 {
            break json[0]["state"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    server.stop();
    assert_eq!(state["failed"], json!([]), "{state}");
    let windows =
        env.sql_count("SELECT count(DISTINCT window_start) AS n FROM ods.ods_pull_orders");
    assert!(windows >= 2, "{windows}");
    assert_eq!(
        env.sql_count("SELECT count(*) AS n FROM ods.ods_pull_orders"),
        windows * 5
    );
}
