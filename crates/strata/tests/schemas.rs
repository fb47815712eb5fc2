//! The event schema registry through the real binary: the Confluent-style REST API under
//! `/registry` with tokens, the collector rejecting (dead-letter table, with the pointer) and
//! tagging events, `strata schemas infer` and `views` on a small lake, and `strata check` on
//! the project's schema files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{basic_auth, post, strata_bin, Env};
use serde_json::{json, Value};

fn strata(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(strata_bin())
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .expect("run strata");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `strata tokens create NAME --scope SCOPE`: the printed token.
fn token(config: &Path, name: &str, scope: &str) -> String {
    let (ok, out, err) = strata(config, &["tokens", "create", name, "--scope", scope]);
    assert!(ok, "{err}");
    out.trim().to_string()
}

/// One HTTP/1.1 request with an optional JSON body: (status, JSON body).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut s = rest;
        while let Some((size, tail)) = s.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            s = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

const CLICKED_V1: &str = r#"{"type":"object","required":["post_id"],"properties":{"post_id":{"type":"integer"},"feed":{"type":"string","enum":["home","following"]}}}"#;

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn registry_rest_api_with_tokens_and_restart() {
    let env = Env::new();
    let admin = token(&env.config, "admin", "admin");
    let reader = token(&env.config, "reader", "catalog:read");
    let server = env.serve("1s");
    let addr = server.addr;
    let (a, r) = (bearer(&admin), bearer(&reader));
    let versions = "/registry/subjects/Post%20Clicked/versions";
    let body = json!({"schema": CLICKED_V1, "schemaType": "JSON"});

    // No token, a bad one, too weak a one.
    let (status, e) = call(addr, "GET", "/registry/subjects", None, None);
    assert_eq!(
        (status, e["error_code"].as_u64()),
        (401, Some(40101)),
        "{e}"
    );
    let (status, _) = call(
        addr,
        "GET",
        "/registry/subjects",
        Some("Bearer stk_nope"),
        None,
    );
    assert_eq!(status, 401);
    let (status, e) = call(addr, "POST", versions, Some(&r), Some(body.clone()));
    assert_eq!(
        (status, e["error_code"].as_u64()),
        (403, Some(40301)),
        "{e}"
    );

    // Register, read back every way.
    let (status, v) = call(addr, "POST", versions, Some(&a), Some(body.clone()));
    assert_eq!((status, v.clone()), (200, json!({"id": 1})), "{v}");
    let (_, subjects) = call(addr, "GET", "/registry/subjects", Some(&r), None);
    assert_eq!(subjects, json!(["Post Clicked"]));
    let (_, list) = call(addr, "GET", versions, Some(&r), None);
    assert_eq!(list, json!([1]));
    let (status, latest) = call(addr, "GET", &format!("{versions}/latest"), Some(&r), None);
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["subject"], "Post Clicked");
    assert_eq!(latest["version"], 1);
    assert_eq!(latest["id"], 1);
    assert_eq!(latest["schemaType"], "JSON");
    let stored: Value = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
    assert_eq!(stored, serde_json::from_str::<Value>(CLICKED_V1).unwrap());
    let (_, by_id) = call(addr, "GET", "/registry/schemas/ids/1", Some(&r), None);
    assert_eq!(by_id["schema"], latest["schema"]);
    let (status, e) = call(addr, "GET", "/registry/schemas/ids/7", Some(&r), None);
    assert_eq!((status, e["error_code"].as_u64()), (404, Some(40403)));
    let (status, e) = call(
        addr,
        "GET",
        "/registry/subjects/Nope/versions",
        Some(&r),
        None,
    );
    assert_eq!((status, e["error_code"].as_u64()), (404, Some(40401)));
    let (status, e) = call(addr, "GET", &format!("{versions}/9"), Some(&r), None);
    assert_eq!((status, e["error_code"].as_u64()), (404, Some(40402)));
    // The same schema again: the same id, no new version.
    let (_, v) = call(addr, "POST", versions, Some(&a), Some(body.clone()));
    assert_eq!(v, json!({"id": 1}));
    // Basic auth with the token as password (what Confluent clients send).
    let basic = {
        use base64::Engine;
        let user_info = base64::engine::general_purpose::STANDARD.encode(format!("u:{reader}"));
        format!("Basic {user_info}")
    };
    let (status, _) = call(addr, "GET", "/registry/subjects", Some(&basic), None);
    assert_eq!(status, 200);

    // A new required property: incompatible under BACKWARD (the default).
    let v2 = r#"{"type":"object","required":["post_id","position"],"properties":{"post_id":{"type":"integer"},"feed":{"type":"string","enum":["home","following"]},"position":{"type":"integer"}}}"#;
    let (status, c) = call(
        addr,
        "POST",
        "/registry/compatibility/subjects/Post%20Clicked/versions/latest",
        Some(&r),
        Some(json!({"schema": v2})),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["is_compatible"], false);
    let messages = c["messages"].to_string();
    assert!(
        messages.contains("#/properties/position: property became required"),
        "{messages}"
    );
    let (status, e) = call(
        addr,
        "POST",
        versions,
        Some(&a),
        Some(json!({"schema": v2})),
    );
    assert_eq!((status, e["error_code"].as_u64()), (409, Some(409)), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("incompatible"),
        "{e}"
    );
    // An unsupported keyword: refused, named.
    let (status, e) = call(
        addr,
        "POST",
        versions,
        Some(&a),
        Some(json!({"schema": r#"{"anyOf":[{"type":"object"}]}"#})),
    );
    assert_eq!(
        (status, e["error_code"].as_u64()),
        (422, Some(42201)),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("#/anyOf: unsupported keyword"),
        "{e}"
    );
    let (status, e) = call(
        addr,
        "POST",
        versions,
        Some(&a),
        Some(json!({"schema": "{}", "schemaType": "AVRO"})),
    );
    assert_eq!(
        (status, e["error_code"].as_u64()),
        (422, Some(42201)),
        "{e}"
    );

    // Levels: global, per subject (not set → 40408 unless defaultToGlobal), and a PUT.
    let (_, g) = call(addr, "GET", "/registry/config", Some(&r), None);
    assert_eq!(g, json!({"compatibilityLevel": "BACKWARD"}));
    let subject_config = "/registry/config/Post%20Clicked";
    let (status, e) = call(addr, "GET", subject_config, Some(&r), None);
    assert_eq!((status, e["error_code"].as_u64()), (404, Some(40408)));
    let (_, c) = call(
        addr,
        "GET",
        &format!("{subject_config}?defaultToGlobal=true"),
        Some(&r),
        None,
    );
    assert_eq!(c["compatibilityLevel"], "BACKWARD");
    let (status, _) = call(
        addr,
        "PUT",
        subject_config,
        Some(&r),
        Some(json!({"compatibility": "NONE"})),
    );
    assert_eq!(status, 403);
    let (status, e) = call(
        addr,
        "PUT",
        subject_config,
        Some(&a),
        Some(json!({"compatibility": "SIDEWAYS"})),
    );
    assert_eq!((status, e["error_code"].as_u64()), (422, Some(42203)));
    let (status, p) = call(
        addr,
        "PUT",
        subject_config,
        Some(&a),
        Some(json!({"compatibility": "NONE"})),
    );
    assert_eq!((status, p), (200, json!({"compatibility": "NONE"})));
    let (status, v) = call(
        addr,
        "POST",
        versions,
        Some(&a),
        Some(json!({"schema": v2})),
    );
    assert_eq!((status, v), (200, json!({"id": 2})));
    let (status, p) = call(
        addr,
        "PUT",
        "/registry/config",
        Some(&a),
        Some(json!({"compatibility": "FULL"})),
    );
    assert_eq!((status, p), (200, json!({"compatibility": "FULL"})));

    // Durable: a restarted server serves the same registry.
    server.stop();
    let server = env.serve("1s");
    let (_, list) = call(server.addr, "GET", versions, Some(&r), None);
    assert_eq!(list, json!([1, 2]));
    let (_, g) = call(server.addr, "GET", "/registry/config", Some(&r), None);
    assert_eq!(g["compatibilityLevel"], "FULL");
    let (_, c) = call(server.addr, "GET", subject_config, Some(&r), None);
    assert_eq!(c["compatibilityLevel"], "NONE");
    // The CLI reads the same file.
    let (ok, out, err) = strata(&env.config, &["schemas", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("Post Clicked  v2  id 2  NONE"), "{out}");
    server.stop();

    // Every call is in the access log: registrations as admin, reads as serve, refusals too.
    let q = "SELECT actor, surface, action, object, outcome, status FROM audit.access_log \
             WHERE action LIKE '% /registry/%' ORDER BY ts";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = env.sql(q);
        if rows.iter().any(|r| r["status"] == 409) || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let has = |actor: &str, surface: &str, action: &str, outcome: &str| {
        rows.iter().any(|r| {
            r["actor"] == actor
                && r["surface"] == surface
                && r["action"] == action
                && r["outcome"] == outcome
        })
    };
    let post = "POST /registry/subjects/Post%20Clicked/versions";
    assert!(has("admin", "admin", post, "ok"), "{rows:?}");
    assert!(has("reader", "admin", post, "denied"), "{rows:?}");
    assert!(has("admin", "admin", post, "rejected"), "{rows:?}");
    assert!(
        has("reader", "serve", "GET /registry/subjects", "ok"),
        "{rows:?}"
    );
    assert!(
        has("-", "serve", "GET /registry/subjects", "denied"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["object"] == "Post Clicked"),
        "{rows:?}"
    );
}

#[test]
fn collector_rejects_to_the_dead_letter_table_and_tags() {
    let env = Env::new();
    // Post Clicked: reject (the default). Post Viewed: tag.
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("\n[collector.schemas.subjects.\"Post Viewed\"]\non_violation = \"tag\"\n");
    std::fs::write(&env.config, text).unwrap();
    let dir = env.dir.path();
    std::fs::write(dir.join("clicked.json"), CLICKED_V1).unwrap();
    std::fs::write(
        dir.join("viewed.json"),
        r#"{"type":"object","properties":{"post_id":{"type":"integer"}}}"#,
    )
    .unwrap();
    // Registered offline, before serve starts.
    for (subject, file) in [
        ("Post Clicked", "clicked.json"),
        ("Post Viewed", "viewed.json"),
    ] {
        let (ok, out, err) = strata(
            &env.config,
            &[
                "schemas",
                "register",
                subject,
                dir.join(file).to_str().unwrap(),
            ],
        );
        assert!(ok && out.contains("registered version 1"), "{out}{err}");
    }
    let admin = token(&env.config, "admin", "admin");
    let server = env.serve("1s");
    let auth = [basic_auth(common::WRITE_KEY)];
    let now = chrono::Utc::now().to_rfc3339();
    let batch = json!({"batch": [
        {"type": "track", "event": "Post Clicked", "userId": "u1", "messageId": "ok-1",
         "timestamp": now, "properties": {"post_id": 1, "feed": "home"}},
        {"type": "track", "event": "Post Clicked", "userId": "u1", "messageId": "bad-type",
         "timestamp": now, "properties": {"post_id": "1", "feed": "home"}},
        {"type": "track", "event": "Post Clicked", "userId": "u1", "messageId": "bad-missing",
         "timestamp": now, "properties": {"feed": "home"}},
        {"type": "track", "event": "Post Clicked", "userId": "u1", "messageId": "bad-enum",
         "timestamp": now, "properties": {"post_id": 2, "feed": "trending"}},
        {"type": "track", "event": "Post Viewed", "userId": "u1", "messageId": "tagged",
         "timestamp": now, "properties": {"post_id": "x"}, "context": {"locale": "fr-FR"}},
        {"type": "track", "event": "Post Viewed", "userId": "u1", "messageId": "viewed-ok",
         "timestamp": now, "properties": {"post_id": 5}},
        {"type": "track", "event": "No Schema", "userId": "u1", "messageId": "free",
         "timestamp": now, "properties": {"anything": [1]}}
    ]});
    let res = post(
        server.addr,
        "/v1/batch",
        &auth,
        batch.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    let answer = res.json();
    assert_eq!(answer["accepted"], 4, "{}", res.body);
    assert_eq!(answer["rejected"], 3, "{}", res.body);
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(
        errors[0]["reason"],
        "schema violation (Post Clicked v1): /properties/post_id: expected integer, got string"
    );
    assert_eq!(
        errors[1]["reason"],
        "schema violation (Post Clicked v1): /properties/post_id: required property is missing"
    );
    assert!(
        errors[2]["reason"]
            .as_str()
            .unwrap()
            .contains("/properties/feed: \"trending\" is not one of"),
        "{}",
        errors[2]
    );

    // A schema registered over HTTP applies to the next request at once (same process).
    let (status, _) = call(
        server.addr,
        "POST",
        "/registry/subjects/identify/versions",
        Some(&bearer(&admin)),
        Some(
            json!({"schema": r#"{"type":"object","properties":{"age":{"type":"integer","minimum":0}}}"#}),
        ),
    );
    assert_eq!(status, 200);
    let identify = json!({"batch": [
        {"type": "identify", "userId": "u2", "messageId": "id-bad", "timestamp": now,
         "traits": {"age": -3}, "properties": {"age": "ignored: identify validates traits"}},
        {"type": "identify", "userId": "u3", "messageId": "id-ok", "timestamp": now,
         "traits": {"age": 30}}
    ]});
    let res = post(
        server.addr,
        "/v1/batch",
        &auth,
        identify.to_string().as_bytes(),
    )
    .unwrap();
    let answer = res.json();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{}",
        res.body
    );
    assert_eq!(
        answer["errors"][0]["reason"],
        "schema violation (identify v1): /traits/age: -3 is less than the minimum 0"
    );

    // The lake: rejections with the pointer in the dead-letter table, the tagged event queryable.
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event_rejected",
        4,
        Duration::from_secs(60),
    );
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        5,
        Duration::from_secs(60),
    );
    let rows = env.sql(
        "SELECT message_id, reason, raw FROM ods.ods_event_rejected WHERE message_id = 'bad-type'",
    );
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]["reason"]
            .as_str()
            .unwrap()
            .contains("/properties/post_id: expected integer, got string"),
        "{}",
        rows[0]
    );
    assert!(rows[0]["raw"].as_str().unwrap().contains("bad-type"));
    let tagged = env.sql(
        "SELECT message_id, json_get_str(context, 'schema_violation') AS v, json_get_str(context, 'locale') AS locale \
         FROM ods.ods_event WHERE json_get_str(context, 'schema_violation') IS NOT NULL",
    );
    assert_eq!(tagged.len(), 1, "{tagged:?}");
    assert_eq!(tagged[0]["message_id"], "tagged");
    assert_eq!(
        tagged[0]["v"],
        "schema violation (Post Viewed v1): /properties/post_id: expected integer, got string"
    );
    assert_eq!(tagged[0]["locale"], "fr-FR");
    server.stop();
}

#[test]
fn infer_and_views_on_a_small_lake() {
    let env = Env::new();
    env.set_keys("[warehouse]", &[("project", "\"proj\"")]);
    let project = env.dir.path().join("proj");
    let server = env.serve("1s");
    let auth = [basic_auth(common::WRITE_KEY)];
    let now = chrono::Utc::now().to_rfc3339();
    let events: Vec<Value> = (0..20)
        .map(|i| {
            let mut props =
                json!({"post_id": i, "feed": if i % 2 == 0 { "home" } else { "following" }});
            if i % 4 == 0 {
                props["dwell_ms"] = json!(i as f64 + 0.5);
            }
            json!({"type": "track", "event": "Post Clicked", "userId": format!("u{i}"),
                   "messageId": format!("m{i}"), "timestamp": now, "properties": props})
        })
        .chain([
            json!({"type": "identify", "userId": "u1", "messageId": "i1", "timestamp": now,
                       "traits": {"age": 31, "country": "FR"}}),
        ])
        .collect();
    let res = post(
        server.addr,
        "/v1/batch",
        &auth,
        json!({"batch": events}).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(res.json()["accepted"], 21, "{}", res.body);
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        21,
        Duration::from_secs(60),
    );
    server.stop();

    let (ok, out, err) = strata(&env.config, &["schemas", "infer", "--days", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("// Post Clicked (20 events)"), "{out}");
    let (ok, out, err) = strata(&env.config, &["schemas", "infer", "--days", "1", "--write"]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
    let clicked: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("schemas/Post Clicked.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(clicked["properties"]["post_id"]["type"], "integer");
    assert_eq!(clicked["properties"]["dwell_ms"]["type"], "number");
    // Present in every event: required; in a quarter of them: not.
    assert_eq!(clicked["required"], json!(["feed", "post_id"]));
    let identify: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("schemas/identify.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(identify["properties"]["country"]["examples"], json!(["FR"]));
    // The written files pass `strata check` and register.
    let (ok, _, err) = strata(&env.config, &["check"]);
    assert!(ok, "{err}");
    let (ok, out, err) = strata(&env.config, &["schemas", "register", "--project"]);
    assert!(ok, "{err}");
    assert!(out.contains("2 new version(s)"), "{out}");

    // Typed columns: a generated model per subject, run by the DAG.
    let (ok, out, err) = strata(&env.config, &["schemas", "views", "--write"]);
    assert!(ok, "{err}");
    assert!(out.contains("dwd_evt_post_clicked.sql"), "{out}");
    let today = chrono::Utc::now().date_naive().to_string();
    // One model at a time: two first models creating the `dwd` namespace at once can collide
    // (the loser is retried after the project's 60 s backoff).
    let (ok, _, err) = strata(
        &env.config,
        &["dag", "run", "--date", &today, "--parallelism", "1"],
    );
    assert!(ok, "{err}");
    let rows = env.sql(
        "SELECT post_id, feed, dwell_ms, arrow_typeof(post_id) AS t FROM dwd.dwd_evt_post_clicked ORDER BY post_id",
    );
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[4]["post_id"], 4);
    assert_eq!(rows[4]["feed"], "home");
    assert_eq!(rows[4]["dwell_ms"], 4.5);
    assert_eq!(rows[4]["t"], "Int64");
    assert!(rows[1]["dwell_ms"].is_null());
    let ages = env.sql("SELECT user_id, age FROM dwd.dwd_evt_identify");
    assert_eq!(ages, vec![json!({"user_id": "u1", "age": 31})]);
}

#[test]
fn check_and_serve_refuse_bad_project_schemas() {
    let env = Env::new();
    env.set_keys("[warehouse]", &[("project", "\"proj\"")]);
    let schemas = env.dir.path().join("proj/schemas");
    std::fs::create_dir_all(schemas.join("Post Clicked")).unwrap();
    std::fs::write(schemas.join("Post Clicked/1.json"), CLICKED_V1).unwrap();
    // v2 removes "following" from the enum: events valid under v1 break.
    std::fs::write(
        schemas.join("Post Clicked/2.json"),
        CLICKED_V1.replace(r#","following""#, ""),
    )
    .unwrap();
    std::fs::write(
        schemas.join("identify.json"),
        r#"{"type":"object","not":{}}"#,
    )
    .unwrap();
    std::fs::write(schemas.join("page.json"), r#"{"type":"object""#).unwrap();
    let (ok, _, err) = strata(&env.config, &["check"]);
    assert!(!ok);
    assert!(
        err.contains("2.json: version 2 is not BACKWARD compatible")
            && err.contains(r#"value "following" is no longer accepted"#),
        "{err}"
    );
    assert!(
        err.contains(r#"identify.json: #/not: unsupported keyword "not""#),
        "{err}"
    );
    assert!(
        err.contains("page.json: the schema is not valid JSON"),
        "{err}"
    );
    // serve registers the project's schemas at start: it refuses to start on bad ones.
    let out = Command::new(strata_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("event schemas could not be registered"),
        "{stderr}"
    );

    // Fixed: check passes and serve starts with them registered.
    std::fs::remove_file(schemas.join("Post Clicked/2.json")).unwrap();
    std::fs::write(schemas.join("identify.json"), r#"{"type":"object"}"#).unwrap();
    std::fs::remove_file(schemas.join("page.json")).unwrap();
    let (ok, _, err) = strata(&env.config, &["check"]);
    assert!(ok, "{err}");
    let server = env.serve("1s");
    let reader = token(&env.config, "reader", "catalog:read");
    let (_, subjects) = call(
        server.addr,
        "GET",
        "/registry/subjects",
        Some(&bearer(&reader)),
        None,
    );
    assert_eq!(subjects, json!(["Post Clicked", "identify"]));
    server.stop();
}
