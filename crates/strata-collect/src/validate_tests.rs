use super::*;
use strata_core::Event;

const NOW: i64 = 1_780_000_000_000_000;

fn limits() -> Limits {
    Limits {
        max_event_bytes: 1024,
        max_age_micros: 30 * 24 * 3600 * 1_000_000,
        max_future_micros: 3600 * 1_000_000,
    }
}

fn env(implied: Option<&'static str>) -> Envelope<'static> {
    Envelope {
        app: "web",
        server_ts: NOW,
        implied_type: implied,
        batch_sent_at: None,
        batch_context: None,
    }
}

fn build(json: &str, implied: Option<&'static str>) -> Result<Event, Reject> {
    let parsed: RawEvent<'_> = serde_json::from_str(json).unwrap();
    build_event(json, &parsed, &env(implied), &limits()).map(EventView::into_owned)
}

fn reason(json: &str) -> String {
    build(json, None).unwrap_err().reason
}

#[test]
fn skew_correction() {
    // Client clock 10 s behind: event 2 s before sending → 2 s before server receipt.
    assert_eq!(
        event_time(100_000_000, Some(80_000_000), Some(82_000_000)),
        98_000_000
    );
    assert_eq!(event_time(100, Some(42), None), 42);
    assert_eq!(event_time(100, None, Some(42)), 100);
    assert_eq!(event_time(100, None, None), 100);
}

#[test]
fn track_is_flattened() {
    let e = build(
        r#"{"type":"track","event":"Signed Up","userId":7,"messageId":"m1",
            "properties":{"plan":"pro"},
            "context":{"app":{"version":"1.2"},"library":{"name":"analytics-python","version":"2.3.0"},
                       "locale":"en-US","timezone":"Europe/Paris","userAgent":"UA",
                       "page":{"url":"https://x/y","path":"/y","referrer":"https://r"}}}"#,
        None,
    )
    .unwrap();
    assert_eq!(e.kind, "track");
    assert_eq!(e.event.as_deref(), Some("Signed Up"));
    assert_eq!(e.user_id.as_deref(), Some("7"));
    assert_eq!(e.message_id, "m1");
    assert_eq!(e.app, "web");
    assert_eq!(e.server_ts, NOW);
    assert_eq!(e.event_ts, NOW);
    assert_eq!(e.properties.as_deref(), Some(r#"{"plan":"pro"}"#));
    assert_eq!(e.app_version.as_deref(), Some("1.2"));
    assert_eq!(e.library_name.as_deref(), Some("analytics-python"));
    assert_eq!(e.library_version.as_deref(), Some("2.3.0"));
    assert_eq!(e.locale.as_deref(), Some("en-US"));
    assert_eq!(e.timezone.as_deref(), Some("Europe/Paris"));
    assert_eq!(e.user_agent.as_deref(), Some("UA"));
    assert_eq!(e.page_url.as_deref(), Some("https://x/y"));
    assert_eq!(e.page_path.as_deref(), Some("/y"));
    assert_eq!(e.referrer.as_deref(), Some("https://r"));
    assert!(e.context.unwrap().contains("analytics-python"));
}

#[test]
fn missing_message_id_gets_a_uuid() {
    let e = build(r#"{"type":"identify","anonymousId":"a"}"#, None).unwrap();
    assert_eq!(e.message_id.len(), 36);
    let e2 = build(r#"{"type":"identify","anonymousId":"a"}"#, None).unwrap();
    assert_ne!(e.message_id, e2.message_id);
}

#[test]
fn required_fields_per_type() {
    assert!(reason(r#"{"userId":"u"}"#).contains("type"));
    assert!(reason(r#"{"type":"nope","userId":"u"}"#).contains("unknown event type"));
    assert!(reason(r#"{"type":"track","userId":"u"}"#).contains("missing field: event"));
    assert!(reason(r#"{"type":"track","event":"e"}"#).contains("userId or anonymousId"));
    assert!(reason(r#"{"type":"identify"}"#).contains("userId or anonymousId"));
    assert!(reason(r#"{"type":"page","userId":""}"#).contains("userId or anonymousId"));
    assert!(reason(r#"{"type":"group","userId":"u"}"#).contains("groupId"));
    assert!(reason(r#"{"type":"alias","userId":"u"}"#).contains("previousId"));
    assert!(reason(r#"{"type":"alias","previousId":"p"}"#).contains("userId"));
    build(r#"{"type":"group","groupId":"g","userId":"u"}"#, None).unwrap();
    build(r#"{"type":"alias","previousId":"p","userId":"u"}"#, None).unwrap();
    build(r#"{"type":"screen","anonymousId":"a","name":"Home"}"#, None).unwrap();
    // The endpoint's type wins.
    let e = build(r#"{"userId":"u","event":"x"}"#, Some("track")).unwrap();
    assert_eq!(e.kind, "track");
}

#[test]
fn name_and_id_rules() {
    let long = "x".repeat(MAX_NAME_CHARS + 1);
    assert!(reason(&format!(
        r#"{{"type":"track","userId":"u","event":"{long}"}}"#
    ))
    .contains("longer than 200"));
    assert!(reason(r#"{"type":"track","userId":"u","event":"a\u0007b"}"#).contains("control"));
    assert!(reason(r#"{"type":"track","userId":"u","event":""}"#).contains("empty"));
    assert!(reason(r#"{"type":"track","userId":"u","event":5}"#).contains("must be a string"));
    let long_id = "u".repeat(MAX_ID_CHARS + 1);
    assert!(
        reason(&format!(r#"{{"type":"identify","userId":"{long_id}"}}"#))
            .contains("longer than 256")
    );
    assert!(reason(r#"{"type":"identify","userId":{"a":1}}"#).contains("string or a number"));
    assert!(reason(r#"{"type":"identify","userId":true}"#).contains("string or a number"));
}

#[test]
fn timestamps() {
    let r = build(
        r#"{"type":"identify","userId":"u","timestamp":"yesterday"}"#,
        None,
    )
    .unwrap_err();
    assert_eq!(r.kind, "invalid_timestamp");
    assert!(reason(r#"{"type":"identify","userId":"u","sentAt":5}"#).contains("sentAt"));
    // Old / future events.
    let r = build(
        r#"{"type":"identify","userId":"u","timestamp":"2000-01-01T00:00:00Z"}"#,
        None,
    )
    .unwrap_err();
    assert_eq!(r.kind, "too_old");
    let r = build(
        r#"{"type":"identify","userId":"u","timestamp":"2100-01-01T00:00:00Z"}"#,
        None,
    )
    .unwrap_err();
    assert_eq!(r.kind, "in_future");
    // An old timestamp with a matching old sentAt is just a skewed clock: corrected.
    let e = build(
        r#"{"type":"identify","userId":"u","timestamp":"2000-01-01T00:00:00Z","sentAt":"2000-01-01T00:00:05Z"}"#,
        None,
    )
    .unwrap();
    assert_eq!(e.event_ts, NOW - 5_000_000);
    assert_eq!(e.client_ts, parse_ts_micros("2000-01-01T00:00:00Z"));
}

#[test]
fn batch_sent_at_and_context_apply() {
    let sent = Scalar::Str("2000-01-01T00:00:05Z".into());
    let ctx: Box<RawValue> = RawValue::from_string(r#"{"locale":"de-DE"}"#.into()).unwrap();
    let json = r#"{"type":"identify","userId":"u","timestamp":"2000-01-01T00:00:00Z"}"#;
    let parsed: RawEvent<'_> = serde_json::from_str(json).unwrap();
    let env = Envelope {
        batch_sent_at: Some(&sent),
        batch_context: Some(&ctx),
        ..env(None)
    };
    let e = build_event(json, &parsed, &env, &limits()).unwrap();
    assert_eq!(e.event_ts, NOW - 5_000_000);
    assert_eq!(e.locale.as_deref(), Some("de-DE"));
}

#[test]
fn size_limit_and_truncate() {
    let big = format!(
        r#"{{"type":"track","userId":"u","event":"e","properties":{{"p":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let r = build(&big, None).unwrap_err();
    assert_eq!(r.kind, "too_large");
    assert_eq!(truncate("héllo", 2), "h");
    assert_eq!(truncate("héllo", 3), "hé");
    assert_eq!(truncate("abc", 10), "abc");
}
