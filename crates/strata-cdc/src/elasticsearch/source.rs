//! The Elasticsearch source: what one attempt opens (the server's version, the index's
//! mapping), the full export's pages (read by the shared snapshot loop through
//! `read_chunk`), and the increments: every `poll_interval`, the documents stamped at or after
//! `watermark − overlap`, in timestamp order, those whose version the bus already holds passed
//! over (`dedup.rs`), then the watermark moved once they are all on the bus.

use std::collections::HashMap;

use serde_json::{json, Value as Json};
use strata_core::cdc::{CdcRecord, Change, Op, Row, TableSchema, Value};
use tokio::sync::watch;

use super::client::{EsClient, Hit};
use super::config::{EsSourceConfig, Paging};
use super::decode::{self, Field};
use super::dedup::Recent;
use super::pager::{keep_alive_text, Mode, Pager, Query};
use super::position::{bus_position, Watermark};
use crate::batch::Pending;
use crate::connector::{CatalogTable, Context, StreamEnd};
use crate::error::{Error, Result};
use crate::state::{self, SourceState};

/// A configured Elasticsearch source.
pub struct EsSource {
    pub(super) config: EsSourceConfig,
    pub(super) context: Context,
    pub(super) client: EsClient,
}

/// The index as one attempt found it.
#[derive(Debug, Clone)]
pub struct EsTable {
    pub schema: TableSchema,
    pub fields: Vec<Field>,
    /// The column the timestamp field lands in.
    pub ts_column: String,
    /// The timestamp field is a `date_nanos` (its sort values are nanoseconds).
    pub nanos: bool,
}

impl CatalogTable for EsTable {
    fn schema(&self) -> &TableSchema {
        &self.schema
    }
}

/// One attempt's connection: how it pages, and the full export's open query.
pub struct Session {
    pub(super) client: EsClient,
    pub(super) mode: Mode,
    pub(super) nanos: bool,
    pub(super) export: Option<Export>,
}

/// The full export's open query and the `_id` of the last document it returned.
pub(super) struct Export {
    pager: Pager,
    last_id: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What reads the index for a config: the export's pages, the newest timestamp, the
/// paging fallback. Needs no bus, so `strata cdc verify` uses it too.
pub(super) struct Reader<'a> {
    pub config: &'a EsSourceConfig,
}

impl EsSource {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub(super) fn reader(&self) -> Reader<'_> {
        Reader {
            config: &self.config,
        }
    }

    fn overlap_ms(&self) -> i64 {
        i64::try_from(self.config.overlap.as_millis()).unwrap_or(i64::MAX)
    }
}

