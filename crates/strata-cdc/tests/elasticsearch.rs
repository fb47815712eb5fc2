//! The Elasticsearch source against an Elasticsearch-compatible server on 127.0.0.1
//! (`noida-db`, an emulator of the Elasticsearch 8.15 REST API; no real Elasticsearch or
//! OpenSearch installs here — see `../shared/TEST-SERVERS.md`). Skipped when noida-db is not
//! installed, unless `STRATA_TEST_REQUIRE_ES=1` (set by `tests/run.sh`).
//!
//! The source runs in process on an embedded bus; the ODS merger then lands the topic in the
//! lake and the ODS rows are compared with the index (`strata cdc verify`'s comparison).
//! The credentials test needs no server: a listener on loopback records the request and
//! answers 401.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::Log;
use strata_cdc::config::SourceConfig;
use strata_cdc::elasticsearch::client::EsClient;
use strata_cdc::elasticsearch::decode::{fields, table_schema};
use strata_cdc::elasticsearch::Watermark;
use strata_cdc::state::{self, Phase};
use strata_core::cdc::{Row, Value};
use strata_testdb::EsServer;
use tokio::sync::watch;

mod common;
use common::{by_id, SourceHarness, WAIT};

const INDEX: &str = "products";

/// Epoch ms two days ago: every seeded document is stamped after it.
fn base_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() - 2 * 86_400_000
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Document `i`: every 100th has no timestamp (the full export takes it, increments cannot).
fn doc(i: usize, base: i64) -> Json {
    let mut d = json!({
        "sku": format!("sku-{i}"),
        "price": i as f64 * 0.5 + 0.25,
        "qty": i,
        "in_stock": i.is_multiple_of(2),
        "tags": [format!("t{}", i % 3), "all"],
        "user": {"id": i * 10, "name": format!("user {i} ✓")},
    });
    if i % 100 != 99 {
        d["updated_at"] = json!(iso(base + i as i64 * 1000));
    }
    d
}

struct Es {
    server: EsServer,
    http: reqwest::Client,
}

impl Es {
    fn start() -> Option<Es> {
        Some(Es {
            server: EsServer::start()?,
            http: reqwest::Client::new(),
        })
    }

