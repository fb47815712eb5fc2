//! `strata experiments list | report`: the feed's A/B experiments and their results.

use anyhow::{bail, Result};
use serde_json::json;

use crate::cli::{ExperimentsCommand, ModelsArgs};

pub async fn run(command: ExperimentsCommand) -> Result<()> {
    match command {
        ExperimentsCommand::List(args) => list(&args).await,
        ExperimentsCommand::Report { args, name } => report(&args, &name).await,
    }
}

async fn list(args: &ModelsArgs) -> Result<()> {
    let (config, _, _) = super::dag::open(&args.project).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!(config.experiments))?
        );
        return Ok(());
    }
    if config.experiments.is_empty() {
        println!("no experiments: declare [[experiments]] in strata.toml");
    }
    for e in &config.experiments {
        println!("{}{}", e.name, if e.enabled { "" } else { " (disabled)" });
        for v in &e.variants {
            let mut changes = Vec::new();
            if let Some(r) = v.ranker_version {
                changes.push(format!("ranker v{r}"));
            }
            if let Some(r) = v.recall_version {
                changes.push(format!("recall v{r}"));
            }
            if let Some(s) = &v.sources {
                changes.push(format!("sources {}", s.join("+")));
            }
            if v.no_ranker {
                changes.push("no ranker".into());
            }
            if let Some(m) = v.max_per_author {
                changes.push(format!("max {m} per author"));
            }
            if let Some(l) = v.mmr_lambda {
                changes.push(format!("mmr λ {l}"));
            }
            println!(
                "    {:<16} {:>3} %  {}",
                v.name,
                v.share,
                if changes.is_empty() {
                    "as configured".to_string()
                } else {
                    changes.join(", ")
                }
            );
        }
    }
    Ok(())
}

async fn report(args: &ModelsArgs, name: &str) -> Result<()> {
    let (config, lake, _) = super::dag::open(&args.project).await?;
    if !config.experiments.iter().any(|e| e.name == name) {
        bail!(
            "no experiment {name:?} in strata.toml (experiments: {})",
            config
                .experiments
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let r = strata_feed::report::from_lake(&lake, name).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if r.variants.is_empty() {
        println!("experiment {name}: no feeds served in it yet");
        return Ok(());
    }
    println!(
        "experiment {name} ({} engagements joined by request id, {} by user and post within 24 h)",
        r.matched_by_request_id, r.matched_by_time
    );
    println!(
        "{:<16} {:>7} {:>8} {:>11} {:>8} {:>26} {:>26}",
        "variant",
        "users",
        "feeds",
        "impressions",
        "clicks",
        "CTR [95% CI] (lift, p)",
        "likes/impr [95% CI]"
    );
    let fmt = |x: &strata_feed::report::Ratio| {
        let mut s = format!("{:.4} [{:.4}, {:.4}]", x.value, x.low, x.high);
        if let (Some(l), Some(p)) = (x.lift, x.p_value) {
            s.push_str(&format!(" ({:+.1}%, p {:.3})", l * 100.0, p));
        }
        s
    };
    for v in &r.variants {
        println!(
            "{:<16} {:>7} {:>8} {:>11} {:>8} {:>26} {:>26}",
            v.variant,
            v.users,
            v.feeds,
            v.impressions,
            v.clicks,
            fmt(&v.ctr),
            fmt(&v.likes_per_impression)
        );
    }
    Ok(())
}
