//! Security of what `strata serve` and `strata sql` expose, against the real binary on
//! loopback: names and locations confined to the warehouse (each finding of issue #30
//! reproduced), one broken catalog entry not stopping SQL, token scopes and namespace grants on
//! every REST catalog route, expiry, column masking by role in SQL and in the catalog, and the
//! access log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

fn call(
    addr: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Response {
    let body = body.map(|b| b.to_string().into_bytes());
    request(
        addr,
        method,
        &format!("/iceberg{path}"),
        &[bearer(token)],
        body.as_deref(),
    )
    .unwrap()
}

/// `strata tokens create NAME ARGS…`: the printed token.
fn token(config: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(strata_bin())
        .args(["tokens", "create", name, "-c"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `strata sql [--role R] QUERY` → (success, stdout JSON rows, stderr).
fn sql_as(env: &Env, role: Option<&str>, query: &str) -> (bool, Vec<Value>, String) {
    let mut cmd = Command::new(strata_bin());
    cmd.args(["sql", "--format", "json", "-c"]).arg(&env.config);
    if let Some(r) = role {
        cmd.args(["--role", r]);
    }
    let out = cmd.arg(query).output().unwrap();
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.success(),
        rows,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn schema() -> Value {
    json!({
        "type": "struct",
        "schema-id": 0,
        "fields": [{"id": 1, "name": "id", "required": true, "type": "long"}]
    })
}

fn create_table_body(name: &str) -> Value {
    json!({"name": name, "schema": schema()})
}

fn assert_status(res: &Response, code: u16, what: &str) {
    assert_eq!(res.status, code, "{what}: {}", res.body);
}

fn append_config(env: &Env, text: &str) {
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(text);
    std::fs::write(&env.config, config).unwrap();
}

fn warehouse(env: &Env) -> PathBuf {
    env.data().join("lake")
}

#[test]
fn names_and_locations_stay_inside_the_warehouse() {
    let env = Env::new();
    let shared = env.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    env.set_keys(
        "[catalog_server]",
        &[("allowed_locations", &format!("[\"{}\"]", shared.display()))],
    );
    let admin = token(&env.config, "admin", &["--scope", "admin"]);
    let server = env.serve("200ms");
    let addr = server.addr;
    let wh = std::fs::canonicalize(warehouse(&env)).unwrap();

    // The namespaces of the finding, and every other rule.
    for bad in [
        json!([".."]),
        json!(["a/../../b"]),
        json!(["a.b"]),
        json!(["x", ".."]),
        json!(["%2e%2e"]),
        json!([""]),
        json!(["a\u{0}b"]),
    ] {
        let res = call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces",
            Some(json!({"namespace": bad})),
        );
        assert_status(&res, 400, &format!("namespace {bad}"));
        assert!(res.body.contains("names are 1 to 128"), "{}", res.body);
    }
    // The table of the finding: its metadata was written four directories above the warehouse.
    let evil_target = wh.join("ods").join("../../../../evil");
    let res = call(
        addr,
        &admin,
        "POST",
        "/v1/namespaces/ods/tables",
        Some(create_table_body("../../../../evil")),
    );
    assert_status(&res, 400, "table ../../../../evil");
    for bad in ["..", "a/b", "a.b", "a b", "-x"] {
        let res = call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces/ods/tables",
            Some(create_table_body(bad)),
        );
        assert_status(&res, 400, &format!("table {bad:?}"));
    }
    let evil = std::path::absolute(&evil_target).unwrap();
    let evil: PathBuf = evil.components().fold(PathBuf::new(), |mut p, c| {
        match c {
            std::path::Component::ParentDir => {
                p.pop();
            }
            other => p.push(other),
        }
        p
    });
    assert!(!evil.exists(), "{} must not exist", evil.display());

    // Client-chosen locations: absolute paths elsewhere, file:// forms, escapes, symlinks.
    let elsewhere = env.dir.path().join("elsewhere");
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, wh.join("link")).unwrap();
    for (i, location) in [
        elsewhere.display().to_string(),
        format!("file://{}", elsewhere.display()),
        format!("{}/ods/../../elsewhere", wh.display()),
        format!("{}/%2e%2e/elsewhere", wh.display()),
        format!("{}/link/t", wh.display()),
        format!("{}-evil/t", wh.display()),
        "s3://bucket/t".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"name": format!("loc{i}"), "schema": schema(), "location": location});
        let res = call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces/ods/tables",
            Some(body),
        );
        assert!(
            res.status == 403 || res.status == 400,
            "{location}: {} {}",
            res.status,
            res.body
        );
        assert!(
            !res.body.contains(&env.dir.path().display().to_string())
                || res.body.contains(location.as_str()),
            "the answer names only what the client sent: {}",
            res.body
        );
    }
    for key in [
        "write.data.path",
        "write.metadata.path",
        "write.object-storage.path",
    ] {
        let body = json!({"name": "props", "schema": schema(), "properties": {key: elsewhere.display().to_string()}});
        let res = call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces/ods/tables",
            Some(body),
        );
        assert_status(&res, 403, key);
    }
    let res = call(
        addr,
        &admin,
        "POST",
        "/v1/namespaces",
        Some(
            json!({"namespace": ["placed"], "properties": {"location": elsewhere.display().to_string()}}),
        ),
    );
    assert_status(&res, 403, "namespace location");
    assert!(
        !elsewhere.exists(),
        "nothing was written at {}",
        elsewhere.display()
    );
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing behind the symlink"
    );

    // Inside the warehouse and inside an allowed location: fine.
    let inside = json!({"name": "inside", "schema": schema(), "location": format!("{}/ods/inside_here", wh.display())});
    assert_status(
        &call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces/ods/tables",
            Some(inside),
        ),
        200,
        "inside",
    );
    let allowed = json!({"name": "shared_t", "schema": schema(), "location": format!("{}/t", shared.display())});
    assert_status(
        &call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces/ods/tables",
            Some(allowed),
        ),
        200,
        "allowed location",
    );
    assert!(shared.join("t/metadata").is_dir());

    // Commits cannot move a table out either.
    let res = call(
        addr,
        &admin,
        "POST",
        "/v1/namespaces/ods/tables/inside",
        Some(
            json!({"updates": [{"action": "set-location", "location": elsewhere.display().to_string()}]}),
        ),
    );
    assert_status(&res, 403, "set-location");
    let res = call(
        addr,
        &admin,
        "POST",
        "/v1/namespaces/ods/tables/inside",
        Some(
            json!({"updates": [{"action": "set-properties", "updates": {"write.data.path": elsewhere.display().to_string()}}]}),
        ),
    );
    assert_status(&res, 403, "set-properties write.data.path");
    let res = call(
        addr,
        &admin,
        "POST",
        "/v1/namespaces/ods/properties",
        Some(json!({"updates": {"location": elsewhere.display().to_string()}})),
    );
    assert_status(&res, 403, "namespace location update");
    let res = call(
        addr,
        &admin,
        "POST",
        "/v1/tables/rename",
        Some(
            json!({"source": {"namespace": ["ods"], "name": "inside"}, "destination": {"namespace": ["ods"], "name": "../x"}}),
        ),
    );
    assert_status(&res, 400, "rename to a bad name");

    // The same rule in SQL.
    let (ok, _, err) = sql_as(&env, None, "CREATE SCHEMA \"a.b\"");
    assert!(!ok && err.contains("names are 1 to 128"), "{err}");
    let (ok, _, err) = sql_as(&env, None, "CREATE TABLE ods.\"x/y\" (id BIGINT)");
    assert!(!ok && err.contains("names are 1 to 128"), "{err}");
    server.stop();
}

