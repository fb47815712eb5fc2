//! Property tests of request decoding (fixed seed and case count): any bytes, gzip or not, and
//! any JSON shape end as events or errors, never a panic; valid events come back from the bus
//! record as they were sent; PII hashing keeps every JSON text valid.

use std::borrow::Cow;

use axum::http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{json, Value};
use strata_bus::config::RecordFormat;
use strata_core::apps::pii::{PiiKey, PiiPath};
use strata_core::event::{encode_collected_event, BusRecordView};
use strata_core::EventView;

use super::{decode_content, gunzip, parse_batch, parse_single, RawEvent};
use crate::error::Error;
use crate::pii::{AppPii, Rules, WITHHELD};
use crate::validate::{build_event, Envelope, Limits};

const SERVER_TS: i64 = 1_700_000_000_000_000;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x434f_4c4c),
        ..Config::default()
    }
}

fn limits() -> Limits {
    Limits {
        max_event_bytes: 32 * 1024,
        max_age_micros: i64::MAX,
        max_future_micros: i64::MAX,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..10).prop_map(String::from_iter)
}

/// Keys a Segment event has (so shapes near real ones come up often), or any text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "type", "userId", "anonymousId", "event", "name", "messageId", "timestamp",
            "originalTimestamp", "sentAt", "context", "properties", "traits", "groupId",
            "previousId", "writeKey", "app", "library", "page", "userAgent", "locale", "email",
            "batch", "version", "url",
        ])
        .prop_map(str::to_string),
        1 => text(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "track", "identify", "page", "screen", "group", "alias"
        ])
        .prop_map(Value::from),
        Just(Value::from("2024-01-01T00:00:00Z")),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..7)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Builds, encodes in both formats and decodes back every event of `items` as the request
/// path does; with `pii`, hashes first and checks the JSON texts stay valid.
fn ingest(items: &[&str], env: &Envelope<'_>, pii: Option<AppPii<'_>>) {
    for raw in items {
        let Ok(parsed) = serde_json::from_str::<RawEvent<'_>>(raw) else {
            if let Some(pii) = pii {
                let kept = pii.raw(raw);
                assert!(kept == WITHHELD || serde_json::from_str::<Value>(&kept).is_ok());
            }
            continue;
        };
        let Ok(mut event) = build_event(raw, &parsed, env, &limits()) else {
            if let Some(pii) = pii {
                // serde also reads a struct from an array: such an item parses, then fails.
                let kept = pii.raw(raw);
                assert!(kept == WITHHELD || serde_json::from_str::<Value>(&kept).is_ok());
            }
            continue;
        };
        if let Some(pii) = pii {
            pii.apply(&mut event);
            let texts = [&event.context, &event.properties, &event.traits];
            for t in texts.into_iter().flatten() {
                assert!(serde_json::from_str::<Value>(t).is_ok(), "{t}");
            }
        }
        round_trip(&event);
    }
}

fn round_trip(event: &EventView<'_>) {
    for format in [RecordFormat::Binary, RecordFormat::Json] {
        let bytes = encode_collected_event(event, format);
        let BusRecordView::Event(back) = BusRecordView::decode(&bytes).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(&back, event, "{format:?}");
    }
}

