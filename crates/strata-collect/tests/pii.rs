//! `[collector.pii]` over real HTTP into a real `EmbeddedLog`: the configured values never
//! appear in the bytes of the bus, whatever the event kind, endpoint, encoding or outcome; what
//! is there instead is `hmac:<hex>`, the same for the same value and key, different under another
//! key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use serde_json::json;
use strata_bus::config::RecordFormat;
use strata_bus::embedded::EmbeddedOptions;
use strata_bus::Log;
use strata_collect::config::CollectorOptions as Config;
use strata_collect::{sign, Collector};
use strata_core::apps::pii::{PiiConfig, PiiKey};
use strata_core::{BusRecord, Event};

const KEY_A: &str = "key-a-0123456789abcdef0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef0123456789abcdef";

const EMAIL: &str = "alice@example.com";
const PHONE: &str = "+33612345678";
const USER: &str = "user-alice-7";
const STREET: &str = "12 rue de Rivoli";
const CLIENT_IP: &str = "81.2.69.142";
/// Sent by the `signed` app, which has no `properties.phone_number` rule: kept as sent.
const OTHER_PHONE: &str = "+4915111122233";

/// `setup` plus PII rules: for every app the email wherever Segment puts traits, the address,
/// the user id; for `web` also the phone number and the IP.
fn pii_setup(dir: &Path, key: &str) -> Config {
    let mut config = setup(dir);
    let key_file = dir.join("pii.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    config.collector.pii = PiiConfig {
        key_file: Some(key_file),
        paths: vec![
            "traits.email".into(),
            "context.traits.email".into(),
            "traits.address".into(),
            "userId".into(),
        ],
        apps: [(
            "web".to_string(),
            vec![
                "properties.phone_number".to_string(),
                "context.ip".to_string(),
            ],
        )]
        .into(),
    };
    config
}

