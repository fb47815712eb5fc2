//! Property tests of the REST catalog's request handling (fixed seed and case count, so CI runs
//! the same cases every time): any method, path and body gets an answer — never a panic, never a
//! 5xx, always the spec's ErrorModel on errors — and whatever names and locations a client
//! sends, every table the catalog holds afterwards lives inside the warehouse.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use tower::ServiceExt;

use strata_sql::audit::AuditLog;
use strata_table::config::LakeOptions;
use strata_table::Lake;

use crate::{self as rest, NewToken, RestSettings, Scope, Tokens};

fn config(dir: &Path) -> LakeOptions {
    let mut c = LakeOptions::new(dir);
    c.lake.flush_interval = std::time::Duration::from_millis(50);
    c
}

struct Catalog {
    rt: tokio::runtime::Runtime,
    router: Router,
    token: String,
    lake: Lake,
    warehouse: PathBuf,
    _dir: tempfile::TempDir,
}

fn catalog() -> Catalog {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = config(dir.path());
    let lake = rt.block_on(Lake::open(&config)).unwrap();
    let tokens_path = dir.path().join("catalog_tokens.json");
    let mut tokens = Tokens::default();
    let token = tokens
        .create(
            "fuzz",
            NewToken {
                scopes: vec![Scope::Admin],
                ..NewToken::default()
            },
        )
        .unwrap();
    tokens.save(&tokens_path).unwrap();
    let settings = RestSettings {
        tokens_path,
        locations: crate::config::CatalogServerConfig::default()
            .location_policy(&config.warehouse_location())
            .unwrap(),
        governance: Default::default(),
        audit: AuditLog::disabled(),
    };
    let router = rest::router(lake.clone(), settings);
    let warehouse = std::fs::canonicalize(config.warehouse_dir()).unwrap();
    Catalog {
        rt,
        router,
        token,
        lake,
        warehouse,
        _dir: dir,
    }
}

impl Catalog {
    fn send(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Body::from(body));
        let Ok(req) = req else {
            // Not a request at all (the URI did not parse): nothing reaches the server.
            return (400, Vec::new());
        };
        self.rt.block_on(async {
            let res = self.router.clone().oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
                .await
                .unwrap();
            (status, bytes.to_vec())
        })
    }

    /// Every table location the catalog holds.
    fn locations(&self) -> Vec<String> {
        self.rt.block_on(async {
            let catalog = self.lake.catalog();
            let mut out = Vec::new();
            for ns in catalog.list_namespaces(None).await.unwrap_or_default() {
                for t in catalog.list_tables(&ns).await.unwrap_or_default() {
                    if let Ok(table) = catalog.load_table(&t).await {
                        out.push(table.metadata().location().to_string());
                        for key in ["write.data.path", "write.metadata.path"] {
                            if let Some(v) = table.metadata().properties().get(key) {
                                out.push(v.clone());
                            }
                        }
                    }
                }
            }
            out
        })
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5245_5354),
        ..Config::default()
    })
}

/// Path segments a client might send: plain names, traversal, encodings, separators, junk.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ods".to_string()),
        Just("ods_event".to_string()),
        Just("tables".to_string()),
        Just("namespaces".to_string()),
        Just("properties".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("a%1Fb".to_string()),
        Just("%1F".to_string()),
        Just("%".to_string()),
        Just("%zz".to_string()),
        Just("%00".to_string()),
        Just("%2F..%2F..".to_string()),
        Just(String::new()),
        "[a-z_]{1,12}",
        "\\PC{0,16}",
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("HEAD"),
        Just("POST"),
        Just("DELETE"),
        Just("PUT"),
        Just("PATCH")
    ]
}

/// Bodies: raw bytes, or JSON shaped like what the routes take with arbitrary values.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        "[a-z_]{1,10}",
        Just("../../../../evil".to_string()),
        Just("..".to_string()),
        Just("a.b".to_string()),
        "\\PC{0,12}"
    ];
    let json = (name.clone(), name, any::<u8>()).prop_map(|(a, b, pick)| {
        let v = match pick % 6 {
            0 => serde_json::json!({"namespace": [a, b]}),
            1 => serde_json::json!({"name": a, "schema": {"type": "struct", "fields": []}}),
            2 => serde_json::json!({"updates": [{"action": "set-location", "location": b}]}),
            3 => serde_json::json!({"source": {"namespace": [a], "name": b}, "destination": {"namespace": ["ods"], "name": "x"}}),
            4 => serde_json::json!({"table-changes": [{"identifier": {"namespace": [a], "name": b}}]}),
            _ => serde_json::json!({"updates": {a: b}, "removals": []}),
        };
        v.to_string().into_bytes()
    });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), json]
}

