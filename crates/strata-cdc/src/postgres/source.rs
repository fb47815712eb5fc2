//! The PostgreSQL change stream: the slot's changes, decoded from pgoutput (the runtime's
//! loop, `runtime.rs`, runs the snapshot before it; `connector.rs` in this folder sets up the
//! publication and the slot and plugs this source into that loop). Every change becomes
//! a [`CdcRecord::Change`] on `cdc.<source>.<table>` (one partition, commit order).
//!
//! The slot is streamed over a replication connection (`replication.rs`): the server pushes
//! each transaction as it commits, the changes are appended to the bus (durable on return),
//! and only then a standby status update confirms them. A crash in between streams those
//! transactions again; changes at or before the last one a topic already holds are dropped,
//! so the bus gets every change once (ADR 0010, ADR 0019).
//!
//! The slot is created before the snapshot reads anything, so every change committed after
//! the slot's consistent point, including those made while the snapshot runs, is streamed
//! after the snapshot's rows; full row images applied latest-wins per key converge to the
//! source (the MariaDB source's argument, ADR 0007).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::PostgresSourceConfig;
use strata_core::cdc::{CdcRecord, Change, Op, Row, SourcePosition, TableSchema, Truncate};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::config::Connect;
use super::decode::image;
use super::pgoutput::{self, lsn_key, lsn_text, parse_lsn, Message, OldTuple};
use super::position::Lsn;
use super::replication::{Event, Replication};
use super::schema::{from_relation, quote_ident, shape_of, Shape, SourceTable};
use crate::batch::Pending;
use crate::connector::{Context, StreamEnd};
use crate::error::{Error, Result};
use crate::state::{self, SourceState};
use crate::topic::TopicTail;

/// How often the server hears what is confirmed while changes flow.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest silence towards the server (its `wal_sender_timeout` defaults to 60 s).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the state file is rewritten while streaming without changes.
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// A configured PostgreSQL source.
pub struct PostgresSource {
    pub(super) config: PostgresSourceConfig,
    pub(super) context: Context,
    pub(super) connect: Connect,
    pub(super) slot: String,
    pub(super) publication: String,
}

/// A relation as the stream describes it, tied to a configured table.
struct StreamRelation {
    table: usize,
    /// Per column: part of the replica identity.
    key: Vec<bool>,
}

/// The transaction being read from the slot: its records by table index, in stream order
/// (positions and commit times are filled in at its commit).
#[derive(Default)]
struct Transaction {
    xid: u32,
    commit_lsn: u64,
    commit_ts: i64,
    changes: Vec<(usize, CdcRecord)>,
}

fn no_position() -> SourcePosition {
    SourcePosition {
        file: String::new(),
        pos: 0,
        row: 0,
        snapshot: false,
    }
}

impl PostgresSource {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub(super) fn err(&self, what: &str, e: tokio_postgres::Error) -> Error {
        self.connect.err(what, &e)
    }

