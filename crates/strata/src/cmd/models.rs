//! `strata models list | show | train | promote | rollback | canary`: the project's models
//! (`<project>/ml/*.toml`) and their versions in the registry kept with the lake.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use serde_json::json;
use strata_models::registry::{self, DeploymentRow};
use strata_models::{load_models, ModelSpec, TrainOptions};
use strata_table::Lake;

use crate::cli::{ModelsArgs, ModelsCommand};

pub async fn run(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List(args) => list(&args).await,
        ModelsCommand::Show { args, name } => show(&args, &name).await,
        ModelsCommand::Train {
            args,
            name,
            date,
            threads,
        } => train(&args, &name, date, threads).await,
        ModelsCommand::Promote {
            args,
            name,
            version,
        } => promote(&args, &name, version).await,
        ModelsCommand::Rollback {
            args,
            name,
            version,
        } => rollback(&args, &name, version).await,
        ModelsCommand::Canary {
            args,
            name,
            version,
            percent,
        } => canary(&args, &name, version, percent).await,
    }
}

struct Opened {
    config: crate::config::Config,
    lake: Lake,
    models: Vec<ModelSpec>,
}

async fn open(args: &ModelsArgs) -> Result<Opened> {
    let (config, lake, project) = super::dag::open(&args.project).await?;
    let models = load_models(&project.root)
        .with_context(|| format!("models of {}", project.root.display()))?;
    Ok(Opened {
        config,
        lake,
        models,
    })
}

