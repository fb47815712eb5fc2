//! Where a binlog stream starts and how it is placed against what the topics hold: the
//! server's kind and GTIDs, the binlog end with its GTID position (snapshot and re-snapshot
//! starts), GTID positions of states saved before GTIDs were tracked, the `resume` setting,
//! and the MariaDB session variables or MySQL GTID set that start the stream (ADR 0025).

use crate::config::ResumeMode;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Row as MyRow};
use strata_core::cdc::SourcePosition;

use super::gtid::{Gtid, GtidState, Held, HeldPart, MariadbPos, MysqlSet};
use super::position::BinlogPos;
use super::source::MysqlSource;
use crate::error::{Error, Result};
use crate::state::{self, SourceState};

impl MysqlSource {
    /// Opens the binlog stream at the saved position: by GTID or by file:position, per the
    /// `resume` setting and the server. Also returns the server and the GTID start (None:
    /// by file:position).
    pub(super) async fn open_stream(
        &self,
        state: &SourceState<BinlogPos>,
    ) -> Result<(BinlogStream, Server, Option<GtidState>)> {
        let mut conn = self.connect().await?;
        let server = self.server(&mut conn).await?;
        let by_gtid = self.gtid_start(server, state)?;
        let file = state.resume.file.clone();
        let mut request = BinlogStreamRequest::new(self.config.server_id)
            .with_filename(file.as_bytes())
            .with_pos(state.resume.pos);
        if server.mariadb {
            // Capability 4 (GTID): the server sends its GTID events as they are instead of
            // BEGIN stand-ins, and accepts a GTID start position. With a start position it
            // ignores file and position. A position the server's binlog does not contain (it
            // has not applied what we streamed) must fail, not skip ahead: MariaDB 10.11
            // refuses it with strict mode on or off (tested); strict asks for its strictest
            // checks.
            let mut setup = vec!["SET @mariadb_slave_capability = 4".to_string()];
            if let Some(g) = &by_gtid {
                setup.push(format!("SET @slave_connect_state = '{g}'"));
                setup.push("SET @slave_gtid_strict_mode = 1".to_string());
                setup.push("SET @slave_gtid_ignore_duplicates = 0".to_string());
            }
            for q in setup {
                conn.query_drop(&q)
                    .await
                    .map_err(|e| self.source_err(&q, e))?;
            }
        } else if let Some(GtidState::Mysql(set)) = &by_gtid {
            // COM_BINLOG_DUMP_GTID: the server sends every transaction not in the set.
            request = request.with_gtid().with_gtid_set(set.to_sids());
        }
        let stream = conn.get_binlog_stream(request).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("1236") || text.to_lowercase().contains("could not find first log") {
                self.lost(state, by_gtid.as_ref(), text)
            } else {
                self.source_err("starting the binlog stream", e)
            }
        })?;
        match &by_gtid {
            Some(g) => {
                tracing::info!(source = %self.config.name, gtid = %g, "streaming the binlog from a gtid position")
            }
            None => {
                tracing::info!(source = %self.config.name, position = %state.resume, "streaming the binlog")
            }
        }
        Ok((stream, server, by_gtid))
    }

    /// What kind of server this is and whether it has GTIDs.
    pub(super) async fn server(&self, conn: &mut Conn) -> Result<Server> {
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| self.source_err("SELECT VERSION()", e))?;
        let mariadb = version.is_some_and(|v| v.to_ascii_lowercase().contains("mariadb"));
        // MariaDB always logs GTIDs; MySQL when gtid_mode is ON (older servers have no
        // gtid_mode at all).
        let gtids = mariadb
            || conn
                .query_first::<String, _>("SELECT @@GLOBAL.gtid_mode")
                .await
                .ok()
                .flatten()
                .is_some_and(|m| m.eq_ignore_ascii_case("ON"));
        Ok(Server { mariadb, gtids })
    }

    /// MariaDB: the GTID position at binlog coordinate `file:pos` of this server (None when
    /// the server no longer has that file).
    async fn mariadb_gtid_at(
        &self,
        conn: &mut Conn,
        file: &str,
        pos: u64,
    ) -> Result<Option<GtidState>> {
        let text: Option<Option<String>> = conn
            .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
            .await
            .map_err(|e| self.source_err("BINLOG_GTID_POS", e))?;
        text.flatten()
            .map(|t| {
                t.parse::<MariadbPos>()
                    .map(GtidState::Mariadb)
                    .map_err(|e| self.source_err("BINLOG_GTID_POS", e))
            })
            .transpose()
    }

    /// A state saved before GTIDs were tracked: on MariaDB, the GTID position of its saved
    /// binlog coordinates (this server's files; a coordinate no longer on the server keeps
    /// none). MySQL has no such lookup: those positions resume by file:position until the
    /// next re-snapshot.
    pub(super) async fn fill_gtids(
        &self,
        conn: &mut Conn,
        state: &mut SourceState<BinlogPos>,
    ) -> Result<()> {
        if state.resume.gtid.is_some() || self.config.resume == ResumeMode::Position {
            return Ok(());
        }
        if !self.server(conn).await?.mariadb {
            return Ok(());
        }
        let mut changed = false;
        for at in [&mut state.resume, &mut state.snapshot_start] {
            if at.gtid.is_none() {
                at.gtid = self.mariadb_gtid_at(conn, &at.file, at.pos).await?;
                changed |= at.gtid.is_some();
            }
        }
        if changed {
            tracing::info!(source = %self.config.name, position = %state.resume, "gtid position of the saved binlog position");
            state::save(&self.context.state_path, state)?;
        }
        Ok(())
    }

    /// The GTID position to resume from, per the `resume` setting (None: by file:position).
    fn gtid_start(
        &self,
        server: Server,
        state: &SourceState<BinlogPos>,
    ) -> Result<Option<GtidState>> {
        let usable = state.resume.gtid.as_ref().filter(|g| server.accepts(g));
        match self.config.resume {
            ResumeMode::Position => Ok(None),
            ResumeMode::Auto => Ok(usable.filter(|g| !g.is_empty()).cloned()),
            ResumeMode::Gtid => match usable {
                Some(g) => Ok(Some(g.clone())),
                None => Err(Error::Unsupported {
                    table: self.config.name.clone(),
                    message: if !server.gtids {
                        format!("resume = \"gtid\" but {} has no GTIDs (MySQL: gtid_mode = ON and enforce_gtid_consistency = ON); use resume = \"auto\" or \"position\"", self.host)
                    } else {
                        format!("resume = \"gtid\" but the saved position {} has no GTID position for this {} server (saved before GTIDs were tracked, or from the other kind of server); use resume = \"auto\" until the next re-snapshot, or remove {} to re-snapshot", state.resume, if server.mariadb { "MariaDB" } else { "MySQL" }, self.context.state_path.display())
                    },
                }),
            },
        }
    }

    /// The current end of the binlog, with its GTID position when the server has GTIDs.
    pub(super) async fn binlog_end(&self, conn: &mut Conn) -> Result<BinlogPos> {
        let server = self.server(conn).await?;
        let row: Option<MyRow> = match conn.query_first("SHOW MASTER STATUS").await {
            Ok(r) => r,
            Err(_) => conn
                .query_first("SHOW BINARY LOG STATUS")
                .await
                .map_err(|e| self.source_err("SHOW MASTER STATUS", e))?,
        };
        let Some(row) = row else {
            return Err(Error::Unsupported {
                table: self.config.name.clone(),
                message: format!(
                    "{} has no binary log: start it with --log-bin --binlog-format=ROW --binlog-row-image=FULL",
                    self.host
                ),
            });
        };
        let file: Option<String> = row.get(0);
        let pos: Option<u64> = row.get(1);
        // MySQL shows the GTID set in the same answer (Executed_Gtid_Set), at the same moment.
        let executed: Option<String> = row.get(4);
        let (Some(file), Some(pos)) = (file, pos) else {
            return Err(self.source_err("SHOW MASTER STATUS", "unexpected answer"));
        };
        let gtid = if server.mariadb {
            self.mariadb_gtid_at(conn, &file, pos).await?
        } else if server.gtids {
            let set = executed
                .unwrap_or_default()
                .parse::<MysqlSet>()
                .map_err(|e| Error::Unsupported {
                    table: self.config.name.clone(),
                    message: format!("the executed GTID set of {}: {e}", self.host),
                })?;
            Some(GtidState::Mysql(set))
        } else {
            None
        };
        Ok(BinlogPos { file, pos, gtid })
    }

    /// The server no longer has (or never had) the position streaming resumed from.
    pub(super) fn lost(
        &self,
        state: &SourceState<BinlogPos>,
        by_gtid: Option<&GtidState>,
        text: String,
    ) -> Error {
        Error::PositionLost {
            source_name: self.config.name.clone(),
            position: state.resume.to_string(),
            message: match by_gtid {
                Some(g) => format!("resuming by GTID after {g}: {text}"),
                None => text,
            },
            state: self.context.state_path.display().to_string(),
        }
    }
}