impl Reader<'_> {
    /// A query over the index with `size` hits a page.
    fn query(&self, size: usize) -> Query {
        Query {
            index: self.config.index().to_string(),
            filter: None,
            timestamp_field: self.config.timestamp_field.clone(),
            size,
            keep_alive: keep_alive_text(self.config.keep_alive),
        }
    }

    /// Connects: the server's version decides the paging (`auto`), the mapping whether the
    /// timestamp field is a date (or `date_nanos`).
    pub(super) async fn connect(
        config: &EsSourceConfig,
        client: &EsClient,
    ) -> Result<(Session, EsTable)> {
        let info = client.info().await?;
        let mode = match config.paging {
            Paging::Pit => Mode::Pit,
            Paging::Scroll => Mode::Scroll,
            Paging::Auto if info.has_pit() => Mode::Pit,
            Paging::Auto => Mode::Scroll,
        };
        let index = config.index();
        let mapping = client.mapping(index).await?;
        if mapping.as_object().is_some_and(|m| m.is_empty()) {
            return Err(Error::Source {
                source_name: config.name.clone(),
                host: client.host().to_string(),
                message: format!("index {index} matches no index yet"),
            });
        }
        let mut nanos = false;
        let mut mapped = false;
        for (name, types) in field_types(&mapping, &config.timestamp_field) {
            mapped = true;
            match types.as_str() {
                "date" => {}
                "date_nanos" => nanos = true,
                other => {
                    return Err(Error::Unsupported {
                        table: config.name.clone(),
                        message: format!(
                            "timestamp_field {} is mapped as {other} in index {name}, not as a date: increments need a date field",
                            config.timestamp_field
                        ),
                    })
                }
            }
        }
        if !mapped {
            tracing::warn!(source = %config.name, index, field = %config.timestamp_field, "the timestamp field is not in the mapping yet: increments find documents once it is");
        }
        let fields = decode::fields(config);
        let table = EsTable {
            schema: decode::table_schema(config, &fields),
            ts_column: fields.first().map(|f| f.column.clone()).unwrap_or_default(),
            fields,
            nanos,
        };
        tracing::info!(source = %config.name, index, server = ?info, paging = %mode, "elasticsearch source connected");
        Ok((
            Session {
                client: client.clone(),
                mode,
                nanos,
                export: None,
            },
            table,
        ))
    }

    /// Opens `query` the session's way; `auto` falls back to scroll for good when the server
    /// turns out to have no point in time.
    async fn open_pager(&self, session: &mut Session, query: Query) -> Result<Pager> {
        if let Some(p) = Pager::open(&session.client, session.mode, query.clone()).await? {
            return Ok(p);
        }
        if self.config.paging == Paging::Pit {
            return Err(Error::Unsupported {
                table: self.config.name.clone(),
                message: format!(
                    "{}: the server has no point-in-time API: set paging = \"scroll\" (or \"auto\")",
                    session.client.host()
                ),
            });
        }
        tracing::warn!(source = %self.config.name, "no point in time on this server: paging by scroll");
        session.mode = Mode::Scroll;
        match Pager::open(&session.client, Mode::Scroll, query).await? {
            Some(p) => Ok(p),
            None => Err(Error::Internal("a scroll always opens".to_string())),
        }
    }

    /// The newest timestamp in the index now (capped at the clock: a document stamped in the
    /// future does not move it past the present), as a watermark.
    pub(super) async fn newest(&self, client: &EsClient, nanos: bool) -> Result<Watermark> {
        let ts = self.config.timestamp_field.as_str();
        let body = json!({
            "size": 1,
            "sort": [{ ts: { "order": "desc", "unmapped_type": "date" } }],
            "query": { "exists": { "field": ts } },
            "_source": false,
        });
        let page = client
            .search(Some(self.config.index()), &body, None)
            .await?;
        let now = now_ms();
        Ok(match page.hits.first() {
            Some(h) => match decode::sort_ts_ms(h, nanos) {
                Some(t) if t > now => Watermark::at(now, ""),
                Some(t) => Watermark::at(t, h.id.clone()),
                None => Watermark::start(),
            },
            None => Watermark::start(),
        })
    }

    /// The timestamp of document `id` now (None: gone, or without one).
    async fn doc_ts(&self, session: &Session, id: &str) -> Result<Option<i64>> {
        let ts = self.config.timestamp_field.as_str();
        let body = json!({
            "size": 1,
            "query": { "ids": { "values": [id] } },
            "sort": [{ ts: { "order": "asc", "unmapped_type": "date" } }],
            "_source": false,
        });
        let page = session
            .client
            .search(Some(self.config.index()), &body, None)
            .await?;
        Ok(page
            .hits
            .first()
            .and_then(|h| decode::sort_ts_ms(h, session.nanos)))
    }

    /// The full export's next page: up to `limit` documents after the one whose `_id` is
    /// `after`, in timestamp order. A page asked for after a restart (the open query is gone)
    /// starts a new query at the timestamp of the last document on the bus: the documents
    /// stamped the same are read again, which the merger applies as the same upserts.
    pub(super) async fn export_page(
        &self,
        session: &mut Session,
        table: &EsTable,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let after_id = match after.and_then(|k| k.first()) {
            Some(Value::Str(s)) => Some(s.as_str()),
            _ => None,
        };
        let continuing =
            matches!((&session.export, after_id), (Some(e), Some(id)) if e.last_id == id);
        if !continuing {
            if let Some(old) = session.export.take() {
                old.pager.close(&session.client).await;
            }
            let mut query = self.query(limit);
            if let Some(id) = after_id {
                match self.doc_ts(session, id).await? {
                    Some(ts) => {
                        query.since(ts);
                    }
                    None => {
                        tracing::info!(source = %self.config.name, id, "the export's last document has no timestamp now: exporting from the start again");
                    }
                }
            }
            let pager = self.open_pager(session, query).await?;
            tracing::info!(source = %self.config.name, paging = %pager.mode(), resumed = after_id.is_some(), "full export page by page");
            session.export = Some(Export {
                pager,
                last_id: String::new(),
            });
        }
        let Some(export) = session.export.as_mut() else {
            return Err(Error::Internal("the export query is not open".to_string()));
        };
        let hits = export.pager.next(&session.client).await?;
        if let Some(last) = hits.last() {
            export.last_id = last.id.clone();
        }
        if export.pager.done() {
            if let Some(done) = session.export.take() {
                done.pager.close(&session.client).await;
            }
        }
        Ok(self
            .rows(&hits, table)
            .into_iter()
            .map(|(_, row)| row)
            .collect())
    }

    /// The rows of `hits` with their timestamps; values that did not convert are counted.
    fn rows(&self, hits: &[Hit], table: &EsTable) -> Vec<(Option<i64>, Row)> {
        let mut failed = 0;
        let rows = hits
            .iter()
            .map(|h| {
                let (row, bad) = decode::hit_row(h, &table.fields);
                failed += bad;
                (decode::sort_ts_ms(h, table.nanos), row)
            })
            .collect();
        self.count_field_errors(failed);
        rows
    }

    fn count_field_errors(&self, failed: usize) {
        if failed > 0 {
            metrics::counter!("strata_cdc_es_field_errors_total", "source" => self.config.name.clone())
                .increment(failed as u64);
            tracing::debug!(source = %self.config.name, values = failed, "declared field values that did not convert landed as NULL");
        }
    }
}

