//! `strata demo`: the whole platform on the embedded defaults with nothing installed. It
//! generates a social app, sends its events through the real collector over HTTP (each with its
//! simulated time), puts the business database's changes through the CDC path (bus topics, ODS merger), runs the reference warehouse for the
//! simulated days, and prints what it built and how to explore it.
//!
//! [`run`] is the flow, step by step. The reference project it writes is in `project.rs`; the
//! simulated app database as CDC describes it (schemas, row images) in `sim_db.rs`; the
//! built-in path of its changes (bus topics, ODS merger) in `land.rs`; the `--mysql` /
//! `--postgres` path through a real connector in `source.rs`; what it prints in `report.rs`.

mod land;
mod project;
mod report;
pub(super) mod sim_db;
mod source;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strata_cdc::config::SourceKind;
use strata_sim::{drive_with, DriveOptions, DriveStats, World, WorldConfig};
use strata_table::Lake;
use strata_warehouse::backfill::backfill;
use strata_warehouse::{Project, RunOptions};

use super::demo_db::RowChange;
use super::{apps, init, load_config, serve};
use crate::cli::DemoArgs;
use land::land_rows;
use project::{set_project, write_project};
use report::{bar, progress, step, summary};
use source::{land_rows_via_source, prepare_database};

const WRITE_KEY: &str = "demo-write-key";

