//! `strata privacy forget` on the real binary, while `strata serve` runs and takes events.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const EVENTS: &str = "ods.ods_event";

fn forget(env: &Env, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .args(["privacy", "forget"])
        .args(args)
        .arg("-c")
        .arg(&env.config)
        .output()
        .expect("strata privacy forget")
}

/// A Segment batch of `n` track events of users `<user_prefix><i % users>`.
fn batch_of(prefix: &str, n: usize, user_prefix: &str, users: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "type": "track",
                "event": "Post Viewed",
                "messageId": format!("{prefix}-{i}"),
                "userId": format!("{user_prefix}{}", i % users),
                "timestamp": chrono::Utc::now().to_rfc3339(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "batch": items })).expect("json")
}

#[test]
fn forget_while_serve_runs() {
    let env = Env::new();
    let server = env.serve("100ms");
    // 3 commits of 40 events, users person-0 … person-9 (4 events each per batch).
    for b in 0..3 {
        let body = batch_of(&format!("a{b}"), 40, "person-", 10);
        let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        env.wait_count(
            "SELECT count(*) FROM ods.ods_event",
            40 * (b + 1),
            Duration::from_secs(60),
        );
    }
    // An ODS-like table with an integer key and a position delete.
    env.sql("CREATE TABLE ods.ods_users (user_id BIGINT, name STRING)");
    env.sql("INSERT INTO ods.ods_users VALUES (1, 'a'), (2, 'b'), (3, 'c'), (77, 'd')");
    env.sql("DELETE FROM ods.ods_users WHERE user_id = 1");

    // Events of other users keep arriving while the erasure runs.
    let addr = server.addr;
    let poster = std::thread::spawn(move || {
        for b in 0..5 {
            let body = batch_of(&format!("b{b}"), 10, "other-", 3);
            let res = post(addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
            assert_eq!(res.status, 200, "{}", res.body);
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let out = forget(&env, &["person-3", "person-7", "77", "--json"]);
    poster.join().unwrap();
    assert!(
        out.status.success(),
        "forget failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["users"], 3, "{report}");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["rows_removed"], 24 + 1, "{report}");
    assert_eq!(report["online_store"], "none (no feature views)");
    let tables = report["lake"]["tables"].as_array().unwrap();
    let events = tables
        .iter()
        .find(|t| t["table"] == EVENTS)
        .expect("events");
    assert_eq!(events["rows_removed"], 24, "{events}");
    assert!(
        events["snapshots_expired"].as_u64().unwrap() > 0,
        "{events}"
    );

    env.wait_count(
        "SELECT count(*) FROM ods.ods_event WHERE user_id LIKE 'other-%'",
        50,
        Duration::from_secs(60),
    );
    assert_eq!(
        env.sql_count(
            "SELECT count(*) FROM ods.ods_event WHERE user_id IN ('person-3', 'person-7')"
        ),
        0
    );
    assert_eq!(
        env.sql_count("SELECT count(*) FROM ods.ods_event WHERE user_id LIKE 'person-%'"),
        120 - 24
    );
    assert_eq!(
        env.sql_count("SELECT count(*) FROM ods.ods_users WHERE user_id IN (2, 3)"),
        2
    );
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_users"), 2);

    // Again: nothing left to remove; the text report says so.
    let again = forget(&env, &["person-3", "person-7", "77"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("0 rows removed"), "{text}");
    assert!(text.contains("online store: none"), "{text}");

    // The sink resumes from its carried position after a restart: nothing twice.
    server.stop();
    let server = env.serve("100ms");
    let body = batch_of("c", 10, "other-", 3);
    let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
    assert_eq!(res.status, 200);
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        120 - 24 + 60,
        Duration::from_secs(60),
    );
    server.stop();
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        120 - 24 + 60
    );
}

#[test]
fn forget_needs_ids_and_a_valid_privacy_section() {
    let env = Env::new();
    let out = forget(&env, &[]);
    assert!(!out.status.success());
    env.set_keys(
        "[privacy]",
        &[("user_columns", "[\"user_id\", \"user_id\"]")],
    );
    let out = forget(&env, &["x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listed twice"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
