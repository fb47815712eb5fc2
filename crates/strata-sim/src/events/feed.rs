//! What the organic feed shows: the app's own (imperfect) recommender.
//!
//! Each impression comes from one of three sources:
//! - **following**: one of the 5 most recent posts of an account the user follows;
//! - **popular**: a post drawn Zipf(1) over the world's global popularity order;
//! - **interest**: a post on one of the user's favourite tags (drawn by interest), Zipf(1)
//!   over that tag's posts in the tag's own trending order (which leans to the global
//!   popularity order without copying it; see `World::posts_tagged`).
//!
//! The `following` feed uses the first, `explore` the second, and `home` mixes all three
//! (interest 50%, popular 30%, following 20%). A source with nothing to show falls back to
//! interest, then popular. So the lake's impressions and clicks carry the tastes a model can
//! learn, while global popularity stays a strong baseline.

use crate::catalog::{FEEDS, FEED_WEIGHTS};
use crate::rng::Rng;
use crate::world::World;

/// Share of each source in the `home` feed: interest, popular, following.
const HOME_MIX: [u32; 3] = [50, 30, 20];
/// How many of an author's latest posts the following source picks from.
const RECENT_POSTS: usize = 5;
/// Attempts per source before it gives up.
const TRIES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Interest,
    Popular,
    Following,
}

/// The number of posts created by `now` (posts are in creation order), searched forward from
/// `hint`, a count for an earlier time (galloping: cheap when few posts came since).
pub(super) fn created_by(w: &World, now: u32, hint: u32) -> u32 {
    let posts = &w.posts;
    let n = posts.len();
    let lo = hint as usize;
    if lo > n || (lo > 0 && posts[lo - 1].at > now) {
        return posts.partition_point(|p| p.at <= now) as u32;
    }
    let mut step = 1;
    while lo + step <= n && posts[lo + step - 1].at <= now {
        step *= 2;
    }
    // posts[..lo + step / 2] are all created; the first later one is before lo + step.
    let a = lo + step / 2;
    let b = (lo + step).min(n);
    (a + posts[a..b].partition_point(|p| p.at <= now)) as u32
}

/// The post (index) user index `user` sees next at compact time `now`, and the feed it is in;
/// `None` when no post exists yet. `created` is [`created_by`] for `now`.
pub(super) fn pick(
    w: &World,
    user: u32,
    now: u32,
    created: u32,
    rng: &mut Rng,
) -> Option<(u32, &'static str)> {
    let f = rng.weighted(&FEED_WEIGHTS) % FEEDS.len();
    let source = match f {
        1 => Source::Following,
        2 => Source::Popular,
        _ => match rng.weighted(&HOME_MIX) {
            0 => Source::Interest,
            1 => Source::Popular,
            _ => Source::Following,
        },
    };
    // Posts are in creation order: index < `created` means created by `now`.
    let post = match source {
        Source::Following => following(w, user, now, created, rng)
            .or_else(|| interest(w, user, created, rng))
            .or_else(|| popular(w, created, rng)),
        Source::Interest => interest(w, user, created, rng).or_else(|| popular(w, created, rng)),
        Source::Popular => popular(w, created, rng),
    };
    post.map(|p| (p, FEEDS[f]))
}

/// A recent post of a followed account.
fn following(w: &World, user: u32, now: u32, created: u32, rng: &mut Rng) -> Option<u32> {
    let edges = w.edges_of(user);
    if edges.is_empty() {
        return None;
    }
    for _ in 0..TRIES {
        let e = &edges[rng.below(edges.len() as u64) as usize];
        if !e.live_at(now) {
            continue;
        }
        let posts = w.posts_of(e.followee);
        let n = posts.partition_point(|&p| p < created);
        if n == 0 {
            continue;
        }
        let back = rng.below(n.min(RECENT_POSTS) as u64) as usize;
        return posts.get(n - 1 - back).copied();
    }
    None
}