impl EsSource {
    /// Increments from `state.resume` every `poll_interval` until shutdown or a resync
    /// request.
    pub(super) async fn stream_increments(
        &self,
        session: &mut Session,
        table: &EsTable,
        state: &mut SourceState<Watermark>,
        pending: &mut Pending<Watermark>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<StreamEnd> {
        let topic = self.config.topic(&table.schema.table);
        let overlap = self.overlap_ms();
        let mut recent = Recent::from_topic(
            &self.context.log,
            &topic,
            &table.ts_column,
            state.resume.read_from(overlap),
            overlap,
        )
        .await?;
        state.last_error = None;
        tracing::info!(source = %self.config.name, watermark = %state.resume, known = recent.len(), "increments start");
        let mut resync = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.increment(
                session,
                table,
                &topic,
                state,
                pending,
                &mut recent,
                shutdown,
            )
            .await?;
            state::save(&self.context.state_path, state)?;
            if !state::resync_requests(&self.context.state_path)?.is_empty() {
                resync = true;
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        pending
            .flush(&self.context.log, &self.config.name, state)
            .await?;
        state::save(&self.context.state_path, state)?;
        if resync {
            tracing::info!(source = %self.config.name, watermark = %state.resume, "increments paused for a re-export");
            Ok(StreamEnd::Resync)
        } else {
            tracing::info!(source = %self.config.name, watermark = %state.resume, "cdc source stopped");
            Ok(StreamEnd::Shutdown)
        }
    }

    /// One increment: reads the window, puts the new versions on the bus, then moves the
    /// watermark to the newest timestamp read (never past the time the increment started).
    /// Returns how many documents it wrote.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn increment(
        &self,
        session: &mut Session,
        table: &EsTable,
        topic: &str,
        state: &mut SourceState<Watermark>,
        pending: &mut Pending<Watermark>,
        recent: &mut Recent,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<usize> {
        let started = std::time::Instant::now();
        let now = now_ms();
        let from = state.resume.read_from(self.overlap_ms());
        let reader = self.reader();
        let mut query = reader.query(self.config.snapshot_chunk_rows);
        match from {
            Some(f) => query.since(f),
            None => query.stamped(),
        };
        let mut pager = reader.open_pager(session, query).await?;
        let mut mark = state.resume.clone();
        let (mut read, mut written) = (0usize, 0usize);
        // Ok(true): the window was read to its end; Ok(false): stopped by shutdown.
        let outcome = async {
            loop {
                if *shutdown.borrow() {
                    return Ok::<bool, Error>(false);
                }
                let hits = pager.next(&session.client).await?;
                if hits.is_empty() {
                    return Ok::<bool, Error>(true);
                }
                read += hits.len();
                let mut fresh = Vec::with_capacity(hits.len());
                for hit in hits {
                    let ts = decode::sort_ts_ms(&hit, table.nanos);
                    if let Some(t) = ts {
                        let at = Watermark::at(t.min(now), hit.id.clone());
                        if at > mark {
                            mark = at;
                        }
                    }
                    let text = (hit.seq_no.is_none() && hit.version.is_none())
                        .then(|| hit.source.as_ref().map(Json::to_string))
                        .flatten();
                    let fingerprint = decode::hit_fingerprint(&hit, text.as_deref());
                    if recent.holds(&hit.id, fingerprint) {
                        continue;
                    }
                    recent.insert(&hit.id, fingerprint, ts);
                    fresh.push(hit);
                }
                let rows = reader.rows(&fresh, table);
                let records = fresh.iter().zip(rows).map(|(hit, (ts, row))| {
                    let change = Change {
                        op: if hit.version == Some(1) {
                            Op::Create
                        } else {
                            Op::Update
                        },
                        before: None,
                        after: Some(row),
                        position: bus_position(ts, written as u64, false),
                        txid: None,
                        commit_ts: ts.unwrap_or(now).saturating_mul(1000),
                    };
                    written += 1;
                    (topic.to_string(), CdcRecord::Change(Box::new(change)))
                });
                pending.add(records.collect::<Vec<_>>(), None);
                if pending.due() {
                    pending
                        .send(&self.context.log, &self.config.name, state)
                        .await?;
                }
            }
        }
        .await;
        pager.close(&session.client).await;
        let complete = outcome?;
        if complete {
            // Everything read is on the bus once this flush returns: the watermark moves.
            pending.add(Vec::<(String, CdcRecord)>::new(), Some(mark));
        }
        pending
            .flush(&self.context.log, &self.config.name, state)
            .await?;
        if let Some(f) = state.resume.read_from(self.overlap_ms()) {
            recent.prune(f);
        }
        tracing::info!(source = %self.config.name, read, written, watermark = %state.resume, elapsed = ?started.elapsed(), "increment");
        Ok(written)
    }
}

/// The mapped type of the field at dotted `path` in each index of a `_mapping` answer:
/// `(index, type)` for the indices that map it.
pub fn field_types(mapping: &Json, path: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(indices) = mapping.as_object() else {
        return out;
    };
    for (index, m) in indices {
        let mut at = m.pointer("/mappings");
        for seg in path.split('.') {
            at = at
                .and_then(|a| a.get("properties"))
                .and_then(|p| p.get(seg));
        }
        if let Some(t) = at.and_then(|a| a.get("type")).and_then(Json::as_str) {
            out.push((index.clone(), t.to_string()));
        }
    }
    out
}

/// Every document of the index as rows, for `strata cdc verify`.
pub(super) async fn read_all(config: &EsSourceConfig) -> Result<Vec<(TableSchema, Vec<Row>)>> {
    let client = EsClient::new(config)?;
    let (mut session, table) = Reader::connect(config, &client).await?;
    let source = Reader { config };
    let mut rows = Vec::new();
    let mut after: Option<Vec<Value>> = None;
    loop {
        let page = source
            .export_page(
                &mut session,
                &table,
                after.as_deref(),
                super::config::MAX_PAGE,
            )
            .await?;
        let n = page.len();
        after = page.last().map(|r| table.schema.key_of(r));
        rows.extend(page);
        if n < super::config::MAX_PAGE {
            break;
        }
    }
    // A document re-read at a resumed page boundary is listed once.
    let mut by_id: HashMap<String, Row> = HashMap::new();
    for r in rows {
        if let Some(Value::Str(id)) = r.get(super::config::ID_COLUMN) {
            by_id.insert(id.clone(), r);
        }
    }
    Ok(vec![(table.schema, by_id.into_values().collect())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_fields_type_is_read_from_every_index() {
        let mapping = json!({
            "a": {"mappings": {"properties": {"meta": {"properties": {"ts": {"type": "date_nanos"}}}}}},
            "b": {"mappings": {"properties": {"meta": {"properties": {"ts": {"type": "keyword"}}}}}},
            "c": {"mappings": {}},
        });
        let mut types = field_types(&mapping, "meta.ts");
        types.sort();
        assert_eq!(
            types,
            [
                ("a".to_string(), "date_nanos".to_string()),
                ("b".to_string(), "keyword".to_string())
            ]
        );
        assert!(field_types(&mapping, "ts").is_empty());
    }
}
