//! Risk blocks as they travel on the bus: the risk consumer appends a [`BlockRecord`] to topic
//! `risk.blocks` when a rule blocks a subject (and `strata risk unblock` appends one that lifts
//! it); every collector process follows the topic and refuses a blocked subject's events. The
//! topic is the one shared state, so a block holds on every collector of a deployment.

use serde::{Deserialize, Serialize};

/// The bus topic of blocks and unblocks (one partition: the order of a block and its unblock
/// matters).
pub const RISK_BLOCKS_TOPIC: &str = "risk.blocks";

/// What a rule keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    UserId,
    AnonymousId,
    Ip,
    /// `context.device.id`.
    DeviceId,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 4] = [
        SubjectKind::UserId,
        SubjectKind::AnonymousId,
        SubjectKind::Ip,
        SubjectKind::DeviceId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::UserId => "user_id",
            SubjectKind::AnonymousId => "anonymous_id",
            SubjectKind::Ip => "ip",
            SubjectKind::DeviceId => "device_id",
        }
    }

    pub fn parse(s: &str) -> Option<SubjectKind> {
        SubjectKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A block (`until_us` in the future) or an unblock (`until_us` = 0) of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub kind: SubjectKind,
    pub subject: String,
    /// The rule that decided it (`manual` for `strata risk block` / `unblock`).
    pub rule: String,
    /// When the block ends, µs since the epoch; 0 lifts any block of the subject.
    pub until_us: i64,
    pub decided_at_us: i64,
    /// Why, for the dead-letter reason and the alert.
    pub reason: String,
}

impl BlockRecord {
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Option<BlockRecord> {
        serde_json::from_slice(bytes).ok()
    }

    /// The partition key (one subject's records stay in order).
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.subject)
    }
}
