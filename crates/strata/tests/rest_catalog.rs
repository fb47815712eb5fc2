//! The Iceberg REST catalog `strata serve` exposes under `/iceberg`, over real HTTP against
//! the real binary: bearer-token auth, namespace and table lifecycle, loading `ods.ods_event`
//! after ingest, commit requirements (409), malformed bodies (400), and REST commits racing
//! the lake sink.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

struct Client {
    addr: std::net::SocketAddr,
    token: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let body = body.map(|b| b.to_string().into_bytes());
        request(
            self.addr,
            method,
            &format!("/iceberg{path}"),
            &[bearer(&self.token)],
            body.as_deref(),
        )
        .unwrap()
    }

    fn raw(&self, method: &str, path: &str, body: &[u8]) -> Response {
        request(
            self.addr,
            method,
            &format!("/iceberg{path}"),
            &[bearer(&self.token)],
            Some(body),
        )
        .unwrap()
    }
}

/// The spec's ErrorModel: status `code`, error `type`.
fn assert_error(res: &Response, code: u16, kind: &str) {
    assert_eq!(res.status, code, "{}", res.body);
    let v = res.json();
    assert_eq!(v["error"]["code"], code, "{}", res.body);
    assert_eq!(v["error"]["type"], kind, "{}", res.body);
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

fn schema() -> Value {
    json!({
        "type": "struct",
        "schema-id": 0,
        "fields": [
            {"id": 1, "name": "id", "required": true, "type": "long"},
            {"id": 2, "name": "name", "required": false, "type": "string"}
        ]
    })
}

#[test]
fn rest_catalog_requires_a_valid_bearer_token() {
    let env = Env::new();
    let token = create_token(&env.config, "tests");
    let server = env.serve("200ms");
    let path = "/iceberg/v1/config";

    let none = get(server.addr, path).unwrap();
    assert_error(&none, 401, "NotAuthorizedException");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = request(server.addr, "GET", path, &[bearer("stk_not-a-token")], None).unwrap();
    assert_error(&wrong, 401, "NotAuthorizedException");
    let basic = request(server.addr, "GET", path, &[basic_auth(&token)], None).unwrap();
    assert_error(&basic, 401, "NotAuthorizedException");
    // Every endpoint is behind the token, not only config.
    let ns = get(server.addr, "/iceberg/v1/namespaces").unwrap();
    assert_error(&ns, 401, "NotAuthorizedException");

    let ok = request(server.addr, "GET", path, &[bearer(&token)], None).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    let endpoints = ok.json()["endpoints"].clone();
    assert!(
        endpoints.as_array().unwrap().contains(&json!(
            "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}"
        )),
        "{endpoints}"
    );
    // The token file holds only the hash.
    let stored = std::fs::read_to_string(env.data().join("catalog_tokens.json")).unwrap();
    assert!(!stored.contains(&token));

    // Revoking takes effect on the running server.
    let out = std::process::Command::new(strata_bin())
        .args(["tokens", "revoke", "tests", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = request(server.addr, "GET", path, &[bearer(&token)], None).unwrap();
    assert_error(&revoked, 401, "NotAuthorizedException");
    server.stop();

    // Switched off: no /iceberg at all, the collector still serves.
    let token = create_token(&env.config, "again");
    let server = env.serve_with_env("200ms", &[("STRATA_CATALOG_SERVER__ENABLED", "false")]);
    let off = request(server.addr, "GET", path, &[bearer(&token)], None).unwrap();
    assert_eq!(off.status, 404, "{}", off.body);
    assert_eq!(get(server.addr, "/health").unwrap().status, 200);
}

#[test]
fn namespace_and_table_lifecycle() {
    let env = Env::new();
    let token = create_token(&env.config, "tests");
    let server = env.serve("200ms");
    let c = Client {
        addr: server.addr,
        token,
    };

    let res = c.call("GET", "/v1/namespaces", None);
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.json()["namespaces"], json!([["ods"]]));

    let res = c.call(
        "POST",
        "/v1/namespaces",
        Some(json!({"namespace": ["analytics"], "properties": {"owner": "jo", "tier": "gold"}})),
    );
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.json()["namespace"], json!(["analytics"]));
    let again = c.call(
        "POST",
        "/v1/namespaces",
        Some(json!({"namespace": ["analytics"]})),
    );
    assert_error(&again, 409, "AlreadyExistsException");
    let res = c.call(
        "POST",
        "/v1/namespaces",
        Some(json!({"namespace": ["analytics", "daily"]})),
    );
    assert_eq!(res.status, 200, "{}", res.body);

    let res = c.call("GET", "/v1/namespaces/analytics", None);
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        res.json()["properties"],
        json!({"owner": "jo", "tier": "gold"})
    );
    assert_eq!(c.call("HEAD", "/v1/namespaces/analytics", None).status, 204);
    assert_eq!(c.call("HEAD", "/v1/namespaces/nope", None).status, 404);
    assert_error(
        &c.call("GET", "/v1/namespaces/nope", None),
        404,
        "NoSuchNamespaceException",
    );
    // Nested namespace: levels separated by %1F in paths and `parent`.
    let res = c.call("GET", "/v1/namespaces?parent=analytics", None);
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.json()["namespaces"], json!([["analytics", "daily"]]));
    assert_eq!(
        c.call("HEAD", "/v1/namespaces/analytics%1Fdaily", None)
            .status,
        204
    );

    let res = c.call(
        "POST",
        "/v1/namespaces/analytics/properties",
        Some(
            json!({"updates": {"owner": "sam", "team": "growth"}, "removals": ["tier", "absent"]}),
        ),
    );
    assert_eq!(res.status, 200, "{}", res.body);
    let v = res.json();
    assert_eq!(v["removed"], json!(["tier"]));
    assert_eq!(v["missing"], json!(["absent"]));
    let res = c.call("GET", "/v1/namespaces/analytics", None);
    assert_eq!(
        res.json()["properties"],
        json!({"owner": "sam", "team": "growth"})
    );

    // Tables.
    let res = c.call(
        "POST",
        "/v1/namespaces/analytics/tables",
        Some(json!({"name": "visits", "schema": schema(), "properties": {"made-by": "test"}})),
    );
    assert_eq!(res.status, 200, "{}", res.body);
    let created = res.json();
    let location = created["metadata-location"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&location).exists(), "{location}");
    assert_eq!(created["metadata"]["format-version"], 2);
    assert_eq!(created["metadata"]["properties"]["made-by"], "test");
    let again = c.call(
        "POST",
        "/v1/namespaces/analytics/tables",
        Some(json!({"name": "visits", "schema": schema()})),
    );
    assert_error(&again, 409, "AlreadyExistsException");
    let missing_ns = c.call(
        "POST",
        "/v1/namespaces/nope/tables",
        Some(json!({"name": "visits", "schema": schema()})),
    );
    assert_error(&missing_ns, 404, "NoSuchNamespaceException");

    let res = c.call("GET", "/v1/namespaces/analytics/tables", None);
    assert_eq!(
        res.json()["identifiers"],
        json!([{"namespace": ["analytics"], "name": "visits"}])
    );
    let res = c.call("GET", "/v1/namespaces/analytics/tables/visits", None);
    assert_eq!(res.status, 200, "{}", res.body);
    let loaded = res.json();
    assert_eq!(loaded["metadata-location"], location.as_str());
    assert_eq!(
        loaded["metadata"]["schemas"][0]["fields"][1]["name"],
        "name"
    );
    assert!(loaded["config"].is_object());
    assert_eq!(
        c.call("HEAD", "/v1/namespaces/analytics/tables/visits", None)
            .status,
        204
    );
    assert_eq!(
        c.call("HEAD", "/v1/namespaces/analytics/tables/nope", None)
            .status,
        404
    );
    assert_error(
        &c.call("GET", "/v1/namespaces/analytics/tables/nope", None),
        404,
        "NoSuchTableException",
    );
    // The same table through Strata's own SQL.
    assert_eq!(env.sql_count("SELECT count(*) FROM analytics.visits"), 0);

    // A namespace with a table (or a child namespace) is not dropped.
    let res = c.call("DELETE", "/v1/namespaces/analytics", None);
    assert_error(&res, 409, "NamespaceNotEmptyException");

    // Rename.
    let rename = |src: &str, dst: &str| {
        c.call(
            "POST",
            "/v1/tables/rename",
            Some(json!({
                "source": {"namespace": ["analytics"], "name": src},
                "destination": {"namespace": ["analytics", "daily"], "name": dst}
            })),
        )
    };
    let res = rename("visits", "visits_v2");
    assert_eq!(res.status, 204, "{}", res.body);
    assert_error(&rename("visits", "x"), 404, "NoSuchTableException");
    assert_error(
        &c.call("GET", "/v1/namespaces/analytics/tables/visits", None),
        404,
        "NoSuchTableException",
    );
    let res = c.call(
        "GET",
        "/v1/namespaces/analytics%1Fdaily/tables/visits_v2",
        None,
    );
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        res.json()["metadata"]["table-uuid"],
        created["metadata"]["table-uuid"]
    );

    // Drop with purge deletes the files too.
    let table_dir = std::path::Path::new(&location)
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();
    assert!(table_dir.exists());
    let res = c.call(
        "DELETE",
        "/v1/namespaces/analytics%1Fdaily/tables/visits_v2?purgeRequested=true",
        None,
    );
    assert_eq!(res.status, 204, "{}", res.body);
    assert!(
        !std::path::Path::new(&location).exists(),
        "{location} survived purge"
    );
    assert_error(
        &c.call(
            "DELETE",
            "/v1/namespaces/analytics%1Fdaily/tables/visits_v2",
            None,
        ),
        404,
        "NoSuchTableException",
    );

    assert_eq!(
        c.call("DELETE", "/v1/namespaces/analytics%1Fdaily", None)
            .status,
        204
    );
    assert_eq!(
        c.call("DELETE", "/v1/namespaces/analytics", None).status,
        204
    );
    assert_error(
        &c.call("GET", "/v1/namespaces/analytics", None),
        404,
        "NoSuchNamespaceException",
    );
}