/// The server a source streams from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Server {
    pub mariadb: bool,
    /// Whether it logs GTIDs (MariaDB: always; MySQL: gtid_mode = ON).
    pub gtids: bool,
}

impl Server {
    /// Whether a saved GTID position can place a stream from this server: it logs GTIDs,
    /// and of the same kind (MariaDB domain positions or MySQL sets).
    pub fn accepts(&self, g: &GtidState) -> bool {
        self.gtids && g.is_mariadb() == self.mariadb
    }
}

/// Where the stream is: the binlog file being read, and the GTID position after the last
/// transaction read (None when unknown: the server has no GTIDs, or a MySQL position saved
/// before GTIDs were tracked).
pub(super) struct Cursor {
    pub file: String,
    pub gtids: Option<GtidState>,
}

impl Cursor {
    /// The boundary at `pos` of the current file.
    pub fn at(&self, pos: u64) -> BinlogPos {
        BinlogPos {
            file: self.file.clone(),
            pos,
            gtid: self.gtids.clone(),
        }
    }
}

/// What a topic already holds, read back from its tail on start: changes up to a binlog
/// position of the same server, or (when its changes carry GTIDs) transactions by GTID,
/// which also holds on another server of the topology.
pub(super) enum Skip {
    Position(SourcePosition),
    Gtid(Held),
}

