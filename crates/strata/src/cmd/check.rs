//! `strata check`: validate the config offline and show what is in effect.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::load_config;

pub fn run(path: &Path) -> Result<()> {
    let config = load_config(path)?;
    crate::bus::validate(&config)?;
    if let Some(db) = &config.collector.geoip_db {
        if !db.exists() {
            bail!("collector.geoip_db: {} does not exist", db.display());
        }
    }
    let mut shown = config.clone();
    for s in &mut shown.sources {
        s.url = strata_core::config::redact_url(&s.url);
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