fn find<'a>(o: &'a Opened, name: &str) -> Result<&'a ModelSpec> {
    o.models.iter().find(|m| m.name == name).with_context(|| {
        format!(
            "no model {name:?} in the project (models: {})",
            o.models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn actor() -> String {
    format!(
        "local:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".to_string())
    )
}

async fn list(args: &ModelsArgs) -> Result<()> {
    let o = open(args).await?;
    let mut rows = Vec::new();
    for m in &o.models {
        let versions = registry::versions(&o.lake, &m.name).await?;
        let history = registry::deployments(&o.lake, &m.name).await?;
        let d = registry::current(&history);
        let promoted = d
            .promoted
            .and_then(|v| versions.iter().find(|r| r.version == v));
        rows.push(json!({
            "name": m.name,
            "kind": m.kind.as_str(),
            "file": m.file,
            "source": m.source.describe(),
            "versions": versions.len(),
            "promoted": d.promoted,
            "canary": d.canary,
            "canary_percent": d.canary_percent,
            "metrics": promoted.map(|r| json!(r.metrics)),
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no models (declare them in <project>/ml/*.toml)");
    }
    for r in &rows {
        let canary = match (r["canary"].as_i64(), r["canary_percent"].as_i64()) {
            (Some(v), Some(p)) if p > 0 => format!("  canary v{v} at {p}%"),
            _ => String::new(),
        };
        println!(
            "{:<20} {:<10} {:<28} {} version(s), promoted {}{canary}",
            r["name"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["source"].as_str().unwrap_or_default(),
            r["versions"],
            r["promoted"]
                .as_i64()
                .map_or_else(|| "none".to_string(), |v| format!("v{v}")),
        );
        if let Some(m) = r["metrics"].as_object() {
            let text: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
                .collect();
            println!("{:<20} {}", "", text.join(", "));
        }
    }
    Ok(())
}

async fn show(args: &ModelsArgs, name: &str) -> Result<()> {
    let o = open(args).await?;
    let spec = find(&o, name)?;
    let versions = registry::versions(&o.lake, &spec.name).await?;
    let history = registry::deployments(&o.lake, &spec.name).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "name": spec.name,
                "kind": spec.kind.as_str(),
                "versions": versions,
                "deployments": history,
                "current": registry::current(&history),
            }))?
        );
        return Ok(());
    }
    let d = registry::current(&history);
    println!(
        "{} ({}, {}): promoted {}, canary {}",
        spec.name,
        spec.kind.as_str(),
        spec.file,
        d.promoted
            .map_or_else(|| "none".into(), |v| format!("v{v}")),
        match d.canary {
            Some(v) if d.canary_percent > 0 => format!("v{v} at {}%", d.canary_percent),
            _ => "none".into(),
        }
    );
    println!("\nversions:");
    for v in &versions {
        let metrics: Vec<String> = v
            .metrics
            .iter()
            .map(|(k, x)| format!("{k} {x:.4}"))
            .collect();
        println!(
            "  v{:<3} {}  {:<9}  run {}  train {}..{} ({} rows)  valid {}..{} ({} rows)",
            v.version,
            v.trained_at.format("%Y-%m-%d %H:%M:%S"),
            v.verdict,
            v.run_date,
            v.train_from,
            v.train_to,
            v.train_rows,
            v.valid_from,
            v.valid_to,
            v.valid_rows
        );
        println!("        {}", metrics.join(", "));
        if let Some(note) = &v.note {
            println!("        {note}");
        }
    }
    println!("\ndeployments:");
    for h in &history {
        println!(
            "  {}  {:<12} promoted {:<5} canary {:<5} {:>3}%  by {}{}",
            h.at.format("%Y-%m-%d %H:%M:%S"),
            h.action,
            h.promoted.map_or_else(|| "-".into(), |v| format!("v{v}")),
            h.canary.map_or_else(|| "-".into(), |v| format!("v{v}")),
            h.canary_percent,
            h.actor,
            h.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn train(
    args: &ModelsArgs,
    name: &str,
    date: Option<chrono::NaiveDate>,
    threads: Option<usize>,
) -> Result<()> {
    let o = open(args).await?;
    let spec = find(&o, name)?;
    let options = TrainOptions {
        date,
        threads,
        actor: actor(),
        alert_webhook: o.config.warehouse.alert_webhook.clone(),
    };
    let progress: strata_models::train::ProgressFn = Arc::new(|line: &str| eprintln!("{line}"));
    let outcome = strata_models::train(&o.lake, spec, &options, progress).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    println!(
        "{} version {}: {} ({})",
        outcome.name,
        outcome.version,
        outcome.verdict.as_str(),
        outcome.reason
    );
    println!(
        "  train {} ({} rows), validation {} ({} rows), {:.1}s",
        outcome.train, outcome.train_rows, outcome.valid, outcome.valid_rows, outcome.seconds
    );
    for (k, v) in &outcome.metrics {
        println!("  {k:<24} {v:.4}");
    }
    Ok(())
}

async fn check_version(lake: &Lake, name: &str, version: i64) -> Result<()> {
    let versions = registry::versions(lake, name).await?;
    if !versions.iter().any(|v| v.version == version) {
        bail!(
            "model {name} has no version {version} (versions: {})",
            versions
                .iter()
                .map(|v| v.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

async fn change(lake: &Lake, row: DeploymentRow) -> Result<()> {
    registry::record_deployment(lake, &row).await?;
    println!(
        "{}: {} → promoted {}, canary {}",
        row.name,
        row.action,
        row.promoted
            .map_or_else(|| "none".into(), |v| format!("v{v}")),
        match row.canary {
            Some(v) if row.canary_percent > 0 => format!("v{v} at {}%", row.canary_percent),
            _ => "none".into(),
        }
    );
    println!("  (a running `strata serve` picks it up within its refresh interval)");
    Ok(())
}

async fn promote(args: &ModelsArgs, name: &str, version: i64) -> Result<()> {
    let o = open(args).await?;
    let spec = find(&o, name)?;
    check_version(&o.lake, &spec.name, version).await?;
    let d = registry::current(&registry::deployments(&o.lake, &spec.name).await?);
    let canary = d.canary.filter(|&c| c != version);
    change(
        &o.lake,
        DeploymentRow {
            name: spec.name.clone(),
            at: Utc::now(),
            action: "promote".into(),
            promoted: Some(version),
            canary,
            canary_percent: if canary.is_some() {
                d.canary_percent
            } else {
                0
            },
            actor: actor(),
            reason: Some("promoted by hand".into()),
        },
    )
    .await
}

async fn rollback(args: &ModelsArgs, name: &str, version: Option<i64>) -> Result<()> {
    let o = open(args).await?;
    let spec = find(&o, name)?;
    let history = registry::deployments(&o.lake, &spec.name).await?;
    let d = registry::current(&history);
    let target = match version {
        Some(v) => v,
        None => registry::rollback_target(&history).with_context(|| {
            format!("model {name} has no earlier promoted version to roll back to")
        })?,
    };
    check_version(&o.lake, &spec.name, target).await?;
    change(
        &o.lake,
        DeploymentRow {
            name: spec.name.clone(),
            at: Utc::now(),
            action: "rollback".into(),
            promoted: Some(target),
            canary: None,
            canary_percent: 0,
            actor: actor(),
            reason: Some(format!(
                "rolled back from {}",
                d.promoted
                    .map_or_else(|| "none".into(), |v| format!("v{v}"))
            )),
        },
    )
    .await
}

async fn canary(args: &ModelsArgs, name: &str, version: i64, percent: u8) -> Result<()> {
    let o = open(args).await?;
    let spec = find(&o, name)?;
    check_version(&o.lake, &spec.name, version).await?;
    let d = registry::current(&registry::deployments(&o.lake, &spec.name).await?);
    if d.promoted == Some(version) && percent > 0 {
        bail!("version {version} of {name} is already promoted: a canary must be another version");
    }
    change(
        &o.lake,
        DeploymentRow {
            name: spec.name.clone(),
            at: Utc::now(),
            action: if percent == 0 { "canary_end" } else { "canary" }.into(),
            promoted: d.promoted,
            canary: (percent > 0).then_some(version),
            canary_percent: i32::from(percent),
            actor: actor(),
            reason: None,
        },
    )
    .await
}
