//! The MongoDB source with the driver: connecting, the stream's start point, the snapshot's
//! `_id`-ordered cursors, and the change stream → bus loop.
//!
//! One change stream per source, on the database, filtered to the configured collections:
//! one resume token covers them all. Every event is a resume boundary (a token resumes
//! after any event, inside a transaction too), so the state never points past what the bus
//! holds; an idle stream still moves its token forward (the server's post-batch token) so a
//! quiet source does not fall off the oplog.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use ::mongodb::change_stream::event::ResumeToken;
use ::mongodb::change_stream::ChangeStream;
use ::mongodb::error::ErrorKind;
use ::mongodb::options::{ClientOptions, FullDocumentType};
use ::mongodb::{Client, Cursor, Database};
use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use strata_core::cdc::{CdcRecord, Change, Op, Row, SourcePosition, TableSchema, Truncate, Value};
use tokio::sync::watch;

use super::config::{FullDocument, MongoSourceConfig};
use super::decode::{self, ChangeEvent, EventKind, Field};
use super::position::{token_text, ts_of, ResumePoint};
use crate::batch::Pending;
use crate::connector::{CatalogTable, Context, StreamEnd};
use crate::error::{Error, Result};
use crate::state::{self, SourceState};
use crate::topic::TopicTail;

/// How often the stream saves its state and looks for resync requests.
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest the server holds a `getMore` on an idle stream.
const MAX_AWAIT: Duration = Duration::from_millis(500);
/// Longest one server round trip of the stream (opening it, one `getMore`) may take before
/// the attempt fails and is retried: a server that stops answering must not hang the source.
const STREAM_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Server error codes that mean the resume point is gone from the oplog:
/// ChangeStreamHistoryLost, ChangeStreamFatalError, CappedPositionLost.
pub const POSITION_LOST_CODES: [i32; 3] = [286, 280, 136];
/// Codes no retry fixes: Unauthorized, AuthenticationFailed, change streams need a replica
/// set, unsupported startAfter / resumeAfter options, invalid options.
const USER_CODES: [i32; 6] = [13, 18, 40573, 40415, 9, 2];

/// The raw event documents of a database change stream.
pub type EventStream = ChangeStream<Document>;

/// A configured MongoDB source.
pub struct MongoSource {
    pub(super) config: MongoSourceConfig,
    pub(super) context: Context,
}

/// A collection as one attempt found it.
#[derive(Debug, Clone)]
pub struct MongoTable {
    pub schema: TableSchema,
    pub fields: Vec<Field>,
}

impl CatalogTable for MongoTable {
    fn schema(&self) -> &TableSchema {
        &self.schema
    }
}

/// One attempt's connection, the snapshot's open cursor and a change stream opened early
/// (by `check_saved`, which resumes it to see that the server still holds the position).
pub struct Session {
    pub(super) client: Client,
    pub(super) snapshot: Option<SnapshotCursor>,
    pub(super) stream: Option<EventStream>,
}

/// A collection's snapshot cursor and the key of the last document it returned.
pub(super) struct SnapshotCursor {
    table: String,
    cursor: Cursor<Document>,
    last_key: Option<String>,
}

/// The host part of a connection string, for messages (never the credentials).
fn host_of(uri: &str) -> String {
    let rest = uri.strip_prefix("mongodb://").unwrap_or(uri);
    let hosts = rest.split(['/', '?']).next().unwrap_or("");
    hosts.rsplit('@').next().unwrap_or("").to_string()
}

/// A driver error while doing `what`, sorted by whose fault it is.
pub fn classify(config: &MongoSourceConfig, what: &str, e: &::mongodb::error::Error) -> Error {
    let host = config
        .connection_string()
        .map(|u| host_of(&u))
        .unwrap_or_default();
    let code = match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    };
    let users = matches!(
        e.kind.as_ref(),
        ErrorKind::Authentication { .. } | ErrorKind::InvalidArgument { .. }
    ) || code.is_some_and(|c| USER_CODES.contains(&c));
    if users {
        Error::Unsupported {
            table: config.name.clone(),
            message: format!("{host}: {what}: {e}"),
        }
    } else {
        Error::Source {
            source_name: config.name.clone(),
            host,
            message: format!("{what}: {e}"),
        }
    }
}

/// Whether `e` says the resume point is gone from the oplog.
pub fn position_lost(e: &::mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::Command(c) if POSITION_LOST_CODES.contains(&c.code))
}

