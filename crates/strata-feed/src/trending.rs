//! Real-time trending: the stream view `post_trending` (kept current from the bus by the
//! `realtime` consumer, crate `strata-stream`) scanned every few seconds into a ranked list the
//! trending source serves. The catalogue's list (the lake's daily engagement) stays the
//! fallback while the view is missing or empty.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use strata_online::{OnlineStore, Value};

use crate::config::CatalogConfig;
use crate::feed::FeedService;

/// Posts kept in the live list.
const KEEP: usize = 2000;
/// Entries read per scan call.
const PAGE: usize = 10_000;

/// The live trending list and when it was computed.
#[derive(Debug, Clone)]
pub struct LiveTrending {
    /// Post ids with their weighted engagement, best first (only posts with some).
    pub posts: Vec<(u64, f64)>,
    pub computed_at: Instant,
}

/// Scans the trending view: every post with a positive weighted score, best first, at most
/// [`KEEP`]. `None` when the view has no metadata (not declared, or the consumer never ran).
pub async fn scan(
    store: &OnlineStore,
    c: &CatalogConfig,
) -> strata_online::Result<Option<Vec<(u64, f64)>>> {
    if store.meta(&c.trending_view).await?.is_none() {
        return Ok(None);
    }
    let columns: Vec<&str> = c.trending_weights.keys().map(String::as_str).collect();
    let weights: Vec<f64> = c.trending_weights.values().copied().collect();
    let mut scored = std::collections::HashMap::new();
    let mut cursor = None;
    loop {
        let (rows, next) = store
            .scan_columns(&c.trending_view, &columns, cursor, PAGE)
            .await?;
        for (key, row) in rows {
            let Some(post) = std::str::from_utf8(&key)
                .ok()
                .and_then(|k| k.parse::<u64>().ok())
            else {
                continue;
            };
            let score: f64 = row
                .values
                .iter()
                .zip(&weights)
                .map(|(v, w)| match v {
                    Value::Int64(x) => *x as f64 * w,
                    Value::Float64(x) if x.is_finite() => x * w,
                    _ => 0.0,
                })
                .sum();
            if score > 0.0 {
                scored.insert(post, score);
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut posts: Vec<(u64, f64)> = scored.into_iter().collect();
    crate::catalog::best_first(&mut posts);
    posts.truncate(KEEP);
    Ok(Some(posts))
}

/// Rescans the trending view every `trending_refresh_secs` while the service lives.
pub fn spawn_trending_refresh(service: &Arc<FeedService>) -> Option<tokio::task::JoinHandle<()>> {
    let c = service.config().catalog.clone();
    if c.trending_view.is_empty() || c.trending_weights.is_empty() {
        return None;
    }
    let weak: Weak<FeedService> = Arc::downgrade(service);
    let every = Duration::from_secs(c.trending_refresh_secs.max(1));
    Some(tokio::spawn(async move {
        loop {
            {
                let Some(service) = weak.upgrade() else {
                    return;
                };
                match scan(service.store(), &c).await {
                    Ok(Some(posts)) => service.set_live_trending(LiveTrending {
                        posts,
                        computed_at: Instant::now(),
                    }),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(view = %c.trending_view, error = %e, "feed: scanning the trending view failed")
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_online::meta::Column;
    use strata_online::{FeatureType, OnlineConfig, StreamRow};

    #[tokio::test]
    async fn the_live_list_ranks_posts_by_weighted_engagement() {
        let dir = tempfile::tempdir().unwrap();
        let store = OnlineStore::open(&OnlineConfig::default(), dir.path())
            .await
            .unwrap();
        let c = CatalogConfig::default();
        assert_eq!(scan(&store, &c).await.unwrap(), None, "no view yet");
        let columns = [
            Column {
                name: "clicks_1h".into(),
                ty: FeatureType::Int64,
            },
            Column {
                name: "likes_1h".into(),
                ty: FeatureType::Int64,
            },
            Column {
                name: "users_1h".into(),
                ty: FeatureType::Int64,
            },
        ];
        let table = store
            .stream_table("post_trending", &columns, true)
            .await
            .unwrap();
        let row = |post: u64, clicks: i64, likes: i64| StreamRow {
            key: strata_online::entity_key(&[post.to_string()]),
            as_of_us: 0,
            values: vec![Value::Int64(clicks), Value::Int64(likes), Value::Int64(9)],
        };
        table
            .put_rows(&[row(1, 5, 0), row(2, 1, 3), row(3, 0, 0), row(4, 9, 1)])
            .await
            .unwrap();
        let posts = scan(&store, &c).await.unwrap().unwrap();
        // 4: 9 + 2·1 = 11, 2: 1 + 2·3 = 7, 1: 5; 3 has no engagement left in its window.
        assert_eq!(posts, vec![(4, 11.0), (2, 7.0), (1, 5.0)]);
    }
}
