//! The last-recommended cache: which posts each user was served recently, so the next feed
//! does not repeat them (the seed's Redis role). In memory, per process, bounded: entries
//! expire after the TTL and the least recently served users are forgotten past `max_users`.
//! Several `strata serve` processes behind a load balancer each keep their own: a user
//! routed to another process may see an item again (sticky routing by user avoids it).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

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
