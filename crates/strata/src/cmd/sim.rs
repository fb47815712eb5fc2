//! `strata sim`: drive event load against any Segment-compatible endpoint with the events of a
//! simulated social app (`strata-sim`). Progress every second on stderr, the report on stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_sim::{drive_with, DriveOptions, DriveReport, DriveStats};

use crate::cli::SimArgs;

pub async fn run(args: SimArgs) -> Result<()> {
    let opts = DriveOptions {
        target: args.target,
        write_key: args.write_key,
        rate: args.rate,
        duration: args.duration,
        batch: args.batch,
        connections: args.connections,
        seed: args.seed,
        users: args.users,
        days: args.days,
        events_per_user: args.events_per_user,
        max_events: args.max_events,
    };
    opts.validate()?;
    eprintln!(
        "sim: generating {} users over {} day(s) (seed {}), then sending to {} for {:?}",
        opts.users, opts.days, opts.seed, opts.target, opts.duration
    );
    let stats = Arc::new(DriveStats::default());
    let drive = {
        let (opts, stats) = (opts.clone(), stats.clone());
        tokio::spawn(async move { drive_with(&opts, stats).await })
    };
    tokio::pin!(drive);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = stats.snapshot();
    let report = loop {
        tokio::select! {
            done = &mut drive => break done.context("load driver task")??,
            _ = tick.tick() => {
                let now = stats.snapshot();
                eprintln!(
                    "sim: {:>5}s  sent {:>10}  acked {:>10}  failed {:>7}  retries {:>6}  {:>8} ev/s",
                    started.elapsed().as_secs(),
                    now.sent,
                    now.acked,
                    now.failed,
                    now.retries,
                    now.acked - last.acked,
                );
                last = now;
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("sim: stopping (in-flight batches finish)");
                stats.request_stop();
            }
        }
    };
    print_report(&report);
    if report.stats.acked == 0 && report.stats.sent > 0 {
        anyhow::bail!("no batch was acknowledged (wrong --write-key or --target?)");
    }
    Ok(())
}

fn print_report(r: &DriveReport) {
    let s = &r.stats;
    println!("sent      {} events", s.sent);
    println!("acked     {} events in {} requests", s.acked, s.requests);
    println!("failed    {} events ({} retries)", s.failed, s.retries);
    println!("elapsed   {:.1}s", r.elapsed.as_secs_f64());
    println!("rate      {:.0} events/s acknowledged", r.events_per_sec);
    println!(
        "ack latency  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
        r.latency_p50_ms, r.latency_p99_ms, r.latency_p999_ms
    );
}