    /// Creates the publication for the tables, or adds the tables it lacks.
    pub(super) async fn ensure_publication(
        &self,
        client: &Client,
        tables: &[SourceTable],
    ) -> Result<()> {
        let exists = client
            .query_opt(
                "SELECT puballtables FROM pg_publication WHERE pubname = $1",
                &[&self.publication],
            )
            .await
            .map_err(|e| self.err("reading pg_publication", e))?;
        let list = |ts: &[&SourceTable]| {
            ts.iter()
                .map(|t| t.qualified())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(row) = exists else {
            let all: Vec<&SourceTable> = tables.iter().collect();
            let sql = format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(&self.publication),
                list(&all)
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| self.err("creating the publication", e))?;
            tracing::info!(source = %self.config.name, publication = %self.publication, "created publication");
            return Ok(());
        };
        let all_tables: bool = row
            .try_get(0)
            .map_err(|e| self.err("reading pg_publication", e))?;
        if all_tables {
            return Ok(());
        }
        let rows = client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                &[&self.publication],
            )
            .await
            .map_err(|e| self.err("reading pg_publication_tables", e))?;
        let mut held = std::collections::HashSet::new();
        for r in rows {
            let s: String = r
                .try_get(0)
                .map_err(|e| self.err("reading pg_publication_tables", e))?;
            let t: String = r
                .try_get(1)
                .map_err(|e| self.err("reading pg_publication_tables", e))?;
            held.insert((s, t));
        }
        let missing: Vec<&SourceTable> = tables
            .iter()
            .filter(|t| !held.contains(&(t.namespace.clone(), t.table.clone())))
            .collect();
        if !missing.is_empty() {
            let sql = format!(
                "ALTER PUBLICATION {} ADD TABLE {}",
                quote_ident(&self.publication),
                list(&missing)
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| self.err("adding tables to the publication", e))?;
            tracing::info!(source = %self.config.name, publication = %self.publication, tables = %list(&missing), "added tables to the publication");
        }
        Ok(())
    }

    /// The slot's confirmed position, None when it does not exist. A slot of another plugin,
    /// database, or one the server invalidated is an error.
    pub(super) async fn slot_position(&self, client: &Client) -> Result<Option<u64>> {
        let row = client
            .query_opt(
                "SELECT plugin::text, database::text, confirmed_flush_lsn::text, \
                 COALESCE(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .map_err(|e| self.err("reading pg_replication_slots", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let get = |i: usize| -> Result<Option<String>> {
            row.try_get(i)
                .map_err(|e| self.err("reading pg_replication_slots", e))
        };
        let plugin = get(0)?.unwrap_or_default();
        let database = get(1)?.unwrap_or_default();
        if plugin != "pgoutput" || database != self.connect.database {
            return Err(Error::Unsupported {
                table: self.config.name.clone(),
                message: format!(
                    "replication slot {} exists with plugin {plugin:?} on database {database:?}; \
                     expected pgoutput on {:?}: choose another `slot`",
                    self.slot, self.connect.database
                ),
            });
        }
        if get(3)?.as_deref() == Some("lost") {
            return Err(Error::PositionLost {
                source_name: self.config.name.clone(),
                position: get(2)?.unwrap_or_default(),
                message: format!(
                    "replication slot {} was invalidated (wal_status lost): drop it",
                    self.slot
                ),
                state: self.context.state_path.display().to_string(),
            });
        }
        Ok(get(2)?.as_deref().and_then(parse_lsn))
    }

    /// Creates the logical slot; returns its consistent point.
    pub(super) async fn create_slot(&self, client: &Client) -> Result<u64> {
        let row = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&self.slot],
            )
            .await
            .map_err(|e| self.err("creating the replication slot", e))?;
        let text: String = row
            .try_get(0)
            .map_err(|e| self.err("creating the replication slot", e))?;
        let lsn = parse_lsn(&text)
            .ok_or_else(|| Error::Internal(format!("slot lsn {text:?} does not parse")))?;
        tracing::info!(source = %self.config.name, slot = %self.slot, position = %text, "created replication slot");
        Ok(lsn)
    }

    pub(super) fn with_host(&self, e: Error) -> Error {
        match e {
            Error::Source {
                source_name,
                message,
                ..
            } => Error::Source {
                source_name,
                host: self.connect.host.clone(),
                message,
            },
            other => other,
        }
    }

    /// Streams the slot's changes over a replication connection until shutdown or a resync
    /// request.
    pub(super) async fn stream_slot(
        &self,
        client: &Client,
        mut tables: Vec<SourceTable>,
        tails: HashMap<String, TopicTail>,
        state: &mut SourceState<Lsn>,
        pending: &mut Pending<Lsn>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<StreamEnd> {
        let mut confirmed = self.slot_position(client).await?.unwrap_or(state.resume.0);
        let mut skip_until: HashMap<usize, SourcePosition> = tables
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                tails
                    .get(t.name())
                    .and_then(|tail| tail.last_streamed.clone())
                    .map(|p| (i, p))
            })
            .collect();
        // The schema each topic last got, and the relation shape it was made from.
        let mut sent: Vec<Option<TableSchema>> = tables
            .iter()
            .map(|t| {
                tails
                    .get(t.name())
                    .and_then(|tail| tail.schema.clone())
                    .or(Some(t.schema.clone()))
            })
            .collect();
        let mut shapes: Vec<Option<Shape>> = vec![None; tables.len()];
        let mut relations: HashMap<u32, StreamRelation> = HashMap::new();
        let mut resync = false;
        let mut last_save = Instant::now();
        state.last_error = None;
        let mut repl = Replication::connect(&self.connect).await?;
        let publications = quote_ident(&self.publication);
        repl.start_logical(
            &self.slot,
            confirmed,
            &[
                ("proto_version", "1"),
                ("publication_names", publications.as_str()),
            ],
        )
        .await
        .map_err(|e| self.slot_lost(state, e))?;
        tracing::info!(source = %self.config.name, slot = %self.slot, position = %lsn_text(confirmed), "streaming the slot");
        let mut told = confirmed;
        let mut last_status = Instant::now();
        let mut tx = Transaction::default();
        let mut in_tx = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Committed transactions wait for company until the stream pauses or they have
            // waited long enough.
            let next = match pending.deadline() {
                None => tokio::select! {
                    next = repl.next() => next.map(Step::from),
                    _ = shutdown.changed() => continue,
                    // An idle stream still saves its state and looks for resync requests.
                    _ = tokio::time::sleep(STATE_SAVE_INTERVAL) => Ok(Step::Tick),
                },
                Some(deadline) => tokio::select! {
                    biased;
                    next = repl.next() => next.map(Step::from),
                    _ = tokio::time::sleep_until(deadline) => Ok(Step::Tick),
                },
            };
            let mut ticked = false;
            let (lsn, data) = match next {
                Ok(Step::Tick) => {
                    ticked = true;
                    (0, None)
                }
                Ok(Step::Event(Event::Keepalive { wal_end, reply })) => {
                    // Everything before `wal_end` was decoded; between transactions with
                    // nothing buffered, none of it is ours to wait for.
                    if !in_tx && pending.is_empty() && wal_end > state.resume.0 {
                        state.resume = Lsn(wal_end);
                    }
                    if reply {
                        told = 0;
                        last_status = Instant::now() - STATUS_INTERVAL;
                    }
                    (0, None)
                }
                Ok(Step::Event(Event::Data { wal_start, data })) => (wal_start, Some(data)),
                Ok(Step::Ended) => {
                    state::save(&self.context.state_path, state)?;
                    return Err(Error::Source {
                        source_name: self.config.name.clone(),
                        host: self.connect.host.clone(),
                        message: "the server ended the replication stream".to_string(),
                    });
                }
                Err(e) => {
                    state::save(&self.context.state_path, state)?;
                    return Err(self.slot_lost(state, e));
                }
            };
            if let Some(data) = data {
                let msg = pgoutput::parse(&data).map_err(|m| Error::Unsupported {
                    table: self.config.name.clone(),
                    message: format!("undecodable pgoutput message at {}: {m}", lsn_text(lsn)),
                })?;
                match msg {
                    Message::Begin {
                        final_lsn,
                        commit_ts,
                        xid,
                    } => {
                        in_tx = true;
                        tx = Transaction {
                            xid,
                            commit_lsn: final_lsn,
                            commit_ts,
                            changes: Vec::new(),
                        }
                    }
                    Message::Commit { end_lsn, .. } => {
                        in_tx = false;
                        self.commit_tx(&mut tx, &tables, &mut skip_until, pending, state, end_lsn);
                    }
                    Message::Relation(rel) => {
                        let Some(i) = tables
                            .iter()
                            .position(|t| t.namespace == rel.namespace && t.table == rel.name)
                        else {
                            continue;
                        };
                        // The stream describes each relation before its first change of a
                        // session and after every schema change: decode with what it says,
                        // and tell the topic when that differs from what it last got.
                        let shape = shape_of(&rel);
                        if shapes[i].as_ref() != Some(&shape) {
                            let table = from_relation(client, &tables[i], &rel).await?;
                            if sent[i].as_ref() != Some(&table.schema) {
                                tracing::info!(source = %self.config.name, table = table.name(), position = %lsn_text(lsn), "schema change in the stream");
                                tx.changes
                                    .push((i, CdcRecord::Schema(table.schema.clone())));
                                sent[i] = Some(table.schema.clone());
                            }
                            tables[i] = table;
                            shapes[i] = Some(shape);
                        }
                        relations.insert(
                            rel.id,
                            StreamRelation {
                                table: i,
                                key: rel.columns.iter().map(|c| c.key).collect(),
                            },
                        );
                    }
                    Message::Insert { relation, new } => {
                        let Some(rel) = relations.get(&relation) else {
                            continue;
                        };
                        let after = image(&tables[rel.table], &new, None, None)?;
                        tx.push(rel.table, Op::Create, None, Some(after));
                    }
                    Message::Update { relation, old, new } => {
                        let Some(rel) = relations.get(&relation) else {
                            continue;
                        };
                        let table = &tables[rel.table];
                        let (before, full_old) = match &old {
                            Some(OldTuple::Full(o)) => {
                                (Some(image(table, o, None, None)?), Some(o))
                            }
                            Some(OldTuple::Key(k)) => {
                                (Some(image(table, k, Some(&rel.key), None)?), None)
                            }
                            None => (None, None),
                        };
                        let after = image(table, &new, None, full_old.map(|o| o.as_slice()))?;
                        tx.push(rel.table, Op::Update, before, Some(after));
                    }
                    Message::Delete { relation, old } => {
                        let Some(rel) = relations.get(&relation) else {
                            continue;
                        };
                        let table = &tables[rel.table];
                        let before = match &old {
                            OldTuple::Full(o) => image(table, o, None, None)?,
                            OldTuple::Key(k) => image(table, k, Some(&rel.key), None)?,
                        };
                        tx.push(rel.table, Op::Delete, Some(before), None);
                    }
                    Message::Truncate { relations: ids, .. } => {
                        for id in ids {
                            if let Some(rel) = relations.get(&id) {
                                tracing::info!(source = %self.config.name, table = tables[rel.table].name(), position = %lsn_text(lsn), "truncate in the stream");
                                tx.changes.push((
                                    rel.table,
                                    CdcRecord::Truncate(Truncate {
                                        position: no_position(),
                                        commit_ts: 0,
                                        reason: "truncate".to_string(),
                                    }),
                                ));
                            }
                        }
                    }
                    Message::Origin | Message::Type | Message::Message => {}
                }
            }
            // Due batches go to the bus while the next gathers; a tick also settles the flush
            // in flight, which moves the position confirmed below.
            if pending.due() || ticked {
                pending
                    .send(&self.context.log, &self.config.name, state)
                    .await?;
            }
            // What the bus holds (or never needed) is confirmed to the server, which may then
            // recycle the WAL before it.
            confirmed = confirmed.max(state.resume.0);
            if (confirmed > told && last_status.elapsed() >= STATUS_INTERVAL)
                || last_status.elapsed() >= KEEPALIVE_INTERVAL
            {
                repl.confirm(confirmed).await?;
                told = confirmed;
                last_status = Instant::now();
            }
            if last_save.elapsed() >= STATE_SAVE_INTERVAL {
                state::save(&self.context.state_path, state)?;
                last_save = Instant::now();
                if !in_tx && !state::resync_requests(&self.context.state_path)?.is_empty() {
                    resync = true;
                    break;
                }
            }
        }
        // Shutdown (or a resync): committed transactions go out; the unfinished one is
        // streamed again from the confirmed position on the next start.
        pending
            .flush(&self.context.log, &self.config.name, state)
            .await?;
        state::save(&self.context.state_path, state)?;
        let _ = repl.confirm(confirmed.max(state.resume.0)).await;
        if resync {
            tracing::info!(source = %self.config.name, position = %state.resume, "streaming paused for a re-snapshot");
            Ok(StreamEnd::Resync)
        } else {
            tracing::info!(source = %self.config.name, position = %state.resume, "cdc source stopped");
            Ok(StreamEnd::Shutdown)
        }
    }

    /// A replication error that says the slot is gone or invalidated is a lost position.
    fn slot_lost(&self, state: &SourceState<Lsn>, e: Error) -> Error {
        let text = e.to_string();
        // Slot gone (42704 "replication slot … does not exist") or invalidated (55000 "cannot
        // read from logical replication slot … invalidated"); other errors keep their meaning.
        let lost = text.contains("replication slot")
            && (text.contains("does not exist")
                || text.contains("can no longer get changes")
                || text.contains("invalidated"));
        if !lost {
            return e;
        }
        Error::PositionLost {
            source_name: self.config.name.clone(),
            position: state.resume.to_string(),
            message: text,
            state: self.context.state_path.display().to_string(),
        }
    }

    pub(super) async fn current_lsn(&self, client: &Client) -> Result<u64> {
        let row = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| self.err("reading pg_current_wal_lsn()", e))?;
        let text: String = row
            .try_get(0)
            .map_err(|e| self.err("reading pg_current_wal_lsn()", e))?;
        parse_lsn(&text).ok_or_else(|| Error::Internal(format!("lsn {text:?} does not parse")))
    }

    /// The transaction's commit: its changes (minus those the topics already hold) join the
    /// pending flush, which then resumes after `end_lsn`.
    fn commit_tx(
        &self,
        tx: &mut Transaction,
        tables: &[SourceTable],
        skip_until: &mut HashMap<usize, SourcePosition>,
        pending: &mut Pending<Lsn>,
        state: &mut SourceState<Lsn>,
        end_lsn: u64,
    ) {
        let txid = format!("xid:{}", tx.xid);
        let mut records = Vec::with_capacity(tx.changes.len());
        let mut row = 0;
        for (table, mut record) in tx.changes.drain(..) {
            let at = SourcePosition {
                file: lsn_key(tx.commit_lsn),
                pos: tx.commit_lsn,
                row,
                snapshot: false,
            };
            let position = match &mut record {
                CdcRecord::Change(change) => {
                    change.txid = Some(txid.clone());
                    change.commit_ts = tx.commit_ts;
                    &mut change.position
                }
                CdcRecord::Truncate(t) => {
                    t.commit_ts = tx.commit_ts;
                    &mut t.position
                }
                // Schema records are not positions: applying one twice changes nothing.
                CdcRecord::Schema(_) => {
                    records.push((self.config.topic(tables[table].name()), record));
                    continue;
                }
            };
            *position = at;
            row += 1;
            if let Some(last) = skip_until.get(&table) {
                if &*position <= last {
                    continue;
                }
                skip_until.remove(&table);
            }
            records.push((self.config.topic(tables[table].name()), record));
        }
        if records.is_empty() {
            pending.pass(Lsn(end_lsn), state);
        } else {
            pending.add(records, Some(Lsn(end_lsn)));
        }
    }
}

/// One turn of the streaming loop.
enum Step {
    Event(Event),
    /// The server ended the stream.
    Ended,
    /// A timer: flush what lingers, save the state.
    Tick,
}

impl From<Option<Event>> for Step {
    fn from(e: Option<Event>) -> Step {
        e.map_or(Step::Ended, Step::Event)
    }
}

impl Transaction {
    fn push(&mut self, table: usize, op: Op, before: Option<Row>, after: Option<Row>) {
        self.changes.push((
            table,
            CdcRecord::Change(Box::new(Change {
                op,
                before,
                after,
                position: no_position(),
                txid: None,
                commit_ts: 0,
            })),
        ));
    }
}