/// The driver's resume token of a token document.
pub fn resume_token(token: &Document) -> Result<ResumeToken> {
    bson::deserialize_from_bson(Bson::Document(token.clone()))
        .map_err(|e| Error::Internal(format!("a resume token does not convert: {e}")))
}

/// A token document of the driver's resume token.
pub fn token_document(token: &ResumeToken) -> Option<Document> {
    match bson::serialize_to_bson(token).ok()? {
        Bson::Document(d) => Some(d),
        _ => None,
    }
}

/// Connects (no TLS unless the connection string asks for it) and checks the server answers.
pub async fn connect(config: &MongoSourceConfig) -> Result<(Client, Database)> {
    let uri = config.connection_string().map_err(|e| Error::Unsupported {
        table: config.name.clone(),
        message: e.to_string(),
    })?;
    let mut options = ClientOptions::parse(&uri)
        .await
        .map_err(|e| classify(config, "parsing the connection string", &e))?;
    options.app_name = Some(format!("strata-cdc-{}", config.name));
    // The connection string's own timeouts win.
    options
        .connect_timeout
        .get_or_insert(Duration::from_secs(10));
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(15));
    let client = Client::with_options(options).map_err(|e| classify(config, "connecting", &e))?;
    let db = client.database(&config.database);
    db.run_command(doc! { "ping": 1 })
        .await
        .map_err(|e| classify(config, "connecting", &e))?;
    Ok((client, db))
}

impl MongoSource {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub(super) fn err(&self, what: &str, e: &::mongodb::error::Error) -> Error {
        classify(&self.config, what, e)
    }

    pub(super) fn lost(&self, position: &ResumePoint, e: &::mongodb::error::Error) -> Error {
        if position_lost(e) {
            Error::PositionLost {
                source_name: self.config.name.clone(),
                position: position.to_string(),
                message: format!("the oplog no longer holds the resume point: {e}"),
                state: self.context.state_path.display().to_string(),
            }
        } else {
            self.err("opening the change stream", e)
        }
    }

    /// The configured collections as tables.
    pub(super) fn tables(&self) -> Vec<MongoTable> {
        tables(&self.config)
    }

    /// The stream's pipeline: events of the configured collections (and renames into them),
    /// and the database-wide ones.
    fn pipeline(&self) -> Vec<Document> {
        let colls: Vec<Bson> = self
            .config
            .tables
            .iter()
            .map(|t| Bson::String(t.clone()))
            .collect();
        vec![doc! { "$match": { "$or": [
            { "ns.coll": { "$in": colls.clone() } },
            { "to.coll": { "$in": colls } },
            { "operationType": { "$in": ["dropDatabase", "invalidate"] } },
        ] } }]
    }

    /// Opens the database change stream at `from` (None: now). A resume point the oplog no
    /// longer holds is [`Error::PositionLost`].
    pub(super) async fn open_stream(
        &self,
        client: &Client,
        from: Option<&ResumePoint>,
    ) -> Result<EventStream> {
        let db = client.database(&self.config.database);
        let full = match self.config.full_document {
            FullDocument::UpdateLookup => FullDocumentType::UpdateLookup,
            FullDocument::WhenAvailable => FullDocumentType::WhenAvailable,
            FullDocument::Required => FullDocumentType::Required,
        };
        let mut watch = db
            .watch()
            .pipeline(self.pipeline())
            .full_document(full)
            .max_await_time(MAX_AWAIT);
        if let Some(p) = from {
            match (p.token.as_ref(), p.token_doc()) {
                (Some(text), None) => {
                    return Err(Error::Internal(format!(
                        "the saved resume token {text} is not extended JSON"
                    )))
                }
                (_, Some(t)) if p.start_after => watch = watch.start_after(resume_token(&t)?),
                (_, Some(t)) => watch = watch.resume_after(resume_token(&t)?),
                (None, None) => watch = watch.start_at_operation_time(ts_of(p.cluster_time)),
            }
        }
        let Ok(opened) = tokio::time::timeout(STREAM_CALL_TIMEOUT, watch.into_future()).await
        else {
            return Err(self.timed_out("opening the change stream"));
        };
        match opened {
            Ok(s) => Ok(s.with_type::<Document>()),
            Err(e) => Err(match from {
                Some(p) => self.lost(p, &e),
                None => self.err("opening the change stream", &e),
            }),
        }
    }

