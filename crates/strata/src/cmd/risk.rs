//! `strata risk list | block | unblock`: the blocks every collector enforces, read from and
//! written to the bus topic `risk.blocks` (`strata_core::risk`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use strata_bus::{Consumer, Log, Record, StartAt};
use strata_collect::blocks::Blocklist;
use strata_core::risk::{BlockRecord, SubjectKind, RISK_BLOCKS_TOPIC};

use crate::cli::RiskCommand;

pub async fn run(command: RiskCommand) -> Result<()> {
    match command {
        RiskCommand::List { config, json } => {
            let log = open(&config.config).await?;
            let blocks = read_blocks(&log).await?;
            log.close().await?;
            let active = blocks.active(strata_core::time::now_micros());
            if json {
                println!("{}", serde_json::to_string_pretty(&active)?);
            } else if active.is_empty() {
                println!("no blocks in force");
            } else {
                for b in &active {
                    println!(
                        "{}:{}  rule {}  until {}",
                        b.kind.as_str(),
                        b.subject,
                        b.rule,
                        time(b.until_us)
                    );
                }
            }
            Ok(())
        }
        RiskCommand::Block {
            config,
            subject,
            duration,
            reason,
        } => {
            let (kind, subject) = parse_subject(&subject)?;
            if duration.is_zero() {
                bail!("--for must be positive");
            }
            let now = strata_core::time::now_micros();
            let until = now.saturating_add(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX));
            publish(&config.config, kind, subject, until, reason).await?;
            println!("blocked {}:{subject} until {}", kind.as_str(), time(until));
            Ok(())
        }
        RiskCommand::Unblock { config, subject } => {
            let (kind, subject) = parse_subject(&subject)?;
            publish(&config.config, kind, subject, 0, "unblocked by hand".into()).await?;
            println!("unblocked {}:{subject}", kind.as_str());
            Ok(())
        }
    }
}

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn parse_subject(text: &str) -> Result<(SubjectKind, &str)> {
    let (kind, subject) = text
        .split_once(':')
        .filter(|(_, s)| !s.is_empty())
        .with_context(|| {
            format!("subject {text:?}: write user_id:U, anonymous_id:A, ip:ADDR or device_id:D")
        })?;
    let kind = SubjectKind::parse(kind).with_context(|| {
        format!("subject kind {kind:?} is not user_id, anonymous_id, ip or device_id")
    })?;
    Ok((kind, subject))
}

async fn open(config_path: &std::path::Path) -> Result<Arc<dyn Log>> {
    let config = super::load_config(config_path)?;
    crate::bus::open(&config).await.context(
        "opening the bus (with the embedded bus, stop `strata serve` first: one process owns it)",
    )
}

async fn publish(
    config_path: &std::path::Path,
    kind: SubjectKind,
    subject: &str,
    until_us: i64,
    reason: String,
) -> Result<()> {
    let log = open(config_path).await?;
    log.ensure_topic(RISK_BLOCKS_TOPIC, 1).await?;
    let record = BlockRecord {
        kind,
        subject: subject.to_string(),
        rule: "manual".into(),
        until_us,
        decided_at_us: strata_core::time::now_micros(),
        reason,
    };
    log.append(
        RISK_BLOCKS_TOPIC,
        vec![Record {
            key: Bytes::from(record.key()),
            value: Bytes::from(record.to_json()),
            timestamp_ms: record.decided_at_us / 1000,
        }],
    )
    .await?;
    log.close().await?;
    Ok(())
}

/// Every block and unblock on the topic, applied in order.
async fn read_blocks(log: &Arc<dyn Log>) -> Result<Blocklist> {
    let list = Blocklist::default();
    let end = match log.end_offsets(RISK_BLOCKS_TOPIC).await {
        Ok(e) => e.get(&0).copied().unwrap_or(0),
        Err(strata_bus::Error::UnknownTopic(_)) => return Ok(list),
        Err(e) => return Err(e.into()),
    };
    let mut c = Consumer::assign(
        log.clone(),
        None,
        RISK_BLOCKS_TOPIC,
        vec![0],
        StartAt::Earliest,
    )
    .await?;
    c.stop_at([(0, end)].into());
    while !c.done() {
        for r in c.poll(Duration::from_millis(100)).await? {
            if let Some(b) = BlockRecord::from_json(&r.value) {
                list.apply(b);
            }
        }
    }
    Ok(list)
}
