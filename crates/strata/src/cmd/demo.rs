//! `strata demo`: the whole platform on the embedded defaults with nothing installed. It
//! generates a social app, sends its events through the real collector over HTTP (each with its
//! simulated time), lands the business rows in ODS tables, runs the reference warehouse for the
//! simulated days, and prints what it built and how to explore it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use iceberg::TableIdent;
use strata_lake::{format_batches, table, Lake, OutputFormat, SqlSession};
use strata_sim::{drive_with, DriveOptions, DriveStats, World, WorldConfig};
use strata_sim::{Row, Table};
use strata_warehouse::backfill::backfill;
use strata_warehouse::{Project, RunOptions};

use super::{apps, init, load_config, serve};
use crate::cli::DemoArgs;

/// The reference warehouse, built into the binary so the demo works from any directory.
const SOCIAL: &[(&str, &str)] = &[
    (
        "strata_project.toml",
        include_str!("../../../../models/social/strata_project.toml"),
    ),
    (
        "dwd/dwd_user_action.sql",
        include_str!("../../../../models/social/dwd/dwd_user_action.sql"),
    ),
    (
        "dwd/dwd_post.sql",
        include_str!("../../../../models/social/dwd/dwd_post.sql"),
    ),
    (
        "dwd/dwd_user_relation.sql",
        include_str!("../../../../models/social/dwd/dwd_user_relation.sql"),
    ),
    (
        "dws/dws_user_daily.sql",
        include_str!("../../../../models/social/dws/dws_user_daily.sql"),
    ),
    (
        "dws/dws_post_daily.sql",
        include_str!("../../../../models/social/dws/dws_post_daily.sql"),
    ),
    (
        "dws/dws_pair_interaction.sql",
        include_str!("../../../../models/social/dws/dws_pair_interaction.sql"),
    ),
    (
        "ads/ads_user_features.sql",
        include_str!("../../../../models/social/ads/ads_user_features.sql"),
    ),
    (
        "ads/ads_post_features.sql",
        include_str!("../../../../models/social/ads/ads_post_features.sql"),
    ),
    (
        "ads/ads_sample_ctr.sql",
        include_str!("../../../../models/social/ads/ads_sample_ctr.sql"),
    ),
    (
        "ads/ads_sample_follow.sql",
        include_str!("../../../../models/social/ads/ads_sample_follow.sql"),
    ),
    (
        "ads/ads_recall_u2u_cf.sql",
        include_str!("../../../../models/social/ads/ads_recall_u2u_cf.sql"),
    ),
];

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
        "1/4 generating a social app: {} users, {} day(s), seed {}",
        args.users, args.days, args.seed
    ));
    let world_config = WorldConfig::ending_today(args.seed, args.users, args.days);
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
    opts.connections = 4;
    opts.seed = args.seed;
    opts.users = args.users;
    opts.days = args.days;
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
                progress(&bar(s.acked, events));
            }
        }
    };
    eprintln!();
    println!(
        "    {} events acknowledged at {:.0} events/s (ack p99 {:.1} ms)",
        report.stats.acked, report.events_per_sec, report.latency_p99_ms
    );
    // Graceful stop: the lake sink drains the bus and commits.
    let _ = stop_tx.send(());
    server.await??;
    let lake = Lake::open(&config).await?;

    step(
        "3/4 landing the business rows in ODS (users, profiles, posts, follows, orders, messages)",
    );
    let counts = land_rows(&lake, &world).await?;
    for (table, n) in &counts {
        println!("    ods.ods_{table:<10} {n:>8} rows");
    }

    step("4/4 running the reference warehouse (models/social) for each simulated day");
    let existing = strata_lake::list_tables(lake.catalog().as_ref())
        .await?
        .into_iter()
        .collect();
    let project = Project::load(&project, &existing)?;
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

    summary(&lake, &config_path, started).await
}

fn step(text: &str) {
    println!("\n{text}");
}

/// `[#########...........]  45%  12345/27000`
fn bar(done: u64, total: u64) -> String {
    let width = 30;
    let filled = (done.min(total) * width / total.max(1)) as usize;
    format!(
        "    [{}{}] {:>3}%  {done}/{total} events",
        "#".repeat(filled),
        ".".repeat(width as usize - filled),
        done.min(total) * 100 / total.max(1)
    )
}

fn progress(text: &str) {
    eprint!("\r{text}");
    let _ = std::io::stderr().flush();
}

