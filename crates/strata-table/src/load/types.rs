//! Which file column types may go into which table column types: the same type (as the lake
//! stores it), or a cast that loses nothing (a wider integer, a wider float, a wider decimal,
//! a date into a timestamp). Anything else is refused before a row is written.

use arrow::datatypes::DataType;

use crate::table::create::lake_type;

/// Whether a file column of type `from` may be stored in a table column of type `to`.
pub fn fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let from_lake = lake_type(from);
    if &from_lake == to || from == to || matches!(from, Null) {
        return true;
    }
    match (&from_lake, to) {
        (Int32, Int64) => true,
        (Int32, Float64) => true,
        (Float32, Float64) => true,
        (Int32, Decimal128(p, s)) => p.saturating_sub(*s as u8) >= 10,
        (Int64, Decimal128(p, s)) => p.saturating_sub(*s as u8) >= 19,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        (Date32, Timestamp(_, _)) => true,
        (Timestamp(_, a), Timestamp(_, b)) => a.is_some() == b.is_some(),
        (List(a), List(b)) => fits(a.data_type(), b.data_type()),
        (Struct(a), Struct(b)) => a.iter().all(|f| {
            b.iter()
                .find(|g| g.name() == f.name())
                .is_some_and(|g| fits(f.data_type(), g.data_type()))
        }),
        _ => false,
    }
}

/// One type for a column two files give different types: the one the other fits into, or
/// `None` when neither does.
pub fn unify(a: &DataType, b: &DataType) -> Option<DataType> {
    let (a, b) = (lake_type(a), lake_type(b));
    if fits(&a, &b) {
        Some(b)
    } else if fits(&b, &a) {
        Some(a)
    } else if matches!(
        (&a, &b),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64)
    ) {
        // Text formats: a column with `1` in one file and `1.5` in another.
        Some(DataType::Float64)
    } else {
        None
    }
}

/// SQL-ish name of a type for messages.
pub fn show(t: &DataType) -> String {
    use DataType::*;
    match t {
        Int32 => "int".to_string(),
        Int64 => "bigint".to_string(),
        Float32 => "float".to_string(),
        Float64 => "double".to_string(),
        Utf8 | LargeUtf8 | Utf8View => "string".to_string(),
        Boolean => "boolean".to_string(),
        Date32 => "date".to_string(),
        Timestamp(_, None) => "timestamp".to_string(),
        Timestamp(_, Some(_)) => "timestamptz".to_string(),
        Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn safe_casts_only() {
        use DataType::*;
        let ts = Timestamp(TimeUnit::Microsecond, None);
        let tstz = Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        for (from, to) in [
            (Int32, Int64),
            (Int16, Int64),
            (UInt32, Int64),
            (Float32, Float64),
            (Int32, Float64),
            (Utf8View, Utf8),
            (LargeUtf8, Utf8),
            (Date32, ts.clone()),
            (Timestamp(TimeUnit::Nanosecond, None), ts.clone()),
            (Decimal128(10, 2), Decimal128(12, 2)),
            (Decimal128(10, 2), Decimal128(12, 4)),
            (Int64, Decimal128(20, 0)),
            (Null, Int64),
        ] {
            assert!(fits(&from, &to), "{from} → {to}");
        }
        for (from, to) in [
            (Int64, Int32),
            (Float64, Int64),
            (Utf8, Int64),
            (Int64, Utf8),
            (Float64, Float32),
            (ts.clone(), tstz.clone()),
            (ts.clone(), Date32),
            (Decimal128(12, 4), Decimal128(12, 2)),
            (Decimal128(12, 2), Decimal128(12, 4)),
            (Boolean, Int32),
        ] {
            assert!(!fits(&from, &to), "{from} → {to}");
        }
    }

    #[test]
    fn unify_widens() {
        use DataType::*;
        assert_eq!(unify(&Int32, &Int64), Some(Int64));
        assert_eq!(unify(&Int64, &Int32), Some(Int64));
        assert_eq!(unify(&Int64, &Float64), Some(Float64));
        assert_eq!(unify(&Null, &Utf8), Some(Utf8));
        assert_eq!(unify(&Utf8, &Int64), None);
    }
}