#[test]
fn ods_event_loads_after_ingest_and_commit_requirements_are_checked() {
    let env = Env::new();
    let token = create_token(&env.config, "tests");
    let server = env.serve("200ms");
    let c = Client {
        addr: server.addr,
        token,
    };
    for b in 0..3 {
        let res = post(
            server.addr,
            "/v1/batch",
            &[basic_auth(WRITE_KEY)],
            &batch(&format!("rest-{b}"), 40),
        )
        .unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
    }
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        120,
        Duration::from_secs(60),
    );

    let res = c.call("GET", "/v1/namespaces/ods/tables", None);
    let names: Vec<String> = res.json()["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "ods_event"), "{names:?}");
    assert!(names.iter().any(|n| n == "ods_event_rejected"), "{names:?}");

    let res = c.call("GET", "/v1/namespaces/ods/tables/ods_event", None);
    assert_eq!(res.status, 200, "{}", res.body);
    let loaded = res.json();
    let meta = &loaded["metadata"];
    let current = meta["current-snapshot-id"]
        .as_i64()
        .expect("a current snapshot");
    let snapshot = meta["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot-id"] == current)
        .unwrap();
    assert_eq!(snapshot["summary"]["total-records"], "120", "{snapshot}");
    assert!(snapshot["summary"]["strata.bus.events.offsets"].is_string());
    let location = loaded["metadata-location"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&location).exists());

    let uuid = meta["table-uuid"].as_str().unwrap().to_string();
    let commit = |requirements: Value, updates: Value| {
        c.call(
            "POST",
            "/v1/namespaces/ods/tables/ods_event",
            Some(json!({
                "identifier": {"namespace": ["ods"], "name": "ods_event"},
                "requirements": requirements,
                "updates": updates,
            })),
        )
    };
    let set_prop = json!([{"action": "set-properties", "updates": {"owner": "rest-test"}}]);
    // Each requirement, not met: 409 and the table is unchanged.
    let failing = [
        json!({"type": "assert-table-uuid", "uuid": "00000000-0000-4000-8000-000000000000"}),
        json!({"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": current + 1}),
        json!({"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": null}),
        json!({"type": "assert-last-assigned-field-id", "last-assigned-field-id": meta["last-column-id"].as_i64().unwrap() + 1}),
        json!({"type": "assert-current-schema-id", "current-schema-id": meta["current-schema-id"].as_i64().unwrap() + 1}),
        json!({"type": "assert-last-assigned-partition-id", "last-assigned-partition-id": meta["last-partition-id"].as_i64().unwrap() + 1}),
        json!({"type": "assert-default-spec-id", "default-spec-id": meta["default-spec-id"].as_i64().unwrap() + 1}),
        json!({"type": "assert-default-sort-order-id", "default-sort-order-id": meta["default-sort-order-id"].as_i64().unwrap() + 1}),
        json!({"type": "assert-create"}),
    ];
    for r in failing {
        let res = commit(json!([r]), set_prop.clone());
        assert_error(&res, 409, "CommitFailedException");
    }
    let res = c.call("GET", "/v1/namespaces/ods/tables/ods_event", None);
    assert_eq!(res.json()["metadata-location"], location.as_str());
    assert!(res.json()["metadata"]["properties"].get("owner").is_none());

    // All requirements met: committed, visible on the next load and to the lake.
    let ok = json!([
        {"type": "assert-table-uuid", "uuid": uuid},
        {"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": current},
        {"type": "assert-last-assigned-field-id", "last-assigned-field-id": meta["last-column-id"]},
        {"type": "assert-current-schema-id", "current-schema-id": meta["current-schema-id"]},
        {"type": "assert-last-assigned-partition-id", "last-assigned-partition-id": meta["last-partition-id"]},
        {"type": "assert-default-spec-id", "default-spec-id": meta["default-spec-id"]},
        {"type": "assert-default-sort-order-id", "default-sort-order-id": meta["default-sort-order-id"]},
    ]);
    let res = commit(ok.clone(), set_prop.clone());
    assert_eq!(res.status, 200, "{}", res.body);
    let committed = res.json();
    let new_location = committed["metadata-location"].as_str().unwrap();
    assert_ne!(new_location, location);
    assert_eq!(committed["metadata"]["properties"]["owner"], "rest-test");
    let res = c.call("GET", "/v1/namespaces/ods/tables/ods_event", None);
    assert_eq!(res.json()["metadata-location"], new_location);
    assert_eq!(res.json()["metadata"]["properties"]["owner"], "rest-test");

    // The sink keeps committing on top of the REST commit; nothing is lost.
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("rest-after", 30),
    )
    .unwrap();
    assert_eq!(res.status, 200);
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        150,
        Duration::from_secs(60),
    );
    // Now the snapshot the earlier requirement named is no longer main's head.
    let res = commit(ok, set_prop);
    assert_error(&res, 409, "CommitFailedException");
    let res = c.call("GET", "/v1/namespaces/ods/tables/ods_event", None);
    assert_eq!(res.json()["metadata"]["properties"]["owner"], "rest-test");
}

