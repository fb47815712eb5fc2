//! The access log: `audit.access_log`, an append-only Iceberg table of who did what, when, and
//! how it ended — REST catalog calls, `strata sql` statements, admin commands (tokens,
//! erasure, table maintenance). Rows are appended through the one commit path like every
//! other table (`table::append` → `swap_metadata`), so other engines read it and a crash never
//! leaves half a commit.
//!
//! In `strata serve`, [`AuditLog`] buffers records on a bounded channel and appends them every
//! `governance.audit_flush_interval` (callers wait when the channel is full, never drop). A
//! failed append keeps its rows and is retried at the next tick; rows still buffered when the
//! process is killed are lost (the calls they describe were answered; the log is not a
//! write-ahead log). One-shot commands append their row directly with [`append`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::TimestampMicrosecondArray;
use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use iceberg::TableIdent;
use tokio::sync::{mpsc, watch};

use strata_core::tokens::Token;
use strata_table::error::{Error, Result};
use strata_table::lake::Lake;

/// The table's namespace and name.
pub const ACCESS_LOG_NAMESPACE: &str = "audit";
pub const ACCESS_LOG_TABLE: &str = "access_log";

/// Records waiting for the next append, at most.
const CHANNEL_CAPACITY: usize = 65_536;
/// Rows kept across failed appends, at most (the oldest are dropped past this, counted).
const MAX_PENDING: usize = 1_000_000;

pub fn access_log_ident() -> TableIdent {
    TableIdent::new(
        iceberg::NamespaceIdent::new(ACCESS_LOG_NAMESPACE.to_string()),
        ACCESS_LOG_TABLE.to_string(),
    )
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("actor", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, true),
        Field::new("surface", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("object", DataType::Utf8, true),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("status", DataType::Int32, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("detail", DataType::Utf8, true),
    ]))
}

/// Where an access came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The Iceberg REST catalog (`/iceberg`).
    Catalog,
    /// A SQL statement (`strata sql`).
    Sql,
    /// The feature and feed APIs.
    Serve,
    /// An administrative command (tokens, erasure, table maintenance).
    Admin,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Catalog => "catalog",
            Surface::Sql => "sql",
            Surface::Serve => "serve",
            Surface::Admin => "admin",
        }
    }
}

/// How an access ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused: no or a bad token (401), or not allowed (403).
    Denied,
    /// The request was wrong (other 4xx).
    Rejected,
    /// It failed on the server's side (5xx).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }

    pub fn from_status(status: u16) -> Outcome {
        match status {
            401 | 403 => Outcome::Denied,
            400..=499 => Outcome::Rejected,
            500..=599 => Outcome::Error,
            _ => Outcome::Ok,
        }
    }
}

/// One row of `audit.access_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRecord {
    pub ts: DateTime<Utc>,
    /// The token name, `local:<user>` for a command run on the machine, `-` when unknown.
    pub actor: String,
    pub role: Option<String>,
    pub surface: Surface,
    /// What was asked: `GET /v1/namespaces/ods/tables`, the SQL text, `tokens create`.
    pub action: String,
    /// The namespace or table it concerned, when one.
    pub object: Option<String>,
    pub outcome: Outcome,
    /// The HTTP status, for HTTP surfaces.
    pub status: Option<u16>,
    /// Rows returned or changed, when known.
    pub rows: Option<i64>,
    /// Why it was refused or failed.
    pub detail: Option<String>,
}

impl AccessRecord {
    /// A REST catalog call answered with `status`.
    pub fn catalog(
        token: Option<&Token>,
        action: &str,
        object: Option<String>,
        status: u16,
        detail: Option<String>,
    ) -> AccessRecord {
        AccessRecord {
            ts: Utc::now(),
            actor: token.map_or_else(|| "-".to_string(), |t| t.name.clone()),
            role: token.and_then(|t| t.role.clone()),
            surface: Surface::Catalog,
            action: action.to_string(),
            object,
            outcome: Outcome::from_status(status),
            status: Some(status),
            rows: None,
            detail,
        }
    }

    /// Something done on this machine by its user (the CLI).
    pub fn local(
        surface: Surface,
        role: Option<&str>,
        action: impl Into<String>,
        outcome: Outcome,
    ) -> AccessRecord {
        AccessRecord {
            ts: Utc::now(),
            actor: local_actor(),
            role: role.map(str::to_string),
            surface,
            action: action.into(),
            object: None,
            outcome,
            status: None,
            rows: None,
            detail: None,
        }
    }
}

/// `local:<user>` (from `$USER`, else `$LOGNAME`).
pub fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    format!("local:{user}")
}

fn batch(rows: &[AccessRecord]) -> Result<RecordBatch> {
    let strings = |f: &dyn Fn(&AccessRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| r.ts.timestamp_micros()),
        )),
        strings(&|r| Some(r.actor.as_str())),
        strings(&|r| r.role.as_deref()),
        strings(&|r| Some(r.surface.as_str())),
        strings(&|r| Some(r.action.as_str())),
        strings(&|r| r.object.as_deref()),
        strings(&|r| Some(r.outcome.as_str())),
        Arc::new(Int32Array::from_iter(
            rows.iter().map(|r| r.status.map(i32::from)),
        )),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.rows))),
        strings(&|r| r.detail.as_deref()),
    ];
    RecordBatch::try_new(schema(), columns)
        .map_err(|e| Error::Internal(format!("access log rows: {e}")))
}