fn envelope<'a>(
    sent_at: Option<&'a super::Scalar<'a>>,
    context: Option<&'a serde_json::value::RawValue>,
) -> Envelope<'a> {
    Envelope {
        app: "web",
        server_ts: SERVER_TS,
        implied_type: None,
        batch_sent_at: sent_at,
        batch_context: context,
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn arbitrary_bytes_are_bodies_or_errors(
        brace in any::<bool>(),
        mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        limit in 0usize..256,
    ) {
        if brace {
            bytes.insert(0, b'{');
        }
        let _ = parse_batch(&bytes);
        let _ = parse_single(&bytes);
        if let Ok(out) = gunzip(&bytes, limit) {
            prop_assert!(out.len() <= limit);
        }
        // A gzip header and then anything: an error or at most `limit` bytes.
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        gz.extend(&bytes);
        if let Ok(out) = gunzip(&gz, limit) {
            prop_assert!(out.len() <= limit);
        }
    }
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn gzip_round_trips_up_to_the_limit(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        members in 1usize..3,
        limit in 0usize..1200,
    ) {
        let wire: Vec<u8> = (0..members).flat_map(|_| gzip(&data)).collect();
        let whole: Vec<u8> = (0..members).flat_map(|_| data.clone()).collect();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        match decode_content(&headers, wire.into(), limit) {
            Ok(out) => prop_assert_eq!(&out[..], &whole[..]),
            Err(Error::PayloadTooLarge(_)) => prop_assert!(whole.len() > limit),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn any_json_shape_is_events_or_errors(
        items in proptest::collection::vec(json_value(), 0..4),
        sent_at in proptest::option::of(json_value()),
        context in proptest::option::of(json_value()),
        single in json_value(),
    ) {
        let mut body = serde_json::Map::new();
        body.insert("batch".into(), Value::Array(items));
        if let Some(s) = sent_at {
            body.insert("sentAt".into(), s);
        }
        if let Some(c) = context {
            body.insert("context".into(), c);
        }
        let body = Value::Object(body).to_string();
        let key = PiiKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap();
        let paths: Vec<PiiPath> = ["traits.email", "context.traits.email", "properties.a.b", "userId", "context.page"]
            .iter()
            .map(|p| PiiPath::parse(p).unwrap())
            .collect();
        let rules = Rules::new(&paths);
        if let Ok(batch) = parse_batch(body.as_bytes()) {
            let raws: Vec<&str> = batch.batch.as_ref().map(|b| b.0.iter().map(|r| r.get()).collect()).unwrap_or_default();
            let env = envelope(batch.sent_at.as_ref(), batch.context);
            ingest(&raws, &env, None);
            ingest(&raws, &env, Some(AppPii::new(&key, &rules)));
        }
        let single = single.to_string();
        if let Ok((_, raw)) = parse_single(single.as_bytes()) {
            let env = envelope(None, None);
            ingest(&[raw], &env, None);
            ingest(&[raw], &env, Some(AppPii::new(&key, &rules)));
        }
    }

    #[test]
    fn valid_events_come_back_as_sent(
        kind in prop::sample::select(vec!["track", "identify", "page", "screen", "group", "alias"]),
        user_id in "[a-zA-Z0-9@._-]{1,40}",
        name in proptest::collection::vec(any::<char>().prop_filter("control", |c| !c.is_control()), 1..30)
            .prop_map(String::from_iter),
        message_id in "[a-f0-9-]{1,36}",
        properties in json_value(),
        traits in json_value(),
        gzipped in any::<bool>(),
    ) {
        let event = json!({
            "type": kind, "userId": user_id, "anonymousId": "anon", "groupId": "g",
            "previousId": "p", "event": name, "name": name, "messageId": message_id,
            "properties": properties, "traits": traits,
            "timestamp": "2023-11-14T22:13:20Z",
        });
        let body = json!({"batch": [event]}).to_string();
        let mut headers = HeaderMap::new();
        let wire = if gzipped {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gzip(body.as_bytes())
        } else {
            body.clone().into_bytes()
        };
        let buf = decode_content(&headers, wire.into(), 1 << 20).unwrap();
        let batch = parse_batch(&buf).unwrap();
        let raw = batch.batch.as_ref().unwrap().0[0].get();
        let parsed: RawEvent<'_> = serde_json::from_str(raw).unwrap();
        let e = build_event(raw, &parsed, &envelope(None, None), &limits()).unwrap();
        prop_assert_eq!(&*e.kind, kind);
        prop_assert_eq!(e.user_id.as_deref(), Some(user_id.as_str()));
        prop_assert_eq!(&*e.message_id, message_id.as_str());
        prop_assert_eq!(e.client_ts, Some(SERVER_TS));
        let named = matches!(kind, "track" | "page" | "screen");
        prop_assert_eq!(e.event.as_deref(), named.then_some(name.as_str()));
        let as_text = |v: &Value| (!v.is_null()).then(|| v.to_string());
        prop_assert_eq!(e.properties.as_deref().map(Cow::Borrowed), as_text(&properties).map(Cow::Owned));
        prop_assert_eq!(e.traits.as_deref().map(Cow::Borrowed), as_text(&traits).map(Cow::Owned));
        round_trip(&e);
    }
}
