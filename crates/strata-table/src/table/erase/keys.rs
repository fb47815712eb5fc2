//! Which rows belong to the users being forgotten: exact equality of a key column with one of
//! their ids, and which files cannot hold such a row (column bounds in the manifests).

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use iceberg::spec::{DataFile, PrimitiveLiteral, PrimitiveType, Type};
use iceberg::table::Table;

use crate::error::{Error, Result};

/// The ids of the users to forget, as strings (string columns) and, where an id is an
/// integer written canonically (`42`, not `042` or `+42`), as an integer (integer columns).
#[derive(Clone, Debug, Default)]
pub struct UserKeys {
    strings: HashSet<String>,
    ints: HashSet<i64>,
}

impl UserKeys {
    /// Rejects an empty list and blank ids (they would match nothing useful, or everything
    /// a careless config maps to an empty string).
    pub fn new(ids: &[String]) -> Result<UserKeys> {
        if ids.is_empty() {
            return Err(Error::Invalid("no user ids given".to_string()));
        }
        let mut keys = UserKeys::default();
        for id in ids {
            if id.trim().is_empty() {
                return Err(Error::Invalid(format!("user id {id:?} is blank")));
            }
            if let Ok(n) = id.parse::<i64>() {
                if n.to_string() == *id {
                    keys.ints.insert(n);
                }
            }
            keys.strings.insert(id.clone());
        }
        Ok(keys)
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Sets `out[i]` for every row of `column` equal to one of the ids.
    fn mark(&self, column: &ArrayRef, out: &mut [bool]) -> Result<()> {
        match column.data_type() {
            DataType::Int32 | DataType::Int64 => {
                if self.ints.is_empty() {
                    return Ok(());
                }
                let cast = arrow::compute::cast(column, &DataType::Int64)
                    .map_err(|e| Error::arrow("reading a user key column", e))?;
                let values = cast
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| Error::Internal("int64 cast gave another type".to_string()))?;
                for (i, hit) in out.iter_mut().enumerate() {
                    if values.is_valid(i) && self.ints.contains(&values.value(i)) {
                        *hit = true;
                    }
                }
            }
            _ => {
                let cast = arrow::compute::cast(column, &DataType::Utf8)
                    .map_err(|e| Error::arrow("reading a user key column", e))?;
                let values = cast
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| Error::Internal("utf8 cast gave another type".to_string()))?;
                for (i, hit) in out.iter_mut().enumerate() {
                    if values.is_valid(i) && self.strings.contains(values.value(i)) {
                        *hit = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// Which rows of `batch` hold one of the ids in any of the columns `key_columns`
    /// (indexes into the batch).
    pub(super) fn matches(
        &self,
        batch: &RecordBatch,
        key_columns: &[usize],
    ) -> Result<BooleanArray> {
        let mut hits = vec![false; batch.num_rows()];
        for &i in key_columns {
            self.mark(batch.column(i), &mut hits)?;
        }
        Ok(BooleanArray::from(hits))
    }

    /// Whether a file with these column statistics may hold one of the ids in column
    /// `field_id` of kind `kind`. Missing statistics: yes. String upper bounds may be
    /// truncated prefixes, so an id that starts with the upper bound is never ruled out.
    fn may_hold(&self, file: &DataFile, field_id: i32, kind: KeyKind) -> bool {
        let values = file.value_counts().get(&field_id);
        let nulls = file.null_value_counts().get(&field_id);
        if let (Some(v), Some(n)) = (values, nulls) {
            if v == n {
                return false;
            }
        }
        let lower = file.lower_bounds().get(&field_id).map(|d| d.literal());
        let upper = file.upper_bounds().get(&field_id).map(|d| d.literal());
        let (Some(lower), Some(upper)) = (lower, upper) else {
            return true;
        };
        match kind {
            KeyKind::String => {
                let (PrimitiveLiteral::String(lo), PrimitiveLiteral::String(hi)) = (lower, upper)
                else {
                    return true;
                };
                self.strings.iter().any(|s| {
                    lo.as_str() <= s.as_str()
                        && (s.as_str() <= hi.as_str() || s.starts_with(hi.as_str()))
                })
            }
            KeyKind::Integer => {
                let as_i64 = |l: &PrimitiveLiteral| match l {
                    PrimitiveLiteral::Int(v) => Some(i64::from(*v)),
                    PrimitiveLiteral::Long(v) => Some(*v),
                    _ => None,
                };
                let (Some(lo), Some(hi)) = (as_i64(lower), as_i64(upper)) else {
                    return true;
                };
                self.ints.iter().any(|n| lo <= *n && *n <= hi)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyKind {
    String,
    Integer,
}

/// A key column of a table as its current schema has it.
#[derive(Clone, Debug)]
pub(super) struct KeyColumn {
    pub name: String,
    pub field_id: i32,
    pub kind: KeyKind,
}

/// The configured columns `table` has. A key column of another type than string or integer
/// is an error: it could not be matched, and skipping it would leave the user's rows.
pub(super) fn key_columns(table: &Table, configured: &[String]) -> Result<Vec<KeyColumn>> {
    let schema = table.metadata().current_schema();
    let mut out = Vec::new();
    for name in configured {
        let Some(field) = schema.field_by_name(name) else {
            continue;
        };
        let kind = match field.field_type.as_ref() {
            Type::Primitive(PrimitiveType::String) => KeyKind::String,
            Type::Primitive(PrimitiveType::Int | PrimitiveType::Long) => KeyKind::Integer,
            other => {
                return Err(Error::Invalid(format!(
                    "column {name} of {} is {other}; user key columns must be strings or integers (set [privacy.tables] for this table)",
                    table.identifier()
                )))
            }
        };
        out.push(KeyColumn {
            name: name.clone(),
            field_id: field.id,
            kind,
        });
    }
    Ok(out)
}

/// Whether `file` may hold one of the ids in any key column.
pub(super) fn file_may_hold(keys: &UserKeys, file: &DataFile, columns: &[KeyColumn]) -> bool {
    columns
        .iter()
        .any(|c| keys.may_hold(file, c.field_id, c.kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ids_match_strings_exactly_and_integers_canonically() {
        let keys =
            UserKeys::new(&["42".to_string(), "u-7".to_string(), "007".to_string()]).unwrap();
        let strings: ArrayRef = Arc::new(StringArray::from(vec![
            Some("42"),
            Some("u-7"),
            Some("u-77"),
            None,
            Some("007"),
            Some("7"),
        ]));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(42),
            Some(7),
            Some(420),
            None,
            Some(0),
            Some(7),
        ]));
        let batch = RecordBatch::try_from_iter([("s", strings), ("i", ints)]).unwrap();
        let by_string = keys.matches(&batch, &[0]).unwrap();
        assert_eq!(
            by_string.iter().map(|b| b.unwrap()).collect::<Vec<_>>(),
            [true, true, false, false, true, false]
        );
        // "007" is not the integer 7: only the canonical "42" matches integers.
        let by_int = keys.matches(&batch, &[1]).unwrap();
        assert_eq!(
            by_int.iter().map(|b| b.unwrap()).collect::<Vec<_>>(),
            [true, false, false, false, false, false]
        );
        assert!(UserKeys::new(&[]).is_err());
        assert!(UserKeys::new(&[" ".to_string()]).is_err());
    }

    fn file(
        lower: iceberg::spec::Datum,
        upper: iceberg::spec::Datum,
        values: u64,
        nulls: u64,
    ) -> DataFile {
        use std::collections::HashMap;
        iceberg::spec::DataFileBuilder::default()
            .content(iceberg::spec::DataContentType::Data)
            .file_format(iceberg::spec::DataFileFormat::Parquet)
            .file_path("f.parquet".to_string())
            .file_size_in_bytes(1)
            .record_count(values)
            .partition_spec_id(0)
            .partition(iceberg::spec::Struct::empty())
            .value_counts(HashMap::from([(1, values)]))
            .null_value_counts(HashMap::from([(1, nulls)]))
            .lower_bounds(HashMap::from([(1, lower)]))
            .upper_bounds(HashMap::from([(1, upper)]))
            .build()
            .unwrap()
    }

    #[test]
    fn bounds_rule_files_out_only_when_certain() {
        use iceberg::spec::Datum;
        let keys = UserKeys::new(&["u-alice".to_string(), "42".to_string()]).unwrap();
        let s = KeyKind::String;
        // In range, below, above.
        assert!(keys.may_hold(
            &file(Datum::string("u-a"), Datum::string("u-b"), 5, 0),
            1,
            s
        ));
        assert!(!keys.may_hold(&file(Datum::string("v"), Datum::string("w"), 5, 0), 1, s));
        assert!(!keys.may_hold(&file(Datum::string("a"), Datum::string("b"), 5, 0), 1, s));
        // An upper bound that may be a truncated prefix of the real maximum.
        assert!(keys.may_hold(&file(Datum::string("a"), Datum::string("u-al"), 5, 0), 1, s));
        // Only nulls.
        assert!(!keys.may_hold(
            &file(Datum::string("u-a"), Datum::string("u-b"), 5, 5),
            1,
            s
        ));
        // No statistics for the column: must read.
        assert!(keys.may_hold(&file(Datum::string("a"), Datum::string("b"), 5, 0), 2, s));
        let i = KeyKind::Integer;
        assert!(keys.may_hold(&file(Datum::long(40), Datum::long(50), 5, 0), 1, i));
        assert!(!keys.may_hold(&file(Datum::long(43), Datum::long(50), 5, 0), 1, i));
        assert!(keys.may_hold(&file(Datum::int(1), Datum::int(42), 5, 0), 1, i));
    }
}
