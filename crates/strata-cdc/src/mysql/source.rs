//! The MariaDB/MySQL binlog stream, from the position taken when the snapshot started (the
//! runtime's loop, `runtime.rs`, runs the schemas and the snapshot before it; `connector.rs`
//! in this folder is how this source plugs into it). Every change becomes a
//! [`CdcRecord::Change`] on `cdc.<source>.<table>` (one partition, source order).
//!
//! Exactly-once onto the bus: a transaction's changes are buffered when its commit (XID)
//! event arrives and committed transactions go out together (`batch.rs`: at 8192 changes,
//! 20 ms after the oldest, or when the binlog has nothing more for now); the resume position
//! then moves to the last boundary flushed. After a crash the stream restarts at the saved
//! boundary and drops every change whose position is at or before the last change its topic
//! already holds.
//!
//! Resuming (`resume` in the source's config): by binlog file:position, or by GTID position
//! (`gtid.rs`), which holds on every server of the replication topology, so a source pointed
//! at a promoted replica after a failover carries on where it stopped. Every boundary saved
//! carries both when the server has GTIDs. "Already holds" is then decided by GTID as well
//! (sequence numbers per MariaDB domain / MySQL server UUID), as binlog positions of two
//! servers cannot be compared.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::{redact_url, MysqlSourceConfig, SourceCommon};
use futures::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::binlog::BinlogChecksumAlg;
use mysql_async::{Conn, Opts, OptsBuilder};
use strata_core::cdc::{CdcRecord, Change, Op, Row, SourcePosition, Truncate};
use tokio::sync::watch;

use super::decode::{decode, Origin};
use super::gtid::{Gtid, Held};
use super::position::BinlogPos;
use super::resume::{held, Cursor, Skip};
use super::schema::{load_table, SourceTable};
use crate::batch::Pending;
use crate::connector::{Context, StreamEnd};
use crate::error::{Error, Result};
use crate::state::{self, SourceState};
use crate::topic::TopicTail;

/// Changes buffered for one transaction before they are flushed early (huge transactions).
const MAX_TX_BUFFER: usize = 50_000;
/// How often the state file is rewritten while streaming.
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// MariaDB's own GTID event type.
const MARIADB_GTID_EVENT: u8 = 162;

/// A configured MariaDB/MySQL source.
pub struct MysqlSource {
    pub(super) config: MysqlSourceConfig,
    pub(super) context: Context,
    pub(super) opts: Opts,
    pub(super) database: String,
    pub(super) host: String,
}

impl MysqlSource {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub(super) fn source_err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Source {
            source_name: self.config.name.clone(),
            host: self.host.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Opens a connection with the session in UTC and utf8mb4.
    pub async fn connect(&self) -> Result<Conn> {
        Conn::new(self.opts.clone())
            .await
            .map_err(|e| self.source_err("connecting", e))
    }

    /// The schemas of every configured table.
    pub async fn load_tables(&self, conn: &mut Conn) -> Result<Vec<SourceTable>> {
        let mut out = Vec::new();
        for t in &self.config.tables {
            out.push(load_table(conn, &self.config.name, &self.database, t).await?);
        }
        Ok(out)
    }

    pub(super) fn with_host(&self, e: Error) -> Error {
        match e {
            Error::Source {
                source_name,
                message,
                ..
            } => Error::Source {
                source_name,
                host: self.host.clone(),
                message,
            },
            other => other,
        }
    }