    /// A server that did not answer in [`STREAM_CALL_TIMEOUT`] (retried).
    fn timed_out(&self, what: &str) -> Error {
        Error::Source {
            source_name: self.config.name.clone(),
            host: self
                .config
                .connection_string()
                .map(|u| host_of(&u))
                .unwrap_or_default(),
            message: format!("{what}: no answer in {}s", STREAM_CALL_TIMEOUT.as_secs()),
        }
    }

    /// Now, as a stream start: the server's operation time and the token of a stream opened
    /// now (both taken before anything is read).
    pub(super) async fn current_position(&self, client: &Client) -> Result<ResumePoint> {
        let db = client.database(&self.config.database);
        let reply = db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| self.err("reading the cluster time", &e))?;
        let op_time = reply.get_timestamp("operationTime").ok();
        let stream = self.open_stream(client, None).await?;
        let token = stream.resume_token().and_then(|t| token_document(&t));
        if op_time.is_none() && token.is_none() {
            return Err(Error::Unsupported {
                table: self.config.name.clone(),
                message: "the server gave neither an operation time nor a resume token: change streams need a replica set or sharded cluster (MongoDB 4.0+) or DocumentDB with change streams enabled".to_string(),
            });
        }
        let ts = op_time.unwrap_or(bson::Timestamp {
            time: 0,
            increment: 0,
        });
        Ok(ResumePoint::start(ts, token.as_ref()))
    }

    /// Up to `limit` documents of `table` after the one keyed `after`, in `_id` order: from
    /// the open cursor when it continues, else a new cursor. A new cursor after a key
    /// compares with `$expr` (BSON order across types: a plain `$gt` only matches `_id`s of
    /// the key's own type).
    pub(super) async fn read_chunk(
        &self,
        session: &mut Session,
        table: &MongoTable,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let name = table.schema.table.clone();
        let after_key = match after.and_then(|k| k.first()) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        };
        let continuing =
            matches!(&session.snapshot, Some(s) if s.table == name && s.last_key == after_key);
        if !continuing {
            let filter = match &after_key {
                Some(k) => {
                    let id = decode::id_of_key(k).map_err(Error::Internal)?;
                    doc! { "$expr": { "$gt": ["$_id", { "$literal": id }] } }
                }
                None => doc! {},
            };
            let cursor = session
                .client
                .database(&self.config.database)
                .collection::<Document>(&name)
                .find(filter)
                .sort(doc! { "_id": 1 })
                .batch_size(u32::try_from(limit).unwrap_or(u32::MAX))
                .await
                .map_err(|e| self.err(&format!("reading collection {name}"), &e))?;
            session.snapshot = Some(SnapshotCursor {
                table: name.clone(),
                cursor,
                last_key: after_key,
            });
        }
        let Some(snap) = session.snapshot.as_mut() else {
            return Err(Error::Internal(
                "the snapshot cursor is not open".to_string(),
            ));
        };
        let mut rows = Vec::with_capacity(limit.min(10_000));
        let mut failed = 0;
        while rows.len() < limit {
            let next =
                snap.cursor.try_next().await.map_err(|e| {
                    classify(&self.config, &format!("reading collection {name}"), &e)
                })?;
            let Some(doc) = next else { break };
            let (row, bad) =
                decode::doc_row(&doc, &table.fields).map_err(|m| Error::Unsupported {
                    table: name.clone(),
                    message: m,
                })?;
            failed += bad;
            rows.push(row);
        }
        snap.last_key = rows
            .last()
            .and_then(|r| match r.get(super::config::ID_COLUMN) {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            });
        if rows.len() < limit {
            session.snapshot = None;
        }
        count_field_errors(&self.config.name, failed);
        Ok(rows)
    }

    /// The change stream from `state.resume` until shutdown or a resync request.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn stream_changes(
        &self,
        client: &Client,
        opened: Option<EventStream>,
        tables: &[MongoTable],
        tails: &HashMap<String, TopicTail>,
        state: &mut SourceState<ResumePoint>,
        pending: &mut Pending<ResumePoint>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<StreamEnd> {
        let mut stream = match opened {
            Some(s) => s,
            None => self.open_stream(client, Some(&state.resume)).await?,
        };
        let index: HashMap<&str, usize> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.schema.table.as_str(), i))
            .collect();
        let mut skip_until: HashMap<usize, SourcePosition> = tables
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                tails
                    .get(&t.schema.table)
                    .and_then(|tail| tail.last_streamed.clone())
                    .map(|p| (i, p))
            })
            .collect();
        let mut last = (state.resume.cluster_time, state.resume.seen);
        let mut last_save = Instant::now();
        let mut resync = false;
        state.last_error = None;
        tracing::info!(source = %self.config.name, position = %state.resume, "streaming the change stream");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let Ok(next) = tokio::time::timeout(STREAM_CALL_TIMEOUT, stream.next_if_any()).await
            else {
                pending
                    .flush(&self.context.log, &self.config.name, state)
                    .await?;
                state::save(&self.context.state_path, state)?;
                return Err(self.timed_out("reading the change stream"));
            };
            let raw = match next {
                Ok(r) => r,
                Err(e) => {
                    pending
                        .flush(&self.context.log, &self.config.name, state)
                        .await?;
                    state::save(&self.context.state_path, state)?;
                    return Err(self.lost(&state.resume, &e));
                }
            };
            match raw {
                Some(raw) => {
                    let event = decode::decode_event(&raw).map_err(|m| Error::Unsupported {
                        table: self.config.name.clone(),
                        message: format!("undecodable change event: {m}"),
                    })?;
                    let row = if event.cluster_time == last.0 {
                        last.1
                    } else {
                        0
                    };
                    last = (event.cluster_time, row + 1);
                    let after = ResumePoint {
                        cluster_time: event.cluster_time,
                        seen: row + 1,
                        token: Some(token_text(&event.token)),
                        start_after: event.kind == EventKind::Invalidate,
                    };
                    let at = ResumePoint::bus_position(event.cluster_time, row, false);
                    let (records, renamed_in) =
                        self.records(&event, at, tables, &index, &mut skip_until);
                    if records.is_empty() {
                        pending.pass(after, state);
                    } else {
                        pending.add(records, Some(after));
                    }
                    if let Some(t) = renamed_in {
                        // Documents renamed into a collection come with no events: read it again.
                        tracing::info!(source = %self.config.name, collection = %t, "a collection was renamed onto a mirrored one: re-snapshotting it");
                        state::request_resync(&self.context.state_path, &t)?;
                    }
                    if event.kind == EventKind::Invalidate {
                        pending
                            .flush(&self.context.log, &self.config.name, state)
                            .await?;
                        state::save(&self.context.state_path, state)?;
                        tracing::info!(source = %self.config.name, position = %state.resume, "change stream invalidated: starting after it");
                        stream = self.open_stream(client, Some(&state.resume)).await?;
                        continue;
                    }
                    if pending.due() {
                        pending
                            .send(&self.context.log, &self.config.name, state)
                            .await?;
                    }
                }
                None => {
                    // An idle getMore: what lingers goes out, and the server's post-batch
                    // token (past everything it scanned) becomes the resume point.
                    if let Some(token) = stream.resume_token().and_then(|t| token_document(&t)) {
                        let text = token_text(&token);
                        if state.resume.token.as_deref() != Some(text.as_str()) {
                            pending.pass(
                                ResumePoint {
                                    cluster_time: last.0,
                                    seen: last.1,
                                    token: Some(text),
                                    start_after: false,
                                },
                                state,
                            );
                        }
                    }
                    pending
                        .send(&self.context.log, &self.config.name, state)
                        .await?;
                    if !stream.is_alive() {
                        // The server closed the cursor without an error: open it again from
                        // what the bus holds.
                        pending
                            .flush(&self.context.log, &self.config.name, state)
                            .await?;
                        tracing::info!(source = %self.config.name, position = %state.resume, "change stream closed by the server: reopening");
                        stream = self.open_stream(client, Some(&state.resume)).await?;
                    }
                }
            }
            if last_save.elapsed() >= STATE_SAVE_INTERVAL {
                state::save(&self.context.state_path, state)?;
                last_save = Instant::now();
                if !state::resync_requests(&self.context.state_path)?.is_empty() {
                    resync = true;
                    break;
                }
            }
        }
        pending
            .flush(&self.context.log, &self.config.name, state)
            .await?;
        state::save(&self.context.state_path, state)?;
        if resync {
            tracing::info!(source = %self.config.name, position = %state.resume, "streaming paused for a re-snapshot");
            Ok(StreamEnd::Resync)
        } else {
            tracing::info!(source = %self.config.name, position = %state.resume, "cdc source stopped");
            Ok(StreamEnd::Shutdown)
        }
    }

    /// The bus records of one event (`at`: its coordinate), those the topic already holds
    /// left out; and a mirrored collection that something was renamed onto.
    pub(super) fn records(
        &self,
        event: &ChangeEvent,
        at: SourcePosition,
        tables: &[MongoTable],
        index: &HashMap<&str, usize>,
        skip_until: &mut HashMap<usize, SourcePosition>,
    ) -> (Vec<(String, CdcRecord)>, Option<String>) {
        let mut out: Vec<(usize, CdcRecord)> = Vec::new();
        let mut renamed_in = None;
        let change = |op, before, after| {
            CdcRecord::Change(Box::new(Change {
                op,
                before,
                after,
                position: at.clone(),
                txid: event.txid.clone(),
                commit_ts: event.commit_ts,
            }))
        };
        let truncate = |reason: &str| {
            CdcRecord::Truncate(Truncate {
                position: at.clone(),
                commit_ts: event.commit_ts,
                reason: reason.to_string(),
            })
        };
        match &event.kind {
            EventKind::Upsert {
                collection,
                op,
                doc,
            } => {
                if let Some(&i) = index.get(collection.as_str()) {
                    match decode::doc_row(doc, &tables[i].fields) {
                        Ok((row, failed)) => {
                            count_field_errors(&self.config.name, failed);
                            out.push((i, change(*op, None, Some(row))));
                        }
                        Err(m) => {
                            tracing::warn!(source = %self.config.name, collection = %collection, error = %m, "document passed over");
                        }
                    }
                }
            }
            EventKind::Delete { collection, id } => {
                if let Some(&i) = index.get(collection.as_str()) {
                    out.push((i, change(Op::Delete, Some(decode::key_row(id)), None)));
                }
            }
            EventKind::Drop {
                collection,
                renamed_to,
            } => {
                if let Some(&i) = index.get(collection.as_str()) {
                    let reason = if renamed_to.is_some() {
                        "rename"
                    } else {
                        "drop"
                    };
                    out.push((i, truncate(reason)));
                }
                if let Some(to) = renamed_to {
                    if index.contains_key(to.as_str()) {
                        renamed_in = Some(to.clone());
                    }
                }
            }
            EventKind::DropDatabase => {
                out.extend((0..tables.len()).map(|i| (i, truncate("drop_database"))));
            }
            EventKind::UpdateGone { .. } | EventKind::Invalidate | EventKind::Other(_) => {}
        }
        let records = out
            .into_iter()
            .filter(|(i, _)| match skip_until.get(i) {
                Some(last) if &at <= last => false,
                Some(_) => {
                    skip_until.remove(i);
                    true
                }
                None => true,
            })
            .map(|(i, r)| (self.config.topic(&tables[i].schema.table), r))
            .collect();
        (records, renamed_in)
    }
}

