//! The reference risk rules on the simulator's normal traffic: no simulated user is decided
//! (false positives are counted and printed), while a bot bursting clicks from one user id is
//! blocked. Rules are evaluated at the events' simulated times — the pace the simulated users
//! keep — as the live consumer evaluates them at receive times.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::HashSet;

use strata_sim::{Call, World, WorldConfig};
use strata_stream::fields::StreamEvent;
use strata_stream::risk::{Decision, RiskConfig, RiskEngine};

/// The rules `strata.toml` documents as the reference (default.toml, docs/streaming.md).
const RULES: &str = r#"
[[rules]]
name = "click_flood"
kind = "rate"
subject = "user_id"
events = ["Post Clicked"]
max = 120
window = "1m"
action = "block"
block_for = "15m"

[[rules]]
name = "event_flood"
kind = "rate"
subject = "anonymous_id"
max = 600
window = "10m"
action = "block"
block_for = "15m"
"#;

#[test]
fn no_simulated_user_is_decided_and_a_bot_is_blocked() {
    let config: RiskConfig = toml::from_str(RULES).unwrap();
    config.validate().unwrap();
    let mut engine = RiskEngine::new(config.compiled());
    let world = World::generate(&WorldConfig::ending_today(11, 2000, 3));
    let mut decisions: Vec<Decision> = Vec::new();
    let mut users = HashSet::new();
    let mut events = 0u64;
    let mut last_ts = 0;
    // The busiest user's clicks within one minute: how far normal traffic stays from the
    // click_flood threshold.
    let mut recent: std::collections::HashMap<u64, std::collections::VecDeque<i64>> =
        std::collections::HashMap::new();
    let mut peak = 0usize;
    for e in world.events() {
        if e.name == "Post Clicked" {
            let q = recent.entry(e.user_id).or_default();
            q.push_back(e.ts);
            while q.front().is_some_and(|t| *t <= e.ts - 60_000_000) {
                q.pop_front();
            }
            peak = peak.max(q.len());
        }
        let user = e.user_id.to_string();
        let stream = StreamEvent {
            event_ts: e.ts,
            server_ts: e.ts,
            kind: e.call.as_str().into(),
            event: (e.call != Call::Identify).then_some(e.name.into()),
            user_id: Some(user.clone().into()),
            anonymous_id: Some(e.anonymous_id.clone().into()),
            ..Default::default()
        };
        engine.evaluate(&stream, e.ts, &mut decisions);
        users.insert(user);
        events += 1;
        last_ts = last_ts.max(e.ts);
    }
    println!(
        "risk on simulated traffic: {} decisions over {events} events of {} users (false positives); busiest user: {peak} clicks in a minute (click_flood blocks past 120)",
        decisions.len(),
        users.len()
    );
    assert!(peak > 0);
    assert!(events > 10_000, "{events}");
    assert!(
        decisions.is_empty(),
        "normal traffic decided: {:?}",
        &decisions[..decisions.len().min(5)]
    );

    // A bot: 5 clicks a second from one user id for a minute.
    let mut bot = Vec::new();
    for i in 0..300i64 {
        let t = last_ts + 1_000_000 + i * 200_000;
        let e = StreamEvent {
            event_ts: t,
            server_ts: t,
            kind: "track".into(),
            event: Some("Post Clicked".into()),
            user_id: Some("bot-7".into()),
            anonymous_id: Some("anon-bot-7".into()),
            ..Default::default()
        };
        engine.evaluate(&e, t, &mut bot);
    }
    assert_eq!(bot.len(), 1, "{bot:?}");
    assert_eq!(
        (bot[0].rule.as_str(), bot[0].subject.as_str(), bot[0].action),
        ("click_flood", "bot-7", "block")
    );
    // Decided on its 121st click, 24 s into the burst.
    assert_eq!(bot[0].decided_at_us, last_ts + 1_000_000 + 120 * 200_000);
}