    /// Streams the binlog from `state.resume` until shutdown or a resync request.
    pub(super) async fn stream_binlog(
        &self,
        mut tables: Vec<SourceTable>,
        tails: HashMap<String, TopicTail>,
        state: &mut SourceState<BinlogPos>,
        pending: &mut Pending<BinlogPos>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<StreamEnd> {
        let (mut stream, server, by_gtid) = self.open_stream(state).await?;
        let by_name: HashMap<String, usize> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name().to_string(), i))
            .collect();
        // A connection for reading a table's schema again after DDL, opened when needed.
        let mut catalog: Option<Conn> = None;
        let mut resync = false;
        let mut skip_until: HashMap<String, Skip> = tails
            .into_iter()
            .filter_map(|(t, tail)| {
                let by_gtid = Held::from_tail(
                    tail.txids.iter().map(String::as_str),
                    tail.last_txid_changes,
                );
                match (by_gtid, tail.last_streamed) {
                    (Some(held), _) => Some((t, Skip::Gtid(held))),
                    (None, Some(p)) => Some((t, Skip::Position(p))),
                    (None, None) => None,
                }
            })
            .collect();
        // Where the stream is: the file (the first event names it when resuming by GTID)
        // and the GTID position after the last transaction (when known).
        let mut cursor = Cursor {
            file: state.resume.file.clone(),
            gtids: state.resume.gtid.clone().filter(|g| server.accepts(g)),
        };
        // The first (fake) rotate's name, with checksum bytes when the binlog has them: the
        // format description after it says.
        let mut first_rotate: Option<Vec<u8>> = None;
        let mut tx = Transaction::default();
        let mut last_save = Instant::now();
        state.last_error = None;
        loop {
            // Committed transactions wait for company until the binlog pauses or they have
            // waited long enough.
            let next = match pending.deadline() {
                None => tokio::select! {
                    next = stream.next() => next,
                    _ = shutdown.changed() => None,
                    // An idle binlog still looks for resync requests.
                    _ = tokio::time::sleep(STATE_SAVE_INTERVAL) => {
                        if tx.changes.is_empty() && !state::resync_requests(&self.context.state_path)?.is_empty() {
                            resync = true;
                            break;
                        }
                        continue;
                    }
                },
                Some(deadline) => tokio::select! {
                    biased;
                    next = stream.next() => next,
                    _ = tokio::time::sleep_until(deadline) => {
                        pending.send(&self.context.log, &self.config.name, state).await?;
                        continue;
                    }
                },
            };
            let event = match next {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    let text = e.to_string();
                    if text.contains("1236") {
                        return Err(self.lost(state, by_gtid.as_ref(), text));
                    }
                    state::save(&self.context.state_path, state)?;
                    return Err(self.source_err("reading the binlog", e));
                }
            };
            let header = event.header();
            let log_pos = header.log_pos() as u64;
            if header.event_type_raw() == MARIADB_GTID_EVENT {
                let d = event.data();
                if d.len() >= 12 {
                    let seq = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
                    let domain = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
                    tx.gtid = Some(Gtid::Mariadb {
                        domain,
                        server: header.server_id(),
                        seq,
                    });
                }
                tx.ts = header.timestamp() as i64 * 1_000_000;
                continue;
            }
            let checksummed = matches!(
                event.footer().get_checksum_alg(),
                Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
            );
            let data = match event.read_data() {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    return Err(Error::Unsupported {
                        table: self.config.name.clone(),
                        message: format!(
                            "undecodable binlog event at {}:{log_pos}: {e}",
                            cursor.file
                        ),
                    })
                }
            };
            match data {
                // The fake rotate the server sends first names the file we asked for (its
                // name arrives with checksum bytes attached: ignore it). A real rotate starts
                // the next file, between transactions.
                EventData::RotateEvent(r) if log_pos != 0 && !r.is_fake() => {
                    cursor.file = binlog_file_name(&r.name());
                    let next_file = cursor.at(r.position());
                    pending.pass(next_file, state);
                }
                EventData::RotateEvent(r) if by_gtid.is_some() => {
                    first_rotate = Some(r.name_raw().to_vec())
                }
                EventData::FormatDescriptionEvent(_) => {
                    // Resuming by GTID, the server picks the file: the fake rotate names it.
                    if let Some(mut raw) = first_rotate.take() {
                        if checksummed && raw.len() > 4 {
                            raw.truncate(raw.len() - 4);
                        }
                        let name = binlog_file_name(&String::from_utf8_lossy(&raw));
                        if name != cursor.file {
                            tracing::info!(source = %self.config.name, file = %name, "streaming from binlog file");
                        }
                        cursor.file = name;
                    }
                }
                EventData::GtidEvent(g) => {
                    tx.gtid = Some(Gtid::Mysql {
                        uuid: g.sid(),
                        gno: g.gno(),
                    });
                    tx.ts = header.timestamp() as i64 * 1_000_000;
                }
                EventData::QueryEvent(q) => {
                    let query = q.query();
                    if query.starts_with('#') {
                        // MariaDB's stand-in for events this client did not ask for
                        // (annotate rows): not a boundary.
                    } else if query.eq_ignore_ascii_case("BEGIN") {
                        tx.ts = header.timestamp() as i64 * 1_000_000;
                    } else {
                        // COMMIT of a non-transactional engine, or DDL: a boundary. DDL that
                        // names one of our tables puts its new schema, or a truncate, on the
                        // topic, before the boundary moves past it.
                        if !query.eq_ignore_ascii_case("COMMIT") {
                            let at = SourcePosition {
                                file: cursor.file.clone(),
                                pos: log_pos,
                                row: 0,
                                snapshot: false,
                            };
                            let commit_ts = header.timestamp() as i64 * 1_000_000;
                            for i in ddl_tables(&query, &tables) {
                                let name = tables[i].name().to_string();
                                if state.stopped(&name).is_some() {
                                    continue;
                                }
                                if held(skip_until.get(&name), &at, tx.gtid.as_ref(), 0) {
                                    continue;
                                }
                                let topic = self.config.topic(&name);
                                if is_truncate(&query) {
                                    tracing::info!(source = %self.config.name, table = %name, position = %at, "truncate in the binlog");
                                    tx.extra.push((
                                        topic,
                                        CdcRecord::Truncate(Truncate {
                                            position: at.clone(),
                                            commit_ts,
                                            reason: "truncate".to_string(),
                                        }),
                                    ));
                                    continue;
                                }
                                let conn = match &mut catalog {
                                    Some(c) => c,
                                    None => catalog.insert(self.connect().await?),
                                };
                                match load_table(conn, &self.config.name, &self.database, &name)
                                    .await
                                {
                                    Ok(t) if t.schema != tables[i].schema => {
                                        tracing::info!(source = %self.config.name, table = %name, position = %at, query = %query, "schema change in the binlog");
                                        tx.extra.push((topic, CdcRecord::Schema(t.schema.clone())));
                                        tables[i] = t;
                                    }
                                    Ok(_) => {}
                                    Err(e) => self.stop_table(
                                        state,
                                        &name,
                                        format!("after `{query}` at {at}: {e}"),
                                    ),
                                }
                            }
                        }
                        self.commit_tx(&mut tx, None, pending, state, &mut cursor, log_pos);
                    }
                }
                EventData::XidEvent(x) => {
                    self.commit_tx(&mut tx, Some(x.xid), pending, state, &mut cursor, log_pos);
                }
                EventData::RowsEvent(rows) => {
                    let Some(tme) = stream.get_tme(rows.table_id()) else {
                        continue;
                    };
                    if tme.database_name() != self.database.as_str() {
                        continue;
                    }
                    let table_name = tme.table_name().to_string();
                    let Some(&index) = by_name.get(table_name.as_str()) else {
                        continue;
                    };
                    if state.stopped(&table_name).is_some() {
                        continue;
                    }
                    let table = &tables[index];
                    let first = SourcePosition {
                        file: cursor.file.clone(),
                        pos: log_pos,
                        row: 0,
                        snapshot: false,
                    };
                    let in_tx = tx.rows.get(&table_name).copied().unwrap_or(0);
                    let already =
                        held(skip_until.get(&table_name), &first, tx.gtid.as_ref(), in_tx);
                    if !already && tme.columns_count() as usize != table.columns.len() {
                        // The rows do not have the columns of the schema we know: it changed
                        // again later in the binlog than the server's schema shows.
                        self.stop_table(
                            state,
                            &table_name,
                            format!(
                                "the binlog has {} columns at {first}, the schema read from the server {}: the table changed again further on; `strata cdc resync {table_name}` re-snapshots it",
                                tme.columns_count(),
                                table.columns.len()
                            ),
                        );
                        continue;
                    }
                    let op =
                        match &rows {
                            RowsEventData::WriteRowsEvent(_)
                            | RowsEventData::WriteRowsEventV1(_) => Op::Create,
                            RowsEventData::UpdateRowsEvent(_)
                            | RowsEventData::UpdateRowsEventV1(_)
                            | RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
                            RowsEventData::DeleteRowsEvent(_)
                            | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
                        };
                    for (i, pair) in rows.rows(tme).enumerate() {
                        let (before, after) = pair.map_err(|e| Error::Unsupported {
                            table: table_name.clone(),
                            message: format!("bad row at {}:{log_pos}: {e}", cursor.file),
                        })?;
                        let position = SourcePosition {
                            file: cursor.file.clone(),
                            pos: log_pos,
                            row: i as u64,
                            snapshot: false,
                        };
                        let in_tx = match tx.rows.get_mut(&table_name) {
                            Some(n) => {
                                *n += 1;
                                *n - 1
                            }
                            None => {
                                tx.rows.insert(table_name.clone(), 1);
                                0
                            }
                        };
                        match skip_until.get(&table_name) {
                            Some(skip) if held(Some(skip), &position, tx.gtid.as_ref(), in_tx) => {
                                continue;
                            }
                            // By position, everything after the first change not held is new.
                            Some(Skip::Position(_)) => {
                                skip_until.remove(&table_name);
                            }
                            _ => {}
                        }
                        let before = before.map(|r| image(table, r)).transpose()?;
                        let after = after.map(|r| image(table, r)).transpose()?;
                        tx.changes.push((
                            table_name.clone(),
                            Change {
                                op,
                                before,
                                after,
                                position,
                                txid: None,
                                commit_ts: header.timestamp() as i64 * 1_000_000,
                            },
                        ));
                    }
                    if tx.changes.len() >= MAX_TX_BUFFER {
                        // A huge transaction goes out in parts; the resume position stays
                        // at its start.
                        pending.add(self.records(&mut tx, None), None);
                        pending
                            .flush(&self.context.log, &self.config.name, state)
                            .await?;
                    }
                }
                _ => {}
            }
            if pending.due() {
                pending
                    .send(&self.context.log, &self.config.name, state)
                    .await?;
            }
            if last_save.elapsed() >= STATE_SAVE_INTERVAL {
                state::save(&self.context.state_path, state)?;
                last_save = Instant::now();
                if !state::resync_requests(&self.context.state_path)?.is_empty()
                    && tx.changes.is_empty()
                {
                    resync = true;
                    break;
                }
            }
        }
        // Shutdown (or a resync): committed transactions go out; the unfinished one is
        // re-read from `resume` on the next start.
        pending
            .flush(&self.context.log, &self.config.name, state)
            .await?;
        state::save(&self.context.state_path, state)?;
        let _ = stream.close().await;
        if let Some(c) = catalog {
            let _ = c.disconnect().await;
        }
        if resync {
            tracing::info!(source = %self.config.name, position = %state.resume, "streaming paused for a re-snapshot");
        } else {
            tracing::info!(source = %self.config.name, position = %state.resume, "cdc source stopped");
        }
        Ok(if resync {
            StreamEnd::Resync
        } else {
            StreamEnd::Shutdown
        })
    }

    /// Stops streaming `table` (the others go on) until it is re-snapshotted.
    fn stop_table(&self, state: &mut SourceState<BinlogPos>, table: &str, message: String) {
        tracing::error!(source = %self.config.name, table, error = %message, "cdc table stopped until `strata cdc resync`");
        state.tables.entry(table.to_string()).or_default().error = Some(message);
    }

    /// The transaction's commit reached at `log_pos` of the cursor's file: its GTID joins
    /// the cursor's GTID position, and its changes the pending flush with that boundary.
    fn commit_tx(
        &self,
        tx: &mut Transaction,
        xid: Option<u64>,
        pending: &mut Pending<BinlogPos>,
        state: &mut SourceState<BinlogPos>,
        cursor: &mut Cursor,
        log_pos: u64,
    ) {
        if let (Some(gtids), Some(g)) = (&mut cursor.gtids, &tx.gtid) {
            gtids.apply(g);
        }
        let boundary = cursor.at(log_pos);
        let mut records = self.records(tx, xid);
        records.append(&mut tx.extra);
        if records.is_empty() {
            pending.pass(boundary, state);
        } else {
            pending.add(records, Some(boundary));
        }
        *tx = Transaction::default();
    }

    /// Takes the buffered changes of `tx` as `(topic, record)` with the transaction id.
    fn records(&self, tx: &mut Transaction, xid: Option<u64>) -> Vec<(String, CdcRecord)> {
        let txid = tx
            .gtid
            .map(|g| g.to_string())
            .or_else(|| xid.map(|x| format!("xid:{x}")));
        tx.changes
            .drain(..)
            .map(|(table, mut change)| {
                change.txid = txid.clone();
                (
                    self.config.topic(&table),
                    CdcRecord::Change(Box::new(change)),
                )
            })
            .collect()
    }
}

