//! Judging a ranked list against the hidden preferences: expected engagement
//! ([`World::score_list`]), the best possible list ([`World::ideal_list`]), the normalised
//! figure ([`World::normalised_clicks`]) and simulated reactions ([`World::react`]).
//!
//! Ids are the lake's: `user_id` and `post_id` are index + 1. Times are microseconds since
//! 1970, like [`crate::Event::ts`]: a post exists from its creation on, and "followed" is
//! read at that moment.

use super::{draw_reaction, Appeal};
use crate::rng::Rng;
use crate::world::World;

/// Stream tag of [`World::react`].
const TAG_REACT: u64 = 0x2EAC7;

/// The expected engagement of showing a ranked list to one user.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ListScore {
    /// Length of the list.
    pub shown: usize,
    /// Entries that are posts existing at that time (others count as zero).
    pub eligible: usize,
    /// Expected clicks: the sum of each entry's click chance at its 1-based position.
    pub expected_clicks: f64,
    /// Expected likes (click chance × like chance given a click).
    pub expected_likes: f64,
    /// Expected dwell, milliseconds summed over the list.
    pub expected_dwell_ms: f64,
    /// `expected_clicks / shown` (0 for an empty list).
    pub expected_ctr: f64,
}

/// Reference figures from [`World::baseline_scores`]: mean normalised clicks per user.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baselines {
    /// Users scored.
    pub users: usize,
    /// The ideal list (1, or 0 when no post exists yet).
    pub ideal: f64,
    /// The globally most popular posts.
    pub popular: f64,
    /// Random existing posts.
    pub random: f64,
}

/// A simulated user's reaction to one entry of a list (see [`World::react`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaction {
    /// The post shown.
    pub post_id: u64,
    /// Its 1-based position.
    pub position: u32,
    /// Opened it.
    pub clicked: bool,
    /// Liked it (only after a click).
    pub liked: bool,
    /// Commented (only after a click).
    pub commented: bool,
    /// Shared it (only after a click).
    pub shared: bool,
    /// Time spent on it (0 without a click).
    pub dwell_ms: u64,
}

impl World {
    /// Chance that `user_id` clicks `post_id` shown at 1-based `position` at time `at_micros`
    /// (0 when the user or post does not exist, or the post was created later).
    pub fn click_probability(
        &self,
        user_id: u64,
        post_id: u64,
        position: u32,
        at_micros: i64,
    ) -> f64 {
        self.appeal_by_id(user_id, post_id, at_micros)
            .map_or(0.0, |a| a.p_click(position))
    }

    /// Expected engagement of showing `post_ids` (best first) to `user_id` at `at_micros`:
    /// entry `i` is seen at position `i + 1`, so later entries count less. Posts that do not
    /// exist or were not yet created count as zero.
    pub fn score_list(&self, user_id: u64, post_ids: &[u64], at_micros: i64) -> ListScore {
        let mut s = ListScore {
            shown: post_ids.len(),
            ..ListScore::default()
        };
        for (i, &post_id) in post_ids.iter().enumerate() {
            let Some(a) = self.appeal_by_id(user_id, post_id, at_micros) else {
                continue;
            };
            let p = a.p_click(position(i));
            s.eligible += 1;
            s.expected_clicks += p;
            s.expected_likes += p * a.like();
            s.expected_dwell_ms += p * a.expected_dwell_ms();
        }
        if s.shown > 0 {
            s.expected_ctr = s.expected_clicks / s.shown as f64;
        }
        s
    }

    /// The `k` posts existing at `at_micros` that `user_id` is most likely to click, best
    /// first (ties by lower id): the list to normalise against. Scans every post, so it
    /// costs about a tenth of a second per million posts.
    ///
    /// Sorting by click chance maximises the expected clicks whenever the chances are at
    /// most one half (the position discount then hurts a weaker post less); above that a
    /// reordering could gain a hair, so a list can score a little above its ideal.
    pub fn ideal_list(&self, user_id: u64, k: usize, at_micros: i64) -> Vec<u64> {
        let Some(user) = index_of(user_id) else {
            return Vec::new();
        };
        let Some(at) = self.compact_time(at_micros) else {
            return Vec::new();
        };
        let end = self.posts.partition_point(|p| p.at <= at);
        let mut scored: Vec<(f64, u32)> = (0..end as u32)
            .filter_map(|p| self.appeal(user, p, at).map(|a| (a.p_click(1), p)))
            .collect();
        let by_score = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if k < scored.len() {
            scored.select_nth_unstable_by(k, by_score);
            scored.truncate(k);
        }
        scored.sort_unstable_by(by_score);
        scored.into_iter().map(|(_, p)| u64::from(p) + 1).collect()
    }

