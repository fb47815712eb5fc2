//! `key_hash(a, b, …)`: a 64-bit hash of a row's values, for finding duplicate keys cheaply.
//!
//! Equal values always hash equal (NULLs too, as `GROUP BY` groups them), so if no two rows of
//! a table share a `key_hash`, no two rows share the key. The converse does not hold: distinct
//! keys may collide, so a caller that finds a shared hash must confirm it on the values
//! themselves (the warehouse's `unique` check does). Sorting or grouping one `UInt64` instead of
//! a wide string or a multi-column key is what makes that first pass cheap.
//!
//! The seeds are fixed, so a value of a given Arrow type hashes the same in every batch,
//! partition, query and process of one build (a column has one type throughout a plan; the same
//! text as `Utf8` and as `Utf8View` hashes differently). The hash is not a stable format and
//! must not be stored.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt64Array};
use arrow::datatypes::DataType;
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility};
use datafusion::prelude::SessionContext;

/// Any fixed seeds do; these are the first digits of pi.
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "key_hash",
        Signature::variadic_any(Volatility::Immutable),
        DataType::UInt64,
        Arc::new(key_hash),
    )));
}

fn key_hash(args: &[ColumnarValue]) -> Result<ColumnarValue, DataFusionError> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays: Vec<ArrayRef> = ColumnarValue::values_to_arrays(args)?;
    let rows = arrays.first().map_or(0, |a| a.len());
    let state = ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]);
    let mut hashes = vec![0u64; rows];
    create_hashes(&arrays, &state, &mut hashes)?;
    let out = UInt64Array::from(hashes);
    if scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
    }
    Ok(ColumnarValue::Array(Arc::new(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt64Type;

    async fn hashes(sql: &str) -> Vec<u64> {
        let ctx = SessionContext::new();
        register(&ctx);
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let col = b.column(0).as_primitive::<UInt64Type>();
                assert_eq!(col.null_count(), 0);
                col.values().to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn equal_keys_hash_equal_and_different_keys_differ() {
        let h = hashes(
            "SELECT key_hash(a, b) FROM (VALUES
               (0, 'x', 1), (1, 'x', 1), (2, 'x', 2), (3, 'y', 1), (4, NULL, 1), (5, NULL, 1),
               (6, 'x', NULL)) t(n, a, b) ORDER BY n",
        )
        .await;
        assert_eq!(h[0], h[1], "equal keys");
        assert_eq!(h[4], h[5], "NULLs group together, as in GROUP BY");
        let distinct: std::collections::HashSet<u64> =
            [h[0], h[2], h[3], h[4], h[6]].into_iter().collect();
        assert_eq!(distinct.len(), 5, "{h:?}");
    }

    #[tokio::test]
    async fn a_value_hashes_the_same_in_every_batch_of_its_type() {
        for ty in ["Utf8", "Utf8View", "LargeUtf8"] {
            let h = hashes(&format!(
                "SELECT h FROM (
                   SELECT n, key_hash(arrow_cast(s, '{ty}')) AS h
                   FROM (VALUES (0, 'm-1'), (1, 'a message id longer than twelve bytes')) t(n, s)
                   UNION ALL SELECT 2, key_hash(arrow_cast('m-1', '{ty}'))
                   UNION ALL SELECT 3, key_hash(arrow_cast('a message id longer than twelve bytes', '{ty}'))
                 ) ORDER BY n"
            ))
            .await;
            assert_ne!(h[0], h[1], "{ty}");
            assert_eq!(h[0], h[2], "{ty}: {h:?}");
            assert_eq!(h[1], h[3], "{ty}: {h:?}");
        }
    }
}
