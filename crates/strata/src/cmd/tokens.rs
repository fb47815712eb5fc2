//! `strata tokens create|list|revoke`: bearer tokens of the Iceberg REST catalog that
//! `strata serve` exposes under `/iceberg`. Only each token's SHA-256 is stored
//! (`<data>/catalog_tokens.json`); a running server reads the file on every request, so a
//! new or revoked token takes effect at once.

use std::path::Path;

use anyhow::{bail, Result};
use strata_lake::rest::Tokens;

use super::load_config;

pub fn create(config: &Path, name: String) -> Result<()> {
    let config = load_config(config)?;
    let path = config.catalog_tokens_path();
    let mut tokens = Tokens::load(&path)?;
    let token = tokens.create(&name)?;
    tokens.save(&path)?;
    eprintln!(
        "created token {name:?} for the REST catalog at http://{}/iceberg; it is shown only now:",
        config.server.listen
    );
    println!("{token}");
    if !config.catalog_server.enabled {
        eprintln!("note: catalog_server.enabled = false in this config: /iceberg is not served");
    } else if config.catalog.kind == strata_core::config::CatalogKind::Rest {
        eprintln!(
            "note: catalog.kind = \"rest\" in this config: /iceberg is not served (the tables are in {})",
            config.catalog.uri
        );
    }
    Ok(())
}

pub fn list(config: &Path) -> Result<()> {
    let config = load_config(config)?;
    let tokens = Tokens::load(&config.catalog_tokens_path())?;
    if tokens.tokens.is_empty() {
        eprintln!("no tokens yet: strata tokens create NAME");
        return Ok(());
    }
    println!("{:<24} {:<14} CREATED", "NAME", "SHA-256");
    for t in &tokens.tokens {
        let short = t.sha256.get(..12).unwrap_or(&t.sha256);
        println!("{:<24} {:<14} {}", t.name, short, t.created_at);
    }
    Ok(())
}

pub fn revoke(config: &Path, name: String) -> Result<()> {
    let config = load_config(config)?;
    let path = config.catalog_tokens_path();
    let mut tokens = Tokens::load(&path)?;
    if !tokens.revoke(&name) {
        bail!("no token named {name:?} (strata tokens list shows them)");
    }
    tokens.save(&path)?;
    eprintln!("revoked token {name:?}");
    Ok(())
}
