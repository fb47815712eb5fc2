//! `strata privacy forget USER_ID…`: erasure of users (GDPR / PIPL). The lake's part is
//! `strata_table::table::erase::forget`; this runs it and every other store that holds
//! per-user data ([`UserDataStore`]), and prints one report.

use std::future::Future;
use std::pin::Pin;

use anyhow::{bail, Context, Result};
use serde_json::json;
use strata_table::table::erase::{self, ErasureReport};
use strata_table::Lake;

use super::load_config;
use crate::cli::{ForgetArgs, PrivacyCommand};

/// What an erasure cannot reach, said in every report.
const NOTES: [&str; 3] = [
    "snapshots that held the users' rows were expired regardless of snapshot retention: time travel to before the erasure is gone",
    "the embedded bus keeps raw events until bus.retention / bus.retention_bytes (and never before every consumer group read them); events of these users still on the bus are landed by the lake sink: run the erasure again after the bus retention has passed, or once the sink has caught up",
    "warehouse aggregates that counted these users without naming them are recomputed by the next DAG run; dead letters (ods.ods_event_rejected.raw) are not searched",
];

/// A store outside the lake that keeps data per user and must forget it with the lake (the
/// online feature store), listed in [`other_stores`].
pub trait UserDataStore: Send + Sync {
    /// Shown in the report.
    fn name(&self) -> &str;
    /// Removes everything the store holds for `ids`; the number of entries removed.
    fn forget<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<u64>> + Send + 'a>>;
}

/// The per-user stores besides the lake that `config` enables: the online feature store,
/// when the warehouse project declares feature views.
fn other_stores(config: &crate::config::Config) -> Vec<Box<dyn UserDataStore>> {
    if config.warehouse.project.as_os_str().is_empty() {
        return Vec::new();
    }
    vec![Box::new(OnlineFeatures {
        config: config.clone(),
    })]
}

/// The online feature store: entities of views keyed by a `[privacy]` user column.
struct OnlineFeatures {
    config: crate::config::Config,
}

impl UserDataStore for OnlineFeatures {
    fn name(&self) -> &str {
        "online feature store"
    }

    fn forget<'a>(
        &'a self,
        ids: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<u64>> + Send + 'a>> {
        Box::pin(async move {
            let views = strata_features::load_views(&self.config.warehouse.project)?;
            if views.is_empty() {
                return Ok(0);
            }
            let store =
                strata_online::OnlineStore::open(&self.config.online, &self.config.data.dir)
                    .await?;
            let privacy = &self.config.privacy;
            let removed = strata_features::erase::forget_users(
                &store,
                &views,
                |view| match &view.source {
                    strata_features::view::Source::Table { namespace, table } => privacy
                        .columns_for(&format!("{namespace}.{table}"))
                        .to_vec(),
                    strata_features::view::Source::Query(_)
                    | strata_features::view::Source::Stream(_) => privacy.user_columns.clone(),
                },
                ids,
            )
            .await?;
            Ok(removed)
        })
    }
}

pub async fn run(command: PrivacyCommand) -> Result<()> {
    match command {
        PrivacyCommand::Forget(args) => forget(args).await,
    }
}

async fn forget(args: ForgetArgs) -> Result<()> {
    let config = load_config(&args.config.config)?;
    let lake = Lake::open(&config.lake_options())
        .await
        .context("opening the lake")?;
    let mut ids = args.users.clone();
    ids.sort();
    ids.dedup();
    let report = erase::forget(&lake, &config.privacy, &ids).await?;
    let mut stores = Vec::new();
    let mut failed_stores = 0;
    for store in other_stores(&config) {
        match store.forget(&ids).await {
            Ok(n) => stores.push(json!({"store": store.name(), "removed": n})),
            Err(e) => {
                failed_stores += 1;
                stores.push(json!({"store": store.name(), "error": e.to_string()}));
            }
        }
    }
    if args.json {
        let out = json!({
            "users": report.users,
            "rows_removed": report.rows_removed(),
            "complete": report.complete() && failed_stores == 0,
            "lake": report,
            "online_store": if stores.is_empty() { json!("none (no feature views)") } else { json!(stores) },
            "notes": NOTES,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_report(&report, &stores);
    }
    // The access log records that an erasure ran and what it removed, never whom: the ids
    // would otherwise outlive the erasure in the log.
    let detail = format!(
        "users={} rows_removed={} tables={} complete={}",
        report.users,
        report.rows_removed(),
        report.tables.len(),
        report.complete() && failed_stores == 0
    );
    super::audit_admin(&config, "privacy forget".to_string(), None, Some(detail)).await;
    let incomplete: Vec<&str> = report
        .tables
        .iter()
        .filter(|t| !t.complete())
        .map(|t| t.table.as_str())
        .collect();
    if !incomplete.is_empty() || failed_stores > 0 {
        bail!(
            "the erasure is not complete ({}{} failed); see above and run it again",
            incomplete.join(", "),
            if failed_stores > 0 { ", a store" } else { "" }
        );
    }
    Ok(())
}

fn print_report(report: &ErasureReport, stores: &[serde_json::Value]) {
    println!(
        "forgot {} user(s): {} rows removed from {} table(s) with user key columns ({} tables in the catalog)",
        report.users,
        report.rows_removed(),
        report.tables.len(),
        report.tables_in_catalog
    );
    let width = report
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  {:>8}  {:>13}  {:>9}  {:>13}  columns",
        "table", "rows", "files w/ rows", "snapshots", "files deleted"
    );
    for t in &report.tables {
        let deleted = t.data_files_deleted
            + t.delete_files_deleted
            + t.manifests_deleted
            + t.manifest_lists_deleted;
        println!(
            "{:width$}  {:>8}  {:>13}  {:>9}  {:>13}  {}",
            t.table,
            t.rows_removed,
            t.files_holding_rows,
            t.snapshots_expired,
            deleted,
            t.columns.join(", ")
        );
        if let Some(e) = &t.error {
            println!("  error: {e}");
        }
        for path in &t.remaining_files {
            println!("  still present (could not delete): {path}");
        }
    }
    if stores.is_empty() {
        println!("online store: none (no feature views)");
    } else {
        for s in stores {
            println!("store: {s}");
        }
    }
    for note in NOTES {
        println!("note: {note}");
    }
}
