//! The collector with event schemas over real HTTP on loopback, into a real `EmbeddedLog`:
//! reject (a dead-letter record with the pointer), tag (`context.schema_violation`), per
//! subject; `validate = false`; a version registered while serving applies at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use common::*;
use serde_json::json;
use strata_bus::embedded::EmbeddedOptions;
use strata_core::BusRecord;
use strata_schema::config::SubjectSettings;
use strata_schema::{Action, Registry};

const CLICKED: &str = r#"{"type":"object","required":["post_id"],"additionalProperties":false,
  "properties":{"post_id":{"type":"integer"},"feed":{"enum":["home","following"]}}}"#;

async fn send(addr: std::net::SocketAddr, events: serde_json::Value) -> serde_json::Value {
    let r = post(
        addr,
        "/v1/batch",
        &[
            ("Authorization", &basic(WEB_KEY)),
            ("Content-Type", "application/json"),
        ],
        json!({ "batch": events }).to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json
}

#[tokio::test]
async fn reject_and_tag_per_subject() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = setup(dir.path());
    config.collector.schemas.subjects.insert(
        "Post Viewed".into(),
        SubjectSettings {
            on_violation: Some(Action::Tag),
            compatibility: None,
        },
    );
    let registry = Registry::open(&config.data_dir, config.collector.schemas.clone()).unwrap();
    registry.register("Post Clicked", CLICKED).unwrap();
    registry
        .register(
            "Post Viewed",
            r#"{"type":"object","properties":{"ms":{"type":"integer","minimum":0}}}"#,
        )
        .unwrap();
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;

    let answer = send(
        server.addr,
        json!([
            {"type": "track", "event": "Post Clicked", "userId": "u", "messageId": "ok",
             "properties": {"post_id": 1, "feed": "home"}},
            {"type": "track", "event": "Post Clicked", "userId": "u", "messageId": "extra",
             "properties": {"post_id": 1, "x": 1}},
            {"type": "track", "event": "Post Viewed", "userId": "u", "messageId": "neg",
             "properties": {"ms": -1}},
            // Alias validates nothing, even with a subject of that name.
            {"type": "alias", "userId": "u", "previousId": "p", "messageId": "alias"}
        ]),
    )
    .await;
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["rejected"], 1, "{answer}");
    assert_eq!(
        answer["errors"],
        json!([{"index": 1, "reason": "schema violation (Post Clicked v1): /properties/x: property is not allowed (additionalProperties is false)"}])
    );

    let records = bus_records(log.as_ref()).await;
    let rejected: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            BusRecord::Rejected(x) => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].message_id.as_deref(), Some("extra"));
    assert!(rejected[0].reason.contains("/properties/x"));
    assert!(rejected[0].raw.contains("\"x\":1"));
    let tagged = records
        .iter()
        .find_map(|r| match r {
            BusRecord::Event(e) if e.message_id == "neg" => Some(e),
            _ => None,
        })
        .unwrap();
    let context: serde_json::Value =
        serde_json::from_str(tagged.context.as_deref().unwrap()).unwrap();
    assert_eq!(
        context["schema_violation"],
        "schema violation (Post Viewed v1): /properties/ms: -1 is less than the minimum 0"
    );
    // A valid event's context is left as sent (here: none).
    let ok = records
        .iter()
        .find_map(|r| match r {
            BusRecord::Event(e) if e.message_id == "ok" => Some(e),
            _ => None,
        })
        .unwrap();
    assert!(ok.context.is_none());
    server.stop().await;
}

#[tokio::test]
async fn validation_off_and_a_version_registered_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = setup(dir.path());
    config.collector.schemas.validate = false;
    let registry = Registry::open(&config.data_dir, config.collector.schemas.clone()).unwrap();
    registry.register("Post Clicked", CLICKED).unwrap();
    let log = open_log(&config, EmbeddedOptions::default()).await;
    let server = Server::start(&config, log.clone()).await;
    let bad = json!([{"type": "track", "event": "Post Clicked", "userId": "u",
                      "properties": {"post_id": "1"}}]);
    // validate = false: kept, not enforced.
    let answer = send(server.addr, bad.clone()).await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    server.stop().await;

    // On again, with the collector's own registry: a version registered through it applies
    // to the next request.
    let mut config = setup(dir.path());
    config.collector.schemas.validate = true;
    let collector = strata_collect::Collector::new(&config, log.clone())
        .await
        .unwrap();
    collector
        .schemas()
        .register(
            "identify",
            r#"{"type":"object","required":["email"],"properties":{"email":{"type":"string"}}}"#,
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(strata_collect::serve(
        listener,
        collector.router(),
        std::future::pending(),
    ));
    let answer = send(
        addr,
        json!([
            {"type": "identify", "userId": "u", "traits": {"name": "x"}},
            {"type": "track", "event": "Post Clicked", "userId": "u", "properties": {"post_id": "1"}}
        ]),
    )
    .await;
    assert_eq!(answer["rejected"], 2, "{answer}");
    assert_eq!(
        answer["errors"][0]["reason"],
        "schema violation (identify v1): /traits/email: required property is missing"
    );
    task.abort();
}