/// A post on one of the user's favourite tags.
fn interest(w: &World, user: u32, created: u32, rng: &mut Rng) -> Option<u32> {
    let tag = w.prefs.draw_favourite(user, rng)?;
    let posts = w.posts_tagged(tag);
    if posts.is_empty() {
        return None;
    }
    for _ in 0..TRIES {
        let k = w.post_zipf.sample_first(posts.len(), rng);
        let p = posts[k.min(posts.len() - 1)];
        if p < created {
            return Some(p);
        }
    }
    None
}

/// A globally popular post (the simulator's original feed).
fn popular(w: &World, created: u32, rng: &mut Rng) -> Option<u32> {
    for _ in 0..6 {
        let rank = w.post_zipf.sample(rng);
        let &p = w.popularity.get(rank)?;
        if p < created {
            return Some(p);
        }
    }
    None
}

/// Stream tag of [`World::organic_list`]'s draws.
const TAG_ORGANIC: u64 = 0x00E6_A41C;

impl World {
    /// The `k` posts `user_id` is most likely to click through the app's own organic feed
    /// between `from_micros` and `to_micros`, best first: a Monte-Carlo estimate over `draws`
    /// feed impressions at uniformly spread times, each weighted by its click chance (at a
    /// position cycling through 1–20, as a session's would).
    ///
    /// This is the exposure-aware oracle: held-out clicks are what the organic feed showed
    /// times what the user liked, so no recommender judged on next-day clicks can beat this
    /// list by more than the draws' noise. It reads the hidden preferences and the feed's
    /// own mix, which no model can see; benchmarks use it to say how much of a target is
    /// reachable at all. Deterministic for (world, user, window, `draws`, `seed`).
    pub fn organic_list(
        &self,
        user_id: u64,
        k: usize,
        from_micros: i64,
        to_micros: i64,
        draws: usize,
        seed: u64,
    ) -> Vec<u64> {
        let (Some(user), Some(from), Some(to)) = (
            user_id
                .checked_sub(1)
                .and_then(|u| u32::try_from(u).ok())
                .filter(|&u| (u as usize) < self.users.len()),
            self.compact_time(from_micros),
            self.compact_time(to_micros),
        ) else {
            return Vec::new();
        };
        if to <= from || draws == 0 {
            return Vec::new();
        }
        let mut rng = Rng::derive(self.config.seed, &[TAG_ORGANIC, seed, user_id]);
        let mut expected: std::collections::HashMap<u32, f64> = std::collections::HashMap::new();
        let span = u64::from(to - from);
        for d in 0..draws {
            let now = from + rng.below(span) as u32;
            let created = created_by(self, now, 0);
            let Some((p, _)) = pick(self, user, now, created, &mut rng) else {
                continue;
            };
            let position = (d % 20) as u32 + 1;
            if let Some(a) = self.appeal(user, p, now) {
                *expected.entry(p).or_default() += a.p_click(position);
            }
        }
        let mut ranked: Vec<(u32, f64)> = expected.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(k)
            .map(|(p, _)| u64::from(p) + 1)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::world::{World, WorldConfig};

    #[test]
    fn organic_list_is_deterministic_and_personal() {
        let w = World::generate(&WorldConfig::ending_today(11, 400, 2));
        let (from, to) = (w.end_micros() - 86_400_000_000, w.end_micros());
        let a = w.organic_list(5, 50, from, to, 3000, 1);
        assert_eq!(a.len(), 50);
        assert_eq!(a, w.organic_list(5, 50, from, to, 3000, 1));
        // Two users with different tastes and follows see different organic feeds.
        let b = w.organic_list(6, 50, from, to, 3000, 1);
        assert_ne!(a, b);
        // Nothing outside the world: an unknown user or an empty window gives no list.
        assert!(w.organic_list(0, 50, from, to, 3000, 1).is_empty());
        assert!(w.organic_list(10_000, 50, from, to, 3000, 1).is_empty());
        assert!(w.organic_list(5, 50, to, from, 3000, 1).is_empty());
    }
}