pub async fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let dir = args.data_dir.clone();
    let config_path = dir.join("strata.toml");
    if !config_path.exists() {
        init::run(&dir, false)?;
    }
    let project = write_project(&dir)?;
    set_project(&config_path)?;
    let mut config = load_config(&config_path)?;
    config.lake.flush_interval = Duration::from_secs(1);
    if !apps::has_key(&config, WRITE_KEY)? {
        apps::create(&config_path, "demo".into(), Some(WRITE_KEY.into()), None)?;
    }

    step(&format!(
        "1/4 generating a social app: {} users, {} day(s), ~{} events per active user a day, seed {}",
        args.users, args.days, args.events_per_user, args.seed
    ));
    let mut world_config = WorldConfig {
        events_per_user: args.events_per_user,
        ..WorldConfig::ending_today(args.seed, args.users, args.days)
    };
    if let Some(start) = args.start_date {
        let end = start + chrono::Days::new(u64::from(args.days));
        if end > chrono::Utc::now().date_naive() + chrono::Days::new(1) {
            bail!(
                "--start-date {start} with --days {} ends the window on {end}, after today: a collector rejects events from the future",
                args.days
            );
        }
        world_config.start_date = start;
    }
    world_config.validate()?;
    let world = {
        let c = world_config.clone();
        tokio::task::spawn_blocking(move || World::generate(&c)).await?
    };
    // One pass over the simulated days (the driver would start another lap after it).
    let events = world.events().count() as u64;
    println!(
        "    {} users, {} posts, {events} events, window {} .. {}",
        world.user_count(),
        world.post_count(),
        world_config.start_date,
        world_config.start_date + chrono::Days::new(u64::from(args.days))
    );

    // With --mysql/--postgres the business tables live in that database: create them, write
    // the first half of the change log (the connector's snapshot reads it), configure the
    // source, and let `serve` below run the connector next to the collector.
    let real = match (&args.mysql, &args.postgres) {
        (Some(u), _) => Some((SourceKind::Mysql, u.clone())),
        (None, Some(u)) => Some((SourceKind::Postgres, u.clone())),
        (None, None) => None,
    };
    let mut pending_changes: Vec<RowChange> = Vec::new();
    let mut database = None;
    if let Some((kind, url)) = &real {
        let (db, rest) = prepare_database(&config_path, &config, &world, *kind, url).await?;
        pending_changes = rest;
        database = Some(db);
        config = load_config(&config_path)?;
        config.lake.flush_interval = Duration::from_secs(1);
    }

    step("2/4 sending the events through the collector (Segment API over HTTP)");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let server = {
        let mut c = config.clone();
        c.server.listen = "127.0.0.1:0".parse()?;
        tokio::spawn(serve::serve_until(
            c,
            async move {
                let _ = stop_rx.await;
            },
            Some(addr_tx),
        ))
    };
    let addr = addr_rx.await.context("the collector did not start")?;
    let mut opts = DriveOptions::new(&format!("http://{addr}"), WRITE_KEY);
    opts.rate = 0;
    opts.duration = Duration::from_secs(24 * 3600);
    opts.connections = args.connections.max(1);
    opts.seed = args.seed;
    opts.users = args.users;
    opts.days = args.days;
    opts.events_per_user = args.events_per_user;
    opts.start_date = Some(world_config.start_date);
    opts.max_events = Some(events);
    let stats = Arc::new(DriveStats::default());
    let drive = {
        let (opts, stats) = (opts.clone(), stats.clone());
        tokio::spawn(async move { drive_with(&opts, stats).await })
    };
    tokio::pin!(drive);
    let report = loop {
        tokio::select! {
            r = &mut drive => break r??,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let s = stats.snapshot();
                progress(&bar(s.acked, events, "events"));
            }
        }
    };
    eprintln!();
    println!(
        "    {} events acknowledged at {:.0} events/s (ack p99 {:.1} ms)",
        report.stats.acked, report.events_per_sec, report.latency_p99_ms
    );
    let counts = if let (Some((kind, url)), Some(db)) = (&real, database.as_mut()) {
        step(&format!(
            "3/4 the business database in {} through the {} connector (snapshot, then {}) into ODS",
            strata_core::redact::redact_url(url),
            match kind {
                SourceKind::Mysql => "MySQL/MariaDB",
                SourceKind::Postgres => "PostgreSQL",
                SourceKind::Elasticsearch => "Elasticsearch",
                SourceKind::Mongodb => "MongoDB",
            },
            match kind {
                SourceKind::Mysql => "the row binlog",
                SourceKind::Postgres => "logical replication",
                SourceKind::Elasticsearch => "increments by timestamp",
                SourceKind::Mongodb => "the change stream",
            }
        ));
        let counts = land_rows_via_source(&config, db, &pending_changes).await;
        // Graceful stop either way: the lake sink drains the bus and commits.
        let _ = stop_tx.send(());
        server.await??;
        counts?
    } else {
        let _ = stop_tx.send(());
        server.await??;
        let lake = Lake::open(&config.lake_options()).await?;
        step(
            "3/4 the business database's changes through the CDC path: bus topics cdc.sim.*, then the ODS merger",
        );
        land_rows(&config, &lake, &world).await?
    };
    let lake = Lake::open(&config.lake_options()).await?;
    for (table, n) in &counts {
        println!("    ods.ods_{table:<10} {n:>8} rows");
    }

    step("4/4 running the reference warehouse (models/social) for each simulated day, syncing its feature views to the online store and training its models");
    let existing = strata_sql::list_tables(lake.catalog().as_ref())
        .await?
        .into_iter()
        .collect();
    let mut project = Project::load(&project, &existing)?;
    super::dag::attach_feature_steps(&config, &mut project, !args.skip_models)?;
    let from = world_config.start_date;
    let to = from + chrono::Days::new(u64::from(args.days.saturating_sub(1)));
    let mut opts = RunOptions::new(from);
    opts.retry_backoff = Duration::from_secs(1);
    let b = backfill(&lake, &project, from, to, &opts).await?;
    for d in &b.skipped {
        println!("    {d}: built by an earlier demo run");
    }
    for r in &b.runs {
        let checks: usize = r.models.iter().map(|m| m.checks.len()).sum();
        let passed: usize = r
            .models
            .iter()
            .map(|m| m.checks.iter().filter(|c| c.status == "pass").count())
            .sum();
        println!(
            "    {}: {} in {:.1}s, {} models, checks {passed}/{checks} passed",
            r.date,
            r.status,
            r.elapsed.as_secs_f64(),
            r.models.len()
        );
    }
    if let Some(bad) = b.runs.iter().find(|r| !r.succeeded()) {
        bail!(
            "the warehouse run for {} {}: see `strata dag logs {} -c {}`",
            bad.date,
            bad.status,
            bad.run_id,
            config_path.display()
        );
    }

    features(&config, &config_path).await?;
    realtime(&config, &config_path).await?;
    if !args.skip_models {
        models(&config, &lake, &config_path).await?;
        feed(&config, &lake).await?;
    }
    summary(&lake, &config_path, started).await
}

