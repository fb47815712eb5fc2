//! `strata check`: validate the config offline and show what is in effect. Every problem is
//! reported at once, one line each: each section's own checks, the checks that span
//! sections, librdkafka's judgement of `[bus.librdkafka]` and the files the config names.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::Config;

pub async fn run(path: &Path) -> Result<()> {
    let config = Config::load_unchecked(path)?;
    let mut problems = config.validate_all();
    problems.extend(feature_view_problems(&config).await);
    // The project's event schemas (<project>/schemas): JSON, keywords, successive versions.
    problems.extend(super::schemas::check_problems(&config));
    // Secrets the pulls read from the environment: unset here, a pull would fail.
    problems.extend(strata_pull::config::missing_env(&config.pulls, &|k| {
        std::env::var(k).ok()
    }));
    if let Err(e) = crate::bus::validate(&config) {
        problems.push(format!("{e:#}"));
    }
    if let Some(db) = &config.collector.geoip_db {
        if !db.exists() {
            problems.push(format!(
                "collector.geoip_db: {} does not exist",
                db.display()
            ));
        }
    }
    if let Some(report) = crate::config::report(&problems) {
        bail!(report);
    }
    let mut shown = config.clone();
    strata_pull::config::redact_headers(&mut shown.pulls);
    for s in &mut shown.sources {
        s.url = strata_core::redact::redact_url(&s.url);
    }
    for secret in [
        &mut shown.lake.s3_secret_access_key,
        &mut shown.lake.s3_session_token,
    ] {
        if !secret.is_empty() {
            *secret = "<redacted>".to_string();
        }
    }
    if let Some(s3) = config.lake_s3()? {
        eprintln!(
            "lake on S3: {} at {} (region {}, {} credentials)",
            s3.location(),
            s3.endpoint_display(),
            s3.region,
            if s3.access_key_id.is_some() {
                "static"
            } else {
                "web-identity / instance"
            }
        );
    }
    let text = toml::to_string_pretty(&shown).context("rendering the effective config")?;
    println!(
        "# effective config of {} (file + STRATA_* overrides)",
        path.display()
    );
    println!("{text}");
    eprintln!("config ok");
    Ok(())
}

/// The warehouse project's model files and feature views: each file on its own, and — when the lake is local
/// (embedded catalog, files on disk: nothing to contact) — against the lake's tables.
async fn feature_view_problems(config: &Config) -> Vec<String> {
    let root = &config.warehouse.project;
    if root.as_os_str().is_empty() || !root.is_dir() {
        return Vec::new();
    }
    // Model files (`ml/*.toml`): each checked on its own, `[params]` included.
    let mut model_problems: Vec<String> = match strata_models::load_models(root) {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    };
    let views = match strata_features::load_views(root) {
        Ok(v) => v,
        Err(e) => {
            model_problems.extend(e.to_string().lines().map(str::to_string));
            return model_problems;
        }
    };
    if !model_problems.is_empty() {
        return model_problems;
    }
    let local = config.catalog.kind == strata_table::config::CatalogKind::Sql
        && matches!(config.lake_s3(), Ok(None));
    if views.is_empty() || !local || !config.data.dir.is_dir() {
        return Vec::new();
    }
    let Ok(lake) = strata_table::Lake::open(&config.lake_options()).await else {
        return Vec::new();
    };
    let existing = strata_sql::list_tables(lake.catalog().as_ref())
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let produced = match strata_warehouse::Project::load(root, &existing) {
        Ok(p) => p.models.iter().map(|m| m.table()).collect(),
        Err(_) => Default::default(),
    };
    let (problems, notes) =
        strata_features::materialize::check_views(&lake, &views, &produced).await;
    for n in notes {
        eprintln!("note: {n}");
    }
    problems
}
