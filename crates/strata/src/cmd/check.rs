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
