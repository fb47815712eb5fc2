//! Hidden preferences: what each simulated user likes, and how a user reacts to a post.
//!
//! Every user has a sparse taste over the 32 [`TAGS`] (2–4 favourite tags with
//! Dirichlet(1) weights, scaled so the favourite is 1; people of one country and age band
//! lean to the same two tags) and a pickiness (their own click bias). Every post has a
//! quality (lognormal: `quality = e^z`, `z` normal, a little higher for globally popular
//! posts) and its topic mix is its tags. Followed authors get a boost.
//!
//! The chance that user `u` clicks post `p` shown at `position` (1-based) is
//!
//! ```text
//! p_click = sigmoid(CLICK_BASE + pickiness_u + W_MATCH·match(u, p) + W_FOLLOW·followed(u, p)
//!                   + W_QUALITY·z_p − W_POSITION·ln(position))
//! ```
//!
//! where `match(u, p)` is the sum of `u`'s interest in the post's distinct tags (capped at
//! 1.5) and `followed` is 1 when `u` follows the author at that moment. Likes, comments and
//! shares (given a click) and dwell rise with the same terms. The event stream draws from
//! these probabilities ([`crate::events`]), and [`World::score_list`] computes their
//! expectation for any ranked list, which is how a recommender is judged.
//!
//! The preferences never reach an event, a row or the lake: they live only here, and only
//! the behaviour they cause (which posts were shown, clicked, liked, for how long) is
//! emitted. They are drawn on their own random streams, so the rest of the world (users,
//! posts, follows, orders, messages) is the same as without them.

pub mod ceiling;
mod score;

pub use ceiling::{Ceiling, Ceilings};
pub use score::{Baselines, ListScore, Reaction};

use crate::catalog::{AGE_BANDS, COUNTRIES, TAGS};
use crate::rng::{self, Rng, Zipf};
use crate::world::World;

/// Stream tags for [`Rng::derive`] (distinct from the world's and the events').
const TAG_TASTES: u64 = 0x7A57E;
const TAG_GROUP_TASTES: u64 = 0x7A57F;
const TAG_QUALITY: u64 = 0x9A11;

/// Intercept of the click logit: calibrated so the organic feed's click-through rate stays
/// near the old fixed 0.2.
pub const CLICK_BASE: f64 = -2.4;
/// Weight of the interest match in the click logit.
pub const W_MATCH: f64 = 2.0;
/// Weight of "follows the author" in the click logit.
pub const W_FOLLOW: f64 = 1.2;
/// Weight of the post's log-quality in the click logit.
pub const W_QUALITY: f64 = 0.5;
/// Weight of `ln(position)` (subtracted) in the click logit.
pub const W_POSITION: f64 = 0.3;
/// Standard deviation of a user's pickiness (their own click bias).
pub const PICKINESS_SD: f64 = 0.5;
/// Largest interest match a post can have.
pub const MAX_MATCH: f64 = 1.5;

/// Intercepts of like, comment and share given a click (old fixed rates 0.35, 0.08, 0.05).
const LIKE_BASE: f64 = -1.88;
const COMMENT_BASE: f64 = -3.2;
const SHARE_BASE: f64 = -3.55;
/// Mean of `min(Pareto(2, 1), 60)`, the dwell draw: `2 - 1/60`.
const DWELL_PARETO_MEAN: f64 = 2.0 - 1.0 / 60.0;
/// Dwell scale in milliseconds.
const DWELL_MS: f64 = 2000.0;

/// One user's hidden taste.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Taste {
    /// Favourite tags (indexes into [`TAGS`]); the first `n` are used, favourite first.
    tags: [u8; 4],
    /// Interest in each favourite tag, in (0, 1]; the favourite has 1.
    weights: [f32; 4],
    /// Number of favourite tags (2–4).
    n: u8,
    /// Pickiness: added to the click logit (normal, sd [`PICKINESS_SD`]).
    bias: f32,
}