#[test]
fn malformed_bodies_are_bad_requests() {
    let env = Env::new();
    let token = create_token(&env.config, "tests");
    let server = env.serve("200ms");
    let c = Client {
        addr: server.addr,
        token,
    };
    assert_error(
        &c.raw("POST", "/v1/namespaces", b"{not json"),
        400,
        "BadRequestException",
    );
    assert_error(
        &c.raw("POST", "/v1/namespaces", br#"{"namespace": "ods"}"#),
        400,
        "BadRequestException",
    );
    assert_error(
        &c.raw("POST", "/v1/namespaces/ods/tables", br#"{"name": "t"}"#),
        400,
        "BadRequestException",
    );
    assert_error(
        &c.raw(
            "POST",
            "/v1/namespaces/ods/tables/ods_event",
            br#"{"requirements": [{"type": "assert-nothing"}], "updates": []}"#,
        ),
        400,
        "BadRequestException",
    );
    assert_error(
        &c.raw(
            "POST",
            "/v1/namespaces/ods/tables/ods_event",
            br#"{"requirements": [], "updates": [{"action": "set-current-schema", "schema-id": 99}]}"#,
        ),
        400,
        "BadRequestException",
    );
    assert_error(
        &c.raw("POST", "/v1/tables/rename", b"[]"),
        400,
        "BadRequestException",
    );
    // Nothing of that reached the catalog.
    let res = c.call("GET", "/v1/namespaces", None);
    assert_eq!(res.json()["namespaces"], json!([["ods"]]));
}

/// REST commits that only assert the table's identity race the lake sink's appends: the server
/// re-checks the requirements and re-applies on the sink's newer metadata, so every REST
/// commit lands and every acknowledged event is in the table.
#[test]
fn rest_commits_racing_the_lake_sink_lose_nothing() {
    let env = Env::new();
    let token = create_token(&env.config, "tests");
    let server = env.serve("50ms");
    let addr = server.addr;
    let res = request(
        addr,
        "GET",
        "/iceberg/v1/namespaces/ods/tables/ods_event",
        &[bearer(&token)],
        None,
    )
    .unwrap();
    let uuid = res.json()["metadata"]["table-uuid"]
        .as_str()
        .unwrap()
        .to_string();

    let writer = std::thread::spawn(move || {
        let c = Client { addr, token };
        let mut statuses = Vec::new();
        for i in 0..25 {
            let res = c.call(
                "POST",
                "/v1/namespaces/ods/tables/ods_event",
                Some(json!({
                    "requirements": [{"type": "assert-table-uuid", "uuid": uuid}],
                    "updates": [{"action": "set-properties", "updates": {format!("race.{i}"): i.to_string()}}],
                })),
            );
            statuses.push(res.status);
            std::thread::sleep(Duration::from_millis(20));
        }
        statuses
    });
    let mut acked = 0;
    for b in 0..25 {
        let res = post(
            addr,
            "/v1/batch",
            &[basic_auth(WRITE_KEY)],
            &batch(&format!("race-{b}"), 20),
        )
        .unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        acked += 20;
        std::thread::sleep(Duration::from_millis(30));
    }
    let statuses = writer.join().unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        acked,
        Duration::from_secs(60),
    );
    let res = request(
        addr,
        "GET",
        "/iceberg/v1/namespaces/ods/tables/ods_event",
        &[bearer(&create_token(&env.config, "check"))],
        None,
    )
    .unwrap();
    let props = res.json()["metadata"]["properties"].clone();
    for i in 0..25 {
        assert_eq!(props[format!("race.{i}")], i.to_string(), "{props}");
    }
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        acked
    );
}

