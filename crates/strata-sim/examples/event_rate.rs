//! Events per second of the event generator (release build):
//! `cargo run --release -p strata-sim --example event_rate -- [users] [days]`.

use std::collections::BTreeMap;
use std::time::Instant;

use strata_sim::{World, WorldConfig};

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
    let t = Instant::now();
    let mut n = 0u64;
    let mut by_name: BTreeMap<&'static str, u64> = BTreeMap::new();
    for e in world.events() {
        n += 1;
        *by_name.entry(e.name).or_default() += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "users {users} days {days}: world in {:.2} s, {n} events in {secs:.2} s = {:.0} events/s",
        gen.as_secs_f64(),
        n as f64 / secs
    );
    let count = |name: &str| by_name.get(name).copied().unwrap_or(0) as f64;
    let clicks = count("Post Clicked");
    println!(
        "clicks per impression {:.3}; per click: likes {:.3}, comments {:.3}, shares {:.3}",
        clicks / count("Feed Impression").max(1.0),
        count("Post Liked") / clicks.max(1.0),
        count("Comment Posted") / clicks.max(1.0),
        count("Post Shared") / clicks.max(1.0),
    );
}