/// The hidden preferences of a [`World`]: a taste per user and a quality per post. Read
/// them through [`World::preferences`]; ids are the lake's (`user_id`, `post_id` = index + 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preferences {
    tastes: Vec<Taste>,
    /// Log-quality `z` per post index.
    quality: Vec<f32>,
}

impl Preferences {
    /// Draws the preferences of `world` (users and posts must exist) from `seed`.
    pub(crate) fn generate(world: &World, seed: u64) -> Preferences {
        let tag_zipf = Zipf::new(TAGS.len());
        // Two tags per (country, age band) that its people lean to.
        let groups: Vec<[u8; 2]> = (0..COUNTRIES.len() * AGE_BANDS.len())
            .map(|g| {
                let mut r = Rng::derive(seed, &[TAG_GROUP_TASTES, g as u64]);
                [
                    tag_zipf.sample(&mut r) as u8,
                    r.below(TAGS.len() as u64) as u8,
                ]
            })
            .collect();
        let mut r = Rng::derive(seed, &[TAG_TASTES]);
        let tastes = world
            .users
            .iter()
            .map(|u| {
                let g = usize::from(u.country) % COUNTRIES.len() * AGE_BANDS.len()
                    + usize::from(u.age) % AGE_BANDS.len();
                let group = groups.get(g).copied().unwrap_or([0, 1]);
                let want = 2 + r.below(3) as usize;
                let mut tags = [0u8; 4];
                let mut n = 0;
                for _ in 0..16 {
                    if n == want {
                        break;
                    }
                    let t = if r.chance(0.3) {
                        group[r.below(2) as usize]
                    } else {
                        tag_zipf.sample(&mut r) as u8
                    };
                    if !tags[..n].contains(&t) {
                        tags[n] = t;
                        n += 1;
                    }
                }
                // Dirichlet(1) weights, favourite first, scaled so the favourite has 1.
                let mut w = [0f64; 4];
                for x in w.iter_mut().take(n) {
                    *x = r.exponential();
                }
                let mut order = [0usize, 1, 2, 3];
                order[..n].sort_by(|&a, &b| w[b].total_cmp(&w[a]));
                let top = w[order[0]].max(f64::MIN_POSITIVE);
                let mut taste = Taste {
                    tags: [0; 4],
                    weights: [0.0; 4],
                    n: n as u8,
                    bias: (PICKINESS_SD * r.normal()) as f32,
                };
                for (k, &i) in order[..n].iter().enumerate() {
                    taste.tags[k] = tags[i];
                    taste.weights[k] = (w[i] / top) as f32;
                }
                taste
            })
            .collect();

        // Quality: lognormal, a little higher for posts the world makes popular.
        let n = world.posts.len();
        let mut rank = vec![0u32; n];
        for (k, &p) in world.popularity.iter().enumerate() {
            if let Some(x) = rank.get_mut(p as usize) {
                *x = k as u32;
            }
        }
        let head = (n / 100).max(1) as f64;
        let mut r = Rng::derive(seed, &[TAG_QUALITY]);
        let quality = rank
            .iter()
            .map(|&k| (0.9 * r.normal() + 0.8 / (1.0 + f64::from(k) / head)) as f32)
            .collect();
        Preferences { tastes, quality }
    }

    /// Number of users with a taste.
    pub fn user_count(&self) -> usize {
        self.tastes.len()
    }

    /// `user_id`'s interest in tag index `tag` (into [`TAGS`]): 1 for their favourite tag,
    /// in (0, 1) for their other 1–3 favourite tags, 0 otherwise (and for unknown users).
    pub fn interest(&self, user_id: u64, tag: usize) -> f64 {
        let Some(t) = self.taste(user_id) else {
            return 0.0;
        };
        (0..usize::from(t.n))
            .find(|&k| usize::from(t.tags[k]) == tag)
            .map_or(0.0, |k| f64::from(t.weights[k]))
    }

