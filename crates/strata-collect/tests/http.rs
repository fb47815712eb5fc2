//! The collector over real HTTP on loopback, producing to a real `EmbeddedLog`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::json;
use strata_bus::embedded::EmbeddedOptions;
use strata_bus::{Log, Offset, Offsets, Partition, Position, Record, StoredRecord};
use strata_collect::sign;
use strata_core::time::{now_micros, parse_ts_micros};
use strata_core::BusRecord;
use tokio::io::AsyncWriteExt;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn events(records: &[BusRecord]) -> Vec<&strata_core::Event> {
    records
        .iter()
        .filter_map(|r| match r {
            BusRecord::Event(e) => Some(e.as_ref()),
            _ => None,
        })
        .collect()
}

fn rejections(records: &[BusRecord]) -> Vec<&strata_core::Rejected> {
    records
        .iter()
        .filter_map(|r| match r {
            BusRecord::Rejected(e) => Some(e.as_ref()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn batch_is_accepted_enriched_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;

    // A client whose clock is 1 hour behind; the track happened 5 s before sending.
    let body = json!({
        "batch": [
            {"type": "track", "event": "Signed Up", "userId": 42, "messageId": "m-1",
             "timestamp": "2020-01-01T10:00:00.000Z", "properties": {"plan": "pro"},
             "context": {"library": {"name": "analytics-python", "version": "2.3.0"},
                         "app": {"version": "3.1"}, "locale": "fr-FR", "ip": "6.6.6.6"}},
            {"type": "identify", "anonymousId": "a-1", "messageId": "m-2", "traits": {"x": 1},
             "context": {"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"}},
            {"type": "page", "userId": "u-2", "name": "Home",
             "context": {"page": {"url": "https://ex.com/", "path": "/", "referrer": "https://r.com"}}}
        ],
        "sentAt": "2020-01-01T10:00:05.000Z"
    });
    let before = now_micros();
    let r = post(
        server.addr,
        "/v1/batch",
        &[
            ("Authorization", &basic(WEB_KEY)),
            ("Content-Type", "application/json"),
            ("User-Agent", CHROME),
            ("X-Forwarded-For", "81.2.69.142"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    let after = now_micros();
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(
        r.json,
        json!({"success": true, "accepted": 3, "rejected": 0, "duplicates": 0, "errors": []})
    );

    let records = bus_records(log.as_ref()).await;
    let events = events(&records);
    assert_eq!(events.len(), 3);
    let track = events.iter().find(|e| e.message_id == "m-1").unwrap();
    assert_eq!(track.app, "web");
    assert_eq!(track.kind, "track");
    assert_eq!(track.event.as_deref(), Some("Signed Up"));
    assert_eq!(track.user_id.as_deref(), Some("42"));
    assert!(track.server_ts >= before && track.server_ts <= after);
    assert_eq!(
        track.event_ts,
        track.server_ts - 5_000_000,
        "skew corrected"
    );
    assert_eq!(track.client_ts, parse_ts_micros("2020-01-01T10:00:00Z"));
    assert_eq!(track.sent_at, parse_ts_micros("2020-01-01T10:00:05Z"));
    assert_eq!(
        track.ip.as_deref(),
        Some("81.2.69.142"),
        "context.ip is not trusted"
    );
    assert_eq!(track.country.as_deref(), Some("FR"));
    assert_eq!(track.region.as_deref(), Some("Île-de-France"));
    assert_eq!(track.city.as_deref(), Some("Paris"));
    assert_eq!(
        track.browser.as_deref(),
        Some("Chrome"),
        "from the User-Agent header"
    );
    assert_eq!(track.os.as_deref(), Some("Windows 10"));
    assert_eq!(track.device.as_deref(), Some("pc"));
    assert_eq!(track.library_name.as_deref(), Some("analytics-python"));
    assert_eq!(track.app_version.as_deref(), Some("3.1"));
    assert_eq!(track.locale.as_deref(), Some("fr-FR"));
    assert_eq!(track.properties.as_deref(), Some(r#"{"plan":"pro"}"#));
    let identify = events.iter().find(|e| e.message_id == "m-2").unwrap();
    assert_eq!(
        identify.device.as_deref(),
        Some("smartphone"),
        "context.userAgent wins"
    );
    assert_eq!(
        identify.event_ts, identify.server_ts,
        "no timestamp: server time"
    );
    assert_eq!(identify.traits.as_deref(), Some(r#"{"x":1}"#));
    let page = events.iter().find(|e| e.kind == "page").unwrap();
    assert_eq!(page.message_id.len(), 36, "generated uuid");
    assert_eq!(page.event.as_deref(), Some("Home"));
    assert_eq!(page.page_path.as_deref(), Some("/"));
    assert_eq!(page.referrer.as_deref(), Some("https://r.com"));

    let health = get(server.addr, "/health").await;
    assert_eq!((health.status, health.json), (200, json!({"status": "ok"})));
    server.stop().await;
}

#[tokio::test]
async fn write_key_in_body_and_single_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;

    let r = post(
        server.addr,
        "/v1/batch",
        &[],
        json!({"writeKey": WEB_KEY, "batch": [{"type": "track", "event": "a", "userId": "u"}]})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, &r.json["accepted"]),
        (200, &json!(1)),
        "{:?}",
        r.json
    );
    for (path, body) in [
        (
            "/v1/track",
            json!({"writeKey": WEB_KEY, "event": "b", "userId": "u"}),
        ),
        (
            "/v1/t",
            json!({"writeKey": WEB_KEY, "event": "c", "anonymousId": "a"}),
        ),
        (
            "/v1/identify",
            json!({"writeKey": WEB_KEY, "userId": "u", "traits": {"k": 1}}),
        ),
        (
            "/v1/group",
            json!({"writeKey": WEB_KEY, "groupId": "g", "userId": "u"}),
        ),
        (
            "/v1/alias",
            json!({"writeKey": WEB_KEY, "previousId": "p", "userId": "u"}),
        ),
        (
            "/v1/screen",
            json!({"writeKey": WEB_KEY, "name": "S", "userId": "u"}),
        ),
    ] {
        let r = post(server.addr, path, &[], body.to_string().as_bytes()).await;
        assert_eq!(
            (r.status, &r.json["accepted"]),
            (200, &json!(1)),
            "{path}: {:?}",
            r.json
        );
    }
    let records = bus_records(log.as_ref()).await;
    let mut kinds: Vec<&str> = events(&records).iter().map(|e| e.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["alias", "group", "identify", "screen", "track", "track", "track"]
    );
    server.stop().await;
}

#[tokio::test]
async fn auth_failures_are_401() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let body = json!({"batch": [{"type": "identify", "userId": "u"}]}).to_string();

    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &basic("nope"))],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "unknown write key");
    assert_eq!(
        r.json["code"], "unauthorized",
        "Segment SDKs read code + message"
    );
    assert_eq!(r.json["message"], "unknown write key");
    let r = post(server.addr, "/v1/batch", &[], body.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert!(r.json["error"]
        .as_str()
        .unwrap()
        .contains("missing write key"));

    // Signed app: no signature, bad signature, stale timestamp, then a good one (gzip body:
    // the signature covers the bytes on the wire).
    let auth = basic(SIGNED_KEY);
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("X-Strata-Timestamp"),
        "{:?}",
        r.json
    );
    let now = now_micros() / 1_000_000;
    let ts = now.to_string();
    let wrong = sign("other-secret", now, body.as_bytes());
    let r = post(
        server.addr,
        "/v1/batch",
        &[
            ("Authorization", &auth),
            ("X-Strata-Timestamp", &ts),
            ("X-Strata-Signature", &wrong),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (401, Some("bad signature"))
    );
    let old = now - 301;
    let stale = sign(SECRET, old, body.as_bytes());
    let r = post(
        server.addr,
        "/v1/batch",
        &[
            ("Authorization", &auth),
            ("X-Strata-Timestamp", &old.to_string()),
            ("X-Strata-Signature", &stale),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(
        r.json["error"].as_str().unwrap().contains("stale"),
        "{:?}",
        r.json
    );
    // Signed with the body key (no Basic auth) and gzip.
    let zipped = gzip(
        json!({"writeKey": SIGNED_KEY, "batch": [{"type": "identify", "userId": "u"}]})
            .to_string()
            .as_bytes(),
    );
    let good = sign(SECRET, now, &zipped);
    let r = post(
        server.addr,
        "/v1/batch",
        &[
            ("Content-Encoding", "gzip"),
            ("X-Strata-Timestamp", &ts),
            ("X-Strata-Signature", &good),
        ],
        &zipped,
    )
    .await;
    assert_eq!(
        (r.status, &r.json["accepted"]),
        (200, &json!(1)),
        "{:?}",
        r.json
    );
    let records = bus_records(log.as_ref()).await;
    assert_eq!(
        records.len(),
        1,
        "nothing from refused requests reached the bus"
    );
    assert_eq!(events(&records)[0].app, "signed");
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_400_413_415() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let auth = basic(WEB_KEY);
    let h = [("Authorization", auth.as_str())];

    let r = post(
        server.addr,
        "/v1/batch",
        &h,
        br#"{"batch": [{"type": "track",]}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    let e = r.json["error"].as_str().unwrap();
    assert!(
        e.contains("malformed JSON") && e.contains("line 1 column"),
        "{e}"
    );
    let r = post(
        server.addr,
        "/v1/batch",
        &h,
        br#"{"batch": {"type": "track"}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("`batch` to be an array"),
        "{:?}",
        r.json
    );
    let r = post(server.addr, "/v1/batch", &h, b"[1, 2]").await;
    assert_eq!(r.status, 400);
    assert!(r.json["error"].as_str().unwrap().contains("JSON object"));
    let r = post(server.addr, "/v1/track", &h, b"").await;
    assert_eq!(r.status, 400);

    // Too big on the wire.
    let big = format!(r#"{{"batch": [], "pad": "{}"}}"#, "x".repeat(MAX_BODY));
    let r = post(server.addr, "/v1/batch", &h, big.as_bytes()).await;
    assert_eq!(r.status, 413, "{:?}", r.json);
    assert!(r.json["error"]
        .as_str()
        .unwrap()
        .contains("exceeds the limit"));
    // A gzip bomb: ~16 KiB on the wire, 16 MiB inflated; stops at the limit.
    let bomb = gzip(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < MAX_BODY);
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
        &bomb,
    )
    .await;
    assert_eq!(r.status, 413, "{:?}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("decompressed"));
    // A compressed body within limits is fine; an unknown encoding is not.
    let ok = gzip(
        json!({"batch": [{"type": "identify", "userId": "u"}]})
            .to_string()
            .as_bytes(),
    );
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
        &ok,
    )
    .await;
    assert_eq!((r.status, &r.json["accepted"]), (200, &json!(1)));
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth), ("Content-Encoding", "br")],
        &ok,
    )
    .await;
    assert_eq!(r.status, 415);
    server.stop().await;
}

#[tokio::test]
async fn invalid_events_are_rejected_records_and_the_rest_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let body = json!({"batch": [
        {"type": "track", "userId": "u", "messageId": "no-event"},
        {"type": "track", "event": "ok", "userId": "u"},
        "not an object",
        {"type": "identify", "userId": "u", "timestamp": "2000-01-01T00:00:00Z"},
        {"type": "track", "event": "big", "userId": "u", "properties": {"p": "x".repeat(9000)}},
        {"type": "identify", "anonymousId": "a", "timestamp": "soon"},
    ]});
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &basic(WEB_KEY))],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["accepted"], 1);
    assert_eq!(r.json["rejected"], 5);
    let errors = r.json["errors"].as_array().unwrap();
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 2, 3, 4, 5]);
    assert!(errors[0]["reason"]
        .as_str()
        .unwrap()
        .contains("missing field: event"));
    assert!(errors[1]["reason"]
        .as_str()
        .unwrap()
        .contains("JSON object"));
    assert!(errors[2]["reason"].as_str().unwrap().contains("older"));
    assert!(errors[3]["reason"]
        .as_str()
        .unwrap()
        .contains("max_event_bytes"));
    assert!(errors[4]["reason"].as_str().unwrap().contains("timestamp"));

    let records = bus_records(log.as_ref()).await;
    assert_eq!(events(&records).len(), 1);
    let rejected = rejections(&records);
    assert_eq!(rejected.len(), 5);
    let first = rejected
        .iter()
        .find(|r| r.message_id.as_deref() == Some("no-event"))
        .unwrap();
    assert_eq!(first.app, "web");
    assert!(first.reason.contains("missing field: event"));
    assert!(first.raw.contains(r#""messageId":"no-event""#));
    let big = rejected
        .iter()
        .find(|r| r.reason.contains("max_event_bytes"))
        .unwrap();
    assert_eq!(big.raw.len(), 8 * 1024, "raw cut to the event limit");
    server.stop().await;
}

#[tokio::test]
async fn duplicates_are_dropped_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let auth = basic(WEB_KEY);
    let body = json!({"batch": [
        {"type": "track", "event": "e", "userId": "u1", "messageId": "d-1"},
        {"type": "track", "event": "e", "userId": "u1", "messageId": "d-1"},
        {"type": "track", "event": "e", "userId": "u2", "messageId": "d-2"},
    ]})
    .to_string();
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.json["accepted"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.json["accepted"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(0), Some(3))
    );

    // Restart: stop the server, close and reopen the log, build a new collector.
    server.stop().await;
    log.close().await.unwrap();
    drop(log);
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.json["accepted"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(events(&bus_records(log.as_ref()).await).len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn overloaded_bus_is_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let options = EmbeddedOptions {
        max_pending_bytes: 64,
        ..EmbeddedOptions::default()
    };
    let log = open_log(&config, options).await;
    let server = Server::start(&config, log.clone()).await;
    let body =
        json!({"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "o-1"}]});
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &basic(WEB_KEY))],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 503, "{:?}", r.json);
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(
        r.json["error"].as_str().unwrap().contains("overloaded"),
        "{:?}",
        r.json
    );
    server.stop().await;
}

/// The real log, with the next append failing as overloaded.
struct FlakyLog {
    inner: Arc<dyn Log>,
    fail_next: AtomicBool,
}

#[async_trait]
impl Log for FlakyLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> strata_bus::Result<()> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> strata_bus::Result<u32> {
        self.inner.partitions(topic).await
    }
    async fn append(&self, topic: &str, records: Vec<Record>) -> strata_bus::Result<Vec<Position>> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(strata_bus::Error::Overloaded("injected".into()));
        }
        self.inner.append(topic, records).await
    }
    async fn read(
        &self,
        topic: &str,
        partition: Partition,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> strata_bus::Result<Vec<StoredRecord>> {
        self.inner
            .read(topic, partition, from, max_records, max_bytes)
            .await
    }
    async fn wait_for(
        &self,
        topic: &str,
        partition: Partition,
        offset: Offset,
        timeout: Duration,
    ) -> strata_bus::Result<()> {
        self.inner.wait_for(topic, partition, offset, timeout).await
    }
    async fn end_offsets(&self, topic: &str) -> strata_bus::Result<Offsets> {
        self.inner.end_offsets(topic).await
    }
    async fn start_offsets(&self, topic: &str) -> strata_bus::Result<Offsets> {
        self.inner.start_offsets(topic).await
    }
    async fn commit(&self, group: &str, topic: &str, offsets: &Offsets) -> strata_bus::Result<()> {
        self.inner.commit(group, topic, offsets).await
    }
    async fn committed(&self, group: &str, topic: &str) -> strata_bus::Result<Offsets> {
        self.inner.committed(group, topic).await
    }
    async fn close(&self) -> strata_bus::Result<()> {
        self.inner.close().await
    }
}

