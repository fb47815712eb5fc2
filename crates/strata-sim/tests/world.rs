//! World shape: determinism, power laws, Zipf popularity, daily cycle, change replay.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use chrono::{NaiveDate, Timelike};
use strata_sim::{Change, Op, Row, Table, World, WorldConfig};

fn config(seed: u64, users: u32, days: u32) -> WorldConfig {
    WorldConfig {
        seed,
        users,
        days,
        start_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(), // a Monday
        ..WorldConfig::default()
    }
}

/// Hash of everything the world emits: the world digest, every event's JSON and every change.
fn output_hash(w: &World) -> u64 {
    let mut h = DefaultHasher::new();
    w.digest().hash(&mut h);
    for e in w.events() {
        serde_json::to_string(&e).unwrap().hash(&mut h);
    }
    for c in w.changes() {
        serde_json::to_string(&c).unwrap().hash(&mut h);
    }
    h.finish()
}

#[test]
fn same_seed_same_output_different_seed_different_output() {
    let a = World::generate(&config(7, 300, 2));
    let b = World::generate(&config(7, 300, 2));
    let c = World::generate(&config(8, 300, 2));
    assert_eq!(a.digest(), b.digest());
    assert_eq!(output_hash(&a), output_hash(&b));
    assert_ne!(a.digest(), c.digest());
    assert_ne!(output_hash(&a), output_hash(&c));
}

fn median(v: &mut [u32]) -> u32 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn follow_degrees_are_heavy_tailed() {
    let w = World::generate(&config(1, 5000, 1));
    let mut ind = w.in_degrees();
    let mut outd = w.out_degrees();
    let (in_max, out_max) = (*ind.iter().max().unwrap(), *outd.iter().max().unwrap());
    let (in_med, out_med) = (median(&mut ind), median(&mut outd));
    assert!(
        in_max > 20 * in_med.max(1),
        "in: max {in_max}, median {in_med}"
    );
    assert!(
        out_max > 10 * out_med.max(1),
        "out: max {out_max}, median {out_med}"
    );
    // Mean out-degree near avg_follows * 1.25 (follow-backs), allowing for the young users.
    let mean = w.follow_count() as f64 / w.user_count() as f64;
    assert!((4.0..16.0).contains(&mean), "mean degree {mean}");
    // Follow-backs make mutual pairs.
    let mutual = (0..w.user_count() as u32)
        .flat_map(|u| w.edges_of(u).iter())
        .filter(|e| w.follow(e.followee, e.follower).is_some())
        .count();
    assert!(mutual > w.follow_count() / 10, "{mutual} mutual edges");
}

#[test]
fn post_authors_and_impressions_follow_power_laws() {
    let w = World::generate(&config(2, 2000, 1));
    let mut by_author: HashMap<u64, u32> = HashMap::new();
    for p in 0..w.post_count() as u32 {
        *by_author
            .entry(w.post_row(p).unwrap().author_id)
            .or_default() += 1;
    }
    let mut counts: Vec<u32> = by_author.values().copied().collect();
    let max = *counts.iter().max().unwrap();
    assert!(max > 20 * median(&mut counts), "top author has {max} posts");

    let mut impressions: HashMap<u64, u32> = HashMap::new();
    let mut total = 0u32;
    for e in w.events() {
        if let strata_sim::Properties::FeedImpression { post_id, .. } = e.properties {
            *impressions.entry(post_id).or_default() += 1;
            total += 1;
        }
    }
    let mut counts: Vec<u32> = impressions.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    assert!(total > 10_000, "{total} impressions");
    // Zipf(1): the top post is seen far more than the tenth, and the top 1% of posts get a
    // large share of all impressions.
    assert!(
        counts[0] > 5 * counts[9],
        "top {} vs 10th {}",
        counts[0],
        counts[9]
    );
    let top1: u32 = counts.iter().take(w.post_count() / 100).sum();
    assert!(
        f64::from(top1) > 0.2 * f64::from(total),
        "top 1% share {top1}/{total}"
    );
}

#[test]
fn activity_follows_the_daily_cycle() {
    let w = World::generate(&config(3, 3000, 7));
    let mut weekday_hours = [0u64; 24];
    let mut per_day = vec![0u64; 7];
    let start = w.start_micros();
    for e in w.events() {
        let t = chrono::DateTime::from_timestamp_micros(e.ts).unwrap();
        let day = ((e.ts - start) / 86_400_000_000) as usize;
        per_day[day] += 1;
        if day < 5 {
            weekday_hours[t.hour() as usize] += 1;
        }
    }
    let evening: u64 = weekday_hours[19..23].iter().sum();
    let night: u64 = weekday_hours[2..6].iter().sum();
    assert!(evening > 5 * night, "evening {evening}, night {night}");
    // Every day has traffic; the weekend (days 5, 6) is busier per day than the week.
    assert!(per_day.iter().all(|&n| n > 0), "{per_day:?}");
    let weekday_mean = per_day[..5].iter().sum::<u64>() as f64 / 5.0;
    let weekend_mean = per_day[5..].iter().sum::<u64>() as f64 / 2.0;
    assert!(weekend_mean > weekday_mean, "{per_day:?}");
}