    /// `user_id`'s favourite tags with their interest, favourite first (empty for unknown
    /// users).
    pub fn favourite_tags(&self, user_id: u64) -> Vec<(&'static str, f64)> {
        let Some(t) = self.taste(user_id) else {
            return Vec::new();
        };
        (0..usize::from(t.n))
            .map(|k| {
                (
                    TAGS[usize::from(t.tags[k]) % TAGS.len()],
                    f64::from(t.weights[k]),
                )
            })
            .collect()
    }

    /// `user_id`'s pickiness: their own term in the click logit (0 for unknown users).
    pub fn pickiness(&self, user_id: u64) -> f64 {
        self.taste(user_id).map_or(0.0, |t| f64::from(t.bias))
    }

    /// `post_id`'s quality `e^z` (lognormal, median about 1; 0 for unknown posts).
    pub fn quality(&self, post_id: u64) -> f64 {
        self.log_quality(post_id).map_or(0.0, rng::exp)
    }

    /// A 64-bit digest of the preferences (equal for equal preferences).
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |v: u64| {
            for b in v.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for t in &self.tastes {
            eat(u64::from_le_bytes([
                t.tags[0], t.tags[1], t.tags[2], t.tags[3], t.n, 0, 0, 0,
            ]));
            for w in t.weights {
                eat(u64::from(w.to_bits()));
            }
            eat(u64::from(t.bias.to_bits()));
        }
        for q in &self.quality {
            eat(u64::from(q.to_bits()));
        }
        h
    }

    fn taste(&self, user_id: u64) -> Option<&Taste> {
        let i = usize::try_from(user_id.checked_sub(1)?).ok()?;
        self.tastes.get(i)
    }

    fn log_quality(&self, post_id: u64) -> Option<f64> {
        let i = usize::try_from(post_id.checked_sub(1)?).ok()?;
        self.quality.get(i).map(|&z| f64::from(z))
    }

    /// A favourite tag of user index `user`, drawn by interest (`None` for unknown users).
    pub(crate) fn draw_favourite(&self, user: u32, rng: &mut Rng) -> Option<u8> {
        let t = self.tastes.get(user as usize)?;
        let n = usize::from(t.n);
        let total: f64 = t.weights[..n].iter().map(|&w| f64::from(w)).sum();
        let mut x = rng.f64() * total;
        for k in 0..n {
            x -= f64::from(t.weights[k]);
            if x < 0.0 {
                return Some(t.tags[k]);
            }
        }
        t.tags[..n].last().copied()
    }

    /// Interest match of user index `user` with a post's tags: the sum of the user's
    /// interest in its distinct tags, capped at [`MAX_MATCH`].
    fn match_tags(&self, user: u32, tags: &[u8]) -> f64 {
        let Some(t) = self.tastes.get(user as usize) else {
            return 0.0;
        };
        let mut sum = 0.0;
        for (i, tag) in tags.iter().enumerate() {
            if tags[..i].contains(tag) {
                continue;
            }
            if let Some(k) = (0..usize::from(t.n)).find(|&k| t.tags[k] == *tag) {
                sum += f64::from(t.weights[k]);
            }
        }
        sum.min(MAX_MATCH)
    }
}

/// How strongly one user is drawn to one post at one moment, position aside: the terms
/// every reaction probability is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Appeal {
    /// Click logit without the position term.
    click_logit: f64,
    /// Interest match.
    m: f64,
    /// 1 when the user follows the author, else 0.
    f: f64,
    /// The post's log-quality.
    z: f64,
}

impl Appeal {
    /// Click chance at 1-based `position`.
    pub(crate) fn p_click(&self, position: u32) -> f64 {
        rng::sigmoid(self.click_logit - W_POSITION * ln_position(position))
    }

    /// Chance of a like, given a click.
    pub(crate) fn like(&self) -> f64 {
        rng::sigmoid(LIKE_BASE + 1.0 * self.m + 0.8 * self.f + 0.5 * self.z)
    }

    /// Chance of a comment, given a click.
    pub(crate) fn comment(&self) -> f64 {
        rng::sigmoid(COMMENT_BASE + 0.8 * self.m + 0.8 * self.f + 0.3 * self.z)
    }