#[tokio::test]
async fn a_failed_append_does_not_make_the_retry_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let flaky = Arc::new(FlakyLog {
        inner: log.clone(),
        fail_next: AtomicBool::new(true),
    });
    let server = Server::start(&config, flaky).await;
    let auth = basic(WEB_KEY);
    let body =
        json!({"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "r-1"}]})
            .to_string();
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains_key("retry-after"));
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.json["accepted"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    server.stop().await;
}

#[tokio::test]
async fn requests_beyond_max_in_flight_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = setup(dir.path());
    config.server.max_in_flight = 1;
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let auth = basic(WEB_KEY);
    let body = json!({"batch": [{"type": "identify", "userId": "u"}]}).to_string();

    // A slow client holds the only slot: headers sent, body only half.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 503, "{:?}", r.json);
    assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));

    // The slow one completes and frees the slot.
    slow.write_all(&body.as_bytes()[5..]).await.unwrap();
    let done = parse_response(&read_all(&mut slow).await);
    assert_eq!(done.status, 200);
    let r = post(
        server.addr,
        "/v1/batch",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

/// The exact bodies unmodified segment-analytics-python 2.4.0 (plain JSON) and
/// rudder-sdk-python 2.1.9 (gzip by default) send; see `tests/fixtures/sdk/capture.py`.
#[tokio::test]
async fn real_sdk_requests_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let fixtures = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo and nextest set CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/sdk");
    let auth = basic(WEB_KEY);
    for (file, gzip, version) in [
        ("segment-0.json", false, "2.4.0"),
        ("segment-1.json", false, "2.4.0"),
        ("segment-2.json", false, "2.4.0"),
        ("rudder-0.json.gz", true, "2.1.9"),
        ("rudder-1.json.gz", true, "2.1.9"),
        ("rudder-2.json.gz", true, "2.1.9"),
    ] {
        let body = std::fs::read(fixtures.join(file)).unwrap();
        let ua = format!("analytics-python/{version}");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("User-Agent", ua.as_str()),
        ];
        if gzip {
            headers.push(("Content-Encoding", "gzip"));
        }
        let r = post(server.addr, "/v1/batch", &headers, &body).await;
        assert_eq!(r.status, 200, "{file}: {:?}", r.json);
        assert_eq!(r.json["accepted"], 1, "{file}: {:?}", r.json);
    }
    let records = bus_records(log.as_ref()).await;
    let events = events(&records);
    let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["alias", "group", "identify", "page", "track", "track"]
    );
    for e in &events {
        assert_eq!(e.library_name.as_deref(), Some("analytics-python"));
        // Old captures: the skew correction puts them at "now" minus the SDK's send delay.
        assert!(e.server_ts - e.event_ts < 1_000_000, "{e:?}");
    }
    let page = events.iter().find(|e| e.kind == "page").unwrap();
    assert_eq!(page.event.as_deref(), Some("Home"));
    let alias = events.iter().find(|e| e.kind == "alias").unwrap();
    assert_eq!(alias.previous_id.as_deref(), Some("user-2"));
    server.stop().await;
}
