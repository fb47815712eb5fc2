//! `strata schemas list | show | register | check | config | infer | views`: the event schema
//! registry from the command line (the work lives in strata-schema; docs/schemas.md).
//!
//! The registry commands read and write `<data>/schema_registry.json` directly, under the same
//! lock a running `serve` takes, so they work beside it (its collectors pick a change up
//! within 2 s). `infer` reads `ods.ods_event`; `views` writes warehouse models.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{Array, AsArray};
use futures::StreamExt;
use strata_schema::http::{Access, AccessHook};
use strata_schema::registry::VersionRef;
use strata_schema::{project, Registry};
use strata_sql::audit::{AccessRecord, AuditLog, Surface};

use crate::cli::SchemasCommand;
use crate::config::Config;

fn open(config: &Config) -> Result<Registry> {
    Ok(Registry::open(
        &config.data.dir,
        config.collector.schemas.clone(),
    )?)
}

pub async fn run(command: SchemasCommand) -> Result<()> {
    match command {
        SchemasCommand::List { config, json } => {
            let config = super::load_config(&config.config)?;
            let reg = open(&config)?;
            let mut rows = Vec::new();
            for subject in reg.subjects() {
                let latest = reg.version(&subject, VersionRef::Latest)?;
                rows.push(serde_json::json!({
                    "subject": subject,
                    "version": latest.version,
                    "id": latest.id,
                    "compatibility": reg.compatibility(&subject).as_str(),
                    "on_violation": config.collector.schemas.action(&subject).as_str(),
                }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no schemas registered");
            } else {
                for r in &rows {
                    println!(
                        "{}  v{}  id {}  {}  on violation: {}",
                        r["subject"].as_str().unwrap_or_default(),
                        r["version"],
                        r["id"],
                        r["compatibility"].as_str().unwrap_or_default(),
                        r["on_violation"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        SchemasCommand::Show {
            subject,
            version,
            config,
        } => {
            let config = super::load_config(&config.config)?;
            let which: VersionRef = version.as_deref().unwrap_or("latest").parse()?;
            let v = open(&config)?.version(&subject, which)?;
            let pretty: serde_json::Value = serde_json::from_str(&v.schema)?;
            eprintln!("{} version {} (id {})", v.subject, v.version, v.id);
            println!("{}", serde_json::to_string_pretty(&pretty)?);
            Ok(())
        }
        SchemasCommand::Register {
            subject,
            file,
            project,
            config,
        } => {
            let config = super::load_config(&config.config)?;
            let reg = open(&config)?;
            if project {
                if subject.is_some() || file.is_some() {
                    bail!("--project registers every file under <project>/schemas: give no SUBJECT or FILE with it");
                }
                let dir = project_dir(&config)?;
                let done = project::sync(&reg, &dir).map_err(|p| anyhow::anyhow!(p.join("\n")))?;
                let created = done.iter().filter(|(_, r)| r.created).count();
                if created > 0 {
                    super::audit_admin(
                        &config,
                        "schemas register --project".to_string(),
                        None,
                        Some(format!("{created} new version(s) from {}", dir.display())),
                    )
                    .await;
                }
                for (subject, r) in &done {
                    if r.created {
                        println!("{subject}: registered version {} (id {})", r.version, r.id);
                    }
                }
                println!(
                    "{} schema file(s) under {}: {} new version(s)",
                    done.len(),
                    dir.display(),
                    done.iter().filter(|(_, r)| r.created).count()
                );
                return Ok(());
            }
            let (Some(subject), Some(file)) = (subject, file) else {
                bail!("give SUBJECT and FILE (or --project)");
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let r = reg.register(&subject, &text)?;
            if r.created {
                super::audit_admin(
                    &config,
                    "schemas register".to_string(),
                    Some(subject.clone()),
                    Some(format!("version {} (id {})", r.version, r.id)),
                )
                .await;
                println!("{subject}: registered version {} (id {})", r.version, r.id);
            } else {
                println!(
                    "{subject}: already registered as version {} (id {})",
                    r.version, r.id
                );
            }
            Ok(())
        }
        SchemasCommand::Check {
            subject,
            file,
            config,
        } => {
            let config = super::load_config(&config.config)?;
            let reg = open(&config)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let level = reg.compatibility(&subject);
            let problems = match reg.test_compatibility(&subject, VersionRef::Latest, &text) {
                Err(strata_schema::Error::SubjectNotFound(_)) => {
                    strata_schema::Schema::parse(&text)
                        .map_err(|p| anyhow::anyhow!("invalid schema: {}", p.join("; ")))?;
                    println!("{subject}: no version yet; the schema is valid");
                    return Ok(());
                }
                other => other?,
            };
            if problems.is_empty() {
                println!("{subject}: compatible ({level})");
                Ok(())
            } else {
                bail!(
                    "{subject}: not {level} compatible:\n{}",
                    problems.join("\n")
                )
            }
        }
        SchemasCommand::Config {
            subject,
            set,
            config,
        } => {
            let config = super::load_config(&config.config)?;
            let reg = open(&config)?;
            if let Some(level) = set {
                let level: strata_schema::Compatibility =
                    level.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                reg.set_compatibility(subject.as_deref(), level)?;
                super::audit_admin(
                    &config,
                    "schemas config".to_string(),
                    subject.clone(),
                    Some(level.to_string()),
                )
                .await;
            }
            match &subject {
                Some(s) => println!("{s}: {}", reg.compatibility(s)),
                None => println!("global: {}", reg.global_compatibility()),
            }
            Ok(())
        }
        SchemasCommand::Infer {
            config,
            days,
            event,
            limit,
            write,
        } => infer(&config.config, days, event, limit, write).await,
        SchemasCommand::Views { config, write } => views(&config.config, write),
    }
}

fn project_dir(config: &Config) -> Result<std::path::PathBuf> {
    let root = &config.warehouse.project;
    if root.as_os_str().is_empty() {
        bail!("no warehouse project: set [warehouse] project in strata.toml (schemas live in <project>/schemas)");
    }
    Ok(project::schemas_dir(root))
}

/// `serve` at start: registers the warehouse project's schema files (in version order; those
/// already registered are left alone). An invalid or incompatible file stops the start.
pub fn register_project(config: &Config) -> Result<()> {
    if config.warehouse.project.as_os_str().is_empty() {
        return Ok(());
    }
    let dir = project::schemas_dir(&config.warehouse.project);
    if !dir.is_dir() {
        return Ok(());
    }
    let registry = open(config)?;
    let done = project::sync(&registry, &dir).map_err(|p| {
        anyhow::anyhow!(
            "the project's event schemas could not be registered (fix the files, or change the subject's compatibility level):\n{}",
            p.join("\n")
        )
    })?;
    let created = done.iter().filter(|(_, r)| r.created).count();
    tracing::info!(files = done.len(), created, dir = %dir.display(), "project event schemas registered");
    Ok(())
}

/// The registry API `serve` mounts under `/registry`: over the collector's registry when the
/// collector runs in this process (a registration over HTTP takes effect in it at once), else
/// over its own. Every call goes to the access log (reads as `serve`, writes as `admin`).
pub fn registry_router(
    config: &Config,
    collector_registry: Option<Arc<Registry>>,
    audit: AuditLog,
) -> Result<axum::Router> {
    let registry = match collector_registry {
        Some(r) => r,
        None => Arc::new(open(config)?),
    };
    let hook: Option<AccessHook> = audit.is_enabled().then(|| {
        Arc::new(move |a: Access| {
            let mut record = AccessRecord::catalog(None, &a.action, a.object, a.status, None);
            record.actor = a.actor.unwrap_or_else(|| "-".to_string());
            record.role = a.role;
            record.surface = if a.write {
                Surface::Admin
            } else {
                Surface::Serve
            };
            audit.record(record);
        }) as AccessHook
    });
    Ok(strata_schema::http::router(
        registry,
        config.catalog_tokens_path(),
        hook,
    ))
}

/// `strata check`: the project's schema files, offline.
pub fn check_problems(config: &Config) -> Vec<String> {
    let root = &config.warehouse.project;
    if root.as_os_str().is_empty() {
        return Vec::new();
    }
    project::check(&project::schemas_dir(root), &config.collector.schemas)
        .into_iter()
        .map(|p| format!("schemas: {p}"))
        .collect()
}

async fn infer(
    path: &Path,
    days: u32,
    event: Option<String>,
    limit: usize,
    write: bool,
) -> Result<()> {
    let config = super::load_config(path)?;
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let target = if write {
        Some(project_dir(&config)?)
    } else {
        None
    };
    let lake = strata_table::Lake::open(&config.lake_options()).await?;
    let session = strata_sql::SqlSession::new(&lake).await?;
    let filter = match &event {
        Some(e) => format!(" AND event_type = '{}'", e.replace('\'', "''")),
        None => String::new(),
    };
    let sql = format!(
        "SELECT type, event_type, properties, traits FROM ods.ods_event \
         WHERE dt >= current_date() - INTERVAL '{days} days' AND type <> 'alias'{filter} LIMIT {limit}"
    );
    let (_, mut stream) = session
        .query_stream(&sql)
        .await
        .context("reading ods.ods_event (has the lake sink written events yet?)")?;
    let mut inferrer = strata_schema::infer::Inferrer::default();
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let col =
            |i: usize| arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8);
        let (kind, name, props, traits) = (col(0)?, col(1)?, col(2)?, col(3)?);
        let (kind, name, props, traits) = (
            kind.as_string::<i32>(),
            name.as_string::<i32>(),
            props.as_string::<i32>(),
            traits.as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            let k = kind.value(i);
            let part = if matches!(k, "identify" | "group") {
                traits
            } else {
                props
            };
            let text = (!part.is_null(i)).then(|| part.value(i));
            inferrer.add(name.value(i), text);
            rows += 1;
        }
    }
    if rows == 0 {
        bail!(
            "no events in ods.ods_event in the last {days} day(s){}",
            event.map(|e| format!(" named {e:?}")).unwrap_or_default()
        );
    }
    let description = format!("inferred by strata schemas infer from the last {days} day(s)");
    let proposals = inferrer.proposals(&description);
    eprintln!("{rows} events read, {} subject(s)", proposals.len());
    for p in &proposals {
        let text = serde_json::to_string_pretty(&p.schema)?;
        match &target {
            None => println!("// {} ({} events)\n{text}", p.subject, p.events),
            Some(dir) => {
                if p.subject.contains(['/', '\\']) || p.subject.starts_with('.') {
                    eprintln!(
                        "{}: not a file name; register it over HTTP instead",
                        p.subject
                    );
                    continue;
                }
                let file = dir.join(format!("{}.json", p.subject));
                if file.exists() || dir.join(&p.subject).exists() {
                    eprintln!("{}: {} exists, not overwritten", p.subject, file.display());
                    continue;
                }
                std::fs::create_dir_all(dir)?;
                std::fs::write(&file, format!("{text}\n"))?;
                println!("wrote {}", file.display());
            }
        }
    }
    Ok(())
}

fn views(path: &Path, write: bool) -> Result<()> {
    let config = super::load_config(path)?;
    let reg = open(&config)?;
    let snapshot = reg.snapshot();
    let subjects = reg.subjects();
    if subjects.is_empty() {
        bail!("no schemas registered: register some first (strata schemas register)");
    }
    let layer_dir = if write {
        let root = &config.warehouse.project;
        if root.as_os_str().is_empty() {
            bail!("--write needs a warehouse project ([warehouse] project in strata.toml)");
        }
        let models = if root.join("models").is_dir() {
            root.join("models")
        } else {
            root.clone()
        };
        Some(models.join("dwd"))
    } else {
        None
    };
    for subject in subjects {
        let Some(latest) = snapshot.latest(&subject) else {
            continue;
        };
        let Some(model) = strata_schema::views::model(&subject, latest.version, &latest.schema)
        else {
            continue;
        };
        for s in &model.skipped {
            eprintln!("{subject}: no column for {s}");
        }
        match &layer_dir {
            None => println!("-- {}.sql\n{}", model.name, model.sql),
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let file = dir.join(format!("{}.sql", model.name));
                std::fs::write(&file, &model.sql)?;
                println!("wrote {}", file.display());
            }
        }
    }
    Ok(())
}
