//! How good a feed can be, by what its recommender knows.
//!
//! A measured click-through rate means little alone: a feed at 0.39 may be near the best any
//! model could do with the lake's data, or far from it. [`World::ceilings`] builds top-`k`
//! lists for a sample of users by the click model's own weights applied to what a recommender
//! could know, and scores them against the hidden preferences:
//!
//! - **oracle**: the true tastes, follows and post quality (the ideal list);
//! - **true tastes**: the true tastes and follows, post quality estimated from the window's
//!   clicks (a perfect taste model);
//! - **lake tastes**: tastes estimated from the window's clicks and likes the way the reference
//!   warehouse's `ads_user_features` does (a user's 3 most engaged tags, each weighted by its
//!   count over the first's), follows, estimated quality: roughly the best a model trained on the
//!   lake reaches;
//! - **best single list**: the same list for everyone, the posts with the highest mean click
//!   chance (true tastes, follows and quality) over other users of the world: about the best
//!   a feed that is not personalised, such as a mature popularity feed, can reach;
//! - **perfect popularity**: the true post quality alone, the same list for everyone;
//! - **estimated popularity**: the estimated quality alone;
//! - **popular list**: the world's global popularity order (the organic `explore` feed).
//!
//! The ratio of *lake tastes* to *best single list* bounds the lift a personalised feed can show
//! over a mature popularity feed in this world.

use serde::Serialize;

use super::{Appeal, MAX_MATCH, W_FOLLOW, W_MATCH, W_QUALITY};
use crate::catalog::TAGS;
use crate::events::Properties;
use crate::world::World;

/// Prior weight, in impressions, of the mean click-through rate in a post's estimated quality.
const QUALITY_PRIOR_IMPRESSIONS: f64 = 10.0;

/// One list-building rule and the mean expected CTR of its lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ceiling {
    pub name: &'static str,
    /// What the rule knows.
    pub knows: &'static str,
    /// Mean expected clicks per shown item over the scored users.
    pub expected_ctr: f64,
}

/// The result of [`World::ceilings`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ceilings {
    /// Users scored (spread evenly over the world).
    pub users: usize,
    /// Items per list.
    pub k: usize,
    /// Share of the scored users' 3 estimated tags that are among their true favourites.
    pub lake_tags_right: f64,
    pub rows: Vec<Ceiling>,
}

impl Ceilings {
    /// The row named `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.expected_ctr)
    }
}

/// What the window's events say, up to the scoring time.
struct Observed {
    /// Per post index: (impressions, clicks).
    posts: Vec<(u32, u32)>,
    /// Clicks + likes per tag, for the scored users (by slot).
    tags: Vec<[u32; TAGS.len()]>,
    /// Mean click-through rate over every impression.
    mean_ctr: f64,
}