    async fn create_index(&self) {
        let r = self
            .http
            .put(format!("{}/{INDEX}", self.server.url()))
            .json(&json!({"mappings": {"properties": {
                "updated_at": {"type": "date"}, "sku": {"type": "keyword"},
                "price": {"type": "double"}, "qty": {"type": "long"}}}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// Indexes `(id, document)` pairs in bulk, refreshed.
    async fn bulk(&self, docs: impl IntoIterator<Item = (String, Json)>) {
        let mut body = String::new();
        for (id, d) in docs {
            body.push_str(&json!({"index": {"_index": INDEX, "_id": id}}).to_string());
            body.push('\n');
            body.push_str(&d.to_string());
            body.push('\n');
        }
        let r = self
            .http
            .post(format!("{}/_bulk?refresh=true", self.server.url()))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        let answer: Json = r.json().await.unwrap();
        assert_eq!(answer["errors"], json!(false), "{answer}");
    }

    async fn seed(&self, n: usize, base: i64) {
        self.create_index().await;
        let docs: Vec<(String, Json)> = (0..n).map(|i| (format!("p{i}"), doc(i, base))).collect();
        for chunk in docs.chunks(1000) {
            self.bulk(chunk.to_vec()).await;
        }
    }
}

type Harness = SourceHarness<Watermark>;

/// A harness for the index `products` on `url`, with `extra` lines in the source's entry.
async fn harness(url: &str, extra: &str) -> Harness {
    let text = format!(
        "name = \"search\"\nkind = \"elasticsearch\"\nurl = \"{url}\"\ntables = [\"{INDEX}\"]\n\
         timestamp_field = \"updated_at\"\npoll_interval = \"100ms\"\noverlap = \"1m\"\n\
         fields = {{ sku = \"string\", price = \"double\", qty = \"long\", \"user.id\" = \"long\", in_stock = \"boolean\", tags = \"json\" }}\n{extra}"
    );
    SourceHarness::new(&text, INDEX).await
}

/// The ODS table equals the index (every document once, every value equal).
async fn assert_ods_equals_index(h: &Harness) -> Vec<Row> {
    let es = h.config.as_elasticsearch().unwrap();
    let schema = table_schema(es, &fields(es));
    h.assert_ods_equals_source(&schema, "ods_es_products").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_export_lands_every_document_once_then_increments_and_reruns_write_nothing_twice() {
    let Some(es) = Es::start() else { return };
    let base = base_ms();
    const N: usize = 3000;
    es.seed(N, base).await;
    // Pages of 500 documents: the export and the increments read several pages each.
    let h = harness(&es.server.url(), "snapshot_chunk_rows = 500\n").await;
    let running = h.start();

    // The full export: the schema, then every document once (with no timestamp too).
    h.wait_changes(N as u64).await;
    h.wait_stream_saves(1).await;
    let state = h.state().unwrap();
    assert_eq!(state.phase, Phase::Stream);
    // Its watermark is the newest timestamp there was; the first increments re-read the
    // overlap and write nothing.
    // p2999 has no timestamp (every hundredth): p2998 is the newest stamped.
    let newest = base + (N as i64 - 2) * 1000;
    assert_eq!(state.resume.ts_ms, Some(newest));
    h.wait_stream_saves(2).await;
    assert_eq!(
        h.changes().await,
        N as u64,
        "an overlap re-read wrote again"
    );

    // Ten documents updated and twenty added arrive by increment, each once.
    let now = chrono::Utc::now().timestamp_millis();
    let mut changed = Vec::new();
    for i in 0..10 {
        let mut d = doc(i, base);
        d["price"] = json!(1000.0 + i as f64);
        d["updated_at"] = json!(iso(now + i as i64));
        changed.push((format!("p{i}"), d));
    }
    for i in N..N + 20 {
        let mut d = doc(i, base);
        d["updated_at"] = json!(iso(now + i as i64));
        changed.push((format!("p{i}"), d));
    }
    es.bulk(changed).await;
    h.wait_changes(N as u64 + 30).await;
    h.wait_stream_saves(3).await;
    assert_eq!(h.changes().await, N as u64 + 30);
    running.stop().await;

    // A rerun of an older window — from before every document — writes nothing twice.
    let mut state = h.state().unwrap();
    let watermark = state.resume.clone();
    assert!(watermark.ts_ms.unwrap() >= now, "{watermark}");
    state.resume = Watermark::at(base - 1000, "");
    state::save(&state::state_path(&h.data, &h.config.name), &mut state).unwrap();
    let running = h.start();
    h.wait_stream_saves(2).await;
    assert_eq!(
        h.changes().await,
        N as u64 + 30,
        "a rerun window wrote again"
    );
    assert!(
        h.state().unwrap().resume.ts_ms >= watermark.ts_ms,
        "the watermark came back to the newest"
    );
    running.stop().await;
    // And from no watermark at all (every stamped document read again).
    let mut state = h.state().unwrap();
    state.resume = Watermark::start();
    state::save(&state::state_path(&h.data, &h.config.name), &mut state).unwrap();
    let running = h.start();
    h.wait_stream_saves(2).await;
    assert_eq!(h.changes().await, N as u64 + 30, "a full rerun wrote again");
    running.stop().await;

    // The ODS table: every document once, the typed columns right, the source as JSON.
    let ods = assert_ods_equals_index(&h).await;
    assert_eq!(ods.len(), N + 20);
    let rows = by_id(&ods);
    let p5 = rows["p5"];
    assert_eq!(p5["price"], Value::Float("1005".into()));
    assert_eq!(p5["_version"], Value::Int(2));
    assert_eq!(p5["qty"], Value::Int(5));
    assert_eq!(p5["user_id"], Value::Int(50));
    assert_eq!(p5["in_stock"], Value::Int(0));
    assert_eq!(p5["tags"], Value::Json(r#"["t2","all"]"#.into()));
    assert_eq!(p5["updated_at"], Value::Timestamp((now + 5) * 1000));
    let p42 = rows["p42"];
    assert_eq!(p42["price"], Value::Float("21.25".into()));
    assert_eq!(p42["_version"], Value::Int(1));
    assert_eq!(p42["in_stock"], Value::Int(1));
    assert_eq!(p42["sku"], Value::Str("sku-42".into()));
    assert_eq!(p42["_index"], Value::Str(INDEX.into()));
    let Value::Json(source) = &p42["_source"] else {
        panic!("{:?}", p42["_source"])
    };
    assert_eq!(serde_json::from_str::<Json>(source).unwrap(), doc(42, base));
    assert_eq!(
        rows["p99"]["updated_at"],
        Value::Null,
        "no timestamp: exported all the same"
    );
    assert!(rows.contains_key(&format!("p{}", N + 19)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_scroll_paging_exports_resumes_an_interrupted_export_and_increments() {
    let Some(es) = Es::start() else { return };
    let base = base_ms();
    const N: usize = 1200;
    es.seed(N, base).await;
    let h = harness(
        &es.server.url(),
        "paging = \"scroll\"\nsnapshot_chunk_rows = 20\n",
    )
    .await;
    // Stopped part-way through the export (60 pages), then started again: the export goes on
    // from the last document on the bus.
    let running = h.start();
    let started = Instant::now();
    while h.records().await < 100 {
        assert!(started.elapsed() < WAIT, "the export did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    running.stop().await;
    let state = h.state().unwrap();
    assert_eq!(
        state.phase,
        Phase::Snapshot,
        "the export ended before it could be interrupted"
    );
    let running = h.start();
    h.wait_stream_saves(1).await;
    let after_export = h.changes().await;
    assert!(after_export > N as u64, "{after_export}");

    let now = chrono::Utc::now().timestamp_millis();
    let changed: Vec<(String, Json)> = (100..105)
        .map(|i| {
            let mut d = doc(i, base);
            d["qty"] = json!(-1);
            d["updated_at"] = json!(iso(now));
            (format!("p{i}"), d)
        })
        .collect();
    es.bulk(changed).await;
    h.wait_changes(after_export + 5).await;
    h.wait_stream_saves(2).await;
    running.stop().await;
    let ods = assert_ods_equals_index(&h).await;
    assert_eq!(ods.len(), N);
    assert_eq!(by_id(&ods)["p103"]["qty"], Value::Int(-1));
}

/// Accepts one connection on loopback, records its request head and answers 401.
fn record_one_request() -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed before sending a request");
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user"}],"type":"security_exception","reason":"unable to authenticate user"},"status":401}"#;
        write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8(head).unwrap()
    });
    (url, handle)
}

async fn run_once(config: &SourceConfig, data: &Path) -> strata_cdc::Result<()> {
    let log: Arc<dyn Log> = EmbeddedLog::open(&data.join("bus"), EmbeddedOptions::default())
        .await
        .unwrap();
    let source = strata_cdc::Source::new(config, log, data)?;
    let (_tx, rx) = watch::channel(false);
    tokio::time::timeout(Duration::from_secs(30), source.run(rx))
        .await
        .expect("a 401 ends the source at once")
}

fn es_config(url: &str, auth: &str) -> SourceConfig {
    let config: SourceConfig = toml::from_str(&format!(
        "name = \"search\"\nkind = \"elasticsearch\"\nurl = \"{url}\"\ntables = [\"products\"]\ntimestamp_field = \"ts\"\n{auth}"
    ))
    .unwrap();
    config.validate().unwrap();
    config
}

#[tokio::test]
async fn es_credentials_come_from_the_environment_and_a_401_is_the_users_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STRATA_ES_TEST_USER", "reader");
    std::env::set_var("STRATA_ES_TEST_PASSWORD", "s3cret pw");
    std::env::set_var(
        "STRATA_ES_TEST_KEY",
        "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
    );

    let (url, request) = record_one_request();
    let config = es_config(
        &url,
        "username_env = \"STRATA_ES_TEST_USER\"\npassword_env = \"STRATA_ES_TEST_PASSWORD\"\n",
    );
    let err = run_once(&config, dir.path()).await.unwrap_err();
    let head = request.join().unwrap().to_ascii_lowercase();
    // base64("reader:s3cret pw")
    assert!(
        head.contains("authorization: basic cmvhzgvyonmzy3jldcbwdw=="),
        "{head}"
    );
    assert!(!err.retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("username_env"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");

    let (url, request) = record_one_request();
    let config = es_config(&url, "api_key_env = \"STRATA_ES_TEST_KEY\"\n");
    let err = run_once(&config, dir.path()).await.unwrap_err();
    let head = request.join().unwrap();
    assert!(
        head.to_ascii_lowercase().contains(
            "authorization: apikey vnvhq2zhy0jdzgjruw0tztvht3g6dwkybhayyxhutm1zewfrdzl0dk5udw=="
        ),
        "{head}"
    );
    assert!(!err.retryable(), "{err}");

    // A variable that is not set stops the source before it connects, naming it.
    let config = es_config(
        "http://127.0.0.1:1",
        "api_key_env = \"STRATA_ES_TEST_KEY_NOT_SET\"\n",
    );
    let err = run_once(&config, dir.path()).await.unwrap_err();
    assert!(
        err.to_string().contains("STRATA_ES_TEST_KEY_NOT_SET")
            && err.to_string().contains("not set"),
        "{err}"
    );
}

#[tokio::test]
async fn es_a_server_that_is_not_there_is_retried_and_named() {
    // Port 1 on loopback: nothing listens there.
    let config = es_config("http://127.0.0.1:1", "");
    let client = EsClient::new(config.as_elasticsearch().unwrap()).unwrap();
    let err = client.info().await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
