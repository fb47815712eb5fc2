//! `strata demo`: the whole platform on the embedded defaults with nothing installed. It
//! generates a social app, sends its events through the real collector over HTTP (each with its
//! simulated time), puts the business database's changes through the CDC path (bus topics, ODS merger), runs the reference warehouse for the
//! simulated days, and prints what it built and how to explore it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use anyhow::{bail, Context, Result};
use arrow::array::AsArray;
use iceberg::{NamespaceIdent, TableIdent};
use strata_bus::{Log, Record};
use strata_cdc::config::SourceKind;
use strata_cdc::merge::{CdcMerger, CdcTable};
use strata_core::cdc::{
    CdcRecord, Change as CdcChange, ColumnSchema, ColumnType, Op as CdcOp, Row as CdcRow,
    SourcePosition, TableSchema, Value,
};
use strata_sim::{drive_with, DriveOptions, DriveStats, World, WorldConfig};
use strata_sim::{Op, Row, Table};
use strata_sql::{format_batches, OutputFormat, SqlSession};
use strata_table::Lake;
use strata_warehouse::backfill::backfill;
use strata_warehouse::{Project, RunOptions};

use super::demo_db::{self, Database, RowChange};
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
        "1/4 generating a social app: {} users, {} day(s), ~{} events per active user a day, seed {}",
        args.users, args.days, args.events_per_user, args.seed
    ));
    let world_config = WorldConfig {
        events_per_user: args.events_per_user,
        ..WorldConfig::ending_today(args.seed, args.users, args.days)
    };
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
            },
            match kind {
                SourceKind::Mysql => "the row binlog",
                SourceKind::Postgres => "logical replication",
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

    step("4/4 running the reference warehouse (models/social) for each simulated day");
    let existing = strata_sql::list_tables(lake.catalog().as_ref())
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
fn bar(done: u64, total: u64, unit: &str) -> String {
    let width = 30;
    let filled = (done.min(total) * width / total.max(1)) as usize;
    format!(
        "    [{}{}] {:>3}%  {done}/{total} {unit}",
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

/// Each business table's final rows as ODS tables (replacing what an earlier run wrote).
/// Source name of the simulated app database: its topics are `cdc.sim.<table>`.
const SIM_SOURCE: &str = "sim";

/// The business rows take the path a real CDC source's changes take: the simulated app
/// database's change log (inserts, updates, deletes, in commit order) goes onto bus topics
/// `cdc.sim.<table>` (a schema record first), and the ODS merger applies it to
/// `ods.ods_<table>`, latest row per primary key, with the CDC metadata columns.
async fn land_rows(config: &Config, lake: &Lake, world: &World) -> Result<Vec<(String, u64)>> {
    let log: Arc<dyn Log> = crate::bus::open(config).await?;
    let mut fresh = Vec::new();
    for t in Table::ALL {
        let topic = strata_core::cdc::topic(SIM_SOURCE, t.name());
        log.ensure_topic(&topic, 1).await?;
        let end = log.end_offsets(&topic).await?.get(&0).copied().unwrap_or(0);
        if end == 0 {
            let schema = CdcRecord::Schema(sim_schema(t));
            log.append(&topic, vec![record(&schema)]).await?;
            fresh.push(t);
        } else {
            println!(
                "    cdc.{SIM_SOURCE}.{}: on the bus from an earlier demo run",
                t.name()
            );
        }
    }
    let total = world.changes().filter(|c| fresh.contains(&c.table)).count() as u64;
    let mut pending: HashMap<Table, Vec<Record>> = HashMap::new();
    let mut sent = 0u64;
    for (seq, c) in world.changes().enumerate() {
        if !fresh.contains(&c.table) {
            continue;
        }
        let change = CdcRecord::Change(Box::new(CdcChange {
            op: match c.op {
                Op::Insert => CdcOp::Create,
                Op::Update => CdcOp::Update,
                Op::Delete => CdcOp::Delete,
            },
            before: c.before.as_ref().map(image),
            after: c.after.as_ref().map(image),
            position: SourcePosition {
                file: "sim-binlog.000001".to_string(),
                pos: seq as u64,
                row: 0,
                snapshot: false,
            },
            txid: None,
            commit_ts: c.ts,
        }));
        let batch = pending.entry(c.table).or_default();
        batch.push(record(&change));
        if batch.len() >= 5_000 {
            let topic = strata_core::cdc::topic(SIM_SOURCE, c.table.name());
            sent += batch.len() as u64;
            log.append(&topic, std::mem::take(batch)).await?;
            progress(&bar(sent, total, "changes"));
        }
    }
    for (t, batch) in pending {
        if !batch.is_empty() {
            sent += batch.len() as u64;
            log.append(&strata_core::cdc::topic(SIM_SOURCE, t.name()), batch)
                .await?;
        }
    }
    progress(&bar(sent, total, "changes"));
    eprintln!();
    println!("    {sent} changes on cdc.{SIM_SOURCE}.*; the ODS merger applies them");
    let tables = Table::ALL
        .iter()
        .map(|t| CdcTable {
            source: SIM_SOURCE.to_string(),
            table: t.name().to_string(),
            topic: strata_core::cdc::topic(SIM_SOURCE, t.name()),
            target: TableIdent::new(
                NamespaceIdent::new("ods".into()),
                format!("ods_{}", t.name()),
            ),
            changelog: None,
            commit_interval: Duration::from_secs(1),
        })
        .collect();
    // A merger that is told to stop applies everything on the bus first.
    let (_stop, stopped) = tokio::sync::watch::channel(true);
    CdcMerger::new(lake, log.clone(), tables)
        .run(stopped)
        .await?;
    log.close().await?;

    let session = SqlSession::new(lake).await?;
    let mut out = Vec::new();
    for t in Table::ALL {
        let n = count(
            &session,
            &format!("SELECT count(*) FROM ods.ods_{}", t.name()),
        )
        .await?;
        out.push((t.name().to_string(), n));
    }
    Ok(out)
}

fn record(r: &CdcRecord) -> Record {
    Record {
        key: Default::default(),
        value: r.to_json().into(),
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
    }
}

async fn count(session: &SqlSession, q: &str) -> Result<u64> {
    let batches = session.run(q).await?;
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .context("count returned no row")?;
    let n = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::UInt64)?;
    Ok(n.as_primitive::<arrow::datatypes::UInt64Type>().value(0))
}

/// The simulated app database's table definition, as a MySQL schema would describe it (the
/// demo's `--mysql`/`--postgres` tables are created from it too).
fn sim_schema(t: Table) -> TableSchema {
    use ColumnType::{DateTime, Int, Long, String as Str};
    let cols: &[(&str, ColumnType)] = match t {
        Table::Users => &[
            ("user_id", Long),
            ("username", Str),
            ("email", Str),
            ("country", Str),
            ("signup_platform", Str),
            ("created_at", DateTime),
        ],
        Table::Profiles => &[
            ("user_id", Long),
            ("display_name", Str),
            ("country", Str),
            ("city", Str),
            ("age_band", Str),
            ("gender", Str),
            ("locale", Str),
            ("platform", Str),
            ("device_model", Str),
            ("app_version", Str),
            ("bio_length", Int),
            ("updated_at", DateTime),
        ],
        Table::Posts => &[
            ("post_id", Long),
            ("author_id", Long),
            ("kind", Str),
            ("tags", Str),
            ("caption_length", Int),
            ("created_at", DateTime),
        ],
        Table::Follows => &[
            ("follower_id", Long),
            ("followee_id", Long),
            ("created_at", DateTime),
        ],
        Table::Orders => &[
            ("order_id", Long),
            ("user_id", Long),
            ("product_id", Str),
            ("product_kind", Str),
            ("amount_minor", Long),
            ("currency", Str),
            ("status", Str),
            ("created_at", DateTime),
            ("updated_at", DateTime),
        ],
        Table::Messages => &[
            ("message_id", Long),
            ("sender_id", Long),
            ("recipient_id", Long),
            ("length", Int),
            ("created_at", DateTime),
        ],
    };
    let key = t.primary_key();
    TableSchema {
        source: SIM_SOURCE.to_string(),
        database: "social".to_string(),
        table: t.name().to_string(),
        columns: cols
            .iter()
            .map(|(name, kind)| ColumnSchema {
                name: name.to_string(),
                source_type: match kind {
                    Long => "bigint",
                    Int => "int",
                    DateTime => "datetime(6)",
                    _ => "varchar(255)",
                }
                .to_string(),
                kind: *kind,
                nullable: !key.contains(name),
            })
            .collect(),
        primary_key: key.iter().map(|k| k.to_string()).collect(),
    }
}

/// A simulated row as a CDC row image (the columns of [`sim_schema`]).
fn image(row: &Row) -> CdcRow {
    let id = |v: u64| Value::Int(v as i64);
    let s = |v: &str| Value::Str(v.to_string());
    let dt = Value::DateTime;
    let cols: Vec<(&str, Value)> = match row {
        Row::User(r) => vec![
            ("user_id", id(r.user_id)),
            ("username", s(&r.username)),
            ("email", s(&r.email)),
            ("country", s(r.country)),
            ("signup_platform", s(r.signup_platform)),
            ("created_at", dt(r.created_at)),
        ],
        Row::Profile(r) => vec![
            ("user_id", id(r.user_id)),
            ("display_name", s(&r.display_name)),
            ("country", s(r.country)),
            ("city", s(r.city)),
            ("age_band", s(r.age_band)),
            ("gender", s(r.gender)),
            ("locale", s(r.locale)),
            ("platform", s(r.platform)),
            ("device_model", s(r.device_model)),
            ("app_version", s(r.app_version)),
            ("bio_length", Value::Int(i64::from(r.bio_length))),
            ("updated_at", dt(r.updated_at)),
        ],
        // Tags travel as a MySQL SET does: comma-separated text.
        Row::Post(r) => vec![
            ("post_id", id(r.post_id)),
            ("author_id", id(r.author_id)),
            ("kind", s(r.kind)),
            ("tags", Value::Str(r.tags.join(","))),
            ("caption_length", Value::Int(i64::from(r.caption_length))),
            ("created_at", dt(r.created_at)),
        ],
        Row::Follow(r) => vec![
            ("follower_id", id(r.follower_id)),
            ("followee_id", id(r.followee_id)),
            ("created_at", dt(r.created_at)),
        ],
        Row::Order(r) => vec![
            ("order_id", id(r.order_id)),
            ("user_id", id(r.user_id)),
            ("product_id", s(r.product_id)),
            ("product_kind", s(r.product_kind)),
            ("amount_minor", Value::Int(r.amount_minor)),
            ("currency", s(r.currency)),
            ("status", s(r.status)),
            ("created_at", dt(r.created_at)),
            ("updated_at", dt(r.updated_at)),
        ],
        Row::Message(r) => vec![
            ("message_id", id(r.message_id)),
            ("sender_id", id(r.sender_id)),
            ("recipient_id", id(r.recipient_id)),
            ("length", Value::Int(i64::from(r.length))),
            ("created_at", dt(r.created_at)),
        ],
    };
    cols.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

async fn summary(lake: &Lake, config: &Path, started: Instant) -> Result<()> {
    let session = SqlSession::new(lake).await?;
    let tables = strata_sql::list_tables(lake.catalog().as_ref()).await?;
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
        let n = count(&session, &format!("SELECT count(*) FROM {t}"))
            .await
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

/// The world's change log with CDC row images, in commit order.
fn sim_changes(world: &World) -> Vec<RowChange> {
    world
        .changes()
        .map(|c| RowChange {
            table: c.table,
            op: c.op,
            before: c.before.as_ref().map(image),
            after: c.after.as_ref().map(image),
        })
        .collect()
}

/// `--mysql`/`--postgres`: creates the tables in the database, writes the first half of the
/// change log (what the connector's snapshot will read) and adds the `[[sources]]` entry to
/// strata.toml. Returns the connection and the changes still to write (streamed). A rerun on
/// the same data dir and URL finds the tables written and writes nothing.
async fn prepare_database(
    config_path: &Path,
    config: &Config,
    world: &World,
    kind: SourceKind,
    url: &str,
) -> Result<(Database, Vec<RowChange>)> {
    let shown = strata_core::redact::redact_url(url);
    let mut db = Database::connect(kind, url).await?;
    match demo_db::configured_url(config) {
        Some(u) if u == url => {
            println!(
                "    {shown}: the tables are there from an earlier demo run (source {} in {})",
                demo_db::SOURCE,
                config_path.display()
            );
            return Ok((db, Vec::new()));
        }
        Some(other) => bail!(
            "{} has a source named {:?} already (url {}); use another --data-dir",
            config_path.display(),
            demo_db::SOURCE,
            strata_core::redact::redact_url(other)
        ),
        None => {}
    }
    let existing = db.existing_tables().await?;
    if !existing.is_empty() {
        bail!(
            "{shown} has table(s) {} already; the demo creates them: drop them or use an empty database",
            existing.join(", ")
        );
    }
    let lake = Lake::open(&config.lake_options()).await?;
    for t in Table::ALL {
        let ident = TableIdent::new(
            NamespaceIdent::new("ods".into()),
            format!("ods_{}", t.name()),
        );
        if lake.catalog().table_exists(&ident).await.unwrap_or(false) {
            bail!(
                "ods.ods_{} exists in {} from a demo run without --mysql/--postgres; use a fresh --data-dir",
                t.name(),
                config.data.dir.display()
            );
        }
    }
    drop(lake);
    let schemas: Vec<(Table, TableSchema)> =
        Table::ALL.iter().map(|t| (*t, sim_schema(*t))).collect();
    let plain: Vec<TableSchema> = schemas.iter().map(|(_, s)| s.clone()).collect();
    db.create_tables(&plain).await?;
    let mut changes = sim_changes(world);
    let rest = changes.split_off(changes.len() / 2);
    let total = changes.len() as u64;
    println!(
        "    {shown}: created {}; writing {total} of {} changes before the connector starts (its snapshot reads them)",
        Table::ALL.map(|t| t.name()).join(", "),
        total + rest.len() as u64
    );
    demo_db::replay(&mut db, &schemas, &changes, |n| {
        progress(&bar(n, total, "changes"))
    })
    .await?;
    eprintln!();
    demo_db::add_source(config_path, kind, url)?;
    Ok((db, rest))
}

/// Writes the rest of the change log (the connector streams it), then waits until the source
/// streams and every ODS table equals its source table (row count and content, as
/// `strata cdc verify` compares them). Returns the ODS row counts.
async fn land_rows_via_source(
    config: &Config,
    db: &mut Database,
    rest: &[RowChange],
) -> Result<Vec<(String, u64)>> {
    let schemas: Vec<(Table, TableSchema)> =
        Table::ALL.iter().map(|t| (*t, sim_schema(*t))).collect();
    let source = config
        .sources
        .iter()
        .find(|s| s.name == demo_db::SOURCE)
        .context("the demo's source is not in the config")?;
    let started = Instant::now();
    let limit = Duration::from_secs(300);
    // The rest goes in once the snapshot is done, so it takes the stream's path.
    let mut waited = false;
    loop {
        let st = strata_cdc::status(source, &config.data.dir)?.map(|s| s.state);
        if st
            .as_ref()
            .is_some_and(|s| s.phase == strata_cdc::state::Phase::Stream)
        {
            if waited {
                eprintln!();
            }
            break;
        }
        waited = true;
        let error = st.and_then(|s| s.last_error);
        if started.elapsed() > limit {
            bail!(
                "the connector's snapshot did not finish within {limit:?}{}",
                error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
        }
        progress(&format!(
            "    waiting for the connector's snapshot{}",
            error
                .map(|e| format!(" (retrying: {e})"))
                .unwrap_or_default()
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let total = rest.len() as u64;
    if total > 0 {
        println!("    writing the other {total} changes while the connector streams");
        demo_db::replay(db, &schemas, rest, |n| progress(&bar(n, total, "changes"))).await?;
        eprintln!();
    }
    let lake = Lake::open(&config.lake_options()).await?;
    let mut expected = Vec::new();
    for t in Table::ALL {
        expected.push((t.name().to_string(), db.count(t.name()).await?));
    }
    let started = Instant::now();
    loop {
        let st = strata_cdc::status(source, &config.data.dir)?.map(|s| s.state);
        let streaming = st
            .as_ref()
            .is_some_and(|s| s.phase == strata_cdc::state::Phase::Stream);
        let session = SqlSession::new(&lake).await?;
        let mut have = Vec::new();
        for (t, _) in &expected {
            let n = count(&session, &format!("SELECT count(*) FROM ods.ods_{t}"))
                .await
                .unwrap_or(0);
            have.push(n);
        }
        let done: u64 = have.iter().sum();
        let want: u64 = expected.iter().map(|(_, n)| n).sum();
        progress(&format!(
            "    {}  {done}/{want} rows in ODS{}",
            if streaming { "streaming" } else { "snapshot " },
            st.as_ref()
                .and_then(|s| s.last_error.as_ref())
                .map(|e| format!(" (retrying: {e})"))
                .unwrap_or_default()
        ));
        let counts_match = expected.iter().zip(&have).all(|((_, w), h)| w == h);
        if streaming && counts_match {
            let reports = super::cdc::check_once(&lake, source, &source.tables).await?;
            if reports.iter().all(strata_cdc::verify::Report::equal) {
                eprintln!();
                println!(
                    "    {} tables streaming; source and ODS equal (row count and content checksum, as `strata cdc verify {}` checks)",
                    reports.len(),
                    demo_db::SOURCE
                );
                if let Some(s) = &st {
                    println!(
                        "    connector: {} changes streamed after the snapshot, position {}",
                        s.changes, s.resume
                    );
                }
                break;
            }
        }
        if started.elapsed() > limit {
            eprintln!();
            let reports = super::cdc::check_once(&lake, source, &source.tables).await?;
            for r in &reports {
                super::cdc::print_report(r);
            }
            bail!(
                "the connector did not bring the ODS level with the database within {limit:?}{}",
                st.and_then(|s| s.last_error)
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(expected)
}
