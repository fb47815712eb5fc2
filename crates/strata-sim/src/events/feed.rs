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
