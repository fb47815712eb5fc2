//! The PostgreSQL position: a WAL location (LSN), shown and saved as `X/Y` (the server's own
//! text, e.g. `0/16B3748`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use strata_core::cdc::SourcePosition;

use super::pgoutput::{lsn_key, lsn_text, parse_lsn};
use crate::connector::Position;

/// A log sequence number: where the slot's stream resumes (the end of the last transaction on
/// the bus) or where a snapshot started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&lsn_text(self.0))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&lsn_text(self.0))
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_lsn(&text)
            .map(Lsn)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an LSN (X/Y)")))
    }
}

impl Position for Lsn {
    /// Format 1 saved an LSN as a binlog position: `{"file": "0/16B3748", "pos": 23541576}`,
    /// the text and the number of the same LSN. The number is taken; the text must agree.
    fn from_legacy(value: &serde_json::Value) -> Result<Self, String> {
        let pos = value
            .get("pos")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("no LSN in {value}"))?;
        match value.get("file").and_then(serde_json::Value::as_str) {
            Some(file) if parse_lsn(file) != Some(pos) => Err(format!(
                "{value}: file {file:?} and pos {pos} are not the same LSN"
            )),
            _ => Ok(Lsn(pos)),
        }
    }

    /// Snapshot reads: the fixed-width LSN text (so text order is LSN order) and the LSN.
    fn snapshot_read(&self, row: u64) -> SourcePosition {
        SourcePosition {
            file: lsn_key(self.0),
            pos: self.0,
            row,
            snapshot: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsn_is_saved_as_its_text_and_read_from_format_1() {
        let lsn = Lsn(0x1_0192_4FB8);
        assert_eq!(serde_json::to_string(&lsn).unwrap(), r#""1/1924FB8""#);
        assert_eq!(serde_json::from_str::<Lsn>(r#""1/1924FB8""#).unwrap(), lsn);
        assert!(serde_json::from_str::<Lsn>(r#""1924FB8""#).is_err());
        let old = serde_json::json!({"file": "0/1924FB8", "pos": 26365880});
        assert_eq!(Lsn::from_legacy(&old).unwrap(), Lsn(26365880));
        let wrong = serde_json::json!({"file": "0/1924FB9", "pos": 26365880});
        assert!(Lsn::from_legacy(&wrong).is_err());
        let p = Lsn(26365880).snapshot_read(3);
        assert_eq!(
            (p.file.as_str(), p.pos, p.row),
            ("00000000/01924FB8", 26365880, 3)
        );
        assert!(Lsn(1) < Lsn(0x1_0000_0000));
    }
}
