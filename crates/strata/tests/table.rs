//! `strata table …` on the real binary, and the background compaction inside `strata serve`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const TABLE: &str = "ods.ods_event";

fn table_cmd(env: &Env, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .arg("table")
        .args(args)
        .arg("-c")
        .arg(&env.config)
        .output()
        .expect("strata table")
}

/// Runs `strata table …`, asserting success; stdout.
fn table_ok(env: &Env, args: &[&str]) -> String {
    let out = table_cmd(env, args);
    assert!(
        out.status.success(),
        "strata table {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A listing as JSON rows.
fn listing(env: &Env, what: &str) -> Vec<serde_json::Value> {
    table_ok(env, &[what, TABLE, "--format", "json"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect()
}

/// (data files, distinct partitions of data files, delete files).
fn file_stats(env: &Env) -> (usize, usize, usize) {
    let files = listing(env, "files");
    let data: Vec<_> = files.iter().filter(|f| f["content"] == "data").collect();
    let partitions: HashSet<String> = data
        .iter()
        .map(|f| f["partition"].as_str().unwrap_or_default().to_string())
        .collect();
    (data.len(), partitions.len(), files.len() - data.len())
}

/// Posts `batches` batches of `n` events, each waited for until queryable (one commit each).
fn post_batches(env: &Env, server: &Server, prefix: &str, batches: usize, n: usize, base: i64) {
    for b in 0..batches {
        let body = batch(&format!("{prefix}-{b}"), n);
        let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        env.wait_count(
            "SELECT count(*) FROM ods.ods_event",
            base + ((b + 1) * n) as i64,
            Duration::from_secs(60),
        );
    }
}

#[test]
fn table_compact_history_and_expiry() {
    let env = Env::new();
    let server = env.serve("100ms");
    post_batches(&env, &server, "c", 6, 10, 0);
    server.stop();

    let (data_before, partitions, _) = file_stats(&env);
    assert!(data_before >= 6, "{data_before} data files");

    let out = table_ok(&env, &["compact", TABLE, "--min-input-files", "2"]);
    assert!(out.contains("rewrote"), "{out}");
    let (data_after, partitions_after, deletes_after) = file_stats(&env);
    assert_eq!((data_after, partitions_after), (partitions, partitions));
    assert_eq!(deletes_after, 0);
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 60);
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        60
    );
    let out = table_ok(&env, &["compact", TABLE, "--min-input-files", "2"]);
    assert!(out.contains("nothing to compact"), "{out}");

    // history and snapshots agree: the current snapshot is the compaction's replace.
    let snapshots = listing(&env, "snapshots");
    let last = snapshots.last().expect("snapshots");
    assert_eq!(last["operation"], "replace", "{last}");
    let history = listing(&env, "history");
    let current = history.last().expect("history");
    assert_eq!(current["snapshot_id"], last["snapshot_id"]);
    assert!(history.iter().all(|h| h["is_current_ancestor"] == true));
    let text = table_ok(&env, &["history", TABLE]);
    assert!(text.contains("made_current_at"), "{text}");

    // The sink resumes from the position the compaction carried: nothing twice.
    let server = env.serve("100ms");
    post_batches(&env, &server, "d", 1, 10, 60);
    server.stop();
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        70
    );

    // Expiry keeps the table whole; orphan removal refuses a short cutoff unless forced.
    let out = table_ok(
        &env,
        &[
            "expire-snapshots",
            TABLE,
            "--older-than",
            "0s",
            "--retain-last",
            "1",
        ],
    );
    assert!(out.contains("expired"), "{out}");
    assert_eq!(listing(&env, "snapshots").len(), 1);
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 70);
    let refused = table_cmd(&env, &["remove-orphans", TABLE, "--older-than", "1m"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let out = table_ok(
        &env,
        &["remove-orphans", TABLE, "--older-than", "0s", "--force"],
    );
    assert!(out.contains("orphan files"), "{out}");
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 70);
    // After expiry the sink still finds its position: again nothing twice, nothing lost.
    let server = env.serve("100ms");
    post_batches(&env, &server, "e", 1, 10, 70);
    server.stop();
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        80
    );
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 80);

    // Bad input names the problem.
    let missing = table_cmd(&env, &["files", "ods.nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ods.nope"));
    let bad = table_cmd(
        &env,
        &["compact", TABLE, "--target-file-size", "12 parsecs"],
    );
    assert!(!bad.status.success());
}

#[test]
fn serve_compacts_in_the_background_while_ingesting() {
    let env = Env::new();
    // A realistic flush interval: a rebase must fit between two sink commits (ADR 0006).
    let server = env.serve_with_env(
        "1s",
        &[
            ("STRATA_LAKE__COMPACTION_INTERVAL", "300ms"),
            ("STRATA_LAKE__COMPACTION_MIN_FILES", "3"),
            ("STRATA_LAKE__COMPACTION_MIN_INPUT_FILES", "2"),
        ],
    );
    // Keep ingesting until a background compaction has committed (bounded).
    let start = Instant::now();
    let mut sent = 0i64;
    let mut b = 0;
    loop {
        let body = batch(&format!("bg-{b}"), 10);
        let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        sent += 10;
        b += 1;
        std::thread::sleep(Duration::from_millis(150));
        if b % 5 == 0
            && listing(&env, "snapshots")
                .iter()
                .any(|s| s["operation"] == "replace")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no background compaction after {b} batches"
        );
    }
    // A few more appends on top of the compacted table.
    for extra in 0..3 {
        let body = batch(&format!("after-{extra}"), 10);
        let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
        assert_eq!(res.status, 200);
        sent += 10;
    }
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        sent,
        Duration::from_secs(60),
    );
    server.stop();
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        sent
    );
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), sent);
}
