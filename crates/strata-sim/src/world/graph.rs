//! The follow graph: preferential attachment in signup order, so in-degrees follow a power
//! law (a few accounts gather most followers), with Pareto-distributed out-degrees and
//! follow-backs that make mutual pairs (who may then message each other).

use super::{FollowRec, World};
use crate::rng::Rng;
use crate::schedule::DAY_SECS;

/// Chance that a follow target is picked uniformly instead of by existing followers.
const P_UNIFORM: f64 = 0.2;
/// Chance that a followed user follows back.
const P_FOLLOW_BACK: f64 = 0.25;
/// Most accounts one user follows at signup.
const MAX_OUT: f64 = 500.0;

/// Fills `world.follows` (+ offsets and time orders). Users must already be in signup order.
pub(super) fn generate(world: &mut World, mut rng: Rng) {
    let n = world.users.len() as u32;
    let start = world.day_start(0);
    let days = world.config.days;
    // Share of a pre-window user's follows that happen inside the window.
    let p_window = (0.03 * f64::from(days)).min(0.5);
    let mean_out = f64::from(world.config.avg_follows);
    // Every followee appears here once per follower, plus every user once: picking a uniform
    // entry picks a user with probability ∝ followers + 1.
    let mut ends: Vec<u32> = Vec::with_capacity((u64::from(n) * 9) as usize);
    let mut edges: Vec<FollowRec> = Vec::new();
    let mut chosen: Vec<u32> = Vec::new();
    let mut buf = Vec::new();
    for i in 0..n {
        let signup_i = world.users[i as usize].signup;
        if i > 0 && mean_out > 0.0 {
            // pareto2 has mean ~2: halve it for a mean of `avg_follows`.
            let m = (mean_out / 2.0 * rng.pareto2(MAX_OUT)).round() as u32;
            let m = m.min(i);
            chosen.clear();
            let mut attempts = 0;
            while (chosen.len() as u32) < m && attempts < m * 4 {
                attempts += 1;
                let t = if rng.chance(P_UNIFORM) || ends.is_empty() {
                    rng.below(u64::from(i)) as u32
                } else {
                    ends[rng.below(ends.len() as u64) as usize]
                };
                if t != i && !chosen.contains(&t) {
                    chosen.push(t);
                }
            }
            for &t in &chosen {
                // i joined after t, so the follow is after both signups.
                let at = if signup_i < start && !rng.chance(p_window) {
                    Some(rng.range_i64(i64::from(signup_i), i64::from(start) - 1) as u32)
                } else {
                    world.place(&mut rng, i, signup_i, &mut buf)
                };
                let Some(at) = at else { continue };
                edges.push(FollowRec {
                    follower: i,
                    followee: t,
                    at,
                    unfollowed: 0,
                });
                ends.push(t);
                if rng.chance(P_FOLLOW_BACK) {
                    let nb = at + 60;
                    let back = if nb < start && !rng.chance(p_window) {
                        let hi = (nb + 3 * DAY_SECS).min(start - 1);
                        Some(rng.range_i64(i64::from(nb), i64::from(hi)) as u32)
                    } else {
                        world.place(&mut rng, t, nb, &mut buf)
                    };
                    if let Some(back) = back {
                        edges.push(FollowRec {
                            follower: t,
                            followee: i,
                            at: back,
                            unfollowed: 0,
                        });
                        ends.push(i);
                    }
                }
            }
        }
        ends.push(i);
    }
    drop(ends);

    // Some follows are undone during the window.
    let p_unfollow = (0.004 * f64::from(days)).min(0.2);
    for e in edges.iter_mut() {
        if rng.chance(p_unfollow) {
            if let Some(t) = world.place(&mut rng, e.follower, e.at + 3600, &mut buf) {
                e.unfollowed = t;
            }
        }
    }

    edges.sort_unstable_by_key(|e| (e.follower, e.followee));
    let mut offsets = vec![0u32; n as usize + 1];
    for e in &edges {
        offsets[e.follower as usize + 1] += 1;
    }
    for u in 0..n as usize {
        offsets[u + 1] += offsets[u];
    }
    let mut by_time: Vec<u32> = (0..edges.len() as u32).collect();
    by_time.sort_unstable_by_key(|&k| (edges[k as usize].at, k));
    let mut unfollows: Vec<u32> = (0..edges.len() as u32)
        .filter(|&k| edges[k as usize].unfollowed != 0)
        .collect();
    unfollows.sort_unstable_by_key(|&k| (edges[k as usize].unfollowed, k));
    world.follows = edges;
    world.follow_offsets = offsets;
    world.follows_by_time = by_time;
    world.unfollows_by_time = unfollows;
}
