//! Bots against a risk rule: each bot is one user sending single-event requests at a fixed
//! rate (open loop over a few connections); every answer says whether the collector accepted
//! the event or refused it because of a block. With the rule's decision times (from
//! `ods.ods_risk_decision`, else estimated here), each bot gives decision → first refused event
//! and the events accepted more than 1 s after its decision.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::events::one_click;
use super::{summary_ms, wall_us};
use crate::Conn;

/// Bot user ids: `BOT_USER_BASE + run * 1000 + bot`.
pub const BOT_USER_BASE: u64 = 800_000_000;

/// What the collector did with one bot event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Refused because of a risk block (a reason starting with `blocked`).
    Refused,
    /// Anything else (an error status, a connection failure, another refusal).
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct BotEvent {
    /// Wall clock (µs) just before the request was written.
    pub sent_us: i64,
    /// Wall clock (µs) when its answer was read.
    pub acked_us: i64,
    pub outcome: Outcome,
}

/// One bot's events.
#[derive(Debug, Clone)]
pub struct BotRun {
    pub user: u64,
    pub events: Vec<BotEvent>,
}

/// The bots of one run.
#[derive(Debug, Clone)]
pub struct Bots {
    pub addr: SocketAddr,
    pub write_auth: String,
    pub bots: usize,
    /// Bot `b` is user `first_user + b`.
    pub first_user: u64,
    /// Bot `b` starts `b * stagger` after the first.
    pub stagger: Duration,
    /// Events per second of each bot.
    pub rate: f64,
    /// How long each bot sends.
    pub duration: Duration,
    pub connections_per_bot: usize,
    pub run: String,
}

impl Bots {
    /// The whole run's length (the last bot's end).
    pub fn span(&self) -> Duration {
        self.stagger * (self.bots.saturating_sub(1) as u32) + self.duration
    }

    pub async fn run(&self) -> Result<Vec<BotRun>> {
        let t0 = Instant::now() + Duration::from_millis(20);
        let mut bots = Vec::new();
        for b in 0..self.bots {
            let me = self.clone();
            let start = t0 + self.stagger * b as u32;
            bots.push(tokio::spawn(async move { me.bot(b, start).await }));
        }
        let mut out = Vec::new();
        for b in bots {
            out.push(b.await??);
        }
        Ok(out)
    }

    async fn bot(&self, b: usize, start: Instant) -> Result<BotRun> {
        let user = self.first_user + b as u64;
        let end = start + self.duration;
        let next = Arc::new(AtomicU64::new(0));
        let mut conns = Vec::new();
        for _ in 0..self.connections_per_bot.max(1) {
            let (next, me) = (next.clone(), self.clone());
            let mut conn = Conn::connect(self.addr).await?;
            conns.push(tokio::spawn(async move {
                let mut events = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = start + Duration::from_secs_f64(i as f64 / me.rate.max(1e-9));
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let body = one_click(&format!("{}-bot{b}-{i}", me.run), user, 1 + i % 1000);
                    let sent_us = wall_us();
                    let answer = conn.post_read("/v1/batch", &me.write_auth, &body).await;
                    let acked_us = wall_us();
                    let outcome = match answer {
                        Ok((200, a)) => outcome_of(&a),
                        Ok(_) => Outcome::Other,
                        Err(_) => {
                            if let Ok(c) = Conn::connect(me.addr).await {
                                conn = c;
                            }
                            Outcome::Other
                        }
                    };
                    events.push(BotEvent {
                        sent_us,
                        acked_us,
                        outcome,
                    });
                }
                events
            }));
        }
        let mut events = Vec::new();
        for c in conns {
            events.extend(c.await?);
        }
        events.sort_by_key(|e| e.sent_us);
        Ok(BotRun { user, events })
    }
}

/// Reads a `/v1/batch` answer of one event.
pub fn outcome_of(answer: &[u8]) -> Outcome {
    let Ok(v) = serde_json::from_slice::<Value>(answer) else {
        return Outcome::Other;
    };
    if v["accepted"].as_u64() == Some(1) {
        return Outcome::Accepted;
    }
    let blocked = v["errors"].as_array().is_some_and(|e| {
        e.iter().any(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("blocked"))
        })
    });
    if v["rejected"].as_u64() == Some(1) && blocked {
        Outcome::Refused
    } else {
        Outcome::Other
    }
}