/// Creates `audit.access_log` (partitioned by day) when missing.
pub async fn ensure_table(lake: &Lake) -> Result<()> {
    strata_table::table::create_table(
        lake,
        &access_log_ident(),
        &schema(),
        Some("day(ts)"),
        HashMap::new(),
    )
    .await?;
    Ok(())
}

/// Appends `rows` as one commit (creating the table first when needed).
pub async fn append(lake: &Lake, rows: &[AccessRecord]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    ensure_table(lake).await?;
    strata_table::table::append(lake, &access_log_ident(), vec![batch(rows)?]).await?;
    Ok(())
}

/// Deletes rows older than `retention` (a row-level delete through the SQL session).
pub async fn expire(lake: &Lake, retention: Duration) -> Result<u64> {
    let ident = access_log_ident();
    if !lake
        .catalog()
        .table_exists(&ident)
        .await
        .map_err(|e| Error::iceberg("looking up audit.access_log", e))?
    {
        return Ok(0);
    }
    let cutoff = Utc::now()
        - chrono::Duration::from_std(retention)
            .map_err(|e| Error::Invalid(format!("audit retention: {e}")))?;
    let session = crate::SqlSession::new(lake).await?;
    let sql = format!(
        "DELETE FROM {ACCESS_LOG_NAMESPACE}.{ACCESS_LOG_TABLE} WHERE ts < TIMESTAMP '{}'",
        cutoff.format("%Y-%m-%d %H:%M:%S%.6f")
    );
    let out = session.run(&sql).await?;
    Ok(affected_rows(&out))
}

fn affected_rows(batches: &[RecordBatch]) -> u64 {
    batches
        .first()
        .and_then(|b| {
            let col = b.columns().first()?;
            let ints = col.as_any().downcast_ref::<arrow::array::UInt64Array>();
            ints.map(|a| a.values().iter().sum())
        })
        .unwrap_or(0)
}

/// The access log of a long-running process: records go onto a bounded channel and a
/// background task appends them. Cloning is cheap; a disabled log records nothing.
#[derive(Clone, Default)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<AccessRecord>>,
}

impl AuditLog {
    /// A log that records nothing (`governance.audit = false`, or a process without a lake).
    pub fn disabled() -> AuditLog {
        AuditLog { tx: None }
    }

    /// Starts the background appender; it flushes what it holds and ends when `shutdown`
    /// turns true.
    pub fn start(
        lake: Lake,
        flush_interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let task = tokio::spawn(run(lake, flush_interval, rx, shutdown));
        (AuditLog { tx: Some(tx) }, task)
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one record. Waits only when the queue is full; after the appender stopped the
    /// record is dropped and counted.
    pub fn record(&self, record: AccessRecord) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(record)) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if tx.send(record).await.is_err() {
                        metrics::counter!("strata_audit_dropped_total").increment(1);
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("strata_audit_dropped_total").increment(1);
            }
        }
    }
}

async fn run(
    lake: Lake,
    flush_interval: Duration,
    mut rx: mpsc::Receiver<AccessRecord>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pending: Vec<AccessRecord> = Vec::new();
    let mut tick = tokio::time::interval(flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow() {
        tokio::select! {
            received = rx.recv() => match received {
                Some(r) => pending.push(r),
                None => break,
            },
            _ = tick.tick() => flush(&lake, &mut pending).await,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    while let Ok(r) = rx.try_recv() {
        pending.push(r);
    }
    flush(&lake, &mut pending).await;
    if !pending.is_empty() {
        tracing::error!(
            rows = pending.len(),
            "access log rows could not be appended before stopping"
        );
        metrics::counter!("strata_audit_dropped_total").increment(pending.len() as u64);
    }
}

async fn flush(lake: &Lake, pending: &mut Vec<AccessRecord>) {
    if pending.is_empty() {
        return;
    }
    // A panic inside the append (ours or a dependency's) is a failed flush like any other:
    // the appender owns the queue, so it must outlive it (the rows stay for the next tick).
    let appended = std::panic::AssertUnwindSafe(append(lake, pending))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            metrics::counter!("strata_serve_task_panics_total", "task" => "audit").increment(1);
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(Error::Internal(format!(
                "the access-log append panicked: {message}"
            )))
        });
    match appended {
        Ok(()) => {
            metrics::counter!("strata_audit_rows_total").increment(pending.len() as u64);
            pending.clear();
        }
        Err(e) => {
            tracing::warn!(error = %e, rows = pending.len(), "appending to audit.access_log failed; retrying at the next flush");
            if pending.len() > MAX_PENDING {
                let drop = pending.len() - MAX_PENDING;
                pending.drain(..drop);
                metrics::counter!("strata_audit_dropped_total").increment(drop as u64);
            }
        }
    }
}
