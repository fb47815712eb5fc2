//! `strata apps create|list`: the registry of apps and their write keys (`<data>/apps.json`).
//! A running `strata serve` picks up changes within a few seconds. `list` also shows which event
//! fields of each app are hashed before the bus (`[collector.pii]`, a config change + restart).

use std::path::Path;

use anyhow::Result;
use strata_core::apps::{App, Apps};

use super::load_config;

pub fn create(
    config: &Path,
    name: String,
    write_key: Option<String>,
    secret: Option<String>,
) -> Result<()> {
    let config = load_config(config)?;
    let path = config.apps_path();
    let mut apps = Apps::load(&path)?;
    let write_key = write_key.unwrap_or_else(|| format!("wk_{}", uuid::Uuid::new_v4().simple()));
    apps.add(App {
        name: name.clone(),
        write_key: write_key.clone(),
        secret,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })?;
    apps.save(&path)?;
    let pii = pii_paths(&config, &name)?;
    if pii != "-" {
        eprintln!("its events have {pii} hashed before they reach the bus ([collector.pii])");
    }
    eprintln!("created app {name:?}; its write key:");
    println!("{write_key}");
    Ok(())
}

/// Whether an app with write key `key` is registered.
pub fn has_key(config: &crate::config::Config, key: &str) -> Result<bool> {
    Ok(Apps::load(&config.apps_path())?.by_write_key(key).is_some())
}

pub fn list(config: &Path) -> Result<()> {
    let config = load_config(config)?;
    let apps = Apps::load(&config.apps_path())?;
    if apps.apps.is_empty() {
        eprintln!("no apps yet: strata apps create NAME");
        return Ok(());
    }
    println!(
        "{:<20} {:<40} {:<7} {:<21} PII HASHED",
        "NAME", "WRITE KEY", "SIGNED", "CREATED"
    );
    for app in &apps.apps {
        let signed = if app.secret.is_some() { "yes" } else { "no" };
        println!(
            "{:<20} {:<40} {:<7} {:<21} {}",
            app.name,
            app.write_key,
            signed,
            app.created_at,
            pii_paths(&config, &app.name)?
        );
    }
    for name in config.collector.pii.apps.keys() {
        if apps.apps.iter().all(|a| &a.name != name) {
            eprintln!("warning: collector.pii.apps names {name:?}, which is not a registered app");
        }
    }
    Ok(())
}

/// The `[collector.pii]` paths hashed in `app`'s events, comma-separated; `-` for none.
fn pii_paths(config: &crate::config::Config, app: &str) -> Result<String> {
    let paths = config.collector.pii.paths_for(app)?;
    if paths.is_empty() {
        return Ok("-".into());
    }
    Ok(paths
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(","))
}
