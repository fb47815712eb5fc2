//! `strata demo` end to end on a small world: events through the real collector, business rows
//! through the CDC path (bus topics, ODS merger), the reference warehouse for both days with
//! every check passing, and a config left behind that `strata sql` uses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::process::Command;

use common::strata_bin;

#[test]
fn demo_builds_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = Command::new(strata_bin())
        .args([
            "demo",
            "--users",
            "150",
            "--days",
            "2",
            "--seed",
            "3",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("run strata demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in [
        "ods_event",
        "ods_follows",
        "dwd_user_action",
        "dws_user_daily",
        "ads_user_features",
        "ads_sample_ctr",
        "ads_recall_u2u_cf",
    ] {
        assert!(
            stdout.contains(table),
            "{table} missing from the summary:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("checks") && !stdout.contains("| fail"),
        "{stdout}"
    );
    let config = data.join("strata.toml");
    let sql = |q: &str| {
        let out = Command::new(strata_bin())
            .args(["sql", "--format", "csv", "-c"])
            .arg(&config)
            .arg(q)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // Two simulated days landed as two days, in events and in the daily tables.
    assert_eq!(
        sql("SELECT count(DISTINCT dt) AS d FROM ods.ods_event"),
        "d\n2\n"
    );
    assert_eq!(
        sql("SELECT count(DISTINCT dt) AS d FROM dws.dws_user_daily"),
        "d\n2\n"
    );
    assert_eq!(
        sql("SELECT count(*) AS failed FROM audit.dq_results WHERE status <> 'pass' AND severity = 'error'"),
        "failed\n0\n"
    );
    // The business rows came through the CDC path: one row per key, the latest image, with
    // the change metadata; profile edits arrived as updates.
    assert_eq!(
        sql("SELECT count(*) - count(DISTINCT concat(follower_id, '-', followee_id)) AS dup, count(*) FILTER (WHERE _commit_ts IS NULL OR _source_pos IS NULL) AS bare FROM ods.ods_follows"),
        "dup,bare\n0,0\n"
    );
    assert_eq!(
        sql("SELECT count(*) > 0 AS edited FROM ods.ods_profiles WHERE _op = 'u'"),
        "edited\ntrue\n"
    );
    assert_eq!(
        sql("SELECT count(*) AS users FROM ods.ods_users"),
        "users\n150\n"
    );
    // Every acknowledged event is in the lake exactly once.
    assert_eq!(
        sql("SELECT count(*) - count(DISTINCT message_id) AS dup FROM ods.ods_event"),
        "dup\n0\n"
    );
    // The DAG trained both reference models on day 2 (training on day 1) and promoted them.
    assert_eq!(
        sql("SELECT count(*) AS promoted FROM audit.model_versions WHERE verdict = 'promoted'"),
        "promoted\n2\n"
    );
    let models = |args: &[&str]| {
        let out = Command::new(strata_bin())
            .arg("models")
            .args(args)
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, list, err) = models(&["list", "--json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    for m in list.as_array().unwrap() {
        assert_eq!(m["promoted"], 1, "{m}");
    }
    // Train again by hand, canary the new version, then roll back to the first.
    let (ok, out, err) = models(&["train", "ctr_ranker", "--json"]);
    assert!(ok, "{err}");
    let trained: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(trained["version"], 2);
    assert_eq!(trained["verdict"], "promoted", "{trained}");
    let (ok, _, err) = models(&["canary", "ctr_ranker", "2", "--percent", "20"]);
    assert!(!ok && err.contains("already promoted"), "{err}");
    let (ok, _, err) = models(&["rollback", "ctr_ranker"]);
    assert!(ok, "{err}");
    let (ok, _, err) = models(&["canary", "ctr_ranker", "2", "--percent", "20"]);
    assert!(ok, "{err}");
    let (ok, show, err) = models(&["show", "ctr_ranker", "--json"]);
    assert!(ok, "{err}");
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["current"]["promoted"], 1, "{show}");
    assert_eq!(show["current"]["canary"], 2, "{show}");
    assert_eq!(show["current"]["canary_percent"], 20, "{show}");
    let (ok, _, err) = models(&["promote", "ctr_ranker", "9"]);
    assert!(!ok && err.contains("no version 9"), "{err}");

    // The simulator scores lists against the same world's hidden preferences.
    let mut score = Command::new(strata_bin())
        .args([
            "sim",
            "score",
            "--users",
            "150",
            "--days",
            "2",
            "--seed",
            "3",
            "--summary",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = score.stdin.take().unwrap();
        writeln!(stdin, r#"{{"user_id": 1, "post_ids": [1, 2, 3]}}"#).unwrap();
    }
    let out = score.wait_with_output().unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["lists"], 1);
    assert!(summary["mean_expected_clicks"].as_f64().unwrap() >= 0.0);
}