/// `POST /v1/transactions/commit`: all tables change, or none.
#[test]
fn multi_table_transactions_are_all_or_nothing() {
    let env = Env::new();
    let token = create_token(&env.config, "tests");
    let server = env.serve("200ms");
    let c = Client {
        addr: server.addr,
        token,
    };
    let res = c.call("POST", "/v1/namespaces", Some(json!({"namespace": ["tx"]})));
    assert_eq!(res.status, 200, "{}", res.body);
    let mut uuids = Vec::new();
    for name in ["a", "b"] {
        let res = c.call(
            "POST",
            "/v1/namespaces/tx/tables",
            Some(json!({"name": name, "schema": schema()})),
        );
        assert_eq!(res.status, 200, "{}", res.body);
        uuids.push(res.json()["metadata"]["table-uuid"].clone());
    }
    let change = |name: &str, uuid: &Value, value: &str| {
        json!({
            "identifier": {"namespace": ["tx"], "name": name},
            "requirements": [{"type": "assert-table-uuid", "uuid": uuid}],
            "updates": [{"action": "set-properties", "updates": {"batch": value}}],
        })
    };
    let prop = |name: &str| {
        c.call("GET", &format!("/v1/namespaces/tx/tables/{name}"), None)
            .json()["metadata"]["properties"]["batch"]
            .clone()
    };

    let res = c.call(
        "POST",
        "/v1/transactions/commit",
        Some(json!({"table-changes": [change("a", &uuids[0], "1"), change("b", &uuids[1], "1")]})),
    );
    assert_eq!(res.status, 204, "{}", res.body);
    assert_eq!(prop("a"), "1");
    assert_eq!(prop("b"), "1");

    // b's requirement fails: a does not change either.
    let wrong = json!("00000000-0000-4000-8000-000000000000");
    let res = c.call(
        "POST",
        "/v1/transactions/commit",
        Some(json!({"table-changes": [change("a", &uuids[0], "2"), change("b", &wrong, "2")]})),
    );
    assert_error(&res, 409, "CommitFailedException");
    assert_eq!(prop("a"), "1");
    assert_eq!(prop("b"), "1");

    // A missing table: 404, nothing changes.
    let res = c.call(
        "POST",
        "/v1/transactions/commit",
        Some(json!({"table-changes": [change("a", &uuids[0], "3"), change("nope", &wrong, "3")]})),
    );
    assert_error(&res, 404, "NoSuchTableException");
    assert_eq!(prop("a"), "1");
    let res = c.raw(
        "POST",
        "/v1/transactions/commit",
        br#"{"table-changes": [{"updates": []}]}"#,
    );
    assert_error(&res, 400, "BadRequestException");
}

