//! Bus positions stored in Iceberg snapshot summaries: the truth of what a table holds.
//!
//! Every snapshot the lake sink commits carries the property
//! `strata.bus.events.offsets` = `{"0":1234,"1":567}`: for each partition of bus topic `events`,
//! the next offset after the records this table holds — cumulative, i.e. the table's full
//! position after that commit. Data and position change in one atomic catalog swap, so after
//! a crash the sink resumes exactly where the table ends: nothing lost, nothing twice.

use std::collections::BTreeMap;

use iceberg::table::Table;
use strata_bus::Offsets;

use crate::error::{Error, Result};

/// Snapshot summary key holding the position in topic `events`.
pub const EVENTS_OFFSETS_KEY: &str = "strata.bus.events.offsets";

/// Summary key for the position in `topic`.
pub fn offsets_key(topic: &str) -> String {
    format!("strata.bus.{topic}.offsets")
}

/// `{"0":1234,"1":567}`
pub fn encode_offsets(offsets: &Offsets) -> String {
    let map: BTreeMap<String, u64> = offsets.iter().map(|(p, o)| (p.to_string(), *o)).collect();
    // A map of strings to integers always serializes.
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_string())
}

pub fn decode_offsets(text: &str) -> Result<Offsets> {
    let map: BTreeMap<String, u64> = serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("bad {EVENTS_OFFSETS_KEY} value {text:?}: {e}")))?;
    map.into_iter()
        .map(|(p, o)| {
            p.parse::<u32>()
                .map(|p| (p, o))
                .map_err(|e| Error::Internal(format!("bad partition {p:?} in offsets: {e}")))
        })
        .collect()
}

/// Summary key, in one table's snapshots, of what the sink knew about `other` table when it
/// committed: every record of `topic` that belongs in `other` below these offsets is in
/// `other`. It spares `other` a commit of its own when it gets no rows for a long time (the
/// dead-letter table usually), so a restart does not re-read the bus from where `other` last
/// committed.
pub fn claim_key(topic: &str, other: &str) -> String {
    format!("strata.bus.{topic}.offsets.{other}")
}

/// The table's position in `topic`: from the current snapshot's summary, walking parents when
/// a snapshot lacks the key (e.g. one committed by another writer). `None`: never written by
/// the sink.
pub fn table_position(table: &Table, topic: &str) -> Result<Option<Offsets>> {
    summary_offsets(table, &offsets_key(topic))
}

/// What `table`'s latest snapshots claim about table `other` (see [`claim_key`]).
pub fn claimed_position(table: &Table, topic: &str, other: &str) -> Result<Option<Offsets>> {
    summary_offsets(table, &claim_key(topic, other))
}

fn summary_offsets(table: &Table, key: &str) -> Result<Option<Offsets>> {
    let metadata = table.metadata();
    let mut next = metadata.current_snapshot();
    // Bound the walk by the number of snapshots so a cyclic parent chain cannot loop.
    let mut budget = metadata.snapshots().len();
    while let Some(snapshot) = next {
        if let Some(text) = snapshot.summary().additional_properties.get(key) {
            return decode_offsets(text).map(Some);
        }
        if budget == 0 {
            break;
        }
        budget -= 1;
        next = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    Ok(None)
}

/// Every `strata.*` summary property in force at the current snapshot: for each key, the
/// value of the newest snapshot that has it. Commits by other writers (compaction, DELETE,
/// MERGE) carry these forward, so a position never depends on an ancestor snapshot that
/// snapshot expiry may remove.
pub fn carried_properties(table: &Table) -> std::collections::HashMap<String, String> {
    let metadata = table.metadata();
    let mut out = std::collections::HashMap::new();
    let mut next = metadata.current_snapshot();
    let mut budget = metadata.snapshots().len();
    while let Some(snapshot) = next {
        for (k, v) in &snapshot.summary().additional_properties {
            if k.starts_with("strata.") && !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
        if budget == 0 {
            break;
        }
        budget -= 1;
        next = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    out
}

/// Whether `have` is at or past `want` in every partition of `want`.
pub fn covers(have: &Offsets, want: &Offsets) -> bool {
    want.iter()
        .all(|(p, o)| have.get(p).copied().unwrap_or(0) >= *o)
}

/// Per-partition maximum of two positions.
pub fn max_offsets(a: &Offsets, b: &Offsets) -> Offsets {
    let mut out = a.clone();
    for (p, o) in b {
        let e = out.entry(*p).or_insert(0);
        *e = (*e).max(*o);
    }
    out
}

/// Per-partition minimum over `partitions` (absent = 0).
pub fn min_offsets(a: &Offsets, b: &Offsets, partitions: u32) -> Offsets {
    (0..partitions)
        .map(|p| {
            let x = a.get(&p).copied().unwrap_or(0);
            let y = b.get(&p).copied().unwrap_or(0);
            (p, x.min(y))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let o: Offsets = [(0, 1234), (1, 567), (10, 0)].into_iter().collect();
        let text = encode_offsets(&o);
        assert_eq!(text, r#"{"0":1234,"1":567,"10":0}"#);
        assert_eq!(decode_offsets(&text).unwrap(), o);
        assert!(decode_offsets("{\"x\":1}").is_err());
        assert_eq!(offsets_key("events"), EVENTS_OFFSETS_KEY);
    }

    #[test]
    fn covers_and_min_max() {
        let a: Offsets = [(0, 5), (1, 7)].into_iter().collect();
        let b: Offsets = [(0, 6)].into_iter().collect();
        assert!(!covers(&a, &b));
        assert!(covers(&max_offsets(&a, &b), &b));
        assert_eq!(
            min_offsets(&a, &b, 3),
            [(0, 5), (1, 0), (2, 0)].into_iter().collect::<Offsets>()
        );
    }
}
