//! `strata demo` end to end on a small world: events through the real collector, business rows
//! through the CDC path (bus topics, ODS merger), the reference warehouse for both days with
//! every check passing, models trained and promoted, a feed served, and a config left behind
//! that `strata sql` and `strata serve` use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::process::Command;

use common::{basic_auth, get_with, post, strata_bin, Env};

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
    // Two simulated days landed as two days, in events and in the daily tables (besides the
    // live click the demo sends to show a real-time feature).
    assert_eq!(
        sql("SELECT count(DISTINCT dt) AS d FROM ods.ods_event WHERE message_id NOT LIKE 'demo-click-%'"),
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

    // The demo served user 1 a feed in-process, ranked by the promoted GBDT.
    assert!(
        stdout.contains("feed for user 1") && stdout.contains("#1 post"),
        "{stdout}"
    );
    assert!(stdout.contains("/v1/feed?user_id=1"), "{stdout}");
    // One click sent to the collector showed up in the real-time feature view.
    assert!(stdout.contains("user 1 clicks_5m"), "{stdout}");
    served_feed(Env { dir, config });
}

/// `strata serve` on the demo's data answers `GET /v1/feed` for a token with the serve scope,
/// never repeats what it just served, refuses bad requests, and every served feed lands in
/// `ods.ods_event` as a `Feed Served` event carrying the request id. An A/B experiment splits
/// users stickily, and `strata experiments report` joins the clicks sent back with the feeds.
fn served_feed(env: Env) {
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(
        "\n[[experiments]]\nname = \"ranker_vs_popular\"\nvariants = [\n  \
         { name = \"control\", share = 50 },\n  \
         { name = \"popular\", share = 50, sources = [\"trending\"], no_ranker = true },\n]\n",
    );
    std::fs::write(&env.config, text).unwrap();
    let out = Command::new(strata_bin())
        .args(["tokens", "create", "feed-reader", "--scope", "serve", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    let server = env.serve("1s");
    let get = |path: &str, auth: &[(&str, String)]| {
        let r = get_with(server.addr, path, auth).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, body)
    };

    assert_eq!(get("/v1/feed?user_id=2", &[]).0, 401);
    // The catalogue loads at start: 503 until then.
    let started = std::time::Instant::now();
    let first = loop {
        let (status, body) = get("/v1/feed?user_id=2&n=5&surface=home", &auth);
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed().as_secs() < 60,
            "no feed after 60 s: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{first}");
    assert_eq!(first["ranker"]["name"], "ctr_ranker", "{first}");
    assert_eq!(first["recall"]["name"], "two_tower", "{first}");
    let request_id = first["request_id"].as_str().unwrap().to_string();
    // Every stage is one strata_feed::STAGES names, in its order.
    let stages: Vec<&str> = first["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let at: Vec<Option<usize>> = stages
        .iter()
        .map(|n| strata_feed::STAGES.iter().position(|s| s == n))
        .collect();
    assert!(
        ["features", "merge_filter", "fetch", "rank", "rerank"]
            .iter()
            .all(|s| stages.contains(s)),
        "{stages:?}"
    );
    assert!(
        at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1]),
        "stages {stages:?} vs {:?}",
        strata_feed::STAGES
    );
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["position"], i + 1);
        assert_ne!(item["author_id"], 2, "the user's own posts are filtered");
        assert!(!item["sources"].as_array().unwrap().is_empty());
    }
    // The seen cache: the next feed shows none of these again.
    let (status, second) = get("/v1/feed?user_id=2&n=5", &auth);
    assert_eq!(status, 200, "{second}");
    let ids = |b: &serde_json::Value| -> Vec<u64> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["post_id"].as_u64().unwrap())
            .collect()
    };
    let again = ids(&second);
    assert!(
        ids(&first).iter().all(|p| !again.contains(p)),
        "{first}\n{second}"
    );
    for bad in [
        "/v1/feed",
        "/v1/feed?user_id=2&n=0",
        "/v1/feed?user_id=2&n=ten",
        "/v1/feed?user_id=2&colour=red",
    ] {
        let (status, body) = get(bad, &auth);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    // The experiment: the same user stays in one variant; a click sent back with the feed's
    // request id is joined to its impression by the report.
    let variant_of =
        |b: &serde_json::Value| b["experiment"]["variant"].as_str().unwrap().to_string();
    assert_eq!(variant_of(&first), variant_of(&second));
    let mut clicks = 0;
    let mut variants = std::collections::BTreeSet::new();
    for user in 10..40 {
        let (status, feed) = get(&format!("/v1/feed?user_id={user}&n=4"), &auth);
        assert_eq!(status, 200, "{feed}");
        let v = variant_of(&feed);
        if v == "popular" {
            assert!(feed["ranker"].is_null(), "{feed}");
            for item in feed["items"].as_array().unwrap() {
                assert_eq!(item["sources"], serde_json::json!(["trending"]), "{feed}");
            }
        }
        variants.insert(v);
        let item = &feed["items"][0];
        let body = serde_json::json!({
            "userId": user.to_string(),
            "event": "Post Clicked",
            "messageId": format!("click-{user}"),
            "properties": {"post_id": item["post_id"], "request_id": feed["request_id"]},
        });
        let r = post(
            server.addr,
            "/v1/track",
            &[basic_auth("demo-write-key")],
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        clicks += 1;
    }
    assert_eq!(
        variants.len(),
        2,
        "30 users fall in both variants: {variants:?}"
    );
    env.wait_count(
        "SELECT count(*) AS n FROM ods.ods_event WHERE event = 'Post Clicked' AND message_id LIKE 'click-%'",
        clicks,
        std::time::Duration::from_secs(60),
    );
    env.wait_count(
        "SELECT count(*) AS n FROM ods.ods_event WHERE event = 'Feed Served' AND json_get_str(properties, 'experiment') = 'ranker_vs_popular'",
        32,
        std::time::Duration::from_secs(60),
    );
    let out = Command::new(strata_bin())
        .args(["experiments", "report", "ranker_vs_popular", "--json", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = |k: &str| -> u64 {
        report["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("feeds"), 32, "{report}");
    assert_eq!(total("impressions"), 5 + 5 + 30 * 4, "{report}");
    assert_eq!(total("clicks"), clicks as u64, "{report}");
    assert_eq!(report["matched_by_request_id"], clicks, "{report}");
    assert_eq!(report["variants"][0]["variant"], "control", "{report}");

    // Simulated users read feeds and react: their impressions come back through the collector
    // with the request ids, none refused.
    let out = Command::new(strata_bin())
        .args([
            "sim",
            "feed",
            "--target",
            &format!("http://{}", server.addr),
        ])
        .args(["--token", &token, "--write-key", "demo-write-key"])
        .args([
            "--seed",
            "3",
            "--users",
            "150",
            "--days",
            "2",
            "--sessions",
            "20",
            "--n",
            "5",
        ])
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sim: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sim["failed"], 0, "{sim}");
    assert_eq!(sim["events_rejected"], 0, "{sim}");
    let shown: u64 = sim["variants"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["impressions"].as_u64().unwrap())
        .sum();
    assert_eq!(shown, 20 * 5, "{sim}");
    env.wait_count(
        "SELECT count(*) AS n FROM ods.ods_event WHERE event = 'Feed Impression' \
         AND json_get_str(properties, 'request_id') IS NOT NULL",
        100,
        std::time::Duration::from_secs(60),
    );

    // The served feed lands in the lake as an event with its request id and items.
    env.wait_count(
        &format!(
            "SELECT count(*) AS n FROM ods.ods_event WHERE event = 'Feed Served' \
             AND message_id = '{request_id}' AND properties LIKE '%\"request_id\":\"{request_id}\"%' \
             AND properties LIKE '%\"surface\":\"home\"%' AND user_id = '2'"
        ),
        1,
        std::time::Duration::from_secs(60),
    );

    // Real-time features: the clicks sent above reached `user_realtime` through the bus (the
    // realtime consumer), and a kill -9 and restart keeps exactly those values.
    let realtime = |server: &common::Server, user: u32| -> serde_json::Value {
        let r = get_with(
            server.addr,
            &format!("/v1/features/user_realtime/{user}"),
            &auth,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        body["features"].clone()
    };
    let started = std::time::Instant::now();
    let before: Vec<serde_json::Value> = loop {
        let rows: Vec<serde_json::Value> = (10..40).map(|u| realtime(&server, u)).collect();
        if rows
            .iter()
            .all(|f| f["clicks_5m"].as_i64().unwrap_or(0) >= 1)
        {
            break rows;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "clicks not in user_realtime: {rows:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for f in &before {
        assert!(
            f["last_5_clicked_post_ids"]
                .as_array()
                .is_some_and(|l| !l.is_empty()),
            "{f}"
        );
    }
    server.kill();
    let server = env.serve("1s");
    let started = std::time::Instant::now();
    loop {
        let after: Vec<serde_json::Value> = (10..40).map(|u| realtime(&server, u)).collect();
        let same = after.iter().zip(&before).all(|(a, b)| {
            [
                "clicks_5m",
                "clicks_1h",
                "likes_1h",
                "last_5_clicked_post_ids",
            ]
            .iter()
            .all(|k| a[k] == b[k])
        });
        if same {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "after kill -9 and restart:\n{after:?}\nbefore:\n{before:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    server.stop();
}