/// `[catalog] kind = "rest"`: a second Strata keeps its lake in this one's catalog. Its sink,
/// its DDL and DML, and the owner's compaction all commit to the same tables through
/// requirements (a commit that lost the race is retried, never lost or doubled), both sides
/// read the same rows, and a refused token is reported with the catalog's address.
#[test]
fn a_second_strata_keeps_its_lake_in_this_rest_catalog() {
    let owner = Env::new();
    let token = create_token(&owner.config, "tenant");
    let catalog = owner.serve("100ms");
    let uri = format!("http://{}/iceberg", catalog.addr);
    let tenant = Env::new();
    tenant.use_rest_catalog(&uri, &token, &owner.data().join("lake"));
    let server = tenant.serve("100ms");

    let mut compacted = false;
    for b in 0..12 {
        let res = post(
            server.addr,
            "/v1/batch",
            &[basic_auth(WRITE_KEY)],
            &batch(&format!("tenant-{b}"), 20),
        )
        .unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        std::thread::sleep(Duration::from_millis(150));
        if b == 9 {
            // The owner rewrites the files the tenant's sink is appending to.
            let out = std::process::Command::new(strata_bin())
                .args([
                    "table",
                    "compact",
                    "ods.ods_event",
                    "--min-input-files",
                    "2",
                    "-c",
                ])
                .arg(&owner.config)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            compacted = !stdout.contains("nothing to compact");
        }
    }
    tenant.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        240,
        Duration::from_secs(60),
    );
    assert!(compacted, "the owner's compaction found nothing to do");
    assert_eq!(owner.sql_count("SELECT count(*) FROM ods.ods_event"), 240);
    assert_eq!(
        tenant.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        240
    );

    // DDL and DML from the tenant land in the owner's catalog.
    tenant.sql("CREATE SCHEMA dwd");
    tenant.sql(
        "CREATE TABLE dwd.per_user AS SELECT user_id, count(*) AS n FROM ods.ods_event GROUP BY 1",
    );
    tenant.sql("DELETE FROM ods.ods_event WHERE message_id = 'tenant-0-0'");
    tenant.sql("ALTER TABLE dwd.per_user ADD COLUMN note STRING");
    assert_eq!(owner.sql_count("SELECT count(*) FROM ods.ods_event"), 239);
    assert_eq!(
        owner.sql_count("SELECT sum(n) FROM dwd.per_user WHERE note IS NULL"),
        240
    );
    let history =
        owner.sql("SELECT count(*) AS n FROM ods.ods_event WHERE message_id = 'tenant-0-0'");
    assert_eq!(history[0]["n"], 0, "{history:?}");
    server.stop();

    // A token the catalog refuses: the error says which catalog and why.
    tenant.set_keys("[catalog]", &[("token", "\"stk_not-a-token\"")]);
    let out = std::process::Command::new(strata_bin())
        .args(["sql", "-c"])
        .arg(&tenant.config)
        .arg("SELECT count(*) FROM ods.ods_event")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&uri) && stderr.contains("401"), "{stderr}");
    catalog.stop();
}
