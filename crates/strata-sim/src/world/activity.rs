//! What users do to business rows during the window: profile edits, orders (with some
//! refunds) and messages between mutual follows. Every action is placed inside one of its
//! user's sessions (see [`crate::schedule`]).

use super::{MessageRec, OrderRec, ProfileEdit, World};
use crate::catalog::{self, APP_VERSIONS};
use crate::rng::Rng;
use crate::schedule::{sessions, DAY_SECS};

/// At most one profile edit per user: a city change, an app upgrade, or a new bio.
pub(super) fn edits(world: &mut World, mut rng: Rng) {
    let p_edit = (0.02 * f64::from(world.config.days)).min(0.5);
    let latest = (APP_VERSIONS.len() - 1) as u8;
    let mut buf = Vec::new();
    let mut edits = Vec::new();
    for (user, rec) in world.users.iter().enumerate() {
        if !rng.chance(p_edit) {
            continue;
        }
        let Some(at) = world.place(&mut rng, user as u32, rec.signup + 60, &mut buf) else {
            continue;
        };
        let before = rec.profile;
        let mut after = before;
        match rng.below(3) {
            0 => after.city = ((u64::from(before.city) + 1 + rng.below(2)) % 3) as u8,
            1 if before.app_version < latest => after.app_version = latest,
            _ => after.bio_len = ((u64::from(before.bio_len) + 1 + rng.below(159)) % 160) as u16,
        }
        edits.push(ProfileEdit {
            user: user as u32,
            at,
            before,
            after,
        });
    }
    edits.sort_unstable_by_key(|e| (e.at, e.user));
    world.edits = edits;
}

/// Orders: per active user-day, a chance that grows with activity; 5% are refunded later.
pub(super) fn orders(world: &mut World, mut rng: Rng) {
    let product_w = catalog::product_weights();
    let end = world.day_start(world.config.days);
    let mut buf = Vec::new();
    let mut orders = Vec::new();
    for day in 0..world.config.days {
        for (user, rec) in world.users.iter().enumerate() {
            let p = (0.01 * f64::from(rec.activity)).min(0.3);
            if !rng.chance(p) {
                continue;
            }
            let Some(at) = world.place_on_day(&mut rng, user as u32, day, 0, &mut buf) else {
                continue;
            };
            let refunded = if rng.chance(0.05) {
                let t = at + 3600 + rng.below(u64::from(2 * DAY_SECS)) as u32;
                if t < end {
                    t
                } else {
                    0
                }
            } else {
                0
            };
            orders.push(OrderRec {
                user: user as u32,
                at,
                product: rng.weighted(&product_w) as u8,
                refunded,
            });
        }
    }
    orders.sort_unstable_by_key(|o| (o.at, o.user));
    let mut refunds: Vec<u32> = (0..orders.len() as u32)
        .filter(|&k| orders[k as usize].refunded != 0)
        .collect();
    refunds.sort_unstable_by_key(|&k| (orders[k as usize].refunded, k));
    world.orders = orders;
    world.refunds_by_time = refunds;
}

/// Messages: on each day a user is in the app, a few messages to people they follow who
/// follow them back (both edges live at that time).
pub(super) fn messages(world: &mut World, mut rng: Rng) {
    let mut buf = Vec::new();
    let mut messages = Vec::new();
    for day in 0..world.config.days {
        for (user, rec) in world.users.iter().enumerate() {
            let user = user as u32;
            let edges = world.edges_of(user);
            if edges.is_empty() {
                continue;
            }
            sessions(world, user, rec, day, &mut buf);
            if buf.is_empty() {
                continue;
            }
            let count = rng.below(f64::from(rec.activity).ceil() as u64 + 1);
            for _ in 0..count {
                let s = buf[rng.below(buf.len() as u64) as usize];
                let at = rng.range_i64(i64::from(s.start), i64::from(s.end)) as u32;
                for _ in 0..3 {
                    let e = edges[rng.below(edges.len() as u64) as usize];
                    let mutual = e.live_at(at)
                        && world
                            .follow(e.followee, user)
                            .is_some_and(|back| back.live_at(at));
                    if mutual {
                        messages.push(MessageRec {
                            from: user,
                            to: e.followee,
                            at,
                            len: 1 + rng.below(280) as u16,
                        });
                        break;
                    }
                }
            }
        }
    }
    messages.sort_unstable_by_key(|m| (m.at, m.from, m.to));
    world.messages = messages;
}