#[test]
fn events_come_in_time_order_inside_the_window() {
    let w = World::generate(&config(4, 500, 3));
    let mut last = i64::MIN;
    let mut n = 0u64;
    let mut ids = std::collections::HashSet::new();
    for e in w.events() {
        assert!(e.ts >= last, "out of order at {}", e.message_id);
        assert!(e.ts >= w.start_micros() && e.ts < w.end_micros());
        assert!(ids.insert(e.message_id.clone()));
        last = e.ts;
        n += 1;
    }
    // Roughly `events_per_user` per active user-day.
    let per_user_day = n as f64 / (500.0 * 3.0);
    assert!(
        (5.0..200.0).contains(&per_user_day),
        "{per_user_day} events per user-day"
    );
}

#[test]
fn business_actions_are_reported_as_events() {
    let w = World::generate(&config(5, 1500, 3));
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for e in w.events() {
        *names.entry(e.name).or_default() += 1;
    }
    let window = |c: &Change| c.ts >= w.start_micros();
    let count = |table: Table, op: Op| {
        w.changes()
            .filter(|c| c.table == table && c.op == op && window(c))
            .count()
    };
    assert!(w.order_count() > 0 && w.message_count() > 0);
    assert_eq!(
        names.get("Order Completed").copied().unwrap_or(0),
        w.order_count()
    );
    assert_eq!(
        names.get("Message Sent").copied().unwrap_or(0),
        w.message_count()
    );
    assert_eq!(
        names.get("User Followed").copied().unwrap_or(0),
        count(Table::Follows, Op::Insert)
    );
    assert_eq!(
        names.get("User Unfollowed").copied().unwrap_or(0),
        count(Table::Follows, Op::Delete)
    );
    assert_eq!(
        names.get("Post Created").copied().unwrap_or(0),
        count(Table::Posts, Op::Insert)
    );
    for name in [
        "App Opened",
        "Feed Impression",
        "Post Clicked",
        "Post Liked",
        "Post Shared",
        "Comment Posted",
        "Dwell",
        "Home Feed",
    ] {
        assert!(
            names.get(name).copied().unwrap_or(0) > 0,
            "no {name:?} in {names:?}"
        );
    }
}

#[test]
fn changes_replay_to_the_final_state() {
    let w = World::generate(&config(6, 800, 4));
    let mut db: BTreeMap<(Table, Vec<u64>), Row> = BTreeMap::new();
    let mut last = i64::MIN;
    let mut ops = HashMap::new();
    for c in w.changes() {
        assert!(c.ts >= last, "changes out of order");
        last = c.ts;
        *ops.entry((c.table, c.op)).or_insert(0u32) += 1;
        let key = (c.table, c.key.clone());
        match c.op {
            Op::Insert => {
                assert!(c.before.is_none());
                let prev = db.insert(key, c.after.clone().unwrap());
                assert!(prev.is_none(), "insert over an existing row: {c:?}");
            }
            Op::Update => {
                let current = db.get_mut(&key).expect("update of a missing row");
                assert_eq!(Some(&*current), c.before.as_ref(), "stale before image");
                *current = c.after.clone().unwrap();
            }
            Op::Delete => {
                let removed = db.remove(&key).expect("delete of a missing row");
                assert_eq!(Some(removed), c.before);
            }
        }
    }
    for kind in [
        (Table::Profiles, Op::Update),
        (Table::Orders, Op::Update),
        (Table::Follows, Op::Delete),
    ] {
        assert!(ops.get(&kind).copied().unwrap_or(0) > 0, "no {kind:?}");
    }
    let expected: BTreeMap<(Table, Vec<u64>), Row> = w
        .final_rows()
        .into_iter()
        .map(|(t, k, r)| ((t, k), r))
        .collect();
    assert_eq!(db.len(), expected.len());
    assert!(
        db == expected,
        "replayed state differs from the final state"
    );
}

#[test]
fn events_per_user_sets_how_much_each_user_does() {
    let events = |per_user: u32| {
        let c = WorldConfig {
            events_per_user: per_user,
            ..config(5, 400, 1)
        };
        World::generate(&c).events().count() as f64
    };
    let (light, heavy) = (events(20), events(80));
    // Four times the setting: about three times the events (session starts and ends, follows,
    // orders and messages do not grow with session length).
    let ratio = heavy / light;
    assert!(
        (2.5..=4.5).contains(&ratio),
        "{light} vs {heavy} events: ratio {ratio}"
    );
}