/// The figures of a run's bots. `decisions`: the rule's decision time (µs) per user id, from
/// the lake; a bot missing there gets the client's estimate (the acknowledgement of its
/// `max + 1`-th accepted event, an upper bound of that event's receive time).
pub fn analyse(runs: &[BotRun], decisions: &HashMap<String, i64>, max: u64) -> Value {
    let mut enforce_ack = Vec::new();
    let mut enforce_sent = Vec::new();
    let mut last_accepted = Vec::new();
    let mut late_total = 0u64;
    let mut after_total = 0u64;
    let mut never_refused = 0u64;
    let mut from_lake = 0u64;
    let mut rates = Vec::new();
    let mut per_bot = Vec::new();
    for run in runs {
        let accepted: Vec<&BotEvent> = run
            .events
            .iter()
            .filter(|e| e.outcome == Outcome::Accepted)
            .collect();
        let refused: Vec<&BotEvent> = run
            .events
            .iter()
            .filter(|e| e.outcome == Outcome::Refused)
            .collect();
        let other = run
            .events
            .iter()
            .filter(|e| e.outcome == Outcome::Other)
            .count();
        if let (Some(first), Some(last)) = (run.events.first(), run.events.last()) {
            let secs = (last.sent_us - first.sent_us) as f64 / 1e6;
            if secs > 0.0 {
                rates.push((run.events.len() - 1) as f64 / secs);
            }
        }
        let decided = match decisions.get(&run.user.to_string()) {
            Some(d) => {
                from_lake += 1;
                Some(*d)
            }
            None => accepted.get(max as usize).map(|e| e.acked_us),
        };
        let Some(decided) = decided else {
            per_bot.push(json!({"user": run.user, "events": run.events.len(), "accepted": accepted.len(), "decision": null}));
            continue;
        };
        let first_refused_ack = refused.iter().map(|e| e.acked_us).min();
        let first_refused_sent = refused.iter().map(|e| e.sent_us).min();
        if let Some(t) = first_refused_ack {
            enforce_ack.push((t - decided) as f64 / 1e3);
        } else {
            never_refused += 1;
        }
        if let Some(t) = first_refused_sent {
            enforce_sent.push((t - decided) as f64 / 1e3);
        }
        let after: Vec<&&BotEvent> = accepted.iter().filter(|e| e.sent_us > decided).collect();
        let late = after
            .iter()
            .filter(|e| e.sent_us > decided + 1_000_000)
            .count() as u64;
        if let Some(e) = after.last() {
            last_accepted.push((e.sent_us - decided) as f64 / 1e3);
        }
        late_total += late;
        after_total += after.len() as u64;
        per_bot.push(json!({
            "user": run.user,
            "events": run.events.len(),
            "accepted": accepted.len(),
            "refused": refused.len(),
            "other": other,
            "decision_from_lake": decisions.contains_key(&run.user.to_string()),
            "decision_to_first_refused_ack_ms": first_refused_ack.map(|t| (t - decided) as f64 / 1e3),
            "accepted_sent_after_decision": after.len(),
            "accepted_sent_over_1s_after_decision": late,
        }));
    }
    json!({
        "bots": runs.len(),
        "decisions_from_lake": from_lake,
        "bot_events_per_sec": summary_ms(rates),
        "decision_to_first_refused_ack_ms": summary_ms(enforce_ack),
        "decision_to_first_refused_sent_ms": summary_ms(enforce_sent),
        "decision_to_last_accepted_sent_ms": summary_ms(last_accepted),
        "bots_never_refused": never_refused,
        "accepted_sent_after_decision": after_total,
        "accepted_sent_over_1s_after_decision": late_total,
        "per_bot": per_bot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sent_ms: i64, outcome: Outcome) -> BotEvent {
        BotEvent {
            sent_us: sent_ms * 1000,
            acked_us: sent_ms * 1000 + 3000,
            outcome,
        }
    }

    #[test]
    fn answers_read_as_outcomes() {
        assert_eq!(
            outcome_of(br#"{"success":true,"accepted":1,"rejected":0,"duplicates":0,"errors":[]}"#),
            Outcome::Accepted
        );
        assert_eq!(
            outcome_of(br#"{"success":true,"accepted":0,"rejected":1,"duplicates":0,"errors":[{"index":0,"reason":"blocked by rule x until 2026-12-07T05:00:00Z (user_id 5)"}]}"#),
            Outcome::Refused
        );
        assert_eq!(
            outcome_of(br#"{"success":true,"accepted":0,"rejected":1,"errors":[{"index":0,"reason":"too big"}]}"#),
            Outcome::Other
        );
    }

    #[test]
    fn enforcement_is_measured_from_the_decision() {
        // Decided at 100 ms; accepted until 130 ms; refused from 132 ms; one straggler
        // accepted at 1,200 ms (over 1 s after the decision).
        let mut events: Vec<BotEvent> = (0..=65).map(|i| ev(i * 2, Outcome::Accepted)).collect();
        events.extend((66..100).map(|i| ev(i * 2, Outcome::Refused)));
        events.push(ev(1200, Outcome::Accepted));
        let runs = vec![BotRun { user: 7, events }];
        let decisions = HashMap::from([("7".to_string(), 100_000)]);
        let v = analyse(&runs, &decisions, 50);
        assert_eq!(v["decision_to_first_refused_ack_ms"]["p50"], 35.0);
        assert_eq!(v["decision_to_first_refused_sent_ms"]["p50"], 32.0);
        assert_eq!(v["accepted_sent_over_1s_after_decision"], 1);
        assert_eq!(v["accepted_sent_after_decision"], 16);
        assert_eq!(v["decisions_from_lake"], 1);
        // Without the lake: the 51st accepted event's acknowledgement.
        let v = analyse(&runs, &HashMap::new(), 50);
        assert_eq!(v["decision_to_first_refused_sent_ms"]["p50"], 29.0);
    }
}
