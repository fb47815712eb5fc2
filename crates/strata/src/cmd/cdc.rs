//! `strata cdc status`, `strata cdc verify` and `strata cdc resync`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use iceberg::{NamespaceIdent, TableIdent};
use strata_cdc::merge::{applied_in, STOPPED_PROPERTY};
use strata_cdc::state::{self, Phase};
use strata_cdc::verify::{compare, Report};
use strata_table::Lake;

use super::load_config;

fn ident(ns: String, name: String) -> TableIdent {
    TableIdent::new(NamespaceIdent::new(ns), name)
}

fn ts_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| micros.to_string())
}

pub async fn status(path: &Path) -> Result<()> {
    let config = load_config(path)?;
    if config.sources.is_empty() {
        println!("no [[sources]] configured");
        return Ok(());
    }
    let lake = Lake::open(&config.lake_options())
        .await
        .context("opening the lake")?;
    let now = chrono::Utc::now().timestamp_micros();
    for source in &config.sources {
        let status = strata_cdc::status(source, &config.data.dir)?;
        let position = status.as_ref().map(|s| s.position.clone());
        let st = status.map(|s| s.state);
        match &st {
            None => println!("source {}: not started", source.name),
            Some(s) => {
                let phase = match s.phase {
                    Phase::Snapshot => "snapshot",
                    Phase::Stream => "streaming",
                };
                let age_s = (now / 1000 - s.updated_ms).max(0) as f64 / 1e3;
                let position = position.as_deref().unwrap_or_default();
                println!(
                    "source {}: {phase}, {position}, {} changes ({:.0} changes/s, measured {age_s:.0}s ago), last source commit {}, last error: {}",
                    source.name,
                    s.changes,
                    s.changes_per_sec,
                    s.last_commit_ts.map(ts_text).unwrap_or_else(|| "-".into()),
                    s.last_error.as_deref().unwrap_or("none"),
                );
            }
        }
        for table in &source.tables {
            let (ns, name) = source.target(table);
            let target = ident(ns.clone(), name.clone());
            let topic = source.topic(table);
            let snap = st.as_ref().and_then(|s| s.tables.get(table));
            let requested =
                state::resync_requests(&state::state_path(&config.data.dir, &source.name))?;
            let snapshot = match (st.as_ref().map(|s| s.phase), snap) {
                _ if requested.contains(table) => "re-snapshot requested".to_string(),
                (_, Some(t)) if t.error.is_some() => format!(
                    "STOPPED ({}); `strata cdc resync {table}` re-snapshots it",
                    t.error.as_deref().unwrap_or_default()
                ),
                (Some(Phase::Stream), Some(t)) if !t.done => {
                    format!("re-snapshot {} rows", t.rows)
                }
                (Some(Phase::Snapshot), Some(t)) if !t.done => format!("snapshot {} rows", t.rows),
                (Some(Phase::Snapshot), _) => "waiting for snapshot".to_string(),
                (Some(Phase::Stream), _) => "streaming".to_string(),
                (None, _) => "not started".to_string(),
            };
            let (offset, applied_ts, stopped) = match lake.catalog().table_exists(&target).await {
                Ok(true) => {
                    let ods = lake.load_table(&target).await?;
                    let held = applied_in(&ods, &topic)?;
                    let stopped = ods.metadata().properties().get(STOPPED_PROPERTY).cloned();
                    (Some(held.next), held.commit_ts, stopped)
                }
                _ => (None, None, None),
            };
            let lag = match (st.as_ref().and_then(|s| s.last_commit_ts), applied_ts) {
                (Some(src), Some(ods)) if src > ods => format!("{:.1}s", (now - ods) as f64 / 1e6),
                (Some(_), None) => "-".to_string(),
                _ => "0.0s".to_string(),
            };
            println!(
                "  {table} → {ns}.{name}: {snapshot}; ods at bus offset {}; last applied commit {}; lag {lag}",
                offset.map(|o| o.to_string()).unwrap_or_else(|| "- (no table yet)".into()),
                applied_ts.map(ts_text).unwrap_or_else(|| "-".into()),
            );
            if let Some(reason) = stopped {
                println!("    merger STOPPED: {reason}");
            }
        }
    }
    Ok(())
}