#[test]
fn a_broken_catalog_entry_does_not_stop_sql() {
    let env = Env::new();
    let (ok, _, err) = sql_as(&env, None, "CREATE TABLE ods.good (id BIGINT)");
    assert!(ok, "{err}");
    assert!(sql_as(&env, None, "INSERT INTO ods.good VALUES (1), (2)").0);
    // What an older version let a client create: the SQL catalog splits it at '.' into a
    // namespace "a/" that has no entry of its own.
    let catalog = env.data().join("catalog.db");
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute(\"INSERT INTO iceberg_namespace_properties VALUES ('strata','a/../../b','exists','true')\"); c.commit()",
        )
        .arg(&catalog)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, rows, err) = sql_as(&env, None, "SELECT count(*) AS n FROM ods.good");
    assert!(
        ok,
        "one bad entry must not stop queries on the others: {err}"
    );
    assert_eq!(rows[0]["n"], 2);
    assert!(
        err.contains("skipping a catalog namespace") && err.contains("a/"),
        "the warning names it: {err}"
    );
}

/// Every route of the REST catalog, with a body that gets past authorization but changes
/// nothing (or what it changes is put back by the route after it).
fn routes() -> Vec<(&'static str, String, Option<Value>, bool)> {
    let (get, write) = (false, true);
    vec![
        ("GET", "/v1/config".into(), None, get),
        ("GET", "/v1/namespaces".into(), None, get),
        ("GET", "/v1/namespaces/analytics".into(), None, get),
        ("HEAD", "/v1/namespaces/analytics".into(), None, get),
        ("GET", "/v1/namespaces/analytics/tables".into(), None, get),
        ("GET", "/v1/namespaces/analytics/tables/t".into(), None, get),
        (
            "HEAD",
            "/v1/namespaces/analytics/tables/t".into(),
            None,
            get,
        ),
        (
            "POST",
            "/v1/namespaces".into(),
            Some(json!({"namespace": ["analytics"]})),
            write,
        ),
        ("DELETE", "/v1/namespaces/analytics".into(), None, write),
        (
            "POST",
            "/v1/namespaces/analytics/properties".into(),
            Some(json!({"updates": {"owner": "x"}})),
            write,
        ),
        (
            "POST",
            "/v1/namespaces/analytics/tables".into(),
            Some(create_table_body("t")),
            write,
        ),
        (
            "POST",
            "/v1/namespaces/analytics/tables/t".into(),
            Some(
                json!({"requirements": [{"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"}], "updates": []}),
            ),
            write,
        ),
        (
            "DELETE",
            "/v1/namespaces/analytics/tables/missing".into(),
            None,
            write,
        ),
        (
            "POST",
            "/v1/tables/rename".into(),
            Some(
                json!({"source": {"namespace": ["analytics"], "name": "missing"}, "destination": {"namespace": ["analytics"], "name": "m2"}}),
            ),
            write,
        ),
        (
            "POST",
            "/v1/transactions/commit".into(),
            Some(
                json!({"table-changes": [{"identifier": {"namespace": ["analytics"], "name": "t"},
                "requirements": [{"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"}], "updates": []}]}),
            ),
            write,
        ),
    ]
}