fn count_field_errors(source: &str, failed: usize) {
    if failed > 0 {
        metrics::counter!("strata_cdc_mongo_field_errors_total", "source" => source.to_string())
            .increment(failed as u64);
        tracing::debug!(
            source,
            values = failed,
            "declared field values that did not convert landed as NULL"
        );
    }
}

/// The configured collections as tables (schemas from the config: a collection has no
/// catalog of columns).
pub fn tables(config: &MongoSourceConfig) -> Vec<MongoTable> {
    config
        .tables
        .iter()
        .map(|t| {
            let fields = decode::fields(config, t);
            MongoTable {
                schema: decode::table_schema(&config.name, &config.database, t, &fields),
                fields,
            }
        })
        .collect()
}

/// Every document of `wanted` (all configured collections when empty), for `strata cdc
/// verify`.
pub async fn read_all(
    config: &MongoSourceConfig,
    wanted: &[String],
) -> Result<Vec<(TableSchema, Vec<Row>)>> {
    let (_client, db) = connect(config).await?;
    let mut out = Vec::new();
    for table in tables(config) {
        if !wanted.is_empty() && !wanted.contains(&table.schema.table) {
            continue;
        }
        let name = table.schema.table.clone();
        let read = |e: ::mongodb::error::Error| {
            classify(config, &format!("reading collection {name}"), &e)
        };
        let mut cursor = db
            .collection::<Document>(&name)
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(read)?;
        let mut rows = Vec::new();
        while let Some(doc) = cursor.try_next().await.map_err(read)? {
            let (row, _) =
                decode::doc_row(&doc, &table.fields).map_err(|m| Error::Unsupported {
                    table: name.clone(),
                    message: m,
                })?;
            rows.push(row);
        }
        out.push((table.schema, rows));
    }
    Ok(out)
}
