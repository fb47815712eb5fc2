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
    for e in world.events() {
        n += 1;
        *by_name.entry(e.name).or_default() += 1;
        if let (true, Properties::FeedImpression { post_id, .. }) = (stats, &e.properties) {
            *per_post.entry(*post_id).or_default() += 1;
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
    let b = world.baseline_scores(100, 20, world.end_micros() - 1, 1);
    println!(
        "normalised clicks of top-20 lists over {} users: ideal {:.3}, popular {:.3}, random {:.3}",
        b.users, b.ideal, b.popular, b.random
    );
}