/// Whether the change at `at`, the `in_tx`-th of its table in transaction `gtid`, is already
/// on the table's topic.
pub(super) fn held(
    skip: Option<&Skip>,
    at: &SourcePosition,
    gtid: Option<&Gtid>,
    in_tx: u64,
) -> bool {
    match skip {
        None => false,
        Some(Skip::Position(last)) => at <= last,
        // A change without a GTID cannot be placed: it is kept (a repeat is an idempotent
        // upsert for the merger; a loss would not be).
        Some(Skip::Gtid(held)) => match gtid.map(|g| held.part(g)) {
            Some(HeldPart::All) => true,
            Some(HeldPart::First(n)) => in_tx < n,
            Some(HeldPart::None) | None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, pos: u64, row: u64) -> SourcePosition {
        SourcePosition {
            file: file.into(),
            pos,
            row,
            snapshot: false,
        }
    }

    #[test]
    fn changes_are_placed_by_position_or_by_gtid() {
        let g = |t: &str| Gtid::parse(t).unwrap();
        let by_pos = Skip::Position(at("binlog.000002", 500, 1));
        assert!(held(Some(&by_pos), &at("binlog.000002", 500, 1), None, 0));
        assert!(held(Some(&by_pos), &at("binlog.000001", 900, 0), None, 0));
        assert!(!held(Some(&by_pos), &at("binlog.000002", 500, 2), None, 0));
        assert!(!held(None, &at("binlog.000001", 4, 0), None, 0));

        // By GTID the position (another server's file) does not matter.
        let by_gtid = Skip::Gtid(Held::from_tail(["0-1-9", "0-1-9", "0-1-8"], 2).unwrap());
        let elsewhere = at("replica-bin.000001", 4, 0);
        assert!(held(Some(&by_gtid), &elsewhere, Some(&g("0-1-8")), 5));
        assert!(held(Some(&by_gtid), &elsewhere, Some(&g("0-1-9")), 1));
        assert!(!held(Some(&by_gtid), &elsewhere, Some(&g("0-1-9")), 2));
        assert!(!held(Some(&by_gtid), &elsewhere, Some(&g("0-2-10")), 0));
        // Without a GTID a change is kept.
        assert!(!held(Some(&by_gtid), &elsewhere, None, 0));
    }
}