/// Writes the reference project under DIR/models/social (not overwriting edits).
fn write_project(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("models").join("social");
    for (rel, text) in SOCIAL {
        let path = root.join(rel);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

/// Points `warehouse.project` of the demo's strata.toml at the project.
fn set_project(config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config)?;
    if text.contains("\nproject = \"models/social\"") {
        return Ok(());
    }
    let Some(updated) = text
        .contains("\nproject = \"\"")
        .then(|| text.replacen("\nproject = \"\"", "\nproject = \"models/social\"", 1))
    else {
        bail!(
            "{} sets warehouse.project already; point it at models/social",
            config.display()
        );
    };
    std::fs::write(config, updated)?;
    Ok(())
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn field(name: &str, t: DataType) -> Field {
    Field::new(name, t, true)
}

/// Each business table's final rows as ODS tables (replacing what an earlier run wrote).
async fn land_rows(lake: &Lake, world: &World) -> Result<Vec<(String, usize)>> {
    let mut by_table: HashMap<Table, Vec<Row>> = HashMap::new();
    for (t, _, row) in world.final_rows() {
        by_table.entry(t).or_default().push(row);
    }
    let mut out = Vec::new();
    for t in Table::ALL {
        let rows = by_table.remove(&t).unwrap_or_default();
        let batch = batch_of(t, &rows)?;
        let ident = TableIdent::from_strs(["ods", &format!("ods_{}", t.name())])?;
        table::create_table(lake, &ident, batch.schema().as_ref(), None, HashMap::new()).await?;
        table::replace_all(lake, &ident, vec![batch]).await?;
        out.push((t.name().to_string(), rows.len()));
    }
    Ok(out)
}

fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn batch_of(t: Table, rows: &[Row]) -> Result<RecordBatch> {
    macro_rules! rows_of {
        ($variant:ident) => {
            rows.iter()
                .filter_map(|r| match r {
                    Row::$variant(x) => Some(x),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
    }
    let i64s = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    let times = |v: Vec<i64>| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(v)) };
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = match t {
        Table::Users => {
            let r = rows_of!(User);
            (
                vec![
                    field("user_id", DataType::Int64),
                    field("username", DataType::Utf8),
                    field("email", DataType::Utf8),
                    field("country", DataType::Utf8),
                    field("signup_platform", DataType::Utf8),
                    field("created_at", ts()),
                ],
                vec![
                    i64s(r.iter().map(|x| x.user_id as i64).collect()),
                    strings(r.iter().map(|x| x.username.as_str())),
                    strings(r.iter().map(|x| x.email.as_str())),
                    strings(r.iter().map(|x| x.country)),
                    strings(r.iter().map(|x| x.signup_platform)),
                    times(r.iter().map(|x| x.created_at).collect()),
                ],
            )
        }
        Table::Profiles => {
            let r = rows_of!(Profile);
            (
                vec![
                    field("user_id", DataType::Int64),
                    field("display_name", DataType::Utf8),
                    field("country", DataType::Utf8),
                    field("city", DataType::Utf8),
                    field("age_band", DataType::Utf8),
                    field("gender", DataType::Utf8),
                    field("locale", DataType::Utf8),
                    field("platform", DataType::Utf8),
                    field("device_model", DataType::Utf8),
                    field("app_version", DataType::Utf8),
                    field("bio_length", DataType::Int32),
                    field("updated_at", ts()),
                ],
                vec![
                    i64s(r.iter().map(|x| x.user_id as i64).collect()),
                    strings(r.iter().map(|x| x.display_name.as_str())),
                    strings(r.iter().map(|x| x.country)),
                    strings(r.iter().map(|x| x.city)),
                    strings(r.iter().map(|x| x.age_band)),
                    strings(r.iter().map(|x| x.gender)),
                    strings(r.iter().map(|x| x.locale)),
                    strings(r.iter().map(|x| x.platform)),
                    strings(r.iter().map(|x| x.device_model)),
                    strings(r.iter().map(|x| x.app_version)),
                    Arc::new(Int32Array::from_iter_values(
                        r.iter().map(|x| i32::from(x.bio_length)),
                    )),
                    times(r.iter().map(|x| x.updated_at).collect()),
                ],
            )
        }
        Table::Posts => {
            let r = rows_of!(Post);
            let tags: Vec<String> = r.iter().map(|x| x.tags.join(",")).collect();
            (
                vec![
                    field("post_id", DataType::Int64),
                    field("author_id", DataType::Int64),
                    field("kind", DataType::Utf8),
                    field("tags", DataType::Utf8),
                    field("caption_length", DataType::Int32),
                    field("created_at", ts()),
                ],
                vec![
                    i64s(r.iter().map(|x| x.post_id as i64).collect()),
                    i64s(r.iter().map(|x| x.author_id as i64).collect()),
                    strings(r.iter().map(|x| x.kind)),
                    strings(tags.iter().map(String::as_str)),
                    Arc::new(Int32Array::from_iter_values(
                        r.iter().map(|x| i32::from(x.caption_length)),
                    )),
                    times(r.iter().map(|x| x.created_at).collect()),
                ],
            )
        }
        Table::Follows => {
            let r = rows_of!(Follow);
            (
                vec![
                    field("follower_id", DataType::Int64),
                    field("followee_id", DataType::Int64),
                    field("created_at", ts()),
                ],
                vec![
                    i64s(r.iter().map(|x| x.follower_id as i64).collect()),
                    i64s(r.iter().map(|x| x.followee_id as i64).collect()),
                    times(r.iter().map(|x| x.created_at).collect()),
                ],
            )
        }
        Table::Orders => {
            let r = rows_of!(Order);
            (
                vec![
                    field("order_id", DataType::Int64),
                    field("user_id", DataType::Int64),
                    field("product_id", DataType::Utf8),
                    field("product_kind", DataType::Utf8),
                    field("amount_minor", DataType::Int64),
                    field("currency", DataType::Utf8),
                    field("status", DataType::Utf8),
                    field("created_at", ts()),
                    field("updated_at", ts()),
                ],
                vec![
                    i64s(r.iter().map(|x| x.order_id as i64).collect()),
                    i64s(r.iter().map(|x| x.user_id as i64).collect()),
                    strings(r.iter().map(|x| x.product_id)),
                    strings(r.iter().map(|x| x.product_kind)),
                    i64s(r.iter().map(|x| x.amount_minor).collect()),
                    strings(r.iter().map(|x| x.currency)),
                    strings(r.iter().map(|x| x.status)),
                    times(r.iter().map(|x| x.created_at).collect()),
                    times(r.iter().map(|x| x.updated_at).collect()),
                ],
            )
        }
        Table::Messages => {
            let r = rows_of!(Message);
            (
                vec![
                    field("message_id", DataType::Int64),
                    field("sender_id", DataType::Int64),
                    field("recipient_id", DataType::Int64),
                    field("length", DataType::Int32),
                    field("created_at", ts()),
                ],
                vec![
                    i64s(r.iter().map(|x| x.message_id as i64).collect()),
                    i64s(r.iter().map(|x| x.sender_id as i64).collect()),
                    i64s(r.iter().map(|x| x.recipient_id as i64).collect()),
                    Arc::new(Int32Array::from_iter_values(
                        r.iter().map(|x| i32::from(x.length)),
                    )),
                    times(r.iter().map(|x| x.created_at).collect()),
                ],
            )
        }
    };
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

async fn summary(lake: &Lake, config: &Path, started: Instant) -> Result<()> {
    let session = SqlSession::new(lake).await?;
    let tables = strata_lake::list_tables(lake.catalog().as_ref()).await?;
    println!(
        "\nbuilt in {:.0}s — rows per table:",
        started.elapsed().as_secs_f64()
    );
    let mut last_ns = String::new();
    for t in tables {
        let (ns, name) = t.split_once('.').unwrap_or(("", &t));
        if ns != last_ns {
            println!("  {ns}");
            last_ns = ns.to_string();
        }
        let n = session
            .run(&format!("SELECT count(*) FROM {t}"))
            .await
            .ok()
            .and_then(|b| {
                b.iter().find(|b| b.num_rows() > 0).and_then(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .map(|a| a.value(0))
                })
            })
            .unwrap_or(0);
        println!("    {name:<26} {n:>10}");
    }
    let checks = session
        .run("SELECT status, severity, count(*) AS checks FROM audit.dq_results GROUP BY status, severity ORDER BY status, severity")
        .await?;
    println!(
        "\ndata-quality checks:\n{}",
        format_batches(&checks, OutputFormat::Table)?
    );
    let c = config.display();
    println!("explore it:");
    println!("  strata sql -c {c} \"SELECT event_type, count(*) FROM ods.ods_event GROUP BY 1 ORDER BY 2 DESC\"");
    println!(
        "  strata sql -c {c} \"SELECT * FROM dws.dws_user_daily ORDER BY clicks DESC LIMIT 10\""
    );
    println!("  strata sql -c {c} \"SELECT user_id, ctr_7d, likes_sum_30d FROM ads.ads_user_features ORDER BY dt DESC LIMIT 10\"");
    println!("  strata sql -c {c} \"SELECT * FROM ads.ads_recall_u2u_cf WHERE user_id = 1\"");
    println!("  strata dag runs -c {c}      strata dq report -c {c}");
    println!("  strata serve -c {c}         (collector on 127.0.0.1:8080, write key {WRITE_KEY})");
    Ok(())
}
