//! Risk blocks enforced at the collector: every collector process follows the bus topic
//! `risk.blocks` (`strata_core::risk`) and refuses events whose user id, anonymous id or client
//! IP is blocked. A refused event goes to the dead-letter table with the rule and the end of
//! the block as its reason; nothing else in the request is affected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use strata_bus::{Consumer, Log, StartAt};
use strata_core::risk::{BlockRecord, SubjectKind, RISK_BLOCKS_TOPIC};

/// Active blocks by subject.
#[derive(Debug, Default)]
pub struct Blocklist {
    blocks: RwLock<HashMap<(SubjectKind, String), BlockRecord>>,
    /// How many entries the map holds (checked without the lock: most requests see 0).
    len: AtomicUsize,
}

impl Blocklist {
    /// Applies a block or an unblock read from the topic.
    pub fn apply(&self, record: BlockRecord) {
        let Ok(mut map) = self.blocks.write() else {
            return;
        };
        let key = (record.kind, record.subject.clone());
        if record.until_us == 0 {
            map.remove(&key);
        } else {
            map.insert(key, record);
        }
        let now = strata_core::time::now_micros();
        map.retain(|_, b| b.until_us > now);
        self.len.store(map.len(), Ordering::Relaxed);
    }

    /// Why an event of these subjects is refused now (`None`: it is not). `device_id` is
    /// asked for only while a device is blocked (it means parsing the event's context).
    pub fn check(
        &self,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        ip: &str,
        device_id: impl FnOnce() -> Option<String>,
        now_us: i64,
    ) -> Option<String> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let map = self.blocks.read().ok()?;
        let device = if map.keys().any(|(k, _)| *k == SubjectKind::DeviceId) {
            device_id()
        } else {
            None
        };
        let subjects = [
            (SubjectKind::UserId, user_id),
            (SubjectKind::AnonymousId, anonymous_id),
            (SubjectKind::Ip, Some(ip)),
            (SubjectKind::DeviceId, device.as_deref()),
        ];
        for (kind, subject) in subjects {
            let Some(subject) = subject.filter(|s| !s.is_empty()) else {
                continue;
            };
            if let Some(b) = map.get(&(kind, subject.to_string())) {
                if b.until_us > now_us {
                    let until = chrono::DateTime::from_timestamp_micros(b.until_us)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default();
                    return Some(format!(
                        "blocked by rule {} until {until} ({} {subject})",
                        b.rule,
                        kind.as_str()
                    ));
                }
            }
        }
        None
    }

    /// The blocks in force now.
    pub fn active(&self, now_us: i64) -> Vec<BlockRecord> {
        let Ok(map) = self.blocks.read() else {
            return Vec::new();
        };
        let mut out: Vec<BlockRecord> = map
            .values()
            .filter(|b| b.until_us > now_us)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.kind, &a.subject).cmp(&(b.kind, &b.subject)));
        out
    }
}

/// Follows `risk.blocks` from its oldest record into `list`, for as long as the process runs.
/// A block decided anywhere is enforced here as soon as the bus hands it over.
pub fn follow(log: Arc<dyn Log>, list: Arc<Blocklist>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match follow_once(&log, &list).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "following risk blocks failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

async fn follow_once(log: &Arc<dyn Log>, list: &Blocklist) -> strata_bus::Result<()> {
    log.ensure_topic(RISK_BLOCKS_TOPIC, 1).await?;
    let mut consumer = Consumer::assign(
        log.clone(),
        None,
        RISK_BLOCKS_TOPIC,
        vec![0],
        StartAt::Earliest,
    )
    .await?;
    loop {
        let records = match consumer.poll(Duration::from_secs(1)).await {
            Ok(r) => r,
            Err(strata_bus::Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        for r in records {
            match BlockRecord::from_json(&r.value) {
                Some(b) => {
                    if b.until_us != 0 {
                        tracing::info!(kind = b.kind.as_str(), subject = %b.subject, rule = %b.rule, "risk block in force");
                    }
                    list.apply(b)
                }
                None => tracing::warn!(offset = r.offset, "unreadable risk block record skipped"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(kind: SubjectKind, subject: &str, until_us: i64) -> BlockRecord {
        BlockRecord {
            kind,
            subject: subject.into(),
            rule: "flood".into(),
            until_us,
            decided_at_us: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn blocks_hold_until_they_end_or_are_lifted() {
        let list = Blocklist::default();
        let now = strata_core::time::now_micros();
        assert_eq!(list.check(Some("u1"), None, "10.0.0.1", || None, now), None);
        list.apply(block(SubjectKind::UserId, "u1", now + 60_000_000));
        list.apply(block(SubjectKind::Ip, "10.0.0.9", now + 60_000_000));
        let why = list
            .check(Some("u1"), None, "10.0.0.1", || None, now)
            .unwrap();
        assert!(
            why.starts_with("blocked by rule flood until ") && why.ends_with("(user_id u1)"),
            "{why}"
        );
        assert!(list
            .check(Some("u2"), None, "10.0.0.9", || None, now)
            .is_some());
        assert_eq!(
            list.check(Some("u2"), Some("a"), "10.0.0.1", || None, now),
            None
        );
        // Past its end a block no longer counts.
        assert_eq!(
            list.check(Some("u1"), None, "1.1.1.1", || None, now + 61_000_000),
            None
        );
        // An unblock lifts it at once.
        list.apply(block(SubjectKind::UserId, "u1", 0));
        assert_eq!(list.check(Some("u1"), None, "1.1.1.1", || None, now), None);
        assert_eq!(list.active(now).len(), 1);
        // A device block reads the device id only while one is in force.
        list.apply(block(SubjectKind::DeviceId, "d-9", now + 60_000_000));
        assert!(list
            .check(None, Some("a"), "1.1.1.1", || Some("d-9".into()), now)
            .is_some());
        assert!(list
            .check(None, Some("a"), "1.1.1.1", || Some("d-1".into()), now)
            .is_none());
    }
}
