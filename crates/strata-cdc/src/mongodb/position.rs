//! The MongoDB position: the change stream's resume token (an opaque BSON document, saved as
//! canonical Extended JSON text) beside the cluster time of the last event it follows and
//! how many events of that cluster time are on the bus. The token is what the server resumes
//! from; the cluster time orders positions (the oplog's own order: it only grows, across
//! re-snapshots and new streams too, which a counter kept beside the token would not).

use bson::{Bson, Document, Timestamp};
use serde::{Deserialize, Serialize};
use strata_core::cdc::SourcePosition;

use crate::connector::Position;

/// Where the change stream resumes. Ordered by cluster time, then events seen at it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResumePoint {
    /// Cluster time (`t << 32 | i`) of the last event streamed, or where the stream started.
    pub cluster_time: u64,
    /// Events at `cluster_time` already on the bus (one transaction's events share it).
    #[serde(default)]
    pub seen: u64,
    /// The resume token as canonical Extended JSON (`{"_data":"8263…"}`); None: the stream
    /// starts at `cluster_time` (`startAtOperationTime`, servers without post-batch tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token is an `invalidate` event's: resume with `startAfter` (MongoDB 4.2+), as
    /// `resumeAfter` refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start_after: bool,
}

/// The `t << 32 | i` of a BSON timestamp.
pub fn ts_u64(ts: Timestamp) -> u64 {
    (u64::from(ts.time) << 32) | u64::from(ts.increment)
}

/// The BSON timestamp of `t << 32 | i`.
pub fn ts_of(v: u64) -> Timestamp {
    Timestamp {
        time: (v >> 32) as u32,
        increment: (v & 0xffff_ffff) as u32,
    }
}

impl ResumePoint {
    /// A stream start at `cluster_time`, with the token the server gave for it (if any).
    pub fn start(cluster_time: Timestamp, token: Option<&Document>) -> ResumePoint {
        ResumePoint {
            cluster_time: ts_u64(cluster_time),
            seen: 0,
            token: token.map(token_text),
            start_after: false,
        }
    }

    /// The token as a BSON document (None: no token, or unreadable text).
    pub fn token_doc(&self) -> Option<Document> {
        match super::decode::parse_ext_json(self.token.as_deref()?).ok()? {
            Bson::Document(d) => Some(d),
            _ => None,
        }
    }

    /// The bus coordinate of the `row`-th event at cluster time `ts` (`file`: fixed-width hex,
    /// so text order is time order; `pos`: the same time as a number).
    pub fn bus_position(ts: u64, row: u64, snapshot: bool) -> SourcePosition {
        SourcePosition {
            file: format!("{:08x}/{:08x}", ts >> 32, ts & 0xffff_ffff),
            pos: ts,
            row,
            snapshot,
        }
    }
}

/// A resume token as canonical Extended JSON text (lossless).
pub fn token_text(token: &Document) -> String {
    super::decode::ext_json(&Bson::Document(token.clone()), true)
}

impl std::fmt::Display for ResumePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ts = ts_of(self.cluster_time);
        write!(f, "cluster time {}.{}", ts.time, ts.increment)?;
        if self.seen > 0 {
            write!(f, " (+{})", self.seen)?;
        }
        match &self.token {
            Some(t) => {
                let short: String = t.chars().take(48).collect();
                let more = if t.chars().count() > 48 { "…" } else { "" };
                let after = if self.start_after {
                    " (start after)"
                } else {
                    ""
                };
                write!(f, ", resume token {short}{more}{after}")
            }
            None => f.write_str(", no resume token"),
        }
    }
}

impl Position for ResumePoint {
    /// MongoDB sources came after format 2: no older state exists.
    fn from_legacy(value: &serde_json::Value) -> Result<Self, String> {
        Err(format!(
            "{value}: a mongodb source has no format-1 state (written before it existed)"
        ))
    }

    /// Snapshot reads carry the cluster time the snapshot started at.
    fn snapshot_read(&self, row: u64) -> SourcePosition {
        ResumePoint::bus_position(self.cluster_time, row, true)
    }
}
