//! The `risk` consumer: evaluates every event against `[[risk.rules]]` as it arrives. A block
//! goes onto `risk.blocks` at once (every collector follows that topic and refuses the
//! subject's events) and to the webhook; every decision is appended to
//! `ods.ods_risk_decision` every `flush_interval`, after which the group's position is
//! committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use iceberg::{NamespaceIdent, TableIdent};
use strata_bus::{Consumer, Log, Record, StartAt};
use strata_core::event::EVENTS_TOPIC;
use strata_core::risk::{BlockRecord, RISK_BLOCKS_TOPIC};
use strata_core::BusRecordView;
use strata_table::Lake;
use tokio::sync::watch;

use super::rules::{Decision, RiskConfig, RiskEngine};
use crate::fields::StreamEvent;
use crate::{Error, Result};

/// The consumer group of the risk consumer.
pub const RISK_GROUP: &str = "risk";

/// Where decisions land.
pub fn decisions_ident() -> TableIdent {
    TableIdent::new(
        NamespaceIdent::new("ods".to_string()),
        "ods_risk_decision".to_string(),
    )
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    Arc::new(Schema::new(vec![
        Field::new("decided_at", ts.clone(), false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("subject_kind", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("until", ts, true),
        Field::new("evidence", DataType::Utf8, true),
    ]))
}

fn batch(rows: &[Decision]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&Decision) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|d| d.decided_at_us),
        )),
        text(&|d| d.rule.clone()),
        text(&|d| d.kind.as_str().to_string()),
        text(&|d| d.subject.clone()),
        text(&|d| d.action.to_string()),
        Arc::new(TimestampMicrosecondArray::from(
            rows.iter().map(|d| d.until_us).collect::<Vec<_>>(),
        )),
        text(&|d| d.evidence.to_string()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::Backfill(e.to_string()))
}

/// Decisions kept across failed appends, at most (the oldest are dropped past this, counted).
const MAX_PENDING: usize = 100_000;

/// The risk consumer.
pub struct RiskConsumer {
    log: Arc<dyn Log>,
    lake: Option<Lake>,
    config: RiskConfig,
    http: reqwest::Client,
}

impl RiskConsumer {
    pub fn new(log: Arc<dyn Log>, lake: Option<Lake>, config: RiskConfig) -> RiskConsumer {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        RiskConsumer {
            log,
            lake,
            config,
            http,
        }
    }

    /// Runs until `shutdown` turns true, then appends what it decided and commits.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut engine = RiskEngine::new(self.config.compiled());
        if engine.rules().is_empty() {
            return Ok(());
        }
        let Some(_) = Consumer::wait_for_topic(
            self.log.as_ref(),
            EVENTS_TOPIC,
            &mut shutdown,
            Duration::from_secs(1),
        )
        .await?
        else {
            return Ok(());
        };
        self.log.ensure_topic(RISK_BLOCKS_TOPIC, 1).await?;
        if let Some(lake) = &self.lake {
            strata_table::table::create_table(
                lake,
                &decisions_ident(),
                &schema(),
                Some("day(decided_at)"),
                HashMap::new(),
            )
            .await?;
        }
        // A first start begins with what arrives from now on: rules judge live traffic, not
        // the history a new deployment already holds.
        let committed = self.log.committed(RISK_GROUP, EVENTS_TOPIC).await?;
        let start = if committed.is_empty() {
            StartAt::Latest
        } else {
            StartAt::Committed
        };
        let mut events = Consumer::open(self.log.clone(), RISK_GROUP, EVENTS_TOPIC, start).await?;
        // Manual unblocks reset the engine's memory of a subject.
        let mut blocks = Consumer::assign(
            self.log.clone(),
            None,
            RISK_BLOCKS_TOPIC,
            vec![0],
            StartAt::Latest,
        )
        .await?;
        tracing::info!(rules = ?engine.rules().iter().map(|r| r.name.clone()).collect::<Vec<_>>(), position = ?events.positions(), "risk consumer started");
        let mut pending: Vec<Decision> = Vec::new();
        let mut last_flush = Instant::now();
        let mut decided = Vec::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let records = tokio::select! {
                r = events.poll(Duration::from_millis(200)) => r,
                _ = shutdown.changed() => break,
            };
            let records = match records {
                Ok(r) => r,
                Err(e) if e.retryable() => {
                    tracing::warn!(error = %e, "bus read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for r in blocks.fetch().await.unwrap_or_default() {
                if let Some(b) = BlockRecord::from_json(&r.value).filter(|b| b.until_us == 0) {
                    engine.forgive(b.kind, &b.subject);
                }
            }
            for rec in &records {
                let Ok(BusRecordView::Event(view)) = BusRecordView::decode(&rec.value) else {
                    continue;
                };
                let event = StreamEvent::from_view(view);
                engine.evaluate(&event, event.server_ts, &mut decided);
            }
            if !decided.is_empty() {
                self.enforce(&decided).await;
                for d in &decided {
                    metrics::counter!("strata_risk_decisions_total", "rule" => d.rule.clone(), "action" => d.action)
                        .increment(1);
                }
                pending.append(&mut decided);
                if pending.len() > MAX_PENDING {
                    let drop = pending.len() - MAX_PENDING;
                    metrics::counter!("strata_risk_decisions_dropped_total").increment(drop as u64);
                    pending.drain(..drop);
                }
            }
            if last_flush.elapsed() >= self.config.flush_interval {
                self.flush(&mut pending, &events).await;
                last_flush = Instant::now();
            }
        }
        self.flush(&mut pending, &events).await;
        tracing::info!(position = ?events.positions(), "risk consumer stopped");
        Ok(())
    }

