//! The feature store through the real binary: `strata features materialize` killed with
//! SIGKILL in the middle of a sync leaves the previous version served (read by another
//! process), `features status` shows the unfinished sync, and the next run completes it
//! without doubling anything; `dag plan` lists the sync steps, and it and `strata check` name
//! a view's missing columns before anything runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{strata_bin, Env};

const USERS: i64 = 6_000;

fn project(env: &Env, view: &str) -> std::path::PathBuf {
    let root = env.dir.path().join("project");
    std::fs::create_dir_all(root.join("ads")).unwrap();
    std::fs::create_dir_all(root.join("features")).unwrap();
    // One model, so the project loads; the view reads a table the test fills itself.
    std::fs::write(root.join("ads/ads_one.sql"), "SELECT 1 AS one").unwrap();
    std::fs::write(root.join("features/uf.toml"), view).unwrap();
    env.set_keys(
        "[warehouse]",
        &[("project", &format!("{:?}", root.display().to_string()))],
    );
    env.set_keys("[online]", &[("batch_rows", "500")]);
    root
}

fn strata(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(strata_bin())
        .args(args)
        .arg("-c")
        .arg(&env.config)
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get(env: &Env, key: &str) -> serde_json::Value {
    serde_json::from_str(&ok(strata(env, &["features", "get", "uf", key]))).unwrap()
}

fn status(env: &Env) -> serde_json::Value {
    let s: serde_json::Value =
        serde_json::from_str(&ok(strata(env, &["features", "status", "--json"]))).unwrap();
    s["views"][0].clone()
}

#[test]
fn a_sync_killed_mid_way_leaves_the_old_version_served_and_the_next_run_completes_it() {
    let env = Env::new();
    project(
        &env,
        "entity = \"user_id\"\nsource = \"ads.uf\"\ntimestamp = \"dt\"\nttl = \"36500d\"\n",
    );
    env.sql("CREATE NAMESPACE ads");
    env.sql("CREATE TABLE ads.uf (user_id BIGINT, score BIGINT, dt DATE) PARTITIONED BY (dt)");
    env.sql(&format!(
        "INSERT INTO ads.uf SELECT value AS user_id, 1 AS score, DATE '2026-11-20' AS dt FROM generate_series(1, {USERS})"
    ));
    let first = ok(strata(&env, &["features", "materialize"]));
    assert!(first.contains("full"), "{first}");
    assert_eq!(get(&env, "7")["features"]["score"], 1);

    // The next day rewrites every user, and a delete makes the next sync a full one.
    env.sql(&format!(
        "INSERT INTO ads.uf SELECT value AS user_id, 2 AS score, DATE '2026-11-21' AS dt FROM generate_series(1, {USERS})"
    ));
    env.sql("DELETE FROM ads.uf WHERE user_id <= 10");

    let mut child = Command::new(strata_bin())
        .args(["features", "materialize", "-c"])
        .arg(&env.config)
        .env("STRATA_TEST_SYNC_PAUSE", "uf:3000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let started = Instant::now();
    let mut paused = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains("paused after") {
            paused = true;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the sync never paused"
        );
    }
    assert!(paused, "the sync ended before pausing");
    // SIGKILL in the middle of the sync: thousands of new rows written, none published.
    child.kill().unwrap();
    child.wait().unwrap();

    // Another process reads the old version, whole: old values, deleted users still there.
    assert_eq!(get(&env, "7")["features"]["score"], 1);
    assert_eq!(get(&env, "5000")["features"]["score"], 1);
    assert_eq!(get(&env, "3")["status"], "PRESENT");
    let s = status(&env);
    assert_eq!(s["published"]["version"], 1, "{s}");
    assert_eq!(s["published"]["entities"], USERS, "{s}");
    assert!(
        s["pending"]["written"].is_u64(),
        "the killed sync shows: {s}"
    );

    // The next run completes it: new values, deleted users gone, every user once.
    let second = ok(strata(&env, &["features", "materialize"]));
    assert!(second.contains("full"), "{second}");
    assert_eq!(get(&env, "7")["status"], "NOT_FOUND");
    assert_eq!(get(&env, "11")["features"]["score"], 2);
    assert_eq!(get(&env, "5000")["features"]["score"], 2);
    let s = status(&env);
    assert!(s["pending"].is_null(), "{s}");
    assert_eq!(s["published"]["entities"], USERS - 10, "{s}");
    assert!(s["published"]["version"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["trails"][0]["snapshots_behind"], 0, "{s}");
}

#[test]
fn dag_plan_lists_sync_steps_and_names_missing_columns() {
    let env = Env::new();
    let root = project(
        &env,
        "entity = \"user_id\"\nsource = \"ads.uf\"\nfeatures = [\"score\", \"nope\"]\n",
    );
    env.sql("CREATE NAMESPACE ads");
    env.sql("CREATE TABLE ads.uf (user_id BIGINT, score BIGINT, dt DATE)");
    let out = strata(&env, &["dag", "plan"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("features.uf"), "{stdout}");
    assert!(
        stderr.contains("feature column nope is not in ads.uf"),
        "{stderr}"
    );

    std::fs::write(
        root.join("features/uf.toml"),
        "entity = \"user_id\"\nsource = \"ads.uf\"\nfeatures = [\"score\"]\n",
    )
    .unwrap();
    let plan = ok(strata(&env, &["dag", "plan"]));
    assert!(plan.contains("feature_sync"), "{plan}");
}