    /// Expected clicks of `post_ids` divided by those of the [`World::ideal_list`] of the
    /// same length: 1 for the best possible list, near 0 for a useless one (0 when no post
    /// exists yet).
    pub fn normalised_clicks(&self, user_id: u64, post_ids: &[u64], at_micros: i64) -> f64 {
        let ideal = self.ideal_list(user_id, post_ids.len(), at_micros);
        let best = self.score_list(user_id, &ideal, at_micros).expected_clicks;
        if best <= 0.0 {
            return 0.0;
        }
        self.score_list(user_id, post_ids, at_micros)
            .expected_clicks
            / best
    }

    /// The `k` globally most popular posts existing at `at_micros`, in the world's popularity
    /// order (the order the `explore` feed draws from): the non-personalised baseline.
    pub fn popular_list(&self, k: usize, at_micros: i64) -> Vec<u64> {
        let Some(at) = self.compact_time(at_micros) else {
            return Vec::new();
        };
        self.popularity
            .iter()
            .filter(|&&p| self.posts.get(p as usize).is_some_and(|r| r.at <= at))
            .take(k)
            .map(|&p| u64::from(p) + 1)
            .collect()
    }

    /// Mean [`World::normalised_clicks`] of top-`k` lists over `users` users spread evenly over
    /// the world, at `at_micros`: the ideal list (1 by definition), the popular list and a
    /// random list of existing posts (random draws from `seed`). The yardstick a recommender's
    /// figure is read against.
    pub fn baseline_scores(&self, users: usize, k: usize, at_micros: i64, seed: u64) -> Baselines {
        let mut b = Baselines::default();
        let Some(at) = self.compact_time(at_micros) else {
            return b;
        };
        let existing = self.posts.partition_point(|p| p.at <= at) as u64;
        let n = self.users.len();
        let users = users.clamp(1, n.max(1));
        let popular = self.popular_list(k, at_micros);
        let mut rng = Rng::derive(self.config.seed, &[TAG_REACT, seed, u64::MAX]);
        for i in 0..users {
            let user_id = (i * n / users) as u64 + 1;
            let random: Vec<u64> = (0..k).map(|_| rng.below(existing) + 1).collect();
            b.ideal += if existing > 0 { 1.0 } else { 0.0 };
            b.popular += self.normalised_clicks(user_id, &popular, at_micros);
            b.random += self.normalised_clicks(user_id, &random, at_micros);
        }
        let m = users as f64;
        b.users = users;
        b.ideal /= m;
        b.popular /= m;
        b.random /= m;
        b
    }

    /// How `user_id` reacts to being shown `post_ids` (best first) at `at_micros`: one
    /// [`Reaction`] per entry, drawn with the same probabilities as the organic feed's events.
    /// Deterministic for (world, user, list, time, `seed`); absent posts are never clicked.
    pub fn react(
        &self,
        user_id: u64,
        post_ids: &[u64],
        at_micros: i64,
        seed: u64,
    ) -> Vec<Reaction> {
        let mut rng = Rng::derive(self.config.seed, &[TAG_REACT, seed, user_id]);
        post_ids
            .iter()
            .enumerate()
            .map(|(i, &post_id)| {
                let position = position(i);
                let mut r = Reaction {
                    post_id,
                    position,
                    clicked: false,
                    liked: false,
                    commented: false,
                    shared: false,
                    dwell_ms: 0,
                };
                let outcome = self
                    .appeal_by_id(user_id, post_id, at_micros)
                    .and_then(|a| draw_reaction(&mut rng, &a, position));
                if let Some(o) = outcome {
                    r.clicked = true;
                    r.liked = o.like;
                    r.commented = o.comment;
                    r.shared = o.share;
                    r.dwell_ms = o.dwell_ms;
                }
                r
            })
            .collect()
    }

    fn appeal_by_id(&self, user_id: u64, post_id: u64, at_micros: i64) -> Option<Appeal> {
        self.appeal(
            index_of(user_id)?,
            index_of(post_id)?,
            self.compact_time(at_micros)?,
        )
    }

    /// Microseconds since 1970 → compact seconds (`None` before the world's epoch).
    pub(crate) fn compact_time(&self, at_micros: i64) -> Option<u32> {
        let secs = at_micros
            .checked_sub(self.epoch_micros)?
            .div_euclid(1_000_000);
        u32::try_from(secs).ok().or((secs > 0).then_some(u32::MAX))
    }
}

/// Lake id → index.
fn index_of(id: u64) -> Option<u32> {
    u32::try_from(id.checked_sub(1)?).ok()
}

/// 1-based position of list entry `i`.
fn position(i: usize) -> u32 {
    u32::try_from(i).map_or(u32::MAX, |i| i.saturating_add(1))
}