/// Real-time features: `serve` keeps the stream views current from the bus (consumer group
/// `realtime`). One click sent to the collector shows in `user_realtime` a few milliseconds
/// later; the demo sends it and times it.
async fn realtime(config: &crate::config::Config, config_path: &std::path::Path) -> Result<()> {
    let views = strata_features::load_views(&config.warehouse.project)?;
    let Some(view) = views
        .iter()
        .find(|v| v.name == "user_realtime" && v.stream().is_some())
    else {
        return Ok(());
    };
    println!(
        "\nreal-time features (stream views, computed by `serve` from the bus as events arrive):"
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let server = {
        let mut c = config.clone();
        c.server.listen = "127.0.0.1:0".parse()?;
        tokio::spawn(serve::serve_until(
            c,
            async move {
                let _ = stop_rx.await;
            },
            Some(addr_tx),
        ))
    };
    let addr = addr_rx.await.context("the server did not start")?;
    let store = strata_online::OnlineStore::open(&config.online, &config.data.dir).await?;
    let state_view = format!("{}{}", view.name, strata_online::stream::STATE_SUFFIX);
    // Ready once the consumer wrote its first checkpoint (resumed, or backfilled from the lake).
    let ready = Instant::now();
    while store.backend().read(&state_view, &[]).await?.0.is_none() {
        if ready.elapsed() > Duration::from_secs(60) {
            bail!("the realtime consumer did not start within a minute");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = strata_online::entity_key(&["1"]);
    let clicks = |rows: strata_online::ViewRows| -> i64 {
        rows.rows
            .first()
            .and_then(|r| {
                r.columns
                    .iter()
                    .position(|c| c.name == "clicks_5m")
                    .and_then(|i| match r.values.get(i) {
                        Some(strata_online::Value::Int64(n)) => Some(*n),
                        _ => None,
                    })
            })
            .unwrap_or(0)
    };
    let before = clicks(store.lookup(&view.name, std::slice::from_ref(&key)).await?);
    let target = strata_sim::http::Target::parse(&format!("http://{addr}"))?;
    let mut conn = strata_sim::http::Conn::connect(&target).await?;
    // A live click, today: the lake gets it too (message id `demo-click-…`).
    let body = format!(
        r#"{{"type":"track","event":"Post Clicked","userId":"1","messageId":"demo-click-{}","properties":{{"post_id":1,"position":1,"feed":"home"}}}}"#,
        strata_core::time::now_micros()
    );
    let body = body.as_bytes();
    let sent = Instant::now();
    let status = conn
        .post("/v1/track", &strata_sim::http::basic_auth(WRITE_KEY), body)
        .await?;
    if status != 200 {
        bail!("the collector answered {status} to the demo click");
    }
    let acked = sent.elapsed();
    let mut after = before;
    while after == before && sent.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        after = clicks(store.lookup(&view.name, std::slice::from_ref(&key)).await?);
    }
    let visible = sent.elapsed();
    let _ = stop_tx.send(());
    server.await??;
    if after == before {
        bail!("the demo click did not reach user_realtime within 10 s");
    }
    println!(
        "    user 1 clicks_5m {before} → {after}: one click acknowledged in {:.1} ms, visible in the feature store {:.1} ms after it was sent",
        acked.as_secs_f64() * 1e3,
        visible.as_secs_f64() * 1e3
    );
    let c = config_path.display();
    println!("send a click and read it back from the running server:");
    println!("  curl -s -u {WRITE_KEY}: http://127.0.0.1:8080/v1/track -H 'Content-Type: application/json' -d '{{\"type\":\"track\",\"event\":\"Post Clicked\",\"userId\":\"1\",\"properties\":{{\"post_id\":1}}}}'");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/v1/features/user_realtime/1   # TOKEN from `strata tokens create … --scope serve -c {c}`");
    Ok(())
}

/// What the DAG's training steps put in the registry, and how to ask for recall.
async fn models(
    config: &crate::config::Config,
    lake: &Lake,
    config_path: &std::path::Path,
) -> Result<()> {
    let specs = strata_models::load_models(&config.warehouse.project)?;
    println!("\nmodels (trained by the DAG after their samples, validated on the later day):");
    for spec in &specs {
        let versions = strata_models::registry::versions(lake, &spec.name).await?;
        let deployed = strata_models::registry::current(
            &strata_models::registry::deployments(lake, &spec.name).await?,
        );
        let promoted = deployed
            .promoted
            .and_then(|v| versions.iter().find(|r| r.version == v));
        match promoted {
            Some(v) => {
                let metrics: Vec<String> = v
                    .metrics
                    .iter()
                    .filter(|(k, _)| !k.starts_with("valid_") && k.as_str() != "trees")
                    .map(|(k, x)| format!("{k} {x:.3}"))
                    .collect();
                println!(
                    "    {:<12} {:<9} v{} promoted ({} version(s)); {}",
                    spec.name,
                    spec.kind.as_str(),
                    v.version,
                    versions.len(),
                    metrics.join(", ")
                );
            }
            None => println!(
                "    {:<12} {:<9} no promoted version ({} trained)",
                spec.name,
                spec.kind.as_str(),
                versions.len()
            ),
        }
    }
    let c = config_path.display();
    println!(
        "recall posts for a user from the promoted two-tower version (same server and token):"
    );
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" -d '{{\"user_id\": 1, \"k\": 10}}' http://127.0.0.1:8080/v1/recall/knn");
    println!("  strata models list -c {c}        strata models show two_tower -c {c}");
    Ok(())
}

/// One feed served in-process from what the demo built (the promoted models, the online
/// store, the catalogue), and how to ask the running server for one.
async fn feed(config: &crate::config::Config, lake: &Lake) -> Result<()> {
    let store = strata_online::OnlineStore::open(&config.online, &config.data.dir).await?;
    let specs = strata_models::load_models(&config.warehouse.project)?;
    let server = strata_models::serve::ModelServer::new(
        lake.clone(),
        store.clone(),
        specs,
        config.data.dir.join("models"),
        config.catalog_tokens_path(),
    );
    for problem in server.refresh().await {
        println!("    (model not loaded: {problem})");
    }
    let views = strata_features::load_views(&config.warehouse.project)?;
    let entities = strata_feed::view_entities(&views);
    let mut feed_config = config.feed.clone();
    // In-process and cold: the budget of a warm server is not the point here.
    feed_config.budget_ms = 10_000;
    feed_config.sources.set_budgets(10_000);
    let service = strata_feed::FeedService::new(
        feed_config,
        Vec::new(),
        Arc::new(server),
        store,
        entities,
        None,
    );
    for w in strata_feed::server::refresh_catalog(&service, lake).await {
        println!("    (feed catalogue: {w})");
    }
    let answer = service
        .feed(strata_feed::FeedRequest {
            user_id: "1".into(),
            n: Some(5),
            ..strata_feed::FeedRequest::default()
        })
        .await
        .context("serving a demo feed")?;
    println!(
        "\nfeed for user 1 (recall → rank → re-rank; ranker {}, recall {}):",
        answer.ranker.as_ref().map_or_else(
            || "none".to_string(),
            |m| format!("{} v{}", m.name, m.version)
        ),
        answer.recall.as_ref().map_or_else(
            || "none".to_string(),
            |m| format!("{} v{}", m.name, m.version)
        ),
    );
    for item in &answer.items {
        println!(
            "    #{} post {:<6} author {:<6} score {:.3}  from {}",
            item.position,
            item.post_id,
            item.author_id,
            item.score,
            item.sources.join("+")
        );
    }
    let stages: Vec<String> = answer
        .stages
        .iter()
        .map(|s| format!("{} {} {}", s.name, s.status, s.count))
        .collect();
    println!("    stages: {}", stages.join(", "));
    for d in &answer.degraded {
        println!("    degraded: {d}");
    }
    println!("ask the running server for a feed (same token):");
    println!(
        "  curl -s -H \"Authorization: Bearer $TOKEN\" 'http://127.0.0.1:8080/v1/feed?user_id=1&n=10'"
    );
    Ok(())
}

/// What the DAG's sync steps put in the online store, and how to read it over HTTP.
async fn features(config: &crate::config::Config, config_path: &std::path::Path) -> Result<()> {
    let store = strata_online::OnlineStore::open(&config.online, &config.data.dir).await?;
    let views = strata_features::load_views(&config.warehouse.project)?;
    println!(
        "
online feature store ({}):",
        store.kind()
    );
    for view in &views {
        match store.meta(&view.name).await?.and_then(|m| m.published) {
            Some(p) => println!(
                "    {:<16} version {:<3} {:>8} entities  ({} sync)",
                view.name, p.version, p.entities, p.mode
            ),
            None => println!("    {:<16} not synced", view.name),
        }
    }
    let c = config_path.display();
    println!("read one user's features from the running server:");
    println!("  strata serve -c {c} &");
    println!("  TOKEN=$(strata tokens create demo-reader --scope serve -c {c})");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/v1/features/user_features/1");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" -d '{{\"features\": [\"user_features:ctr_7d\", \"u2u_cf:similar_users\"], \"entities\": {{\"user_id\": [1, 2]}}}}' http://127.0.0.1:8080/get-online-features");
    Ok(())
}
