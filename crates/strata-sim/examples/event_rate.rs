//! Events per second of the event generator (release build):
//! `cargo run --release -p strata-sim --example event_rate -- [users] [days] [world|stats]`
//! (`world`: build the world and stop, to measure its memory; `stats`: also print click
//! rates, popularity concentration and baseline list scores, which slows the loop).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use strata_sim::{Properties, World, WorldConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let users = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let days = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let config = WorldConfig {
        seed: 1,
        users,
        days,
        ..WorldConfig::default()
    };
    let t = Instant::now();
    let world = World::generate(&config);
    let gen = t.elapsed();
    let mode = args.next().unwrap_or_default();
    if mode == "world" {
        println!(
            "users {users}: world in {:.2} s, {} posts, {} follows",
            gen.as_secs_f64(),
            world.post_count(),
            world.follow_count()
        );
        return;
    }
    let t = Instant::now();
    let mut n = 0u64;
    let mut by_name: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut per_post: HashMap<u64, u64> = HashMap::new();
    let stats = mode == "stats";
    // Clicks of the first days (to rank popularity) and of the last day (to hold out).
    let last_day = world.micros(world.day_start(days - 1));
    let mut train_clicks: HashMap<u64, u64> = HashMap::new();
    let mut held_out: Vec<(u64, u64)> = Vec::new();
    for e in world.events() {
        n += 1;
        *by_name.entry(e.name).or_default() += 1;
        match (stats, &e.properties) {
            (true, Properties::FeedImpression { post_id, .. }) => {
                *per_post.entry(*post_id).or_default() += 1;
            }
            (true, Properties::PostClicked { post_id, .. }) if e.ts < last_day => {
                *train_clicks.entry(*post_id).or_default() += 1;
            }
            (true, Properties::PostClicked { post_id, .. }) => held_out.push((e.user_id, *post_id)),
            _ => {}
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "users {users} days {days}: world in {:.2} s, {n} events in {secs:.2} s = {:.0} events/s",
        gen.as_secs_f64(),
        n as f64 / secs
    );
    if !stats {
        return;
    }
    let count = |name: &str| by_name.get(name).copied().unwrap_or(0) as f64;
    let clicks = count("Post Clicked");
    println!(
        "clicks per impression {:.3}; per click: likes {:.3}, comments {:.3}, shares {:.3}",
        clicks / count("Feed Impression").max(1.0),
        count("Post Liked") / clicks.max(1.0),
        count("Comment Posted") / clicks.max(1.0),
        count("Post Shared") / clicks.max(1.0),
    );
    let mut counts: Vec<u64> = per_post.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top1: u64 = counts.iter().take(world.post_count() / 100).sum();
    println!(
        "top 1% of posts get {:.3} of impressions",
        top1 as f64 / count("Feed Impression").max(1.0)
    );
    // Recall@100 of the last day's clicks (users sampled): the most clicked posts of the days
    // before vs each user's ideal list as of the day's start.
    let mut popular: Vec<(u64, u64)> = train_clicks.iter().map(|(&p, &c)| (c, p)).collect();
    popular.sort_unstable_by(|a, b| b.cmp(a));
    let popular: std::collections::HashSet<u64> = popular.iter().take(100).map(|x| x.1).collect();
    let mut ideal: HashMap<u64, std::collections::HashSet<u64>> = HashMap::new();
    // A personalised baseline a model could learn: the most clicked posts on the user's
    // favourite tags (tags read from the hidden preferences here, as a stand-in).
    let mut by_clicks: Vec<(u64, u64)> = train_clicks.iter().map(|(&p, &c)| (c, p)).collect();
    by_clicks.sort_unstable_by(|a, b| b.cmp(a));
    let tag_index = |t: &str| strata_sim::catalog::TAGS.iter().position(|x| *x == t);
    let post_tags: HashMap<u64, Vec<usize>> = by_clicks
        .iter()
        .map(|&(_, p)| {
            let row = world.post_row((p - 1) as u32);
            let tags = row.map_or_else(Vec::new, |r| {
                r.tags.iter().filter_map(|t| tag_index(t)).collect()
            });
            (p, tags)
        })
        .collect();
    let mut personal: HashMap<u64, std::collections::HashSet<u64>> = HashMap::new();
    let mut hits_personal = 0;
    let (mut hits_pop, mut hits_ideal, mut total) = (0, 0, 0);
    for &(u, p) in held_out.iter().filter(|(u, _)| u % 10 == 0) {
        let set = ideal
            .entry(u)
            .or_insert_with(|| world.ideal_list(u, 100, last_day).into_iter().collect());
        let mine = personal.entry(u).or_insert_with(|| {
            let prefs = world.preferences();
            by_clicks
                .iter()
                .filter(|(_, p)| post_tags[p].iter().any(|&t| prefs.interest(u, t) > 0.0))
                .take(100)
                .map(|x| x.1)
                .collect()
        });
        hits_personal += usize::from(mine.contains(&p));
        total += 1;
        hits_pop += usize::from(popular.contains(&p));
        hits_ideal += usize::from(set.contains(&p));
    }
    println!(
        "recall@100 of {total} held-out last-day clicks: popularity {:.3}, popular on the user's tags {:.3}, ideal lists {:.3}",
        hits_pop as f64 / total.max(1) as f64,
        hits_personal as f64 / total.max(1) as f64,
        hits_ideal as f64 / total.max(1) as f64
    );
    let b = world.baseline_scores(100, 20, world.end_micros() - 1, 1);
    println!(
        "normalised clicks of top-20 lists over {} users: ideal {:.3}, popular {:.3}, random {:.3}",
        b.users, b.ideal, b.popular, b.random
    );
}
