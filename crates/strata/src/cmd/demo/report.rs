//! What the demo prints: step headings, progress bars, row counts and the closing summary.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::AsArray;
use strata_sql::{format_batches, OutputFormat, SqlSession};
use strata_table::Lake;

use super::WRITE_KEY;

pub(super) fn step(text: &str) {
    println!("\n{text}");
}

/// `[#########...........]  45%  12345/27000`
pub(super) fn bar(done: u64, total: u64, unit: &str) -> String {
    let width = 30;
    let filled = (done.min(total) * width / total.max(1)) as usize;
    format!(
        "    [{}{}] {:>3}%  {done}/{total} {unit}",
        "#".repeat(filled),
        ".".repeat(width as usize - filled),
        done.min(total) * 100 / total.max(1)
    )
}

pub(super) fn progress(text: &str) {
    eprint!("\r{text}");
    let _ = std::io::stderr().flush();
}

pub(super) async fn count(session: &SqlSession, q: &str) -> Result<u64> {
    let batches = session.run(q).await?;
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .context("count returned no row")?;
    let n = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::UInt64)?;
    Ok(n.as_primitive::<arrow::datatypes::UInt64Type>().value(0))
}

pub(super) async fn summary(lake: &Lake, config: &Path, started: Instant) -> Result<()> {
    let session = SqlSession::new(lake).await?;
    let tables = strata_sql::list_tables(lake.catalog().as_ref()).await?;
    println!(
        "\nbuilt in {:.0}s — rows per table:",
        started.elapsed().as_secs_f64()
    );
    let mut last_ns = String::new();
    for t in tables {
        let (ns, name) = t.split_once('.').unwrap_or(("", &t));
        if ns != last_ns {
            println!("  {ns}");
            last_ns = ns.to_string();
        }
        let n = count(&session, &format!("SELECT count(*) FROM {t}"))
            .await
            .unwrap_or(0);
        println!("    {name:<26} {n:>10}");
    }
    let checks = session
        .run("SELECT status, severity, count(*) AS checks FROM audit.dq_results GROUP BY status, severity ORDER BY status, severity")
        .await?;
    println!(
        "\ndata-quality checks:\n{}",
        format_batches(&checks, OutputFormat::Table)?
    );
    let c = config.display();
    println!("explore it:");
    println!("  strata sql -c {c} \"SELECT event_type, count(*) FROM ods.ods_event GROUP BY 1 ORDER BY 2 DESC\"");
    println!(
        "  strata sql -c {c} \"SELECT * FROM dws.dws_user_daily ORDER BY clicks DESC LIMIT 10\""
    );
    println!("  strata sql -c {c} \"SELECT user_id, ctr_7d, likes_sum_30d FROM ads.ads_user_features ORDER BY dt DESC LIMIT 10\"");
    println!("  strata sql -c {c} \"SELECT * FROM ads.ads_recall_u2u_cf WHERE user_id = 1\"");
    println!("  strata dag runs -c {c}      strata dq report -c {c}");
    println!("  strata serve -c {c}         (collector on 127.0.0.1:8080, write key {WRITE_KEY})");
    Ok(())
}