/// Asks the source of `table` to re-snapshot it (see `strata_cdc::state::request_resync`).
pub fn resync(path: &Path, table: &str, source: Option<&str>) -> Result<()> {
    let config = load_config(path)?;
    let candidates: Vec<_> = config
        .sources
        .iter()
        .filter(|s| source.is_none_or(|n| s.name == n))
        .filter(|s| s.tables.iter().any(|t| t == table))
        .collect();
    let source = match candidates.as_slice() {
        [one] => *one,
        [] => match source {
            Some(name) => bail!(
                "source {name:?} has no table {table:?} in {}",
                path.display()
            ),
            None => bail!("no source in {} lists table {table:?}", path.display()),
        },
        many => bail!(
            "sources {:?} all list table {table:?}: choose one with --source",
            many.iter().map(|s| &s.name).collect::<Vec<_>>()
        ),
    };
    let state_path = state::state_path(&config.data.dir, &source.name);
    state::request_resync(&state_path, table)?;
    let (ns, name) = source.target(table);
    println!(
        "re-snapshot of {}.{table} → {ns}.{name} requested: a running `strata serve` starts it within a second, otherwise its next start does; `strata cdc status` shows the progress",
        source.name
    );
    Ok(())
}

pub async fn verify(
    path: &Path,
    source_name: &str,
    table: Option<&str>,
    wait: Option<Duration>,
) -> Result<()> {
    let config = load_config(path)?;
    let Some(source) = config.sources.iter().find(|s| s.name == source_name) else {
        bail!(
            "no source named {source_name:?} in {} (configured: {:?})",
            path.display(),
            config.sources.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    };
    let tables: Vec<String> = match table {
        Some(t) if !source.tables.iter().any(|x| x == t) => {
            bail!(
                "source {source_name} has no table {t:?} (tables: {:?})",
                source.tables
            )
        }
        Some(t) => vec![t.to_string()],
        None => source.tables.clone(),
    };
    let lake = Lake::open(&config.lake_options())
        .await
        .context("opening the lake")?;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        let reports = check_once(&lake, source, &tables).await?;
        let equal = reports.iter().all(Report::equal);
        let retry = !equal && deadline.is_some_and(|d| Instant::now() < d);
        if retry {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        for r in &reports {
            print_report(r);
        }
        if !equal {
            bail!("source {source_name} and the ODS differ");
        }
        println!("verify ok: {} table(s) equal", reports.len());
        return Ok(());
    }
}

pub(crate) async fn check_once(
    lake: &Lake,
    source: &strata_cdc::config::SourceConfig,
    tables: &[String],
) -> Result<Vec<Report>> {
    let read = strata_cdc::read_tables(source, tables)
        .await
        .with_context(|| format!("reading source {}", source.name))?;
    let mut reports = Vec::new();
    for (schema, rows) in read {
        let (ns, name) = source.target(&schema.table);
        let target = ident(ns, name);
        let ods = match lake.catalog().table_exists(&target).await {
            Ok(true) => {
                let t = lake.load_table(&target).await?;
                strata_cdc::merge::read_ods_rows(&t, &schema).await?
            }
            _ => Vec::new(),
        };
        reports.push(compare(&schema, &rows, &ods));
    }
    Ok(reports)
}

pub(crate) fn print_report(r: &Report) {
    println!(
        "{}: {} — source {} rows (checksum {:016x}), ods {} rows (checksum {:016x})",
        r.table,
        if r.equal() { "EQUAL" } else { "DIFFERENT" },
        r.source_rows,
        r.source_checksum,
        r.ods_rows,
        r.ods_checksum
    );
    for (what, n, keys) in [
        ("missing in ods", r.missing_count, &r.missing),
        ("extra in ods", r.extra_count, &r.extra),
        ("different", r.different_count, &r.different),
    ] {
        if n > 0 {
            println!("  {what}: {n} (first: {})", keys.join("; "));
        }
    }
}
