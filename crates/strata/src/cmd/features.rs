//! `strata features list | materialize | status | get`: the project's feature views and the
//! online store they are synced to.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use serde_json::json;
use strata_features::materialize::{check_views, materialize, SyncOptions};
use strata_features::{load_views, FeatureView};
use strata_online::{entity_key, LookupStatus, OnlineStore};
use strata_table::Lake;
use strata_warehouse::Project;

use crate::cli::{FeaturesArgs, FeaturesCommand};

pub async fn run(command: FeaturesCommand) -> Result<()> {
    match command {
        FeaturesCommand::List(args) => list(&args).await,
        FeaturesCommand::Materialize { args, views, full } => {
            materialize_views(&args, &views, full).await
        }
        FeaturesCommand::Status(args) => status(&args).await,
        FeaturesCommand::Get { args, view, key } => get(&args, &view, &key).await,
    }
}

struct Opened {
    config: crate::config::Config,
    lake: Lake,
    views: Vec<FeatureView>,
}

async fn open(args: &FeaturesArgs) -> Result<(Opened, Project)> {
    let (config, lake, project) = super::dag::open(&args.project).await?;
    let views = load_views(&project.root)
        .with_context(|| format!("feature views of {}", project.root.display()))?;
    Ok((
        Opened {
            config,
            lake,
            views,
        },
        project,
    ))
}

fn produced(project: &Project) -> HashSet<String> {
    project.models.iter().map(|m| m.table()).collect()
}

async fn store(config: &crate::config::Config) -> Result<OnlineStore> {
    OnlineStore::open(&config.online, &config.data.dir)
        .await
        .context("opening the online store")
}

async fn list(args: &FeaturesArgs) -> Result<()> {
    let (o, project) = open(args).await?;
    let (problems, notes) = check_views(&o.lake, &o.views, &produced(&project)).await;
    let mut rows = Vec::new();
    for v in &o.views {
        let features = match strata_features::materialize::resolve(&o.lake, v).await {
            Ok(r) => json!(r
                .columns()
                .iter()
                .map(|c| json!({"name": c.name, "type": c.ty.as_str()}))
                .collect::<Vec<_>>()),
            Err(_) => json!(null),
        };
        rows.push(json!({
            "name": v.name,
            "file": v.file,
            "entity": v.entity,
            "source": v.source.describe(),
            "timestamp": v.timestamp,
            "ttl": v.ttl.map(|d| humantime::format_duration(d).to_string()),
            "online": v.online,
            "features": features,
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"views": rows, "problems": problems, "notes": notes})
            )?
        );
    } else {
        println!(
            "{} feature views ({}):",
            o.views.len(),
            project.root.join("features").display()
        );
        for (v, row) in o.views.iter().zip(&rows) {
            let n = row["features"]
                .as_array()
                .map_or("?".to_string(), |a| a.len().to_string());
            println!(
                "  {:<20} entity {:<18} source {:<28} {:>4} features  ttl {}{}",
                v.name,
                v.entity.join(","),
                v.source.describe(),
                n,
                row["ttl"].as_str().unwrap_or("none"),
                if v.online { "" } else { "  (offline only)" }
            );
        }
        for n in &notes {
            println!("  note: {n}");
        }
    }
    if let Some(report) = crate::config::report(&problems) {
        bail!(report);
    }
    Ok(())
}

async fn materialize_views(args: &FeaturesArgs, names: &[String], full: bool) -> Result<()> {
    let (o, _) = open(args).await?;
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !o.views.iter().any(|v| &v.name == *n))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = o.views.iter().map(|v| v.name.as_str()).collect();
        bail!(
            "no feature view named {} (the project has {})",
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        );
    }
    let chosen: Vec<&FeatureView> = o
        .views
        .iter()
        .filter(|v| {
            if names.is_empty() {
                // Stream views have no sync: `serve` keeps them current.
                v.online && v.stream().is_none()
            } else {
                names.contains(&v.name)
            }
        })
        .collect();
    let store = store(&o.config).await?;
    let options = SyncOptions {
        batch_rows: o.config.online.batch_rows,
        full,
    };
    let mut failed = Vec::new();
    let mut reports = Vec::new();
    for view in chosen {
        if !args.json {
            eprintln!("syncing {} …", view.name);
        }
        match materialize(&o.lake, &store, view, &options).await {
            Ok(r) => {
                if !args.json {
                    println!(
                        "{:<20} {:<12} version {:<4} {:>9} rows read {:>9} written {:>9} entities  {} files  {:.1}s{}",
                        r.view,
                        r.mode,
                        r.version,
                        r.rows_read,
                        r.written,
                        r.entities,
                        r.files_read,
                        r.elapsed_ms as f64 / 1000.0,
                        if r.skipped > 0 { format!("  ({} rows without key or time left out)", r.skipped) } else { String::new() }
                    );
                }
                reports.push(serde_json::to_value(&r)?);
            }
            Err(e) => {
                eprintln!("{}: {e}", view.name);
                failed.push(view.name.clone());
                reports.push(json!({"view": view.name, "error": e.to_string()}));
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"views": reports}))?
        );
    }
    if !failed.is_empty() {
        bail!(
            "sync failed for {} (the previous versions are still served)",
            failed.join(", ")
        );
    }
    Ok(())
}