    /// Blocks go onto `risk.blocks` now (the collectors follow it) and to the webhook.
    async fn enforce(&self, decisions: &[Decision]) {
        let blocks: Vec<BlockRecord> = decisions
            .iter()
            .filter_map(|d| {
                Some(BlockRecord {
                    kind: d.kind,
                    subject: d.subject.clone(),
                    rule: d.rule.clone(),
                    until_us: d.until_us?,
                    decided_at_us: d.decided_at_us,
                    reason: d.evidence.to_string(),
                })
            })
            .collect();
        if blocks.is_empty() {
            return;
        }
        let records = || -> Vec<Record> {
            blocks
                .iter()
                .map(|b| Record {
                    key: Bytes::from(b.key()),
                    value: Bytes::from(b.to_json()),
                    timestamp_ms: b.decided_at_us / 1000,
                })
                .collect()
        };
        for attempt in 1..=5u32 {
            match self.log.append(RISK_BLOCKS_TOPIC, records()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, attempt, "publishing risk blocks failed");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        for b in blocks {
            tracing::warn!(kind = b.kind.as_str(), subject = %b.subject, rule = %b.rule, "risk block decided");
            if let Some(url) = self.config.webhook.clone() {
                let http = self.http.clone();
                tokio::spawn(async move { alert(&http, &url, &b).await });
            }
        }
    }

    /// Appends pending decisions to the lake, then commits the group's position (what the
    /// decisions cover). A failed append keeps them for the next flush.
    async fn flush(&self, pending: &mut Vec<Decision>, events: &Consumer) {
        if let (Some(lake), false) = (&self.lake, pending.is_empty()) {
            let appended = match batch(pending) {
                Ok(b) => strata_table::table::append(lake, &decisions_ident(), vec![b])
                    .await
                    .map_err(Error::from),
                Err(e) => Err(e),
            };
            match appended {
                Ok(_) => pending.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, rows = pending.len(), "appending risk decisions failed; retrying at the next flush");
                    return;
                }
            }
        } else if self.lake.is_none() {
            pending.clear();
        }
        if let Err(e) = events.commit().await {
            tracing::debug!(error = %e, "committing the risk group's position");
        }
    }
}

/// POSTs one block to the webhook (Slack-compatible `text`, plus the block itself), three
/// tries; a webhook that is down is logged, never stops the consumer.
async fn alert(http: &reqwest::Client, url: &str, b: &BlockRecord) {
    let until = chrono::DateTime::from_timestamp_micros(b.until_us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let body = serde_json::json!({
        "text": format!("Strata risk: {} {} blocked by rule {} until {until}", b.kind.as_str(), b.subject, b.rule),
        "block": b,
    });
    for attempt in 1..=3u32 {
        match http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(status = %r.status(), attempt, "risk webhook refused the alert")
            }
            Err(e) => tracing::warn!(error = %e, attempt, "risk webhook unreachable"),
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
}