/// `binlog.000002` from a rotate event's name, without any bytes after the sequence digits.
fn binlog_file_name(raw: &str) -> String {
    match raw.rfind('.') {
        Some(dot) => {
            let digits: String = raw[dot + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            format!("{}.{digits}", &raw[..dot])
        }
        None => raw.chars().take_while(char::is_ascii_graphic).collect(),
    }
}

/// Connection options (session in UTC, utf8mb4), the database and `host:port`.
pub fn connect_opts(config: &SourceCommon) -> Result<(Opts, String, String)> {
    let opts = Opts::from_url(&config.url).map_err(|e| Error::Unsupported {
        table: config.name.clone(),
        message: format!("bad url {}: {e}", redact_url(&config.url)),
    })?;
    let database = opts.db_name().unwrap_or_default().to_string();
    let host = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
    let opts: Opts = OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"])
        .into();
    Ok((opts, database, host))
}

/// Reads the current schema and every row of `tables` (all configured tables when empty),
/// for `strata cdc verify`.
pub async fn read_tables(
    config: &SourceCommon,
    tables: &[String],
) -> Result<Vec<(SourceTable, Vec<Row>)>> {
    let (opts, database, host) = connect_opts(config)?;
    let mut conn = Conn::new(opts).await.map_err(|e| Error::Source {
        source_name: config.name.clone(),
        host: host.clone(),
        message: format!("connecting: {e}"),
    })?;
    let names = if tables.is_empty() {
        &config.tables[..]
    } else {
        tables
    };
    let mut out = Vec::new();
    for t in names {
        let table = load_table(&mut conn, &config.name, &database, t).await?;
        let rows = super::snapshot::read_all(&mut conn, &table).await?;
        out.push((table, rows));
    }
    let _ = conn.disconnect().await;
    Ok(out)
}

#[derive(Default)]
struct Transaction {
    gtid: Option<Gtid>,
    ts: i64,
    changes: Vec<(String, Change)>,
    /// Row changes per table read so far (held or not), to place a huge transaction that is
    /// on its topic in part.
    rows: HashMap<String, u64>,
    /// Schema records and truncates from DDL, after the changes.
    extra: Vec<(String, CdcRecord)>,
}

/// The configured tables a DDL statement names (by identifier, any case, quoted or not).
fn ddl_tables(query: &str, tables: &[SourceTable]) -> Vec<usize> {
    let words: Vec<String> = query
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    tables
        .iter()
        .enumerate()
        .filter(|(_, t)| words.iter().any(|w| *w == t.name().to_lowercase()))
        .map(|(i, _)| i)
        .collect()
}

/// `TRUNCATE [TABLE] …`
fn is_truncate(query: &str) -> bool {
    query
        .trim_start()
        .get(..8)
        .is_some_and(|w| w.eq_ignore_ascii_case("truncate"))
}

/// A binlog row image → a row (every column must be present: binlog_row_image=FULL).
fn image(table: &SourceTable, row: BinlogRow) -> Result<Row> {
    let mut out = Row::new();
    for (i, col) in table.columns.iter().enumerate() {
        let Some(v) = row.as_ref(i) else {
            return Err(Error::Unsupported {
                table: table.name().to_string(),
                message: format!(
                    "column {} missing from the row image: set binlog_row_image=FULL",
                    col.schema.name
                ),
            });
        };
        let value: mysql_async::Value = match v {
            BinlogValue::Value(v) => v.clone(),
            other => {
                mysql_async::Value::try_from(other.clone()).map_err(|e| Error::Unsupported {
                    table: table.name().to_string(),
                    message: format!("column {}: {e}", col.schema.name),
                })?
            }
        };
        let value = decode(col, value, Origin::Binlog).map_err(|message| Error::Unsupported {
            table: table.name().to_string(),
            message,
        })?;
        out.insert(col.schema.name.clone(), value);
    }
    Ok(out)
}
