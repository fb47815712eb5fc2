//! `--mysql` / `--postgres`: the business rows written into a real database and carried into
//! ODS by the real connector (snapshot, then stream), checked as `strata cdc verify` does.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;
use anyhow::{bail, Context, Result};
use iceberg::{NamespaceIdent, TableIdent};
use strata_cdc::config::SourceKind;
use strata_core::cdc::TableSchema;
use strata_sim::{Table, World};
use strata_sql::SqlSession;
use strata_table::Lake;

use super::super::demo_db::{self, Database, RowChange};
use super::report::{bar, count, progress};
use super::sim_db::{sim_changes, sim_schema};

/// `--mysql`/`--postgres`: creates the tables in the database, writes the first half of the
/// change log (what the connector's snapshot will read) and adds the `[[sources]]` entry to
/// strata.toml. Returns the connection and the changes still to write (streamed). A rerun on
/// the same data dir and URL finds the tables written and writes nothing.
pub(super) async fn prepare_database(
    config_path: &Path,
    config: &Config,
    world: &World,
    kind: SourceKind,
    url: &str,
) -> Result<(Database, Vec<RowChange>)> {
    let shown = strata_core::redact::redact_url(url);
    let mut db = Database::connect(kind, url).await?;
    match demo_db::configured_url(config) {
        Some(u) if u == url => {
            println!(
                "    {shown}: the tables are there from an earlier demo run (source {} in {})",
                demo_db::SOURCE,
                config_path.display()
            );
            return Ok((db, Vec::new()));
        }
        Some(other) => bail!(
            "{} has a source named {:?} already (url {}); use another --data-dir",
            config_path.display(),
            demo_db::SOURCE,
            strata_core::redact::redact_url(other)
        ),
        None => {}
    }
    let existing = db.existing_tables().await?;
    if !existing.is_empty() {
        bail!(
            "{shown} has table(s) {} already; the demo creates them: drop them or use an empty database",
            existing.join(", ")
        );
    }
    let lake = Lake::open(&config.lake_options()).await?;
    for t in Table::ALL {
        let ident = TableIdent::new(
            NamespaceIdent::new("ods".into()),
            format!("ods_{}", t.name()),
        );
        if lake.catalog().table_exists(&ident).await.unwrap_or(false) {
            bail!(
                "ods.ods_{} exists in {} from a demo run without --mysql/--postgres; use a fresh --data-dir",
                t.name(),
                config.data.dir.display()
            );
        }
    }
    drop(lake);
    let schemas: Vec<(Table, TableSchema)> =
        Table::ALL.iter().map(|t| (*t, sim_schema(*t))).collect();
    let plain: Vec<TableSchema> = schemas.iter().map(|(_, s)| s.clone()).collect();
    db.create_tables(&plain).await?;
    let mut changes = sim_changes(world);
    let rest = changes.split_off(changes.len() / 2);
    let total = changes.len() as u64;
    println!(
        "    {shown}: created {}; writing {total} of {} changes before the connector starts (its snapshot reads them)",
        Table::ALL.map(|t| t.name()).join(", "),
        total + rest.len() as u64
    );
    demo_db::replay(&mut db, &schemas, &changes, |n| {
        progress(&bar(n, total, "changes"))
    })
    .await?;
    eprintln!();
    demo_db::add_source(config_path, kind, url)?;
    Ok((db, rest))
}

/// Writes the rest of the change log (the connector streams it), then waits until the source
/// streams and every ODS table equals its source table (row count and content, as
/// `strata cdc verify` compares them). Returns the ODS row counts.
pub(super) async fn land_rows_via_source(
    config: &Config,
    db: &mut Database,
    rest: &[RowChange],
) -> Result<Vec<(String, u64)>> {
    let schemas: Vec<(Table, TableSchema)> =
        Table::ALL.iter().map(|t| (*t, sim_schema(*t))).collect();
    let source = config
        .sources
        .iter()
        .find(|s| s.name == demo_db::SOURCE)
        .context("the demo's source is not in the config")?;
    let started = Instant::now();
    let limit = Duration::from_secs(300);
    // The rest goes in once the snapshot is done, so it takes the stream's path.
    let mut waited = false;
    loop {
        let st = strata_cdc::status(source, &config.data.dir)?.map(|s| s.state);
        if st
            .as_ref()
            .is_some_and(|s| s.phase == strata_cdc::state::Phase::Stream)
        {
            if waited {
                eprintln!();
            }
            break;
        }
        waited = true;
        let error = st.and_then(|s| s.last_error);
        if started.elapsed() > limit {
            bail!(
                "the connector's snapshot did not finish within {limit:?}{}",
                error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
        }
        progress(&format!(
            "    waiting for the connector's snapshot{}",
            error
                .map(|e| format!(" (retrying: {e})"))
                .unwrap_or_default()
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let total = rest.len() as u64;
    if total > 0 {
        println!("    writing the other {total} changes while the connector streams");
        demo_db::replay(db, &schemas, rest, |n| progress(&bar(n, total, "changes"))).await?;
        eprintln!();
    }
    let lake = Lake::open(&config.lake_options()).await?;
    let mut expected = Vec::new();
    for t in Table::ALL {
        expected.push((t.name().to_string(), db.count(t.name()).await?));
    }
    let started = Instant::now();
    loop {
        let st = strata_cdc::status(source, &config.data.dir)?.map(|s| s.state);
        let streaming = st
            .as_ref()
            .is_some_and(|s| s.phase == strata_cdc::state::Phase::Stream);
        let session = SqlSession::new(&lake).await?;
        let mut have = Vec::new();
        for (t, _) in &expected {
            let n = count(&session, &format!("SELECT count(*) FROM ods.ods_{t}"))
                .await
                .unwrap_or(0);
            have.push(n);
        }
        let done: u64 = have.iter().sum();
        let want: u64 = expected.iter().map(|(_, n)| n).sum();
        progress(&format!(
            "    {}  {done}/{want} rows in ODS{}",
            if streaming { "streaming" } else { "snapshot " },
            st.as_ref()
                .and_then(|s| s.last_error.as_ref())
                .map(|e| format!(" (retrying: {e})"))
                .unwrap_or_default()
        ));
        let counts_match = expected.iter().zip(&have).all(|((_, w), h)| w == h);
        if streaming && counts_match {
            let reports = super::super::cdc::check_once(&lake, source, &source.tables).await?;
            if reports.iter().all(strata_cdc::verify::Report::equal) {
                eprintln!();
                println!(
                    "    {} tables streaming; source and ODS equal (row count and content checksum, as `strata cdc verify {}` checks)",
                    reports.len(),
                    demo_db::SOURCE
                );
                if let Some(s) = &st {
                    println!(
                        "    connector: {} changes streamed after the snapshot, position {}",
                        s.changes, s.resume
                    );
                }
                break;
            }
        }
        if started.elapsed() > limit {
            eprintln!();
            let reports = super::super::cdc::check_once(&lake, source, &source.tables).await?;
            for r in &reports {
                super::super::cdc::print_report(r);
            }
            bail!(
                "the connector did not bring the ODS level with the database within {limit:?}{}",
                st.and_then(|s| s.last_error)
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(expected)
}
