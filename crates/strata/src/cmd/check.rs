//! `strata check`: validate the config offline and show what is in effect. Every problem is
//! reported at once, one line each: each section's own checks, the checks that span
//! sections, librdkafka's judgement of `[bus.librdkafka]` and the files the config names.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::Config;

pub fn run(path: &Path) -> Result<()> {
    let config = Config::load_unchecked(path)?;
    let mut problems = config.validate_all();
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