async fn status(args: &FeaturesArgs) -> Result<()> {
    let (o, _) = open(args).await?;
    let store = store(&o.config).await?;
    let mut rows = Vec::new();
    for view in &o.views {
        let meta = store.meta(&view.name).await?;
        let published = meta.as_ref().and_then(|m| m.published.clone());
        let pending = meta.as_ref().and_then(|m| m.pending.clone());
        // How far the lake has moved since: snapshots newer than the one reflected, and the
        // time between their commits.
        let mut trails = Vec::new();
        for (table, synced) in published
            .as_ref()
            .map(|p| p.sources.clone())
            .unwrap_or_default()
        {
            let Some((ns, t)) = table.split_once('.') else {
                continue;
            };
            let Ok(ident) = iceberg::TableIdent::from_strs([ns, t]) else {
                continue;
            };
            let Ok(loaded) = o.lake.load_table(&ident).await else {
                trails.push(json!({"table": table, "error": "table not found"}));
                continue;
            };
            let md = loaded.metadata();
            let current = md.current_snapshot();
            let mut behind = 0;
            let mut at = current;
            while let Some(s) = at {
                if s.snapshot_id() == synced {
                    break;
                }
                behind += 1;
                at = s.parent_snapshot_id().and_then(|p| md.snapshot_by_id(p));
            }
            let lag_s = match (current, md.snapshot_by_id(synced)) {
                (Some(c), Some(s)) => (c.timestamp_ms() - s.timestamp_ms()) as f64 / 1000.0,
                (Some(_), None) => f64::NAN,
                _ => 0.0,
            };
            trails.push(json!({
                "table": table,
                "synced_snapshot": synced,
                "lake_snapshot": current.map(|c| c.snapshot_id()),
                "snapshots_behind": behind,
                "behind_seconds": if lag_s.is_nan() { json!(null) } else { json!(lag_s) },
            }));
        }
        rows.push(json!({
            "view": view.name,
            "online": view.online,
            "published": published,
            "pending": pending,
            "trails": trails,
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"store": store.kind(), "views": rows}))?
        );
        return Ok(());
    }
    println!("online store: {}", store.kind());
    for r in &rows {
        let name = r["view"].as_str().unwrap_or_default();
        match r["published"].as_object() {
            None => println!("  {name:<20} never synced (strata features materialize {name})"),
            Some(p) => {
                let behind: Vec<String> = r["trails"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| match t["snapshots_behind"].as_u64() {
                        Some(0) => format!("{} up to date", t["table"].as_str().unwrap_or("")),
                        Some(n) => format!(
                            "{} {n} snapshot(s) behind ({}s)",
                            t["table"].as_str().unwrap_or(""),
                            t["behind_seconds"]
                                .as_f64()
                                .map_or("?".into(), |s| format!("{s:.0}"))
                        ),
                        None => format!("{}: {}", t["table"].as_str().unwrap_or(""), t["error"]),
                    })
                    .collect();
                println!(
                    "  {name:<20} version {:<4} {:>9} entities  {:<11} synced {}  {}",
                    p["version"],
                    p["entities"],
                    p["mode"].as_str().unwrap_or(""),
                    p["published_at"].as_str().unwrap_or(""),
                    behind.join("; ")
                );
            }
        }
        if let Some(p) = r["pending"].as_object() {
            println!(
                "  {:<20} a sync of version {} started {} has written {} rows and has not published (running, or killed: the next sync writes over it)",
                "",
                p["version"],
                p["started_at"].as_str().unwrap_or(""),
                p["written"]
            );
        }
    }
    Ok(())
}

async fn get(args: &FeaturesArgs, view: &str, key: &str) -> Result<()> {
    let (o, _) = open(args).await?;
    let Some(v) = o.views.iter().find(|v| v.name == view) else {
        bail!("no feature view named {view}");
    };
    let parts: Vec<&str> = key.split(',').map(str::trim).collect();
    if parts.len() != v.entity.len() {
        bail!(
            "view {view} is keyed by {} ({} value(s), comma-separated); got {}",
            v.entity.join(", "),
            v.entity.len(),
            parts.len()
        );
    }
    let store = store(&o.config).await?;
    let rows = store.lookup(view, &[entity_key(&parts)]).await?;
    let Some(row) = rows.rows.first() else {
        bail!("the store answered no row");
    };
    let mut features = serde_json::Map::new();
    for (c, value) in row.columns.iter().zip(&row.values) {
        features.insert(c.name.clone(), value.to_json());
    }
    let expired = match (row.event_ts, v.ttl) {
        (Some(ts), Some(ttl)) => {
            chrono::Utc::now().timestamp_micros() - ts > ttl.as_micros() as i64
        }
        _ => false,
    };
    let status = match row.status {
        LookupStatus::NotFound => "NOT_FOUND",
        LookupStatus::Present if expired => "OUTSIDE_MAX_AGE",
        LookupStatus::Present => "PRESENT",
    };
    let out = json!({
        "view": view,
        "key": key,
        "status": status,
        "event_timestamp": row.event_ts.map(|t| strata_online::Value::Timestamp(t).to_json()),
        "version": rows.published.as_ref().map(|p| p.version),
        "features": features,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