    /// Chance of a share, given a click.
    pub(crate) fn share(&self) -> f64 {
        rng::sigmoid(SHARE_BASE + 0.8 * self.m + 0.6 * self.z)
    }

    /// Multiplier of the dwell draw.
    pub(crate) fn dwell_scale(&self) -> f64 {
        rng::exp(0.35 * self.m + 0.2 * self.z - 0.25)
    }

    /// Expected dwell in milliseconds, given a click.
    pub(crate) fn expected_dwell_ms(&self) -> f64 {
        DWELL_MS * DWELL_PARETO_MEAN * self.dwell_scale()
    }
}

/// `ln(position)` (positions below 1 count as 1); a table for the first positions.
fn ln_position(position: u32) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| (0..256).map(|i| rng::ln(f64::from(i.max(1)))).collect());
    match table.get(position as usize) {
        Some(&x) => x,
        None => rng::ln(f64::from(position)),
    }
}

/// What one impression led to (drawn by [`draw_reaction`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    /// Microseconds from the impression to the click.
    pub(crate) click_delay_us: i64,
    pub(crate) dwell_ms: u64,
    pub(crate) like: bool,
    pub(crate) comment: bool,
    pub(crate) share: bool,
    pub(crate) comment_id: u64,
    pub(crate) comment_len: u32,
    /// Index into [`crate::catalog::SHARE_CHANNELS`].
    pub(crate) channel: usize,
}

/// Draws the reaction to one impression: `None` (no click) or what followed the click.
/// The event stream and [`World::react`] both use it, so they follow the same law.
pub(crate) fn draw_reaction(rng: &mut Rng, appeal: &Appeal, position: u32) -> Option<Outcome> {
    if !rng.chance(appeal.p_click(position)) {
        return None;
    }
    let click_delay_us = 500_000 + rng.below(3_500_000) as i64;
    let dwell_ms = (DWELL_MS * rng.pareto2(60.0) * appeal.dwell_scale()) as u64;
    let like = rng.chance(appeal.like());
    let comment = rng.chance(appeal.comment());
    let share = rng.chance(appeal.share());
    let comment_id = rng.next_u64() >> 12;
    let comment_len = 1 + rng.below(200) as u32;
    let channel = rng.below(crate::catalog::SHARE_CHANNELS.len() as u64) as usize;
    Some(Outcome {
        click_delay_us,
        dwell_ms,
        like,
        comment,
        share,
        comment_id,
        comment_len,
        channel,
    })
}

impl World {
    /// The hidden preferences (never emitted: see [`crate::preferences`]).
    pub fn preferences(&self) -> &Preferences {
        &self.prefs
    }

    /// Draws new hidden preferences from `seed`, keeping everything else of the world (users,
    /// posts, follows, orders, messages). Same social app, other tastes: used to check that
    /// the tastes never leak into events or rows.
    pub fn reseed_preferences(&mut self, seed: u64) {
        self.prefs = Preferences::generate(self, seed);
    }

    /// The appeal of post index `post` to user index `user` at compact time `at`; `None`
    /// when either does not exist or the post is not yet created.
    pub(crate) fn appeal(&self, user: u32, post: u32, at: u32) -> Option<Appeal> {
        let p = self.posts.get(post as usize)?;
        let taste = self.prefs.tastes.get(user as usize)?;
        if p.at > at {
            return None;
        }
        let m = self
            .prefs
            .match_tags(user, &p.tags[..usize::from(p.ntags).min(3)]);
        let followed =
            p.author != user && self.follow(user, p.author).is_some_and(|f| f.live_at(at));
        let f = if followed { 1.0 } else { 0.0 };
        let z = self
            .prefs
            .quality
            .get(post as usize)
            .map_or(0.0, |&z| f64::from(z));
        let click_logit =
            CLICK_BASE + f64::from(taste.bias) + W_MATCH * m + W_FOLLOW * f + W_QUALITY * z;
        Some(Appeal {
            click_logit,
            m,
            f,
            z,
        })
    }
}
