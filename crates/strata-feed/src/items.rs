//! The ranker's item-side inputs, kept in memory: rows of batch feature views keyed without
//! the user (a post's features, an author's) change only when the view publishes a new
//! version, yet a feed asks for ~1,200 of them per request. Read straight from the store that
//! is 1,200 point reads and row decodes, more than half of a feed's time; from here it is
//! 1,200 hash lookups and one version check per view.
//!
//! Each view's rows are held for one published version and one column list: a new version
//! (a sync published) or another column list (a ranker version reading other inputs) empties
//! it, so a row is never served from a version the store no longer publishes for longer than
//! one request's read. Stream views are never cached (their rows change without a new version).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use strata_online::store::ColumnRow;
use strata_online::OnlineStore;

use crate::error::{Error, Result};

/// Rows a view keeps at most; past it the view's rows are dropped and refilled (a guard: the
/// keys are candidates' posts and authors, bounded by the catalogue).
const MAX_ROWS: usize = 2_000_000;

/// One view's rows for one version and column list.
#[derive(Debug, Default)]
struct Cached {
    version: u64,
    columns: Vec<String>,
    rows: HashMap<Vec<u8>, Option<Arc<ColumnRow>>>,
}

/// Rows of item-keyed batch views by published version (see the module docs).
#[derive(Debug, Default)]
pub struct ItemCache {
    views: RwLock<HashMap<String, Cached>>,
}

impl ItemCache {
    /// The rows of `keys` (only `columns`, in that order) in `view`'s published version:
    /// cached ones from memory, the rest from the store in one read (then kept).
    pub async fn rows(
        &self,
        store: &OnlineStore,
        view: &str,
        keys: &[Vec<u8>],
        columns: &[&str],
    ) -> Result<Vec<Option<Arc<ColumnRow>>>> {
        let version = store
            .published_version(view)
            .await
            .map_err(|e| Error::Internal(format!("reading {view}: {e}")))?
            .unwrap_or(0);
        let mut out: Vec<Option<Arc<ColumnRow>>> = vec![None; keys.len()];
        let mut missing: Vec<usize> = Vec::new();
        {
            let views = self.lock_read()?;
            match views
                .get(view)
                .filter(|c| c.version == version && same(&c.columns, columns))
            {
                Some(c) => {
                    for (i, key) in keys.iter().enumerate() {
                        match c.rows.get(key) {
                            Some(row) => out[i] = row.clone(),
                            None => missing.push(i),
                        }
                    }
                }
                None => missing.extend(0..keys.len()),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<Vec<u8>> = missing.iter().map(|&i| keys[i].clone()).collect();
        let got = store
            .lookup_columns(view, &wanted, columns)
            .await
            .map_err(|e| Error::Internal(format!("reading {view}: {e}")))?;
        let mut views = self
            .views
            .write()
            .map_err(|_| Error::Internal("the item cache is poisoned".into()))?;
        let c = views.entry(view.to_string()).or_default();
        if c.version != version || !same(&c.columns, columns) || c.rows.len() >= MAX_ROWS {
            *c = Cached {
                version,
                columns: columns.iter().map(|s| s.to_string()).collect(),
                rows: HashMap::new(),
            };
        }
        for ((i, key), row) in missing.into_iter().zip(wanted).zip(got) {
            let row = row.map(Arc::new);
            out[i] = row.clone();
            c.rows.insert(key, row);
        }
        Ok(out)
    }

    fn lock_read(&self) -> Result<std::sync::RwLockReadGuard<'_, HashMap<String, Cached>>> {
        self.views
            .read()
            .map_err(|_| Error::Internal("the item cache is poisoned".into()))
    }
}

fn same(have: &[String], want: &[&str]) -> bool {
    have.len() == want.len() && have.iter().zip(want).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test: a failed step fails the test")]

    use std::collections::BTreeMap;

    use strata_online::meta::Column;
    use strata_online::{entity_key, FeatureType, OnlineConfig, SyncRow, Value};

    use super::*;

    fn key(post: u64) -> Vec<u8> {
        entity_key(&[post.to_string()])
    }

    /// Publishes a full version of `post_features` with (post, ctr) rows.
    async fn publish(store: &OnlineStore, rows: &[(u64, f64)]) {
        let columns = [
            Column {
                name: "ctr_7d".into(),
                ty: FeatureType::Float64,
            },
            Column {
                name: "kind".into(),
                ty: FeatureType::String,
            },
        ];
        let sources = BTreeMap::from([("lake.ads_post_features".to_string(), 1)]);
        let mut w = store
            .begin_sync("post_features", &columns, sources, true, 100)
            .await
            .unwrap();
        w.write(
            rows.iter()
                .map(|&(p, ctr)| SyncRow {
                    key: key(p),
                    event_ts: 0,
                    values: Some(vec![Value::Float64(ctr), Value::String("photo".into())]),
                })
                .collect(),
        )
        .await
        .unwrap();
        w.publish().await.unwrap();
    }

    async fn ctrs(cache: &ItemCache, store: &OnlineStore, posts: &[u64]) -> Vec<Option<f64>> {
        let keys: Vec<Vec<u8>> = posts.iter().map(|&p| key(p)).collect();
        cache
            .rows(store, "post_features", &keys, &["ctr_7d"])
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                r.map(|r| match r.values[..] {
                    [Value::Float64(x)] => x,
                    ref other => panic!("unexpected {other:?}"),
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn rows_follow_the_published_version_and_the_columns_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = OnlineStore::open(&OnlineConfig::default(), dir.path())
            .await
            .unwrap();
        let cache = ItemCache::default();
        // Never synced: nothing, and nothing kept that would hide the first version.
        assert_eq!(ctrs(&cache, &store, &[1]).await, vec![None]);
        publish(&store, &[(1, 0.1), (2, 0.2)]).await;
        assert_eq!(
            ctrs(&cache, &store, &[1, 2, 3]).await,
            vec![Some(0.1), Some(0.2), None]
        );
        // Served from memory: the same answer, the missing row remembered as missing.
        assert_eq!(
            ctrs(&cache, &store, &[2, 3, 1]).await,
            vec![Some(0.2), None, Some(0.1)]
        );
        assert_eq!(cache.views.read().unwrap()["post_features"].rows.len(), 3);
        // A new version replaces every row: changed, added and removed ones.
        publish(&store, &[(2, 0.25), (3, 0.3)]).await;
        assert_eq!(
            ctrs(&cache, &store, &[1, 2, 3]).await,
            vec![None, Some(0.25), Some(0.3)]
        );
        // Another column list (a ranker version with other inputs) is read afresh.
        let keys = vec![key(3)];
        let both = cache
            .rows(&store, "post_features", &keys, &["kind", "ctr_7d"])
            .await
            .unwrap();
        assert_eq!(
            both[0].as_ref().unwrap().values,
            vec![Value::String("photo".into()), Value::Float64(0.3)]
        );
        assert_eq!(ctrs(&cache, &store, &[3]).await, vec![Some(0.3)]);
    }
}