#[test]
fn any_request_gets_a_client_answer_never_a_panic_or_5xx() {
    let cat = catalog();
    let strategy = (method(), proptest::collection::vec(segment(), 0..6), body());
    runner(400)
        .run(&strategy, |(method, segments, body)| {
            let path = format!("/v1/{}", segments.join("/"));
            let (status, bytes) = cat.send(method, &path, body);
            prop_assert!(
                status < 500,
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
            if status >= 400 && method != "HEAD" && !bytes.is_empty() {
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("{method} {path}: not JSON: {e}")))?;
                prop_assert_eq!(v["error"]["code"].as_u64(), Some(status as u64), "{}", v);
            }
            Ok(())
        })
        .unwrap();
}

/// A location a client might send: inside, outside, and the tricks in between.
fn location(warehouse: &Path) -> impl Strategy<Value = String> {
    let w = warehouse.display().to_string();
    let parent = warehouse
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let absolute_outside = format!("{parent}/escaped-absolute");
    prop_oneof![
        "[a-z_]{1,8}".prop_map({
            let w = w.clone();
            move |t| format!("{w}/ods/{t}")
        }),
        "[a-z_]{1,8}".prop_map({
            let w = w.clone();
            move |t| format!("file://{w}/ods/{t}")
        }),
        "[a-z_]{1,8}".prop_map(move |t| format!("{parent}/{t}")),
        Just(format!("{w}/../escaped")),
        Just(format!("{w}/ods/../../escaped")),
        Just(format!("{w}/%2e%2e/escaped")),
        Just(format!("{w}-sibling/t")),
        Just(absolute_outside),
        Just("s3://bucket/escaped".to_string()),
        Just("relative/path".to_string()),
        "\\PC{0,20}",
    ]
}

#[test]
fn whatever_a_client_sends_tables_stay_inside_the_warehouse() {
    let cat = catalog();
    let warehouse = cat.warehouse.clone();
    let key = prop_oneof![
        Just("location"),
        Just("write.data.path"),
        Just("write.metadata.path")
    ];
    let strategy = ("[a-z_]{1,10}", location(&warehouse), key, any::<bool>());
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    runner(200)
        .run(&strategy, |(name, location, key, commit)| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("{name}_{n}");
            let body = if key == "location" {
                serde_json::json!({"name": name, "schema": {"type": "struct", "fields": []}, "location": location})
            } else {
                serde_json::json!({"name": name, "schema": {"type": "struct", "fields": []}, "properties": {key: location}})
            };
            let (status, bytes) =
                cat.send("POST", "/v1/namespaces/ods/tables", body.to_string().into_bytes());
            prop_assert!(status < 500, "{status} {}", String::from_utf8_lossy(&bytes));
            if commit && status == 200 {
                let update = if key == "location" {
                    serde_json::json!({"updates": [{"action": "set-location", "location": location}]})
                } else {
                    serde_json::json!({"updates": [{"action": "set-properties", "updates": {key: location}}]})
                };
                let (status, bytes) = cat.send(
                    "POST",
                    &format!("/v1/namespaces/ods/tables/{name}"),
                    update.to_string().into_bytes(),
                );
                prop_assert!(status < 500, "{status} {}", String::from_utf8_lossy(&bytes));
            }
            Ok(())
        })
        .unwrap();
    let w = warehouse.display().to_string();
    for location in cat.locations() {
        let path = location.strip_prefix("file://").unwrap_or(&location);
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        assert!(
            real.starts_with(&warehouse),
            "{location} is outside the warehouse {w}"
        );
    }
    assert!(!warehouse.with_file_name("escaped-absolute").exists());
    assert!(!warehouse.with_file_name("escaped").exists());
}