impl World {
    /// Mean expected CTR of top-`k` lists for `users` users spread evenly over the world, built
    /// at `at_micros` by each rule of [`crate::preferences::ceiling`] from the events up to
    /// then. Costs one pass over those events and `users` × posts appeals.
    pub fn ceilings(&self, users: usize, k: usize, at_micros: i64) -> Ceilings {
        let n = self.users.len();
        let users = users.clamp(1, n.max(1));
        let sample: Vec<u32> = (0..users).map(|i| (i * n / users) as u32).collect();
        let Some(at) = self.compact_time(at_micros) else {
            return Ceilings::default();
        };
        if n == 0 || k == 0 {
            return Ceilings::default();
        }
        let obs = self.observe(&sample, at_micros);
        let existing = self.posts.partition_point(|p| p.at <= at) as u32;
        let est_q: Vec<f64> = obs
            .posts
            .iter()
            .map(|&(imp, clicks)| {
                let prior = QUALITY_PRIOR_IMPRESSIONS;
                ((f64::from(clicks) + prior * obs.mean_ctr) / (f64::from(imp) + prior))
                    .max(f64::MIN_POSITIVE)
                    .ln()
            })
            .collect();
        // Perfect popularity: one list for everyone (same for the estimated one).
        let by_true_q = self.top_k(existing, k, |p| {
            f64::from(self.prefs.quality.get(p as usize).copied().unwrap_or(0.0))
        });
        let by_est_q = self.top_k(existing, k, |p| est_q[p as usize]);
        let popular = self.popular_list(k, at_micros);
        let appeals_of = |u: u32| -> Vec<(u32, Appeal)> {
            (0..existing)
                .filter_map(|p| self.appeal(u, p, at).map(|a| (p, a)))
                .collect()
        };
        // The best single list: highest mean click chance (at the top position), over a second
        // sample of users between the scored ones (disjoint from them when the world has twice
        // as many users), so it is not fitted to the very users it is scored on.
        let mut mean_click = vec![0f64; existing as usize];
        for u in (0..users).map(|i| ((i * n + n / 2) / users % n) as u32) {
            for (p, a) in appeals_of(u) {
                mean_click[p as usize] += a.p_click(1);
            }
        }
        let best_single = self.top_k(existing, k, |p| mean_click[p as usize]);

        let mut sums = [0f64; 7];
        let (mut right, mut guessed) = (0usize, 0usize);
        for (slot, &u) in sample.iter().enumerate() {
            let user_id = u64::from(u) + 1;
            let lake = lake_tastes(&obs.tags[slot]);
            guessed += lake.len();
            right += lake
                .iter()
                .filter(|&&(t, _)| self.prefs.interest(user_id, usize::from(t)) > 0.0)
                .count();
            let appeals = appeals_of(u);
            let best = |key: &dyn Fn(u32, &Appeal) -> f64| -> Vec<u64> {
                let mut s: Vec<(f64, u32)> =
                    appeals.iter().map(|(p, a)| (key(*p, a), *p)).collect();
                ids_of_top(&mut s, k)
            };
            let lists = [
                best(&|_, a| a.click_logit),
                best(&|p, a| W_MATCH * a.m + W_FOLLOW * a.f + W_QUALITY * est_q[p as usize]),
                best(&|p, a| {
                    W_MATCH * self.lake_match(&lake, p)
                        + W_FOLLOW * a.f
                        + W_QUALITY * est_q[p as usize]
                }),
                best_single.clone(),
                by_true_q.clone(),
                by_est_q.clone(),
                popular.clone(),
            ];
            for (sum, list) in sums.iter_mut().zip(&lists) {
                *sum += self.score_list(user_id, list, at_micros).expected_ctr;
            }
        }
        let m = users as f64;
        let names: [(&str, &str); 7] = [
            ("oracle", "true tastes, follows and post quality"),
            (
                "true tastes",
                "true tastes and follows; quality from the window's clicks",
            ),
            (
                "lake tastes",
                "top-3 tags from the window's clicks and likes, follows, quality from clicks",
            ),
            (
                "best single list",
                "true tastes, follows and quality averaged over the users: one list for everyone",
            ),
            (
                "perfect popularity",
                "true post quality only, one list for everyone",
            ),
            (
                "estimated popularity",
                "quality from the window's clicks only",
            ),
            ("popular list", "the world's global popularity order"),
        ];
        Ceilings {
            users,
            k,
            lake_tags_right: if guessed == 0 {
                0.0
            } else {
                right as f64 / guessed as f64
            },
            rows: names
                .iter()
                .zip(sums)
                .map(|(&(name, knows), s)| Ceiling {
                    name,
                    knows,
                    expected_ctr: s / m,
                })
                .collect(),
        }
    }

    /// Impressions and clicks per post, and clicks + likes per tag of the `sample` users, from
    /// the window's events up to `at_micros`.
    fn observe(&self, sample: &[u32], at_micros: i64) -> Observed {
        let mut slot_of = vec![u32::MAX; self.users.len()];
        for (s, &u) in sample.iter().enumerate() {
            slot_of[u as usize] = s as u32;
        }
        let mut obs = Observed {
            posts: vec![(0, 0); self.posts.len()],
            tags: vec![[0; TAGS.len()]; sample.len()],
            mean_ctr: 0.0,
        };
        let (mut impressions, mut clicks) = (0u64, 0u64);
        for e in self.events() {
            if e.ts > at_micros {
                break;
            }
            let (post_id, engaged) = match &e.properties {
                Properties::FeedImpression { post_id, .. } => (*post_id, false),
                Properties::PostClicked { post_id, .. } | Properties::PostLiked { post_id, .. } => {
                    (*post_id, true)
                }
                _ => continue,
            };
            let Some(p) = post_id.checked_sub(1).map(|p| p as usize) else {
                continue;
            };
            let Some(counts) = obs.posts.get_mut(p) else {
                continue;
            };
            match &e.properties {
                Properties::FeedImpression { .. } => {
                    counts.0 += 1;
                    impressions += 1;
                }
                Properties::PostClicked { .. } => {
                    counts.1 += 1;
                    clicks += 1;
                }
                _ => {}
            }
            let slot = e
                .user_id
                .checked_sub(1)
                .and_then(|u| slot_of.get(u as usize))
                .copied()
                .unwrap_or(u32::MAX);
            if engaged && slot != u32::MAX {
                let post = &self.posts[p];
                for (i, &t) in post.tags[..usize::from(post.ntags).min(3)]
                    .iter()
                    .enumerate()
                {
                    if !post.tags[..i].contains(&t) {
                        if let Some(c) = obs.tags[slot as usize].get_mut(usize::from(t)) {
                            *c += 1;
                        }
                    }
                }
            }
        }
        obs.mean_ctr = if impressions == 0 {
            0.0
        } else {
            clicks as f64 / impressions as f64
        };
        obs
    }

