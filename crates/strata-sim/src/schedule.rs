//! When a user is in the app: sessions per user per day, with a daily cycle (more in the
//! evening, weekends later and busier) and a per-user activity level.
//!
//! [`sessions`] is a pure function of (seed, user, day). World generation uses it to place
//! follows, orders, messages and edits inside sessions, and the event generator uses it again
//! to emit those sessions, so every business action happens while its user is in the app.

use chrono::{Datelike, Weekday};

use crate::catalog::{WEEKDAY_HOURS, WEEKEND_HOURS};
use crate::rng::Rng;
use crate::world::{UserRec, World};

/// Stream tag for session schedules (see [`Rng::derive`]).
const TAG_SESSIONS: u64 = 0x5E55;

/// Seconds in a day.
pub const DAY_SECS: u32 = 86_400;

/// Mean simulated seconds per browsing step (impression, maybe a click and a dwell).
pub const STEP_SECS: u32 = 9;

/// One session: `[start, end]`, seconds since the world's epoch. Sessions of one user never
/// overlap and never cross midnight (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// First second of the session.
    pub start: u32,
    /// Last second of the session (inclusive).
    pub end: u32,
}

/// The sessions of `user` on simulated day `day` (0-based), in time order, into `out`
/// (cleared first). Users are never in the app before they signed up.
pub fn sessions(world: &World, user: u32, rec: &UserRec, day: u32, out: &mut Vec<Session>) {
    out.clear();
    let cfg = world.config();
    let day_start = world.day_start(day);
    let day_end = day_start + DAY_SECS - 1;
    if rec.signup > day_end {
        return;
    }
    let mut rng = Rng::derive(cfg.seed, &[TAG_SESSIONS, u64::from(user), u64::from(day)]);
    let activity = f64::from(rec.activity);
    let weekend = matches!(
        cfg.start_date
            .checked_add_days(chrono::Days::new(u64::from(day)))
            .map(|d| d.weekday()),
        Some(Weekday::Sat | Weekday::Sun)
    );
    let p_active = (0.25 + 0.2 * activity).min(0.95);
    if !rng.chance(p_active) {
        return;
    }
    let mut n = 1 + rng.below(activity.ceil() as u64) as u32;
    if weekend && rng.chance(0.3) {
        n += 1;
    }
    let n = n.min(8);
    let hours: &[u32; 24] = if weekend {
        &WEEKEND_HOURS
    } else {
        &WEEKDAY_HOURS
    };
    // Mean steps per session so that an active user-day makes about `events_per_user` events
    // (about 1.7 events per step, about 2.2 sessions per active day).
    let mean_steps = (f64::from(cfg.events_per_user) / (2.2 * 1.7)).max(1.0) as u64;
    for _ in 0..n {
        let hour = rng.weighted(hours) as u32;
        let start = day_start + hour * 3600 + rng.below(3600) as u32;
        let steps = 1 + rng.below(2 * mean_steps) as u32;
        let end = start + 5 + steps * STEP_SECS;
        out.push(Session { start, end });
    }
    out.sort_unstable_by_key(|s| s.start);
    // No overlaps, no crossing midnight, nothing before signup.
    for i in 0..out.len() {
        let limit = match out.get(i + 1) {
            Some(next) => next.start.saturating_sub(1),
            None => day_end,
        };
        out[i].end = out[i].end.min(limit).max(out[i].start);
    }
    out.dedup_by_key(|s| s.start);
    out.retain(|s| s.start >= rec.signup);
}
