//! `strata pulls run NAME [--start T] [--end T]` and `strata pulls status`: the scheduled HTTP
//! pulls of `[[pulls]]`. The work is in `strata-pull`; this prints.

use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use strata_pull::{parse_time, Pull, RunStatus, Runner, WindowRun};
use strata_table::Lake;

use super::load_config;
use crate::cli::PullsCommand;

pub async fn run(command: PullsCommand) -> Result<()> {
    match command {
        PullsCommand::Run {
            config,
            name,
            start,
            end,
        } => run_pull(&config.config, &name, start.as_deref(), end.as_deref()).await,
        PullsCommand::Status { config, json } => status(&config.config, json),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn pull_named(config: &crate::config::Config, path: &Path, name: &str) -> Result<Pull> {
    let Some((index, entry)) = config
        .pulls
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == name)
    else {
        let names: Vec<&str> = config.pulls.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no pull named {name:?} in {} ({})",
            path.display(),
            if names.is_empty() {
                "it has no [[pulls]]".to_string()
            } else {
                format!("pulls: {}", names.join(", "))
            }
        );
    };
    Ok(Pull::new(entry, index)?)
}

async fn run_pull(path: &Path, name: &str, start: Option<&str>, end: Option<&str>) -> Result<()> {
    let config = load_config(path)?;
    let pull = pull_named(&config, path, name)?;
    let start = start
        .map(parse_time)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--start")?;
    let end = end
        .map(parse_time)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--end")?;
    let windows = strata_pull::windows_for(&pull, start, end, Utc::now())?;
    let lake = Lake::open(&config.lake_options())
        .await
        .context("opening the lake")?;
    let runner = Runner::new(lake, &config.data.dir)?;
    eprintln!(
        "pulling {} window{} of {name} into {}",
        windows.len(),
        if windows.len() == 1 { "" } else { "s" },
        pull.table
    );
    let runs = runner
        .run_windows(&pull, &windows, |r| println!("{}", line(r)))
        .await?;
    let failed = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count();
    if failed > 0 {
        bail!(
            "{failed} of {} window{} failed and wrote nothing (`strata pulls status` lists them; \
             `strata serve` tries them again)",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// One window's outcome on one line.
fn line(r: &WindowRun) -> String {
    let requests = format!(
        "{} request{}{}",
        r.requests,
        if r.requests == 1 { "" } else { "s" },
        if r.retries > 0 {
            format!(" ({} retried)", r.retries)
        } else {
            String::new()
        }
    );
    match r.status {
        RunStatus::Ok => {
            let bad = match (&r.bad_example, r.bad_values) {
                (Some(e), n) if n > 0 => format!(", {n} values NULL ({e})"),
                _ => String::new(),
            };
            format!(
                "{}  ok  {} rows, {} pages, {requests}{bad}",
                r.window, r.rows, r.pages
            )
        }
        RunStatus::Failed => format!(
            "{}  FAILED after {requests}: {}",
            r.window,
            r.error.as_deref().unwrap_or("unknown error")
        ),
    }
}

fn status(path: &Path, json: bool) -> Result<()> {
    let config = load_config(path)?;
    if config.pulls.is_empty() {
        println!("no [[pulls]] configured");
        return Ok(());
    }
    let pulls = strata_pull::compile_all(&config.pulls)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for pull in &pulls {
        let st = strata_pull::state::load(&config.data.dir, pull.name())?;
        let next = strata_pull::next_due(pull, &st, now);
        if json {
            out.push(serde_json::json!({
                "name": pull.name(),
                "table": pull.table.to_string(),
                "schedule": pull.config.schedule,
                "next_due": next.map(time),
                "state": st,
            }));
            continue;
        }
        println!(
            "pull {} → {} (schedule \"{}\", delay {})",
            pull.name(),
            pull.table,
            pull.config.schedule,
            humantime::format_duration(pull.config.delay)
        );
        match &st.last {
            None => println!("  last window:  none yet"),
            Some(r) => {
                println!(
                    "  last window:  {} (finished {})",
                    line(r),
                    time(r.finished_at)
                );
            }
        }
        if let Some(ok) = st
            .last_ok
            .as_ref()
            .filter(|ok| Some(*ok) != st.last.as_ref())
        {
            println!("  last success: {}", line(ok));
        }
        println!(
            "  windows:      {} pulled, {} failed runs",
            st.windows_ok, st.windows_failed
        );
        if !st.failed.is_empty() {
            println!(
                "  failing:      {} window{} waiting for a retry:",
                st.failed.len(),
                if st.failed.len() == 1 { "" } else { "s" }
            );
            for f in st.failed.iter().take(10) {
                println!(
                    "    {} ({} failure{}, last {}): {}",
                    f.window,
                    f.failures,
                    if f.failures == 1 { "" } else { "s" },
                    time(f.last_try),
                    f.error
                );
            }
            if st.failed.len() > 10 {
                println!("    … and {} more", st.failed.len() - 10);
            }
        }
        match next {
            Some(t) if t > now => println!(
                "  next due:     {} (in {})",
                time(t),
                humantime::format_duration(std::time::Duration::from_secs(
                    (t - now).num_seconds().max(0) as u64
                ))
            ),
            Some(t) => println!(
                "  next due:     {} (overdue: `strata serve` with the warehouse role pulls it)",
                time(t)
            ),
            None => println!("  next due:     never (the schedule does not fire again)"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
