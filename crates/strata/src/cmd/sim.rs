//! `strata sim`: drive event load against any Segment-compatible endpoint with the events of a
//! simulated social app (`strata-sim`). Progress every second on stderr, the report on stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_sim::{drive_with, DriveOptions, DriveReport, DriveStats};

use crate::cli::{SimArgs, SimCeilingArgs, SimCommand, SimFeedArgs, SimScoreArgs, WorldArgs};

pub async fn run(args: SimArgs) -> Result<()> {
    match args.command {
        Some(SimCommand::Score(score_args)) => {
            return tokio::task::spawn_blocking(move || score(&score_args))
                .await
                .context("scoring thread")?;
        }
        Some(SimCommand::Feed(feed_args)) => return feed(feed_args).await,
        Some(SimCommand::Ceiling(ceiling_args)) => {
            return tokio::task::spawn_blocking(move || ceiling(&ceiling_args))
                .await
                .context("ceiling thread")?;
        }
        None => {}
    }
    let opts = DriveOptions {
        target: args.target.context("--target is required")?,
        write_key: args
            .write_key
            .context("--write-key (or STRATA_WRITE_KEY) is required")?,
        rate: args.rate,
        duration: args.duration,
        batch: args.batch,
        connections: args.connections,
        seed: args.seed,
        users: args.users,
        days: args.days,
        events_per_user: args.events_per_user,
        max_events: args.max_events,
        start_date: None,
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

/// One list to score.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreLine {
    user_id: u64,
    post_ids: Vec<u64>,
    #[serde(default)]
    at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `strata sim feed`: simulated users read Strata's feeds and react.
async fn feed(args: SimFeedArgs) -> Result<()> {
    let config = args.world.config()?;
    let day = args
        .day
        .unwrap_or(config.start_date + chrono::Days::new(u64::from(config.days)));
    eprintln!(
        "sim feed: generating the world ({} users, {} days from {}, seed {}); {} feeds on {day}",
        config.users, config.days, config.start_date, config.seed, args.sessions
    );
    let world = tokio::task::spawn_blocking(move || strata_sim::World::generate(&config))
        .await
        .context("world thread")?;
    let opts = strata_sim::feedloop::FeedLoopOptions {
        feed_url: args.feed_url.clone().unwrap_or_else(|| args.target.clone()),
        token: args.token.clone(),
        target: args.target.clone(),
        write_key: args.write_key.clone(),
        sessions: args.sessions,
        n: args.n,
        day_start_micros: day
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros(),
        seed: args.world.seed,
        concurrency: args.concurrency,
        surface: "home".into(),
    };
    let report = strata_sim::feedloop::feed_loop(std::sync::Arc::new(world), &opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} feeds ({} failed) in {:.1}s, feed p50 {:.1} ms p99 {:.1} ms, {} events sent",
        report.sessions,
        report.failed,
        report.seconds,
        report.feed_p50_ms,
        report.feed_p99_ms,
        report.events_sent
    );
    if report.events_rejected > 0 {
        println!(
            "warning: the collector refused {} events ({})",
            report.events_rejected,
            report
                .first_rejection
                .as_deref()
                .unwrap_or("no reason given")
        );
    }
    println!(
        "{:<16} {:>7} {:>11} {:>8} {:>8} {:>12} {:>14}",
        "variant", "feeds", "impressions", "clicks", "CTR", "likes/impr", "expected CTR"
    );
    for (name, c) in &report.variants {
        println!(
            "{:<16} {:>7} {:>11} {:>8} {:>8.4} {:>12.4} {:>14.4}",
            name, c.feeds, c.impressions, c.clicks, c.ctr, c.likes_per_impression, c.expected_ctr
        );
    }
    Ok(())
}

/// The world `args` describe (generated, with a line on stderr) and the time lists are scored
/// at: `at`, or the last microsecond of the world's window.
fn world_at(
    command: &str,
    args: &WorldArgs,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(strata_sim::World, i64)> {
    let config = args.config()?;
    eprintln!(
        "{command}: generating the world ({} users, {} days from {}, seed {})",
        config.users, config.days, config.start_date, config.seed
    );
    let world = strata_sim::World::generate(&config);
    let at = at.map_or(world.end_micros() - 1, |t| t.timestamp_micros());
    Ok((world, at))
}

/// `strata sim ceiling`: the expected CTR of lists built from what a recommender could know.
fn ceiling(args: &SimCeilingArgs) -> Result<()> {
    if args.n == 0 || args.n > 1000 || args.sample == 0 {
        anyhow::bail!("--n must be between 1 and 1000 and --sample positive");
    }
    let (world, at) = world_at("sim ceiling", &args.world, args.at)?;
    let c = world.ceilings(args.sample, args.n, at);
    if args.json {
        println!("{}", serde_json::to_string(&c)?);
        return Ok(());
    }
    println!(
        "expected CTR of top-{} lists, {} users; the lake's top-3 tags are right {:.0} % of the time",
        c.k,
        c.users,
        100.0 * c.lake_tags_right
    );
    for r in &c.rows {
        println!("{:22} {:.4}  {}", r.name, r.expected_ctr, r.knows);
    }
    Ok(())
}

/// `strata sim score`: expected engagement of ranked lists under the hidden preferences.
fn score(args: &SimScoreArgs) -> Result<()> {
    use std::io::BufRead;
    let (world, default_at) = world_at("sim score", &args.world, args.at)?;
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let (mut n, mut clicks, mut likes, mut ctr, mut share) = (0u64, 0.0, 0.0, 0.0, 0.0);
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading the lists")?;
        if line.trim().is_empty() {
            continue;
        }
        let l: ScoreLine = serde_json::from_str(&line).with_context(|| {
            format!(
                "line {}: expected {{\"user_id\": N, \"post_ids\": [...]}}",
                i + 1
            )
        })?;
        let at = l.at.map_or(default_at, |t| t.timestamp_micros());
        let s = world.score_list(l.user_id, &l.post_ids, at);
        let norm = world.normalised_clicks(l.user_id, &l.post_ids, at);
        n += 1;
        clicks += s.expected_clicks;
        likes += s.expected_likes;
        ctr += s.expected_ctr;
        share += norm;
        if !args.summary {
            println!(
                "{}",
                serde_json::json!({
                    "user_id": l.user_id,
                    "shown": s.shown,
                    "eligible": s.eligible,
                    "expected_clicks": s.expected_clicks,
                    "expected_likes": s.expected_likes,
                    "expected_ctr": s.expected_ctr,
                    "share_of_ideal": norm,
                })
            );
        }
    }
    if n == 0 {
        anyhow::bail!("no lists to score (JSON lines of {{\"user_id\": N, \"post_ids\": [...]}})");
    }
    let n_f = n as f64;
    println!(
        "{}",
        serde_json::json!({
            "lists": n,
            "mean_expected_clicks": clicks / n_f,
            "mean_expected_likes": likes / n_f,
            "mean_expected_ctr": ctr / n_f,
            "mean_share_of_ideal": share / n_f,
        })
    );
    Ok(())
}
