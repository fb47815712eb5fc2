//! The first pass of the `unique` check: how many 64-bit key hashes occur more than once.
//!
//! A hash table over every row's key is what makes `GROUP BY key HAVING count(*) > 1` slow at
//! warehouse scale: over `dwd_user_action`'s 72M message ids, most of its time went to probing
//! a table far bigger than the caches (and it spilled). Sorting the hashes instead touches
//! memory in order: the rows' hashes are collected (8 bytes a row, reserved from the session's
//! memory pool), sorted in one chunk per core, and the sorted chunks are walked together.

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use datafusion::execution::memory_pool::MemoryConsumer;
use futures::StreamExt;
use strata_sql::SqlSession;

/// How many distinct values of `sql`'s only column (a `UInt64`, e.g. `key_hash(…)`) occur in
/// more than one row; `None` when the session's memory pool cannot hold one value per row (the
/// caller then groups in SQL, which can spill).
pub async fn repeated_hashes(session: &SqlSession, sql: &str) -> Result<Option<u64>, String> {
    let (_, mut stream) = session.query_stream(sql).await.map_err(|e| e.to_string())?;
    let pool = session.context().runtime_env().memory_pool.clone();
    let reservation = MemoryConsumer::new("unique check hashes").register(&pool);
    let mut hashes: Vec<u64> = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = batch
            .column(0)
            .as_primitive_opt::<UInt64Type>()
            .ok_or("the key hash is not UInt64")?;
        let values = column.values();
        // Account for the memory before taking it: grow as a Vec would (doubling), but only
        // once the pool has granted the new capacity.
        let needed = hashes.len() + values.len();
        if needed > hashes.capacity() {
            let capacity = needed.max(hashes.capacity() * 2);
            if reservation.try_resize(capacity * size_of::<u64>()).is_err() {
                return Ok(None);
            }
            hashes.reserve_exact(capacity - hashes.len());
        }
        hashes.extend_from_slice(values);
    }
    let repeated = tokio::task::spawn_blocking(move || count_repeated(&mut hashes))
        .await
        .map_err(|e| e.to_string())?;
    drop(reservation);
    Ok(Some(repeated))
}

/// Distinct values that occur more than once in `values` (which this reorders).
fn count_repeated(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = values.len().div_ceil(threads);
    std::thread::scope(|s| {
        for c in values.chunks_mut(chunk) {
            s.spawn(move || c.sort_unstable());
        }
    });
    let mut runs: Vec<&[u64]> = values.chunks(chunk).collect();
    let mut repeated = 0;
    // The value being counted and how often it has been seen.
    let mut current: Option<(u64, u64)> = None;
    loop {
        let mut smallest: Option<usize> = None;
        for (i, run) in runs.iter().enumerate() {
            if let Some(&v) = run.first() {
                if smallest.is_none_or(|s| v < runs[s][0]) {
                    smallest = Some(i);
                }
            }
        }
        let Some(i) = smallest else { break };
        let v = runs[i][0];
        runs[i] = &runs[i][1..];
        current = match current {
            Some((c, n)) if c == v => Some((c, n + 1)),
            Some((_, n)) => {
                repeated += u64::from(n > 1);
                Some((v, 1))
            }
            None => Some((v, 1)),
        };
    }
    if let Some((_, n)) = current {
        repeated += u64::from(n > 1);
    }
    repeated
}

#[cfg(test)]
mod tests {
    use super::count_repeated;
    use std::collections::HashMap;

    #[test]
    fn counts_each_repeated_value_once_whichever_chunk_its_copies_are_in() {
        assert_eq!(count_repeated(&mut []), 0);
        assert_eq!(count_repeated(&mut [7]), 0);
        assert_eq!(count_repeated(&mut [7, 7]), 1);
        assert_eq!(count_repeated(&mut [u64::MAX, 0, u64::MAX, 0, 1]), 2);
        // A pseudo-random mix with values repeated up to five times, far apart.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = Vec::new();
        for _ in 0..100_003 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x % 60_000);
        }
        let mut seen: HashMap<u64, u32> = HashMap::new();
        for v in &values {
            *seen.entry(*v).or_default() += 1;
        }
        let expected = seen.values().filter(|&&n| n > 1).count() as u64;
        assert!(expected > 1000 && expected < 60_000, "{expected}");
        assert_eq!(count_repeated(&mut values), expected);
    }
}
