//! Erasure in the online store (`strata privacy forget`): every entity of every view whose
//! key is a user column is removed outright, in every version the store holds.

use std::collections::HashSet;

use strata_online::{entity_key, OnlineStore};

use crate::error::Result;
use crate::view::FeatureView;

/// Entries scanned per step when a view's key has several columns.
const SCAN_BATCH: usize = 5_000;

/// Removes the entities of `ids` from every view in `views`. `user_columns(view)` names the
/// view's columns that hold a person's id (the `[privacy]` columns of its source). Returns
/// the entries removed. Lists inside other entities' rows (e.g. a user among another user's
/// similar users) are derived data the next DAG run and sync recompute without them.
pub async fn forget_users(
    store: &OnlineStore,
    views: &[FeatureView],
    user_columns: impl Fn(&FeatureView) -> Vec<String>,
    ids: &[String],
) -> Result<u64> {
    let mut removed = 0;
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    for view in views.iter().filter(|v| v.online) {
        let columns = user_columns(view);
        let positions: Vec<usize> = view
            .entity
            .iter()
            .enumerate()
            .filter(|(_, c)| columns.contains(c))
            .map(|(i, _)| i)
            .collect();
        if positions.is_empty() {
            continue;
        }
        if view.entity.len() == 1 {
            let keys: Vec<Vec<u8>> = ids.iter().map(|id| entity_key(&[id])).collect();
            removed += store.forget(&view.name, &keys).await?;
            continue;
        }
        // Composite keys: find the entities whose user part is one of the ids.
        let mut cursor = None;
        loop {
            let (batch, next) = store
                .backend()
                .scan(&view.name, cursor.take(), SCAN_BATCH)
                .await?;
            let doomed: Vec<Vec<u8>> = batch
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| {
                    let parts: Vec<&[u8]> = k.split(|b| *b == 0x1f).collect();
                    positions.iter().any(|p| {
                        parts
                            .get(*p)
                            .and_then(|b| std::str::from_utf8(b).ok())
                            .is_some_and(|s| wanted.contains(s))
                    })
                })
                .collect();
            if !doomed.is_empty() {
                removed += store.forget(&view.name, &doomed).await?;
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    Ok(removed)
}
