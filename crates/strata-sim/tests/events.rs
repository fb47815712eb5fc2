//! Every generated event is a valid Segment call with the fields the collector requires and
//! the properties the catalogue promises.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use chrono::NaiveDate;
use serde_json::Value;
use strata_sim::{World, WorldConfig};

fn required_properties(name: &str) -> &'static [&'static str] {
    match name {
        "App Opened" => &["session_id", "from_background"],
        "Feed Impression" => &["post_id", "author_id", "position", "feed"],
        "Post Clicked" => &["post_id", "position", "feed"],
        "Dwell" => &["post_id", "dwell_ms"],
        "Post Liked" => &["post_id", "author_id"],
        "Post Shared" => &["post_id", "channel"],
        "Comment Posted" => &["post_id", "comment_id", "length"],
        "Post Created" => &["post_id", "kind", "tags"],
        "User Followed" | "User Unfollowed" => &["followee_id"],
        "Order Completed" => &["order_id", "amount", "revenue", "currency", "product_id"],
        "Message Sent" => &["message_id", "recipient_id", "length"],
        "Home Feed" | "Post Detail" => &["path", "url"],
        other => panic!("event {other:?} is not in the catalogue"),
    }
}

#[test]
fn every_event_is_valid_segment_json() {
    let w = World::generate(&WorldConfig {
        seed: 11,
        users: 600,
        days: 2,
        start_date: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
        ..WorldConfig::default()
    });
    let mut kinds = std::collections::BTreeSet::new();
    let mut n = 0;
    for e in w.events() {
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.len() < 32 * 1024, "event too large for the collector");
        let v: Value = serde_json::from_str(&text).unwrap();
        let kind = v["type"].as_str().unwrap();
        kinds.insert(kind.to_string());
        assert!(["track", "identify", "screen", "page"].contains(&kind));
        let id = v["messageId"].as_str().unwrap();
        assert!(!id.is_empty() && id.len() <= 256);
        assert!(v["userId"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(v["anonymousId"].as_str().unwrap().len(), 36);
        // Simulated time as `timestamp`, and no `sentAt` (the collector then keeps it as-is).
        let ts = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(ts.timestamp_micros(), e.ts);
        assert!(v.get("sentAt").is_none());
        let ctx = &v["context"];
        assert_eq!(ctx["library"]["name"], "strata-sim");
        assert!(ctx["app"]["version"].is_string());
        assert!(ctx["os"]["name"].is_string());
        assert!(ctx["locale"].is_string());
        assert!(ctx["userAgent"].is_string());
        let name = match kind {
            "track" => v["event"].as_str().unwrap(),
            "screen" | "page" => v["name"].as_str().unwrap(),
            _ => {
                let traits = v["traits"].as_object().unwrap();
                for t in [
                    "email",
                    "username",
                    "country",
                    "city",
                    "age_band",
                    "gender",
                    "createdAt",
                ] {
                    assert!(traits.contains_key(t), "identify without trait {t}");
                }
                continue;
            }
        };
        assert!(!name.is_empty() && name.len() <= 200 && !name.chars().any(char::is_control));
        let web = ctx["os"]["name"] == "Windows";
        assert_eq!(
            kind == "page",
            web && kind != "track",
            "web sends page, apps send screen"
        );
        if kind == "page" {
            assert!(ctx["page"]["path"].is_string());
        }
        if !web {
            assert!(ctx["device"]["model"].is_string());
        }
        let props = v["properties"].as_object().unwrap();
        for p in required_properties(name) {
            assert!(props.contains_key(*p), "{name} without {p}: {text}");
        }
        n += 1;
    }
    assert!(n > 1000);
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}
