//! `[risk]` and its rules, and their evaluation over events as they arrive.
//!
//! ```toml
//! [risk]
//! webhook = "https://hooks.example/risk"     # a JSON POST per block (Slack-compatible "text")
//!
//! [[risk.rules]]
//! name = "click_flood"
//! kind = "rate"                # rate | signup_burst | user_agent | impossible_travel
//! subject = "user_id"          # user_id | anonymous_id | ip
//! events = ["Post Clicked"]    # none: every event
//! max = 120
//! window = "1m"
//! action = "block"             # flag (record only) | block
//! block_for = "15m"
//! ```
//!
//! - `rate`: more than `max` events of one subject (`user_id`, `anonymous_id`, `ip`, or
//!   `device_id`: `context.device.id`) within `window`.
//! - `signup_burst`: more than `max` signups (`events`, default `Signed Up`) from one IP within
//!   `window`.
//! - `user_agent`: a user agent containing one of `patterns` (case-insensitive); the subject
//!   (default `ip`) is decided at most once per `window` (default 1 h) or block.
//! - `impossible_travel`: one user seen in two countries within `window` (country from the
//!   collector's GeoIP enrichment; without `collector.geoip_db` it never fires).
//!
//! Times are the collector's receive times (`server_ts`), which a client cannot forge.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_core::risk::SubjectKind;

use crate::fields::StreamEvent;

/// Where a device id is in an event: Segment's `context.device.id`.
static DEVICE_ID: std::sync::LazyLock<strata_features::stream::FieldRef> =
    std::sync::LazyLock::new(|| {
        strata_features::stream::FieldRef::Json(
            strata_features::stream::JsonRoot::Context,
            vec!["device".to_string(), "id".to_string()],
        )
    });

/// `[risk]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Slack-compatible webhook (a JSON POST with `text` and the decision) for every block.
    pub webhook: Option<String>,
    /// How often decisions are appended to `ods.ods_risk_decision`.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    pub rules: Vec<RuleConfig>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            webhook: None,
            flush_interval: Duration::from_secs(5),
            rules: Vec::new(),
        }
    }
}

/// One `[[risk.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub kind: String,
    pub subject: Option<String>,
    pub events: Option<Vec<String>>,
    pub max: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    pub patterns: Option<Vec<String>>,
    pub action: String,
    #[serde(default, with = "humantime_serde")]
    pub block_for: Option<Duration>,
}

