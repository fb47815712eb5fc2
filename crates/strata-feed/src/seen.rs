//! The last-recommended cache: which posts each user was served recently, so the next feed
//! does not repeat them (the seed's Redis role).
//!
//! [`SeenCache`] is this process's memory, bounded: entries expire after the TTL and the least
//! recently served users are forgotten past `max_users`. [`Seen`] puts the online store in
//! front of it when the store keeps recent-items sets (Redis): every `strata serve` of a
//! deployment then reads and adds to the same per-user set, so a user routed to another
//! process sees no repeat. Adds go to the store in the background (the answer does not wait);
//! a read that fails or runs past its budget falls back to this process's memory, which
//! always records too (it also covers an add still on its way).

use std::collections::{HashMap, VecDeque};

use crate::catalog::IdSet;
use std::sync::Mutex;
use std::time::Duration;

use strata_online::backend::RecentAdd;
use strata_online::OnlineStore;

/// The online store's recent-items set holding the seen cache.
pub const SEEN_SET: &str = "feed_seen";

/// Posts remembered per user at most (the oldest are forgotten first).
const PER_USER: usize = 500;

#[derive(Debug, Default)]
struct Entry {
    /// (post, served at µs), oldest first.
    posts: VecDeque<(u64, i64)>,
    last: i64,
}

#[derive(Debug)]
pub struct SeenCache {
    ttl_us: i64,
    max_users: usize,
    users: Mutex<HashMap<u64, Entry>>,
}

impl SeenCache {
    pub fn new(ttl_secs: u64, max_users: usize) -> Self {
        SeenCache {
            ttl_us: i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1_000_000) * 1_000_000,
            max_users: max_users.max(1),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// The posts served to `user` within the TTL before `now`.
    pub fn seen(&self, user: u64, now: i64) -> Vec<u64> {
        let Ok(users) = self.users.lock() else {
            return Vec::new();
        };
        users.get(&user).map_or_else(Vec::new, |e| {
            e.posts
                .iter()
                .filter(|(_, at)| now - at < self.ttl_us)
                .map(|(p, _)| *p)
                .collect()
        })
    }

    /// Remembers that `posts` were served to `user` at `now`.
    pub fn record(&self, user: u64, posts: &[u64], now: i64) {
        let Ok(mut users) = self.users.lock() else {
            return;
        };
        if !users.contains_key(&user) && users.len() >= self.max_users {
            // Forget the least recently served tenth (amortised: not on every insert).
            let mut by_age: Vec<(i64, u64)> = users.iter().map(|(u, e)| (e.last, *u)).collect();
            by_age.sort_unstable();
            for (_, u) in by_age.into_iter().take((self.max_users / 10).max(1)) {
                users.remove(&u);
            }
        }
        let e = users.entry(user).or_default();
        while e
            .posts
            .front()
            .is_some_and(|(_, at)| now - at >= self.ttl_us)
        {
            e.posts.pop_front();
        }
        for &p in posts {
            e.posts.push_back((p, now));
        }
        while e.posts.len() > PER_USER {
            e.posts.pop_front();
        }
        e.last = now;
    }

    pub fn users(&self) -> usize {
        self.users.lock().map_or(0, |u| u.len())
    }
}

/// The seen cache of a feed: this process's memory, and the online store's shared set when
/// the store keeps one (Redis).
#[derive(Debug)]
pub struct Seen {
    local: SeenCache,
    shared: Option<OnlineStore>,
    ttl: Duration,
    budget: Duration,
}

impl Seen {
    /// `store`: the online store to share the cache through (`None`: memory only).
    pub fn new(
        ttl_secs: u64,
        max_users: usize,
        store: Option<OnlineStore>,
        budget: Duration,
    ) -> Seen {
        Seen {
            local: SeenCache::new(ttl_secs, max_users),
            // Only a store that keeps sets shares them (the embedded one does not).
            shared: store.filter(|s| s.kind() == "redis"),
            ttl: Duration::from_secs(ttl_secs),
            budget,
        }
    }

    /// Whether the cache is shared through the online store.
    pub fn shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The posts served to `user` within the TTL before `now` (µs), and why the shared cache
    /// was not used when it should have been (the answer's `degraded`).
    pub async fn seen(&self, user: u64, now: i64) -> (IdSet, Option<String>) {
        let mut out: IdSet = self.local.seen(user, now).into_iter().collect();
        let Some(store) = &self.shared else {
            return (out, None);
        };
        let since = now.saturating_sub(i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX));
        let key = user.to_string();
        let read = store.backend().recent(SEEN_SET, key.as_bytes(), since);
        let why = match tokio::time::timeout(self.budget, read).await {
            Ok(Ok(Some(items))) => {
                out.extend(items);
                None
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => Some(format!(
                "seen: the shared cache failed ({e}); this process's"
            )),
            Err(_) => Some(format!(
                "seen: the shared cache took longer than {} ms; this process's",
                self.budget.as_millis()
            )),
        };
        if why.is_some() {
            metrics::counter!("strata_feed_seen_fallbacks_total").increment(1);
        }
        (out, why)
    }

    /// Remembers that `posts` were served to `user` at `now` (µs): in memory at once, in the
    /// shared cache in the background.
    pub fn record(&self, user: u64, posts: &[u64], now: i64) {
        self.local.record(user, posts, now);
        let Some(store) = &self.shared else {
            return;
        };
        if posts.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = store.clone();
        let add = RecentAdd {
            key: user.to_string().into_bytes(),
            items: posts.to_vec(),
            at_us: now,
        };
        let ttl = self.ttl;
        runtime.spawn(async move {
            if let Err(e) = store
                .backend()
                .add_recent(SEEN_SET, vec![add], ttl, PER_USER)
                .await
            {
                metrics::counter!("strata_feed_seen_write_errors_total").increment(1);
                tracing::debug!(error = %e, "adding to the shared seen cache");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn served_posts_are_seen_until_the_ttl_passes() {
        let c = SeenCache::new(60, 10);
        c.record(1, &[10, 11], 100 * S);
        assert_eq!(c.seen(1, 120 * S), vec![10, 11]);
        assert!(c.seen(2, 120 * S).is_empty());
        c.record(1, &[12], 150 * S);
        // 10 and 11 expire 60 s after they were served; 12 is still fresh.
        assert_eq!(c.seen(1, 165 * S), vec![12]);
    }

    #[test]
    fn the_least_recently_served_users_are_forgotten() {
        let c = SeenCache::new(3600, 10);
        for u in 0..10 {
            c.record(u, &[u], u as i64 * S);
        }
        c.record(99, &[1], 100 * S);
        assert_eq!(c.users(), 10);
        assert!(c.seen(0, 101 * S).is_empty(), "user 0 was the oldest");
        assert_eq!(c.seen(9, 101 * S), vec![9]);
    }
}