/// The raw bytes of every record of the `events` topic: its key, then its value.
async fn raw_records(log: &dyn Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in 0..log.partitions("events").await.unwrap() {
        for r in log.read("events", p, 0, 100_000, 64 << 20).await.unwrap() {
            out.push([&r.key[..], &r.value[..]].concat());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Posts one event of every kind, through the batch and the single endpoints, plain and gzip,
/// valid and rejected; returns the bus records.
async fn post_everything(server: &Server) {
    let web = [("Authorization", basic(WEB_KEY))];
    let web: Vec<(&str, &str)> = web.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut headers = web.clone();
    headers.push(("X-Forwarded-For", CLIENT_IP));
    let batch = json!({
        "batch": [
            {"type": "identify", "userId": USER, "messageId": "identify-1",
             "traits": {"email": EMAIL, "name": "Alice", "address": {"street": STREET, "zip": 75001}}},
            {"type": "track", "event": "Order Completed", "userId": USER, "messageId": "track-1",
             "properties": {"phone_number": PHONE, "total": 12.5},
             "context": {"traits": {"email": EMAIL}, "ip": "10.9.9.9"}},
            {"type": "page", "userId": USER, "name": "Home", "messageId": "page-1",
             "context": {"traits": {"email": EMAIL}}},
            {"type": "screen", "anonymousId": "anon-1", "name": "Cart", "messageId": "screen-1",
             "context": {"traits": {"email": EMAIL}}},
            {"type": "group", "userId": USER, "groupId": "g-1", "messageId": "group-1",
             "traits": {"email": EMAIL, "employees": 12}},
            {"type": "alias", "userId": USER, "previousId": "anon-1", "messageId": "alias-1"},
            // Rejected (no user): its raw text lands in the dead-letter records, hashed.
            {"type": "identify", "messageId": "bad-1", "traits": {"email": EMAIL},
             "properties": {"phone_number": PHONE}},
            // Rejected, not an object: its text is withheld.
            format!("{EMAIL} {PHONE}"),
        ]
    });
    let r = post(
        server.addr,
        "/v1/batch",
        &headers,
        batch.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["accepted"], 6, "{:?}", r.json);
    assert_eq!(r.json["rejected"], 2, "{:?}", r.json);

    // Single endpoints, the write key in the body, one of them gzip-compressed.
    let identify = json!({"writeKey": WEB_KEY, "userId": USER, "messageId": "identify-2",
                          "traits": {"email": EMAIL, "phone_number": "not configured here"}});
    let r = post(
        server.addr,
        "/v1/identify",
        &[("X-Forwarded-For", CLIENT_IP)],
        identify.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let track = json!({"userId": USER, "event": "Viewed", "messageId": "track-2",
                       "properties": {"phone_number": PHONE}});
    let mut gz = web.clone();
    gz.push(("Content-Encoding", "gzip"));
    let r = post(
        server.addr,
        "/v1/track",
        &gz,
        &gzip(track.to_string().as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    // Another app: the global rules apply, `web`'s own do not.
    let body = json!({"userId": USER, "event": "Signed", "messageId": "signed-1",
                      "properties": {"phone_number": OTHER_PHONE},
                      "context": {"traits": {"email": EMAIL}}})
    .to_string();
    let ts = strata_core::time::now_micros() / 1_000_000;
    let sig = sign(SECRET, ts, body.as_bytes());
    let r = post(
        server.addr,
        "/v1/track",
        &[
            ("Authorization", &basic(SIGNED_KEY)),
            ("X-Strata-Timestamp", &ts.to_string()),
            ("X-Strata-Signature", &sig),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
}

fn event<'a>(records: &'a [BusRecord], message_id: &str) -> &'a Event {
    records
        .iter()
        .find_map(|r| match r {
            BusRecord::Event(e) if e.message_id == message_id => Some(e.as_ref()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no event {message_id}"))
}

fn json_field(text: &Option<String>, pointer: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(text.as_deref().unwrap()).unwrap();
    v.pointer(pointer)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn raw_pii_never_reaches_the_bus_in_either_record_format() {
    for format in [RecordFormat::Binary, RecordFormat::Json] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = pii_setup(dir.path(), KEY_A);
        config.record_format = format;
        let log = open_log(&config, EmbeddedOptions::default()).await;
        let server = Server::start(&config, log.clone()).await;
        post_everything(&server).await;
        server.stop().await;

        let raw = raw_records(log.as_ref()).await;
        assert_eq!(raw.len(), 11, "{format:?}");
        for value in [EMAIL, PHONE, USER, STREET, CLIENT_IP] {
            for (i, record) in raw.iter().enumerate() {
                assert!(
                    !contains(record, value),
                    "{format:?}: {value:?} in record {i}: {}",
                    String::from_utf8_lossy(record)
                );
            }
        }
        // The search does find what is not configured: the other app's phone is there as sent.
        assert!(raw.iter().any(|r| contains(r, OTHER_PHONE)), "{format:?}");

        let key = PiiKey::new(KEY_A.into()).unwrap();
        let records = bus_records(log.as_ref()).await;
        let email = json!(key.hash(EMAIL));
        let user = key.hash(USER);
        // Every kind carries the same hash for the same value (joins still work).
        let identify = event(&records, "identify-1");
        assert_eq!(identify.user_id.as_deref(), Some(user.as_str()));
        assert_eq!(json_field(&identify.traits, "/email"), email);
        assert_eq!(json_field(&identify.traits, "/name"), json!("Alice"));
        assert_eq!(
            json_field(&identify.traits, "/address"),
            json!({"street": key.hash(STREET), "zip": key.hash("75001")})
        );
        let track = event(&records, "track-1");
        assert_eq!(track.user_id.as_deref(), Some(user.as_str()));
        assert_eq!(json_field(&track.context, "/traits/email"), email);
        assert_eq!(
            json_field(&track.properties, "/phone_number"),
            json!(key.hash(PHONE))
        );
        assert_eq!(json_field(&track.properties, "/total"), json!(12.5));
        assert_eq!(track.ip.as_deref(), Some(key.hash(CLIENT_IP).as_str()));
        assert_eq!(
            json_field(&track.context, "/ip"),
            json!(key.hash("10.9.9.9"))
        );
        // Geo was looked up on the raw address before it was hashed.
        assert_eq!(track.country.as_deref(), Some("FR"));
        assert_eq!(
            json_field(&event(&records, "page-1").context, "/traits/email"),
            email
        );
        let screen = event(&records, "screen-1");
        assert_eq!(screen.anonymous_id.as_deref(), Some("anon-1"));
        assert_eq!(json_field(&screen.context, "/traits/email"), email);
        let group = event(&records, "group-1");
        assert_eq!(json_field(&group.traits, "/email"), email);
        assert_eq!(json_field(&group.traits, "/employees"), json!(12));
        assert_eq!(group.group_id.as_deref(), Some("g-1"));
        let alias = event(&records, "alias-1");
        assert_eq!(alias.user_id.as_deref(), Some(user.as_str()));
        assert_eq!(alias.previous_id.as_deref(), Some("anon-1"));
        let identify2 = event(&records, "identify-2");
        assert_eq!(json_field(&identify2.traits, "/email"), email);
        assert_eq!(
            json_field(&identify2.traits, "/phone_number"),
            json!("not configured here")
        );
        assert_eq!(
            json_field(&event(&records, "track-2").properties, "/phone_number"),
            json!(key.hash(PHONE))
        );
        let signed = event(&records, "signed-1");
        assert_eq!(signed.user_id.as_deref(), Some(user.as_str()));
        assert_eq!(json_field(&signed.context, "/traits/email"), email);
        assert_eq!(
            json_field(&signed.properties, "/phone_number"),
            json!(OTHER_PHONE)
        );

        // Dead letters: hashed when they are objects, withheld when not.
        let rejected: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                BusRecord::Rejected(r) => Some(r.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(rejected.len(), 2);
        let bad = rejected
            .iter()
            .find(|r| r.message_id.as_deref() == Some("bad-1"))
            .unwrap();
        let raw: serde_json::Value = serde_json::from_str(&bad.raw).unwrap();
        assert_eq!(raw["traits"]["email"], email);
        assert_eq!(raw["properties"]["phone_number"], json!(key.hash(PHONE)));
        assert!(rejected.iter().any(|r| r.raw.starts_with("<withheld")));
    }
}

#[tokio::test]
async fn another_key_gives_other_hashes() {
    let mut user_ids = Vec::new();
    for key in [KEY_A, KEY_B, KEY_A] {
        let dir = tempfile::tempdir().unwrap();
        let config = pii_setup(dir.path(), key);
        let log = open_log(&config, EmbeddedOptions::default()).await;
        let server = Server::start(&config, log.clone()).await;
        let body = json!({"userId": USER, "event": "E", "traits": {}});
        let r = post(
            server.addr,
            "/v1/track",
            &[("Authorization", &basic(WEB_KEY))],
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        server.stop().await;
        let records = bus_records(log.as_ref()).await;
        let [BusRecord::Event(e)] = records.as_slice() else {
            panic!("{records:?}");
        };
        user_ids.push(e.user_id.clone().unwrap());
    }
    assert!(
        user_ids.iter().all(|u| u.starts_with("hmac:")),
        "{user_ids:?}"
    );
    assert_ne!(user_ids[0], user_ids[1]);
    assert_eq!(user_ids[0], user_ids[2]);
}

#[tokio::test]
async fn the_collector_refuses_to_start_with_a_bad_pii_setup() {
    let dir = tempfile::tempdir().unwrap();
    let good = pii_setup(dir.path(), KEY_A);
    let log: Arc<dyn Log> = open_log(&good, EmbeddedOptions::default()).await;
    let refused = |config: Config| {
        let log = Arc::clone(&log);
        async move {
            match Collector::new(&config, log).await {
                Ok(_) => panic!("started with {:?}", config.collector.pii),
                Err(e) => e.to_string(),
            }
        }
    };

    // A key inside the data directory.
    let mut inside = good.clone();
    let key_file = inside.data_dir.join("pii.key");
    std::fs::write(&key_file, KEY_A).unwrap();
    inside.collector.pii.key_file = Some(key_file);
    let e = refused(inside).await;
    assert!(e.contains("inside the data directory"), "{e}");

    // A key too short, a malformed path.
    let mut short = good.clone();
    std::fs::write(dir.path().join("short.key"), "abc").unwrap();
    short.collector.pii.key_file = Some(dir.path().join("short.key"));
    let e = refused(short).await;
    assert!(e.contains("at least 32"), "{e}");
    let mut bad_path = good.clone();
    bad_path.collector.pii.paths.push("traits..email".into());
    let e = refused(bad_path).await;
    assert!(e.contains("traits..email"), "{e}");

    // The good one starts.
    Collector::new(&good, log).await.unwrap();
}