    /// The interest match of post index `p` under estimated tastes `lake` (tag, weight).
    fn lake_match(&self, lake: &[(u8, f64)], p: u32) -> f64 {
        let Some(post) = self.posts.get(p as usize) else {
            return 0.0;
        };
        let tags = &post.tags[..usize::from(post.ntags).min(3)];
        let mut sum = 0.0;
        for (i, t) in tags.iter().enumerate() {
            if tags[..i].contains(t) {
                continue;
            }
            if let Some(&(_, w)) = lake.iter().find(|(x, _)| x == t) {
                sum += w;
            }
        }
        sum.min(MAX_MATCH)
    }

    /// The `k` post indexes below `existing` with the highest `key`, as lake ids.
    fn top_k(&self, existing: u32, k: usize, key: impl Fn(u32) -> f64) -> Vec<u64> {
        let mut s: Vec<(f64, u32)> = (0..existing).map(|p| (key(p), p)).collect();
        ids_of_top(&mut s, k)
    }
}

/// A user's 3 most engaged tags (ties by lower index), each weighted by its count over the
/// first's: how `ads_user_features` ranks `tag_1_30d`..`tag_3_30d` and their shares.
fn lake_tastes(counts: &[u32; TAGS.len()]) -> Vec<(u8, f64)> {
    let mut tags: Vec<(u8, u32)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(t, &c)| (t as u8, c))
        .collect();
    tags.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    tags.truncate(3);
    let top = tags.first().map_or(1, |x| x.1).max(1);
    tags.into_iter()
        .map(|(t, c)| (t, f64::from(c) / f64::from(top)))
        .collect()
}

/// Sorts `(score, post index)` best first (ties by lower index) and returns the first `k` as
/// lake ids.
fn ids_of_top(s: &mut Vec<(f64, u32)>, k: usize) -> Vec<u64> {
    let by = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < s.len() {
        s.select_nth_unstable_by(k, by);
        s.truncate(k);
    }
    s.sort_unstable_by(by);
    s.iter().map(|&(_, p)| u64::from(p) + 1).collect()
}

#[cfg(test)]
mod tests {
    use crate::world::{World, WorldConfig};

    fn world() -> World {
        World::generate(&WorldConfig {
            seed: 11,
            users: 400,
            days: 2,
            start_date: chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap_or_default(),
            ..WorldConfig::default()
        })
    }

    fn end(w: &World) -> i64 {
        w.epoch_micros + 86_400_000_000 * i64::from(w.config.history_days + w.config.days) - 1
    }

    #[test]
    fn the_oracle_is_the_ideal_list_and_bounds_every_rule() {
        let w = world();
        let at = end(&w);
        let c = w.ceilings(50, 10, at);
        assert_eq!((c.users, c.k, c.rows.len()), (50, 10, 7));
        let oracle = c.get("oracle").unwrap_or_default();
        let n = w.users.len();
        let ideal: f64 = (0..50)
            .map(|i| {
                let u = (i * n / 50) as u64 + 1;
                w.score_list(u, &w.ideal_list(u, 10, at), at).expected_ctr
            })
            .sum::<f64>()
            / 50.0;
        assert!(
            (oracle - ideal).abs() < 1e-9,
            "oracle {oracle} vs ideal {ideal}"
        );
        for r in &c.rows {
            // Sorting by click chance is optimal up to a hair (see `ideal_list`).
            assert!(
                r.expected_ctr <= oracle + 1e-3,
                "{} {} > oracle {oracle}",
                r.name,
                r.expected_ctr
            );
            assert!(r.expected_ctr > 0.0, "{} scored nothing", r.name);
        }
        // Knowing more helps: true tastes beat the lake's estimate, which beats no tastes.
        let get = |name| c.get(name).unwrap_or_default();
        assert!(get("true tastes") > get("lake tastes"));
        assert!(get("lake tastes") > get("estimated popularity"));
        // No list shown to everyone does better on these users than the best single list.
        for single in ["perfect popularity", "estimated popularity", "popular list"] {
            assert!(
                get(single) <= get("best single list") + 1e-3,
                "{single} {} > best single list {}",
                get(single),
                get("best single list")
            );
        }
        assert!(
            c.lake_tags_right > 0.3 && c.lake_tags_right < 1.0,
            "{}",
            c.lake_tags_right
        );
    }

    #[test]
    fn ceilings_are_deterministic_and_only_read_the_past() {
        let w = world();
        let at = end(&w);
        assert_eq!(w.ceilings(30, 5, at), w.ceilings(30, 5, at));
        // Before the window no event exists: the lake knows no tastes, and its quality estimate
        // is flat, so the lake's lists are the true-tastes-free ones.
        let before = w.epoch_micros + 86_400_000_000 * i64::from(w.config.history_days) - 1;
        let c = w.ceilings(30, 5, before);
        assert_eq!(c.lake_tags_right, 0.0);
        assert!(c.get("true tastes") > c.get("lake tastes"));
    }
}
