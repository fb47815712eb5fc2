//! The MariaDB/MySQL position: a binlog file and offset on one server, with the GTID position
//! at the same point when the server has GTIDs.

use serde::{Deserialize, Serialize};
use strata_core::cdc::SourcePosition;

use super::gtid::GtidState;
use crate::connector::Position;

/// A binlog coordinate: file and position on one server, and (MariaDB/MySQL, when the
/// server has GTIDs) the GTID position at the same point, which holds on every server of the
/// replication topology. State files written before GTIDs were tracked have no `gtid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPos {
    pub file: String,
    pub pos: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<GtidState>,
}

impl BinlogPos {
    /// `file:pos` without a GTID position.
    pub fn at(file: impl Into<String>, pos: u64) -> BinlogPos {
        BinlogPos {
            file: file.into(),
            pos,
            gtid: None,
        }
    }
}

impl std::fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        match &self.gtid {
            Some(g) if !g.is_empty() => write!(f, " (gtid {g})"),
            _ => Ok(()),
        }
    }
}

/// Along one server's binlog: file (the names carry a zero-padded sequence number), then
/// offset; the GTID position only breaks ties between equal coordinates.
impl Ord for BinlogPos {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let gtid = |p: &BinlogPos| p.gtid.as_ref().map(ToString::to_string);
        (&self.file, self.pos, gtid(self)).cmp(&(&other.file, other.pos, gtid(other)))
    }
}

impl PartialOrd for BinlogPos {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Position for BinlogPos {
    /// Format 1 saved the same object: `{"file", "pos", "gtid"?}`.
    fn from_legacy(value: &serde_json::Value) -> Result<Self, String> {
        BinlogPos::deserialize(value).map_err(|e| e.to_string())
    }

    fn snapshot_read(&self, row: u64) -> SourcePosition {
        SourcePosition {
            file: self.file.clone(),
            pos: self.pos,
            row,
            snapshot: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{self, SourceState};

    #[test]
    fn positions_without_a_gtid_still_load_and_gtids_round_trip() {
        // A state file written before GTIDs were tracked.
        let old = r#"{"phase":"stream","snapshot_start":{"file":"binlog.000001","pos":4},
            "tables":{"users":{"last_key":null,"rows":3,"done":true}},
            "resume":{"file":"binlog.000002","pos":1234}}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.json");
        std::fs::write(&path, old).unwrap();
        let s: SourceState<BinlogPos> = state::load(&path).unwrap().unwrap();
        assert_eq!(s.resume, BinlogPos::at("binlog.000002", 1234));
        assert_eq!(s.resume.to_string(), "binlog.000002:1234");
        let mut s = s;
        s.resume.gtid = Some(GtidState::Mariadb("0-1-42".parse().unwrap()));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""gtid":{"mariadb":"0-1-42"}"#), "{json}");
        let back: SourceState<BinlogPos> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.resume, s.resume);
        assert_eq!(back.resume.to_string(), "binlog.000002:1234 (gtid 0-1-42)");
        // The snapshot start had none and still writes none.
        assert!(!json.contains(r#""snapshot_start":{"file":"binlog.000001","pos":4,"gtid""#));
    }

    #[test]
    fn positions_order_by_file_then_offset() {
        let a = BinlogPos::at("binlog.000001", 900);
        let b = BinlogPos::at("binlog.000002", 4);
        assert!(a < b && BinlogPos::at("binlog.000001", 4) < a);
        let p = b.snapshot_read(7);
        assert_eq!(
            (p.file.as_str(), p.pos, p.row, p.snapshot),
            ("binlog.000002", 4, 7, true)
        );
    }
}
