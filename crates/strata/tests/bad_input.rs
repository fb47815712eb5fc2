//! Bad input gets its documented answer, and nothing valid is lost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

#[test]
fn each_kind_of_bad_input_gets_its_answer() {
    let env = Env::new();
    let server = env.serve("200ms");
    let auth = || vec![basic_auth(WRITE_KEY)];

    // Malformed JSON → 400 with a JSON reason.
    let res = post(server.addr, "/v1/batch", &auth(), b"{\"batch\": [").unwrap();
    assert_eq!(res.status, 400, "{}", res.body);
    assert!(res.json()["error"].as_str().is_some(), "{}", res.body);

    // Not a batch array → 400.
    let res = post(server.addr, "/v1/batch", &auth(), br#"{"batch": 7}"#).unwrap();
    assert_eq!(res.status, 400, "{}", res.body);

    // Unknown write key → 401, missing key → 401.
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth("nope")],
        &batch("k", 1),
    )
    .unwrap();
    assert_eq!(res.status, 401, "{}", res.body);
    let res = post(server.addr, "/v1/batch", &[], &batch("k", 1)).unwrap();
    assert_eq!(res.status, 401, "{}", res.body);

    // writeKey in the body works without Basic auth.
    let body = serde_json::json!({
        "writeKey": WRITE_KEY, "type": "track", "event": "Body Key", "userId": "u1", "messageId": "bk-1"
    });
    let res = post(server.addr, "/v1/track", &[], body.to_string().as_bytes()).unwrap();
    assert_eq!(res.status, 200, "{}", res.body);

    // Oversized body → 413 (default limit 4 MiB), also when it only grows that large gunzipped.
    let big = vec![b' '; 5 * 1024 * 1024];
    let res = post(server.addr, "/v1/batch", &auth(), &big).unwrap();
    assert_eq!(res.status, 413, "{}", res.body);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&big).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    let mut headers = auth();
    headers.push(("Content-Encoding", "gzip".to_string()));
    let res = post(server.addr, "/v1/batch", &headers, &bomb).unwrap();
    assert_eq!(res.status, 413, "{}", res.body);

    // Invalid events inside a valid batch: valid ones accepted, invalid ones dead-lettered.
    let body = serde_json::json!({"batch": [
        {"type": "track", "event": "Ok", "userId": "u1", "messageId": "mix-ok-1"},
        {"type": "track", "userId": "u1", "messageId": "mix-bad-noevent"},
        {"type": "track", "event": "No User", "messageId": "mix-bad-nouser"},
        {"type": "teleport", "userId": "u1", "messageId": "mix-bad-type"},
        // Event time = server time - (sentAt - timestamp): 1999 even after skew correction.
        {"type": "track", "event": "Ancient", "userId": "u1", "messageId": "mix-bad-old",
         "timestamp": "1999-01-01T00:00:00Z", "sentAt": chrono::Utc::now().to_rfc3339()},
        {"type": "track", "event": "Ok", "anonymousId": "a1", "messageId": "mix-ok-2"}
    ]});
    let res = post(
        server.addr,
        "/v1/batch",
        &auth(),
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    let answer = res.json();
    assert_eq!(answer["accepted"], 2, "{}", res.body);
    assert_eq!(answer["rejected"], 4, "{}", res.body);

    env.wait_count(
        "SELECT count(*) FROM ods.ods_event_rejected",
        4,
        Duration::from_secs(60),
    );
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        3,
        Duration::from_secs(60),
    );
    let rejected =
        env.sql("SELECT message_id, reason, raw FROM ods.ods_event_rejected ORDER BY message_id");
    for row in &rejected {
        let reason = row["reason"].as_str().unwrap_or("");
        let raw = row["raw"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "{row}");
        assert!(raw.contains("mix-bad"), "raw payload kept: {row}");
    }
    server.stop();
}

#[test]
fn signed_apps_require_a_valid_fresh_signature() {
    let env = Env::with_app(Some("s3cret"));
    let server = env.serve("200ms");
    let body = batch("sig", 3);
    let now = chrono::Utc::now().timestamp();

    let signed = |ts: i64, secret: &str| {
        vec![
            basic_auth(WRITE_KEY),
            ("X-Strata-Timestamp", ts.to_string()),
            (
                "X-Strata-Signature",
                strata_collect::sign(secret, ts, &body),
            ),
        ]
    };
    // Unsigned → 401.
    let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
    assert_eq!(res.status, 401, "{}", res.body);
    // Wrong secret → 401.
    let res = post(server.addr, "/v1/batch", &signed(now, "wrong"), &body).unwrap();
    assert_eq!(res.status, 401, "{}", res.body);
    // Stale timestamp (10 minutes old) → 401.
    let res = post(
        server.addr,
        "/v1/batch",
        &signed(now - 600, "s3cret"),
        &body,
    )
    .unwrap();
    assert_eq!(res.status, 401, "{}", res.body);
    // Good signature → 200.
    let res = post(server.addr, "/v1/batch", &signed(now, "s3cret"), &body).unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        3,
        Duration::from_secs(60),
    );
    server.stop();
}

/// `strata check` reports every problem of a config at once, one line each naming its key:
/// three sections' own checks and a file the config names that is missing.
#[test]
fn check_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(
        &path,
        "[bus]\npartitions = 0\n[collector]\ngeoip_db = \"/nonexistent/geo.mmdb\"\n\
         [lake]\nflush_max_rows = 0\n[warehouse]\nalert_webhook = \"ftp://x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(strata_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        "error: 4 problems:",
        "bus.partitions must be between 1 and 1024",
        "lake.flush_max_rows must be positive",
        "warehouse.alert_webhook must be an http:// or https:// URL",
        "collector.geoip_db: /nonexistent/geo.mmdb does not exist",
    ] {
        assert!(err.lines().any(|l| l == line), "{line}: {err}");
    }
}
