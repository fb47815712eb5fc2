//! The Elasticsearch position: a watermark on the source's `timestamp_field` (epoch
//! milliseconds, the newest value streamed) and the `_id` of the document that set it. The
//! next increment reads every document at or after `watermark − overlap`; documents it has
//! already put on the bus (same `_id`, same version) are passed over (`dedup.rs`).

use serde::{Deserialize, Serialize};
use strata_core::cdc::SourcePosition;

use crate::connector::Position;

/// The `file` of every Elasticsearch bus coordinate: `pos` is the document's timestamp in
/// epoch milliseconds (0 before 1970 or without one).
pub const POSITION_FILE: &str = "es";

/// Where the next increment starts. Ordered by timestamp, then `_id` (no watermark first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark {
    /// The newest timestamp streamed, epoch milliseconds (capped at the time it was read, so
    /// a document stamped in the future cannot push the watermark past documents still to
    /// come). None: the index had no timestamped document yet; increments read them all.
    pub ts_ms: Option<i64>,
    /// `_id` of the document that set the watermark (a tie-breaker, shown in status).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

impl Watermark {
    /// No watermark: the next increment reads every timestamped document.
    pub fn start() -> Watermark {
        Watermark {
            ts_ms: None,
            id: String::new(),
        }
    }

    pub fn at(ts_ms: i64, id: impl Into<String>) -> Watermark {
        Watermark {
            ts_ms: Some(ts_ms),
            id: id.into(),
        }
    }

    /// Where an increment with this `overlap` (ms) starts reading (None: from the start).
    pub fn read_from(&self, overlap_ms: i64) -> Option<i64> {
        self.ts_ms.map(|t| t.saturating_sub(overlap_ms))
    }
}

/// `2026-12-07T08:00:00.000Z` for epoch milliseconds (the number itself when out of range).
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

impl std::fmt::Display for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ts_ms {
            None => f.write_str("start (no timestamped document yet)"),
            Some(ms) if self.id.is_empty() => f.write_str(&format_ms(ms)),
            Some(ms) => write!(f, "{} (_id {})", format_ms(ms), self.id),
        }
    }
}

/// The bus coordinate of a document stamped `ts_ms` (negative or absent: 0).
pub fn bus_position(ts_ms: Option<i64>, row: u64, snapshot: bool) -> SourcePosition {
    SourcePosition {
        file: POSITION_FILE.to_string(),
        pos: ts_ms.unwrap_or(0).max(0) as u64,
        row,
        snapshot,
    }
}

impl Position for Watermark {
    /// Elasticsearch sources came after format 2: no older state exists.
    fn from_legacy(value: &serde_json::Value) -> Result<Self, String> {
        Err(format!(
            "{value}: an elasticsearch source has no format-1 state (written before it existed)"
        ))
    }

    /// Snapshot reads carry the watermark the export started at, `row` counting documents.
    fn snapshot_read(&self, row: u64) -> SourcePosition {
        bus_position(self.ts_ms, row, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_orders_saves_and_shows_itself() {
        let w = Watermark::at(1_796_083_200_000, "a1");
        let text = serde_json::to_string(&w).unwrap();
        assert_eq!(text, r#"{"ts_ms":1796083200000,"id":"a1"}"#);
        assert_eq!(serde_json::from_str::<Watermark>(&text).unwrap(), w);
        assert_eq!(
            serde_json::from_str::<Watermark>(r#"{"ts_ms":null}"#).unwrap(),
            Watermark::start()
        );
        assert!(Watermark::start() < Watermark::at(-5, ""));
        assert!(Watermark::at(5, "a") < Watermark::at(5, "b"));
        assert!(Watermark::at(5, "z") < Watermark::at(6, "a"));
        assert_eq!(w.to_string(), "2026-12-01T00:00:00.000Z (_id a1)");
        assert_eq!(w.read_from(60_000), Some(1_796_083_140_000));
        assert_eq!(Watermark::start().read_from(60_000), None);
        let p = w.snapshot_read(3);
        assert_eq!(
            (p.file.as_str(), p.pos, p.row, p.snapshot),
            ("es", 1_796_083_200_000, 3, true)
        );
        assert_eq!(bus_position(Some(-1), 0, false).pos, 0);
        assert!(Watermark::from_legacy(&serde_json::json!({"file": "x", "pos": 1})).is_err());
    }
}