impl RiskConfig {
    /// Every problem of `[risk]`, one message each naming the rule and key.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(url) = &self.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("risk.webhook {url:?} is not an http(s) URL"));
            }
        }
        if self.flush_interval.is_zero() {
            problems.push("risk.flush_interval must be positive".to_string());
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.rules {
            if !names.insert(r.name.as_str()) {
                problems.push(format!("risk.rules: two rules are named {:?}", r.name));
            }
            if let Err(e) = Rule::compile(r) {
                problems.extend(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The compiled rules (call [`RiskConfig::validate`] first; invalid rules are skipped).
    pub fn compiled(&self) -> Vec<Rule> {
        self.rules
            .iter()
            .filter_map(|r| Rule::compile(r).ok())
            .collect()
    }
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Flag,
    Block { for_us: i64 },
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Flag => "flag",
            Action::Block { .. } => "block",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Rate { max: u64 },
    UserAgent { patterns: Vec<String> },
    Travel,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub kind: SubjectKind,
    events: Vec<String>,
    window_us: i64,
    test: Test,
    pub action: Action,
}

impl Rule {
    pub fn compile(r: &RuleConfig) -> Result<Rule, Vec<String>> {
        let mut problems = Vec::new();
        let at = |m: String| format!("risk.rules {}: {m}", r.name);
        if let Err(e) = strata_core::names::check_name("rule name", &r.name) {
            problems.push(at(e));
        }
        let default_subject = match r.kind.as_str() {
            "rate" => None,
            "signup_burst" | "user_agent" => Some(SubjectKind::Ip),
            "impossible_travel" => Some(SubjectKind::UserId),
            other => {
                problems.push(at(format!(
                    "kind {other:?} is not rate, signup_burst, user_agent or impossible_travel"
                )));
                Some(SubjectKind::Ip)
            }
        };
        let kind = match (&r.subject, default_subject) {
            (Some(s), _) => SubjectKind::parse(s).unwrap_or_else(|| {
                problems.push(at(format!(
                    "subject {s:?} is not user_id, anonymous_id, ip or device_id"
                )));
                SubjectKind::Ip
            }),
            (None, Some(k)) => k,
            (None, None) => {
                problems.push(at(
                    "a rate rule needs a subject (user_id, anonymous_id, ip or device_id)".into(),
                ));
                SubjectKind::Ip
            }
        };
        if r.kind == "impossible_travel" && kind != SubjectKind::UserId {
            problems.push(at(
                "impossible_travel follows users: subject = \"user_id\"".into()
            ));
        }
        let window = r.window.unwrap_or(Duration::from_secs(3600));
        if window.is_zero() || window > Duration::from_secs(7 * 24 * 3600) {
            problems.push(at("window must be between 1s and 7d".into()));
        }
        let test = match r.kind.as_str() {
            "rate" | "signup_burst" => {
                if r.window.is_none() {
                    problems.push(at("needs a window (e.g. window = \"1m\")".into()));
                }
                match r.max {
                    Some(max) if (1..=1_000_000).contains(&max) => Test::Rate { max },
                    _ => {
                        problems.push(at("needs max between 1 and 1000000".into()));
                        Test::Rate { max: 1 }
                    }
                }
            }
            "user_agent" => match &r.patterns {
                Some(p) if !p.is_empty() && p.iter().all(|s| !s.trim().is_empty()) => {
                    Test::UserAgent {
                        patterns: p.iter().map(|s| s.to_lowercase()).collect(),
                    }
                }
                _ => {
                    problems.push(at("needs patterns (non-empty strings)".into()));
                    Test::UserAgent {
                        patterns: Vec::new(),
                    }
                }
            },
            _ => Test::Travel,
        };
        if r.kind != "rate" && r.kind != "signup_burst" && r.max.is_some() {
            problems.push(at("max applies to rate and signup_burst rules".into()));
        }
        if r.kind != "user_agent" && r.patterns.is_some() {
            problems.push(at("patterns apply to user_agent rules".into()));
        }
        let action = match (r.action.as_str(), r.block_for) {
            ("flag", None) => Action::Flag,
            ("flag", Some(_)) => {
                problems.push(at("block_for applies to action = \"block\"".into()));
                Action::Flag
            }
            ("block", d) => {
                let d = d.unwrap_or(Duration::from_secs(3600));
                if d.is_zero() || d > Duration::from_secs(365 * 24 * 3600) {
                    problems.push(at("block_for must be between 1s and 365d".into()));
                }
                Action::Block {
                    for_us: d.as_micros() as i64,
                }
            }
            (other, _) => {
                problems.push(at(format!("action {other:?} is not flag or block")));
                Action::Flag
            }
        };
        let events = match (&r.events, r.kind.as_str()) {
            (Some(e), _) => e.clone(),
            (None, "signup_burst") => vec!["Signed Up".to_string()],
            (None, _) => Vec::new(),
        };
        if problems.is_empty() {
            Ok(Rule {
                name: r.name.clone(),
                kind,
                events,
                window_us: window.as_micros() as i64,
                test,
                action,
            })
        } else {
            Err(problems)
        }
    }
}

/// A rule's verdict on a subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub rule: String,
    pub kind: SubjectKind,
    pub subject: String,
    pub action: &'static str,
    pub decided_at_us: i64,
    /// End of the block (`None` for a flag).
    pub until_us: Option<i64>,
    /// What the rule saw (JSON).
    pub evidence: serde_json::Value,
}

#[derive(Debug, Default)]
struct RuleState {
    /// Recent receive times per subject (rate rules), oldest first, at most `max + 1`.
    times: HashMap<String, VecDeque<i64>>,
    /// Last country and when, per user (travel).
    seen: HashMap<String, (String, i64)>,
    /// Subjects decided, until when no new decision is taken for them.
    quiet_until: HashMap<String, i64>,
}

/// The rules and their state.
#[derive(Debug)]
pub struct RiskEngine {
    rules: Vec<Rule>,
    state: Vec<RuleState>,
    evaluated: u64,
}

impl RiskEngine {
    pub fn new(rules: Vec<Rule>) -> RiskEngine {
        let state = rules.iter().map(|_| RuleState::default()).collect();
        RiskEngine {
            rules,
            state,
            evaluated: 0,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Evaluates one event received at `now_us`; decisions are appended to `out`.
    pub fn evaluate(&mut self, e: &StreamEvent<'_>, now_us: i64, out: &mut Vec<Decision>) {
        self.evaluated += 1;
        for (rule, st) in self.rules.iter().zip(self.state.iter_mut()) {
            if !rule.events.is_empty() && !rule.events.iter().any(|n| n == e.name()) {
                continue;
            }
            let device;
            let subject = match rule.kind {
                SubjectKind::UserId => e.user_id.as_deref(),
                SubjectKind::AnonymousId => e.anonymous_id.as_deref(),
                SubjectKind::Ip => e.ip.as_deref(),
                SubjectKind::DeviceId => {
                    device = e.get(&DEVICE_ID).map(|v| v.to_text());
                    device.as_deref()
                }
            };
            let Some(subject) = subject.filter(|s| !s.is_empty()) else {
                continue;
            };
            if st.quiet_until.get(subject).is_some_and(|t| *t > now_us) {
                continue;
            }
            let evidence = match &rule.test {
                Test::Rate { max } => {
                    let times = st.times.entry(subject.to_string()).or_default();
                    times.push_back(now_us);
                    while times.front().is_some_and(|t| *t <= now_us - rule.window_us) {
                        times.pop_front();
                    }
                    while times.len() as u64 > max + 1 {
                        times.pop_front();
                    }
                    if (times.len() as u64) <= *max {
                        continue;
                    }
                    let first = times.front().copied().unwrap_or(now_us);
                    times.clear();
                    serde_json::json!({
                        "events": max + 1,
                        "within_ms": (now_us - first) / 1000,
                        "max": max,
                        "window_ms": rule.window_us / 1000,
                        "last_event": e.name(),
                    })
                }
                Test::UserAgent { patterns } => {
                    let Some(ua) = e.user_agent.as_deref() else {
                        continue;
                    };
                    let lower = ua.to_lowercase();
                    let Some(p) = patterns.iter().find(|p| lower.contains(p.as_str())) else {
                        continue;
                    };
                    serde_json::json!({ "user_agent": ua, "pattern": p })
                }
                Test::Travel => {
                    let Some(country) = e.country.as_deref().filter(|c| !c.is_empty()) else {
                        continue;
                    };
                    let previous = st
                        .seen
                        .insert(subject.to_string(), (country.to_string(), now_us));
                    match previous {
                        Some((from, at)) if from != country && now_us - at < rule.window_us => {
                            serde_json::json!({
                                "from_country": from,
                                "to_country": country,
                                "within_ms": (now_us - at) / 1000,
                                "ip": e.ip.as_deref(),
                            })
                        }
                        _ => continue,
                    }
                }
            };
            let until = match rule.action {
                Action::Block { for_us } => Some(now_us + for_us),
                Action::Flag => None,
            };
            st.quiet_until.insert(
                subject.to_string(),
                until.unwrap_or(now_us + rule.window_us),
            );
            out.push(Decision {
                rule: rule.name.clone(),
                kind: rule.kind,
                subject: subject.to_string(),
                action: rule.action.as_str(),
                decided_at_us: now_us,
                until_us: until,
                evidence,
            });
        }
        if self.evaluated.is_multiple_of(100_000) {
            self.evict(now_us);
        }
    }

    /// Drops state no rule can use any more (bounded memory).
    fn evict(&mut self, now_us: i64) {
        for (rule, st) in self.rules.iter().zip(self.state.iter_mut()) {
            let horizon = now_us - rule.window_us;
            st.times
                .retain(|_, t| t.back().is_some_and(|last| *last > horizon));
            st.seen.retain(|_, (_, at)| *at > horizon);
            st.quiet_until.retain(|_, t| *t > now_us);
        }
    }

    /// Lifts a subject's quiet period (after a manual unblock its next offence decides again).
    pub fn forgive(&mut self, kind: SubjectKind, subject: &str) {
        for (rule, st) in self.rules.iter().zip(self.state.iter_mut()) {
            if rule.kind == kind {
                st.quiet_until.remove(subject);
                st.times.remove(subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<Rule> {
        #[derive(Deserialize)]
        struct Root {
            risk: RiskConfig,
        }
        let root: Root = toml::from_str(text).unwrap();
        root.risk.validate().unwrap();
        root.risk.compiled()
    }

    fn event<'a>(name: &'a str, user: &'a str, ip: &'a str) -> StreamEvent<'a> {
        StreamEvent {
            kind: "track".into(),
            event: Some(name.into()),
            user_id: Some(user.into()),
            ip: Some(ip.into()),
            ..Default::default()
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn a_rate_rule_fires_once_past_its_max_and_then_stays_quiet_while_blocked() {
        let mut engine = RiskEngine::new(rules(
            "[[risk.rules]]\nname = \"flood\"\nkind = \"rate\"\nsubject = \"user_id\"\nmax = 5\nwindow = \"10s\"\naction = \"block\"\nblock_for = \"1m\"\n",
        ));
        let mut out = Vec::new();
        // 5 events in 10 s: fine. Spread out: fine.
        for i in 0..5 {
            engine.evaluate(&event("x", "bot", "1.2.3.4"), i * S, &mut out);
        }
        engine.evaluate(&event("x", "bot", "1.2.3.4"), 11 * S, &mut out);
        assert!(out.is_empty(), "{out:?}");
        for i in 0..5 {
            engine.evaluate(&event("x", "bot", "1.2.3.4"), 12 * S + i, &mut out);
        }
        assert_eq!(out.len(), 1, "{out:?}");
        let d = &out[0];
        assert_eq!(
            (d.rule.as_str(), d.kind, d.subject.as_str(), d.action),
            ("flood", SubjectKind::UserId, "bot", "block")
        );
        // The 6th event within 10 s (3 s, 4 s, 11 s and three at 12 s) fires it.
        assert_eq!(d.until_us, Some(12 * S + 2 + 60 * S));
        // Blocked: no new decision until the block ends.
        for i in 0..50 {
            engine.evaluate(&event("x", "bot", "1.2.3.4"), 13 * S + i, &mut out);
        }
        assert_eq!(out.len(), 1);
        // Other users are not affected.
        engine.evaluate(&event("x", "human", "1.2.3.4"), 13 * S, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn signup_bursts_count_signups_per_ip() {
        let mut engine = RiskEngine::new(rules(
            "[[risk.rules]]\nname = \"signups\"\nkind = \"signup_burst\"\nmax = 3\nwindow = \"10m\"\naction = \"flag\"\n",
        ));
        let mut out = Vec::new();
        for i in 0..3 {
            engine.evaluate(
                &event("Signed Up", &format!("u{i}"), "9.9.9.9"),
                i * S,
                &mut out,
            );
            engine.evaluate(&event("Post Clicked", "u", "9.9.9.9"), i * S, &mut out);
        }
        assert!(out.is_empty());
        engine.evaluate(&event("Signed Up", "u4", "9.9.9.9"), 5 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, SubjectKind::Ip);
        assert_eq!(out[0].until_us, None);
    }

    #[test]
    fn bad_user_agents_and_impossible_travel() {
        let mut engine = RiskEngine::new(rules(
            "[[risk.rules]]\nname = \"scripts\"\nkind = \"user_agent\"\npatterns = [\"python-requests\"]\naction = \"block\"\n\n[[risk.rules]]\nname = \"travel\"\nkind = \"impossible_travel\"\nwindow = \"1h\"\naction = \"flag\"\n",
        ));
        let mut out = Vec::new();
        let mut e = event("x", "u1", "5.5.5.5");
        e.user_agent = Some("Python-Requests/2.31".into());
        e.country = Some("DE".into());
        engine.evaluate(&e, S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "scripts");
        let mut e2 = event("x", "u1", "6.6.6.6");
        e2.country = Some("BR".into());
        engine.evaluate(&e2, 10 * 60 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].rule, "travel");
        assert_eq!(out[1].evidence["from_country"], "DE");
        // Two hours later a change of country is travel, not impossible.
        let mut e3 = event("x", "u1", "7.7.7.7");
        e3.country = Some("FR".into());
        engine.evaluate(&e3, 3 * 3600 * S, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn every_rule_problem_is_named() {
        let bad = RiskConfig {
            webhook: Some("ftp://x".into()),
            rules: vec![
                RuleConfig {
                    name: "r".into(),
                    kind: "rate".into(),
                    subject: None,
                    events: None,
                    max: None,
                    window: None,
                    patterns: None,
                    action: "ban".into(),
                    block_for: None,
                },
                RuleConfig {
                    name: "r".into(),
                    kind: "teleport".into(),
                    subject: Some("device".into()),
                    events: None,
                    max: None,
                    window: None,
                    patterns: None,
                    action: "flag".into(),
                    block_for: Some(Duration::from_secs(1)),
                },
            ],
            ..RiskConfig::default()
        };
        let problems = bad.validate().unwrap_err().join("\n");
        for want in [
            "risk.webhook",
            "two rules are named",
            "needs a subject",
            "needs a window",
            "needs max",
            "action \"ban\"",
            "kind \"teleport\"",
            "subject \"device\"",
            "block_for applies",
        ] {
            assert!(problems.contains(want), "{want} missing from:\n{problems}");
        }
    }
}
