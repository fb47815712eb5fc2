//! `strata init DIR`: a commented default config and an empty data directory.

use std::path::Path;

use crate::config::DEFAULT_TOML;
use anyhow::{bail, Context, Result};

pub fn run(dir: &Path, force: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("strata.toml");
    if path.exists() && !force {
        bail!(
            "{} already exists (use --force to overwrite it)",
            path.display()
        );
    }
    std::fs::write(&path, DEFAULT_TOML).with_context(|| format!("writing {}", path.display()))?;
    let config = crate::config::Config::load(&path)?;
    std::fs::create_dir_all(&config.data.dir)
        .with_context(|| format!("creating {}", config.data.dir.display()))?;
    println!("wrote {}", path.display());
    println!("data directory {}", config.data.dir.display());
    println!();
    println!("next:");
    println!("  strata apps create my-app -c {}", path.display());
    println!("  strata serve -c {}", path.display());
    Ok(())
}
