//! End to end on the real binary: HTTP → bus → lake → `strata sql`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn acknowledged_events_are_queryable_exactly_once() {
    let env = Env::new();
    let server = env.serve("200ms");
    let mut acked = 0;
    for b in 0..20 {
        let body = batch(&format!("e2e-{b}"), 50);
        let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        assert_eq!(res.json()["accepted"], 50, "{}", res.body);
        acked += 50;
        if b == 0 {
            // Let the first batch land in its own snapshot (time travel is checked below).
            env.wait_count(
                "SELECT count(*) FROM ods.ods_event",
                50,
                Duration::from_secs(60),
            );
        }
    }
    // An SDK retry of an already acknowledged batch is deduplicated, not double-counted.
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("e2e-3", 50),
    )
    .unwrap();
    assert_eq!(res.status, 200);
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        acked,
        Duration::from_secs(60),
    );
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        acked
    );
    // Enrichment: server time, event time, IP, user agent.
    assert_eq!(
        env.sql_count(
            "SELECT count(*) FROM ods.ods_event WHERE ip = '127.0.0.1' AND os = 'iPhone' \
             AND device = 'smartphone' AND event_type = 'Post Viewed' AND dt IS NOT NULL"
        ),
        acked
    );
    // Window functions and QUALIFY.
    let rows = env.sql(
        "SELECT user_id, message_id FROM ods.ods_event \
         QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY event_ts DESC) = 1",
    );
    assert_eq!(rows.len(), 13);

    // Time travel: the first snapshot holds fewer rows than the table has now, by id and by
    // timestamp.
    let snapshots = env.sql(
        "SELECT snapshot_id, committed_at FROM ods.ods_event$snapshots \
         WHERE summary['added-records'] IS NOT NULL ORDER BY committed_at",
    );
    assert!(
        snapshots.len() > 1,
        "expected several commits: {snapshots:?}"
    );
    let first = snapshots[0]["snapshot_id"].as_i64().expect("snapshot id");
    let at_first = env.sql_count(&format!(
        "SELECT count(*) FROM ods.ods_event VERSION AS OF {first}"
    ));
    assert!(
        at_first > 0 && at_first < acked,
        "{at_first} rows at {first}"
    );
    let first_ts = snapshots[0]["committed_at"].as_str().expect("committed_at");
    assert_eq!(
        env.sql_count(&format!(
            "SELECT count(*) FROM ods.ods_event TIMESTAMP AS OF '{first_ts}'"
        )),
        at_first
    );

    // /health and /metrics.
    let health = get(server.addr, "/health").unwrap();
    assert_eq!(health.status, 200);
    let metrics = get(server.addr, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    for name in [
        "strata_collect_requests_total",
        "strata_collect_events_accepted_total",
        "strata_collect_events_deduplicated_total",
        "strata_lake_commits_total",
        "strata_lake_rows_total",
    ] {
        assert!(metrics.body.contains(name), "missing {name} in /metrics");
    }
    server.stop();
    // After a graceful stop the data is still there, read without a server.
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), acked);
}

#[test]
fn graceful_shutdown_flushes_buffered_events() {
    let env = Env::new();
    // A flush interval far longer than the test: only SIGTERM's flush can make rows visible.
    let server = env.serve("1h");
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("term", 30),
    )
    .unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 0);
    server.stop();
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 30);
}