#[test]
fn scopes_grants_and_expiry_on_every_catalog_route() {
    let env = Env::new();
    let admin = token(&env.config, "admin", &["--scope", "admin"]);
    let reader = token(&env.config, "reader", &["--scope", "catalog:read"]);
    let writer = token(&env.config, "writer", &["--scope", "catalog:write"]);
    let ods_only = token(
        &env.config,
        "ods-only",
        &[
            "--scope",
            "catalog:read,catalog:write",
            "--namespace",
            "ods",
        ],
    );
    let server_only = token(&env.config, "feeds", &["--scope", "serve"]);
    let short = token(
        &env.config,
        "short",
        &["--scope", "catalog:read", "--expires-in", "1s"],
    );
    let server = env.serve("200ms");
    let addr = server.addr;
    assert_status(
        &call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces",
            Some(json!({"namespace": ["analytics"]})),
        ),
        200,
        "setup ns",
    );
    assert_status(
        &call(
            addr,
            &admin,
            "POST",
            "/v1/namespaces/analytics/tables",
            Some(create_table_body("t")),
        ),
        200,
        "setup table",
    );

    for (method, path, body, is_write) in routes() {
        let what = format!("{method} {path}");
        let r = call(addr, &reader, method, &path, body.clone());
        let w = call(addr, &writer, method, &path, body.clone());
        let s = call(addr, &server_only, method, &path, body.clone());
        if is_write {
            assert_status(&r, 403, &format!("read-only token, {what}"));
            assert!(r.body.contains("catalog:write"), "{what}: {}", r.body);
            assert_ne!(w.status, 403, "write token, {what}: {}", w.body);
            assert_ne!(w.status, 401, "write token, {what}: {}", w.body);
        } else {
            assert_ne!(r.status, 403, "read token, {what}: {}", r.body);
            assert!(r.status < 500, "read token, {what}: {}", r.body);
            assert_status(&w, 403, &format!("write-only token, {what}"));
        }
        assert_status(&s, 403, &format!("serve-only token, {what}"));
        let g = call(addr, &ods_only, method, &path, body.clone());
        if path.contains("analytics")
            || body
                .as_ref()
                .is_some_and(|b| b.to_string().contains("analytics"))
        {
            assert_status(&g, 403, &format!("token granted ods only, {what}"));
        }
    }
    // The state is what the setup made: no route above changed it.
    let res = call(addr, &admin, "GET", "/v1/namespaces/analytics/tables", None);
    assert_eq!(
        res.json()["identifiers"],
        json!([{"namespace": ["analytics"], "name": "t"}])
    );

    // A granted token lists only its namespaces and works inside them.
    let res = call(addr, &ods_only, "GET", "/v1/namespaces", None);
    assert_eq!(res.json()["namespaces"], json!([["ods"]]), "{}", res.body);
    let res = call(addr, &admin, "GET", "/v1/namespaces", None);
    assert!(res.json()["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!(["analytics"])));
    assert_status(
        &call(
            addr,
            &ods_only,
            "POST",
            "/v1/namespaces/ods/tables",
            Some(create_table_body("mine")),
        ),
        200,
        "granted create",
    );
    assert_status(
        &call(
            addr,
            &ods_only,
            "POST",
            "/v1/namespaces",
            Some(json!({"namespace": ["other"]})),
        ),
        403,
        "ungranted create ns",
    );
    let res = call(
        addr,
        &ods_only,
        "POST",
        "/v1/tables/rename",
        Some(
            json!({"source": {"namespace": ["ods"], "name": "mine"}, "destination": {"namespace": ["analytics"], "name": "stolen"}}),
        ),
    );
    assert_status(&res, 403, "rename into an ungranted namespace");

    // Expiry: refused once past it, with the reason.
    std::thread::sleep(Duration::from_millis(1500));
    let res = call(addr, &short, "GET", "/v1/namespaces", None);
    assert_status(&res, 401, "expired");
    assert!(res.body.contains("expired"), "{}", res.body);

    // Revocation reaches the running server at once (the file is read on each request).
    let out = Command::new(strata_bin())
        .args(["tokens", "revoke", "reader", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_status(
        &call(addr, &reader, "GET", "/v1/namespaces", None),
        401,
        "revoked",
    );

    // `tokens list` shows scopes, grants, expiry.
    let out = Command::new(strata_bin())
        .args(["tokens", "list", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("catalog:read,catalog:write")
            && listing.contains("(expired)")
            && listing.contains("ods"),
        "{listing}"
    );
    assert!(!listing.contains(&admin), "tokens are never shown again");
    // Bad requests for tokens are refused with the reason.
    let out = Command::new(strata_bin())
        .args([
            "tokens",
            "create",
            "x",
            "--scope",
            "catalog:everything",
            "-c",
        ])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown scope")
    );
    let out = Command::new(strata_bin())
        .args(["tokens", "create", "x", "--role", "nobody", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no role named")
    );
    server.stop();
}

const GOVERNANCE: &str = r#"
[[governance.tags]]
name = "pii"
mask = "hash"
columns = ["crm.users.phone", "crm.users.email"]

[[governance.tags]]
name = "national_id"
mask = "null"
columns = ["crm.users.id_card"]

[[governance.tags]]
name = "contact"
mask = "partial"
columns = ["crm.users.backup_phone"]

[[governance.roles]]
name = "analyst"

[[governance.roles]]
name = "support"
unmask = ["pii", "contact"]
"#;

#[test]
fn roles_mask_columns_in_sql_and_the_catalog_vends_no_raw_files() {
    let env = Env::new();
    append_config(&env, GOVERNANCE);
    for q in [
        "CREATE SCHEMA crm",
        "CREATE TABLE crm.users (id BIGINT, phone VARCHAR, email VARCHAR, id_card VARCHAR, backup_phone VARCHAR)",
        "INSERT INTO crm.users VALUES (1, '+15551234567', 'a@x.io', 'ID-111', '+15550009999'), \
         (2, '+15551234567', 'b@x.io', 'ID-222', NULL)",
    ] {
        let (ok, _, err) = sql_as(&env, None, q);
        assert!(ok, "{q}: {err}");
    }
    let all = "SELECT id, phone, email, id_card, backup_phone FROM crm.users ORDER BY id";
    let (ok, owner, err) = sql_as(&env, None, all);
    assert!(ok, "{err}");
    assert_eq!(owner[0]["phone"], "+15551234567");
    assert_eq!(owner[0]["id_card"], "ID-111");

    let (ok, analyst, err) = sql_as(&env, Some("analyst"), all);
    assert!(ok, "{err}");
    let phone = analyst[0]["phone"].as_str().unwrap();
    assert!(phone.starts_with("mask:") && phone.len() == 69, "{phone}");
    assert_eq!(analyst[1]["phone"], phone, "equal values mask equal");
    assert_ne!(analyst[0]["email"], analyst[1]["email"]);
    assert!(
        analyst[0].get("id_card").is_none_or(Value::is_null),
        "{}",
        analyst[0]
    );
    assert_eq!(analyst[0]["backup_phone"], "********9999");
    assert!(analyst[1].get("backup_phone").is_none_or(Value::is_null));
    let text = serde_json::to_string(&analyst).unwrap();
    for raw in ["+15551234567", "a@x.io", "ID-111", "+15550009999"] {
        assert!(!text.contains(raw), "{raw} leaked: {text}");
    }
    // Whatever the query: a filter on the raw value finds nothing, aggregates see masks.
    let (_, rows, _) = sql_as(
        &env,
        Some("analyst"),
        "SELECT count(*) AS n FROM crm.users WHERE phone = '+15551234567' OR id_card = 'ID-111'",
    );
    assert_eq!(rows[0]["n"], 0);
    let (_, rows, _) = sql_as(
        &env,
        Some("analyst"),
        "SELECT count(DISTINCT phone) AS n, max(email) AS m FROM crm.users",
    );
    assert_eq!(rows[0]["n"], 1);
    assert!(rows[0]["m"].as_str().unwrap().starts_with("mask:"));
    let (_, rows, _) = sql_as(
        &env,
        Some("analyst"),
        "SELECT u.phone FROM crm.users u JOIN crm.users v ON u.id = v.id WHERE u.id = 1",
    );
    assert_eq!(rows[0]["phone"], phone);
    // Time travel reads through the same masks.
    let (_, snaps, _) = sql_as(
        &env,
        None,
        "SELECT snapshot_id FROM crm.\"users$snapshots\" ORDER BY committed_at DESC LIMIT 1",
    );
    let snap = snaps[0]["snapshot_id"].as_i64().unwrap();
    let (ok, rows, err) = sql_as(
        &env,
        Some("analyst"),
        &format!("SELECT phone FROM crm.users VERSION AS OF {snap} WHERE id = 1"),
    );
    assert!(ok, "{err}");
    assert_eq!(rows[0]["phone"], phone);

    let (_, support, _) = sql_as(&env, Some("support"), all);
    assert_eq!(support[0]["phone"], "+15551234567");
    assert_eq!(support[0]["backup_phone"], "+15550009999");
    assert!(
        support[0].get("id_card").is_none_or(Value::is_null),
        "support does not unmask national_id"
    );

    // A role session reads only: no way to copy raw data out from under the masks.
    for q in [
        "INSERT INTO crm.users VALUES (3, 'x', 'y', 'z', 'w')",
        "CREATE TABLE crm.copy AS SELECT * FROM crm.users",
        "DELETE FROM crm.users",
        "CREATE EXTERNAL TABLE raw STORED AS PARQUET LOCATION '/tmp'",
    ] {
        let (ok, _, err) = sql_as(&env, Some("analyst"), q);
        assert!(!ok && err.contains("queries only"), "{q}: {err}");
    }
    let (ok, _, err) = sql_as(&env, Some("nobody"), all);
    assert!(!ok && err.contains("no role named"), "{err}");
    assert_eq!(
        sql_as(&env, None, "SELECT count(*) AS n FROM crm.users").1[0]["n"],
        2
    );

    // The catalog hands out file locations, so a token whose role masks a table cannot load it.
    let analyst_token = token(
        &env.config,
        "bi",
        &["--scope", "catalog:read", "--role", "analyst"],
    );
    let support_token = token(
        &env.config,
        "helpdesk",
        &["--scope", "catalog:read", "--role", "support"],
    );
    let owner_token = token(&env.config, "etl", &["--scope", "catalog:read"]);
    let server = env.serve("200ms");
    let res = call(
        server.addr,
        &analyst_token,
        "GET",
        "/v1/namespaces/crm/tables/users",
        None,
    );
    assert_status(&res, 403, "analyst loads crm.users");
    assert!(
        res.body.contains("phone") && res.body.contains("strata sql --role"),
        "{}",
        res.body
    );
    assert_status(
        &call(
            server.addr,
            &support_token,
            "GET",
            "/v1/namespaces/crm/tables/users",
            None,
        ),
        403,
        "support still masks id_card",
    );
    assert_status(
        &call(
            server.addr,
            &analyst_token,
            "GET",
            "/v1/namespaces/ods/tables/ods_event",
            None,
        ),
        200,
        "untagged table",
    );
    assert_status(
        &call(
            server.addr,
            &analyst_token,
            "GET",
            "/v1/namespaces/crm/tables",
            None,
        ),
        200,
        "names are not data",
    );
    assert_status(
        &call(
            server.addr,
            &owner_token,
            "GET",
            "/v1/namespaces/crm/tables/users",
            None,
        ),
        200,
        "no role",
    );
    server.stop();
}

#[test]
fn every_kind_of_access_is_in_the_access_log() {
    let env = Env::new();
    append_config(&env, GOVERNANCE);
    let reader = token(&env.config, "reader", &["--scope", "catalog:read"]);
    let admin = token(&env.config, "root", &["--scope", "admin"]);
    let server = env.serve_with_env(
        "200ms",
        &[("STRATA_GOVERNANCE__AUDIT_FLUSH_INTERVAL", "200ms")],
    );
    let addr = server.addr;
    assert_status(
        &call(addr, &reader, "GET", "/v1/namespaces", None),
        200,
        "list",
    );
    assert_status(
        &call(
            addr,
            &reader,
            "POST",
            "/v1/namespaces",
            Some(json!({"namespace": ["x"]})),
        ),
        403,
        "denied",
    );
    assert_status(
        &call(addr, "stk_nope", "GET", "/v1/namespaces", None),
        401,
        "unknown",
    );
    assert_status(
        &call(
            addr,
            &reader,
            "GET",
            "/v1/namespaces/ods/tables/ods_event",
            None,
        ),
        200,
        "load",
    );
    let (ok, _, err) = sql_as(&env, Some("analyst"), "SELECT 1 AS one");
    assert!(ok, "{err}");
    let (ok, _, _) = sql_as(&env, Some("analyst"), "CREATE SCHEMA nope");
    assert!(!ok);
    let out = Command::new(strata_bin())
        .args(["privacy", "forget", "user-4711", "-c"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = env.sql(
            "SELECT actor, role, surface, action, object, outcome, status, detail FROM audit.access_log ORDER BY ts",
        );
        if rows
            .iter()
            .any(|r| r["surface"] == "catalog" && r["object"] == "ods.ods_event")
            || Instant::now() > deadline
        {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let find = |pred: &dyn Fn(&Value) -> bool| rows.iter().find(|r| pred(r)).cloned();
    let listed =
        find(&|r| r["actor"] == "reader" && r["action"] == "GET /v1/namespaces").expect("list row");
    assert_eq!(listed["outcome"], "ok");
    assert_eq!(listed["status"], 200);
    let denied = find(&|r| r["actor"] == "reader" && r["action"] == "POST /v1/namespaces")
        .expect("denied row");
    assert_eq!(denied["outcome"], "denied");
    assert!(denied["detail"].as_str().unwrap().contains("catalog:write"));
    let unknown = find(&|r| r["actor"] == "-" && r["status"] == 401).expect("401 row");
    assert_eq!(unknown["outcome"], "denied");
    let load = find(&|r| r["object"] == "ods.ods_event").expect("load row");
    assert_eq!(load["actor"], "reader");
    let select =
        find(&|r| r["surface"] == "sql" && r["action"] == "SELECT 1 AS one").expect("sql row");
    assert_eq!(select["role"], "analyst");
    assert!(select["actor"].as_str().unwrap().starts_with("local:"));
    let refused = find(&|r| r["surface"] == "sql" && r["action"] == "CREATE SCHEMA nope")
        .expect("refused sql row");
    assert_eq!(refused["outcome"], "denied");
    let created = find(&|r| {
        r["surface"] == "admin" && r["action"] == "tokens create" && r["object"] == "root"
    })
    .expect("admin row");
    assert!(created["detail"].as_str().unwrap().contains("scopes=admin"));

    let erased = find(&|r| r["action"] == "privacy forget").expect("erasure row");
    assert_eq!(erased["surface"], "admin");
    assert!(erased["detail"].as_str().unwrap().contains("users=1"));
    let all = serde_json::to_string(&rows).unwrap();
    assert!(
        !all.contains("user-4711"),
        "the log never names whom an erasure forgot"
    );

    // The log is for admins: other tokens cannot see or load it.
    assert_status(
        &call(
            addr,
            &reader,
            "GET",
            "/v1/namespaces/audit/tables/access_log",
            None,
        ),
        403,
        "reader loads the log",
    );
    let res = call(addr, &reader, "GET", "/v1/namespaces", None);
    assert!(!res.body.contains("audit"), "{}", res.body);
    assert_status(
        &call(
            addr,
            &admin,
            "GET",
            "/v1/namespaces/audit/tables/access_log",
            None,
        ),
        200,
        "admin loads the log",
    );
    server.stop();
}
