//! `strata tokens create|list|revoke`: bearer tokens for what `strata serve` exposes (the
//! Iceberg REST catalog under `/iceberg`, the serving APIs). A token has scopes, optional
//! namespace grants, an optional expiry and an optional role. Only each token's SHA-256 is
//! stored (`<data>/catalog_tokens.json`); a running server reads the file on every request, so
//! a new or revoked token takes effect at once.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use strata_rest::{NewToken, Scope, Tokens};

use super::{audit_admin, load_config};

/// What `tokens create` was asked for, as typed.
pub struct CreateRequest {
    pub scopes: Vec<String>,
    pub namespaces: Vec<String>,
    pub expires_in: Option<Duration>,
    pub role: Option<String>,
}

pub async fn create(config: &Path, name: String, request: CreateRequest) -> Result<()> {
    let config = load_config(config)?;
    let scopes = request
        .scopes
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().parse::<Scope>().map_err(|e| anyhow!(e)))
        .collect::<Result<Vec<_>>>()?;
    if let Some(role) = &request.role {
        config.governance.role(role).map_err(|e| anyhow!("{e}"))?;
    }
    let expires_at = match request.expires_in {
        Some(d) => Some(chrono::Utc::now() + chrono::Duration::from_std(d)?),
        None => None,
    };
    let path = config.catalog_tokens_path();
    let mut tokens = Tokens::load(&path)?;
    let token = tokens.create(
        &name,
        NewToken {
            scopes: scopes.clone(),
            namespaces: request.namespaces.clone(),
            expires_at,
            role: request.role.clone(),
        },
    )?;
    tokens.save(&path)?;
    let scope_list = scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    eprintln!(
        "created token {name:?} (scopes {scope_list}) for http://{}; it is shown only now:",
        config.server.listen
    );
    println!("{token}");
    if !config.catalog_server.enabled {
        eprintln!("note: catalog_server.enabled = false in this config: /iceberg is not served");
    } else if config.catalog.kind == strata_table::config::CatalogKind::Rest {
        eprintln!(
            "note: catalog.kind = \"rest\" in this config: /iceberg is not served (the tables are in {})",
            config.catalog.uri
        );
    }
    let detail = format!(
        "scopes={scope_list} namespaces={} role={} expires_at={}",
        request.namespaces.join(","),
        request.role.as_deref().unwrap_or("-"),
        expires_at.map_or_else(|| "never".to_string(), |t| t.to_rfc3339()),
    );
    audit_admin(
        &config,
        "tokens create".to_string(),
        Some(name),
        Some(detail),
    )
    .await;
    Ok(())
}

pub fn list(config: &Path) -> Result<()> {
    let config = load_config(config)?;
    let tokens = Tokens::load(&config.catalog_tokens_path())?;
    if tokens.tokens.is_empty() {
        eprintln!("no tokens yet: strata tokens create NAME");
        return Ok(());
    }
    let now = chrono::Utc::now();
    println!(
        "{:<20} {:<14} {:<32} {:<16} {:<12} {:<22} CREATED",
        "NAME", "SHA-256", "SCOPES", "NAMESPACES", "ROLE", "EXPIRES"
    );
    for t in &tokens.tokens {
        let short = t.sha256.get(..12).unwrap_or(&t.sha256);
        let scopes = t
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let namespaces = if t.namespaces.is_empty() {
            "*".to_string()
        } else {
            t.namespaces.join(",")
        };
        let expires = match (t.expires_at.as_deref(), t.expiry()) {
            (None, _) => "never".to_string(),
            (Some(text), Some(at)) if at <= now => format!("{text} (expired)"),
            (Some(text), _) => text.to_string(),
        };
        println!(
            "{:<20} {:<14} {:<32} {:<16} {:<12} {:<22} {}",
            t.name,
            short,
            scopes,
            namespaces,
            t.role.as_deref().unwrap_or("-"),
            expires,
            t.created_at
        );
    }
    Ok(())
}

pub async fn revoke(config: &Path, name: String) -> Result<()> {
    let config = load_config(config)?;
    let path = config.catalog_tokens_path();
    let mut tokens = Tokens::load(&path)?;
    if !tokens.revoke(&name) {
        bail!("no token named {name:?} (strata tokens list shows them)");
    }
    tokens.save(&path)?;
    eprintln!("revoked token {name:?}");
    audit_admin(&config, "tokens revoke".to_string(), Some(name), None).await;
    Ok(())
}
