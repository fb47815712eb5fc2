//! The source's durable progress: `<data>/cdc/<source>.json`, replaced atomically (write,
//! fsync, rename). It says which phase the source is in, where the snapshot started, how far
//! each table's snapshot got and the binlog position (a transaction boundary) to stream from.
//!
//! It may lag behind what is on the bus (it is written after the bus appends): a restart then
//! re-reads a little, and the source drops streamed changes at or before the last one each
//! topic already holds, so the bus gets every change once. Snapshot chunks re-read after a
//! crash are idempotent upserts for the merger.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_core::cdc::Value;

use crate::error::{Error, Result};
use crate::mysql::gtid::GtidState;

/// A binlog coordinate: file and position on one server, and (MariaDB/MySQL, when the
/// server has GTIDs) the GTID position at the same point, which holds on every server of the
/// replication topology. State files written before GTIDs were tracked have no `gtid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPos {
    pub file: String,
    pub pos: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<GtidState>,
}

impl BinlogPos {
    /// `file:pos` without a GTID position.
    pub fn at(file: impl Into<String>, pos: u64) -> BinlogPos {
        BinlogPos {
            file: file.into(),
            pos,
            gtid: None,
        }
    }
}

impl std::fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        match &self.gtid {
            Some(g) if !g.is_empty() => write!(f, " (gtid {g})"),
            _ => Ok(()),
        }
    }
}

/// How far one table's snapshot got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableSnapshot {
    /// Primary key of the last row appended to the bus (None: none yet).
    pub last_key: Option<Vec<Value>>,
    pub rows: u64,
    pub done: bool,
    /// Where this table's own re-snapshot started (`strata cdc resync`, or a table added to
    /// the config later); None: the source's `snapshot_start`. A re-snapshot puts a truncate
    /// on the topic before its first rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<BinlogPos>,
    /// Why the source stopped streaming this table (e.g. a row shape it cannot decode): its
    /// changes are passed over until it is re-snapshotted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Snapshot,
    Stream,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub phase: Phase,
    /// Where the snapshot started: streaming begins here after it.
    pub snapshot_start: BinlogPos,
    pub tables: BTreeMap<String, TableSnapshot>,
    /// Streaming resumes here (the end of the last transaction fully on the bus, or earlier).
    pub resume: BinlogPos,
    /// Changes put on the bus since this source was first started.
    #[serde(default)]
    pub changes: u64,
    /// Commit time of the last streamed change, epoch microseconds.
    #[serde(default)]
    pub last_commit_ts: Option<i64>,
    /// Last error the source hit (cleared when it streams again).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When this file was written, epoch milliseconds.
    #[serde(default)]
    pub updated_ms: i64,
    /// Changes per second put on the bus, measured over the last window of at least
    /// [`RATE_WINDOW_MS`] that ended with a save (a source that has been idle since shows its
    /// last busy rate: `updated_ms` says when).
    #[serde(default)]
    pub changes_per_sec: f64,
    /// Start of the current rate window (epoch ms) and `changes` at that moment.
    #[serde(default)]
    pub rate_window_ms: i64,
    #[serde(default)]
    pub rate_window_changes: u64,
}

/// Shortest window the change rate is measured over.
pub const RATE_WINDOW_MS: i64 = 1000;

impl SourceState {
    /// A source that has not read anything yet: its snapshot (or, with `phase` stream, its
    /// stream) starts at `start`.
    pub fn new(phase: Phase, start: BinlogPos) -> SourceState {
        SourceState {
            phase,
            snapshot_start: start.clone(),
            tables: BTreeMap::new(),
            resume: start,
            changes: 0,
            last_commit_ts: None,
            last_error: None,
            updated_ms: 0,
            changes_per_sec: 0.0,
            rate_window_ms: 0,
            rate_window_changes: 0,
        }
    }

    /// Starts a re-snapshot of `table` at `start` (the current end of the change stream): its
    /// progress and any error are cleared.
    pub fn resnapshot(&mut self, table: &str, start: BinlogPos) {
        self.tables.insert(
            table.to_string(),
            TableSnapshot {
                start: Some(start),
                ..TableSnapshot::default()
            },
        );
    }

    /// Whether `table` is being snapshotted (the source's snapshot, or its own re-snapshot).
    pub fn snapshotting(&self, table: &str) -> bool {
        match self.tables.get(table) {
            Some(t) => !t.done,
            None => self.phase == Phase::Snapshot,
        }
    }

    /// The table's streaming error, if it stopped.
    pub fn stopped(&self, table: &str) -> Option<&str> {
        self.tables.get(table).and_then(|t| t.error.as_deref())
    }

    /// Moves the change-rate window to `now_ms` when it is long enough.
    fn measure_rate(&mut self, now_ms: i64) {
        let elapsed = now_ms - self.rate_window_ms;
        if self.rate_window_ms == 0 || self.changes < self.rate_window_changes {
            self.rate_window_ms = now_ms;
            self.rate_window_changes = self.changes;
        } else if elapsed >= RATE_WINDOW_MS {
            self.changes_per_sec =
                (self.changes - self.rate_window_changes) as f64 * 1000.0 / elapsed as f64;
            self.rate_window_ms = now_ms;
            self.rate_window_changes = self.changes;
        }
    }
}

/// `<data>/cdc/<source>.json`
pub fn state_path(data_dir: &Path, source: &str) -> PathBuf {
    data_dir.join("cdc").join(format!("{source}.json"))
}

/// The tables due for a re-snapshot: those `strata cdc resync` asked for, and (with an
/// initial snapshot) tables added to the config after the source's snapshot.
pub fn due_resnapshots(
    path: &Path,
    config: &strata_core::config::SourceConfig,
    state: &SourceState,
) -> Result<Vec<String>> {
    let mut due = resync_requests(path)?;
    if config.snapshot == strata_core::config::SnapshotMode::Initial && state.phase == Phase::Stream
    {
        due.extend(
            config
                .tables
                .iter()
                .filter(|t| !state.tables.contains_key(*t))
                .cloned(),
        );
    }
    due.retain(|t| config.tables.contains(t));
    Ok(due)
}

/// Records a re-snapshot of each `due` table from `start` and saves the state (the request
/// file may go once this returns).
pub fn begin_resnapshots(
    path: &Path,
    source: &str,
    state: &mut SourceState,
    due: &[String],
    start: BinlogPos,
) -> Result<()> {
    for t in due {
        tracing::info!(source, table = %t, position = %start, "re-snapshotting table");
        state.resnapshot(t, start.clone());
    }
    save(path, state)
}

/// After the server lost the source's position: every configured table re-snapshots from
/// `start` (the stream's current end), and streaming resumes there. The lost position is
/// kept as `last_error` for `strata cdc status`.
pub fn resnapshot_all(
    path: &Path,
    config: &strata_core::config::SourceConfig,
    start: BinlogPos,
    lost: &Error,
) -> Result<()> {
    let mut state = load(path)?.unwrap_or_else(|| SourceState::new(Phase::Stream, start.clone()));
    state.phase = Phase::Stream;
    state.resume = start.clone();
    for t in &config.tables {
        state.resnapshot(t, start.clone());
    }
    state.last_error = Some(format!("{lost} — re-snapshotting every table from {start}"));
    save(path, &mut state)
}

/// `<data>/cdc/<source>.resync.json`: tables `strata cdc resync` asked to re-snapshot, beside
/// the state file it belongs to. The running source takes them within a second (or on its
/// next start), records the re-snapshot in its state, then removes the file.
pub fn resync_path(state_path: &Path) -> PathBuf {
    state_path.with_extension("resync.json")
}

/// Asks for a re-snapshot of `table` (added to any request not yet taken).
pub fn request_resync(state_path: &Path, table: &str) -> Result<()> {
    let path = resync_path(state_path);
    let mut tables = resync_requests(state_path)?;
    if !tables.iter().any(|t| t == table) {
        tables.push(table.to_string());
    }
    let bytes = serde_json::to_vec(&tables).map_err(|e| Error::Internal(e.to_string()))?;
    strata_core::fsutil::replace_file(&path, &bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The tables waiting for a re-snapshot (empty: none).
pub fn resync_requests(state_path: &Path) -> Result<Vec<String>> {
    let path = resync_path(state_path);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
            context: format!("reading {}", path.display()),
            message: format!("bad resync request file: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Removes the request file once its tables are in the saved state.
pub fn clear_resync_requests(state_path: &Path) -> Result<()> {
    let path = resync_path(state_path);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

pub fn load(path: &Path) -> Result<Option<SourceState>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Io {
                context: format!("reading {}", path.display()),
                message: format!("bad state file: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

pub fn save(path: &Path, state: &mut SourceState) -> Result<()> {
    state.updated_ms = chrono::Utc::now().timestamp_millis();
    state.measure_rate(state.updated_ms);
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::Internal(e.to_string()))?;
    strata_core::fsutil::replace_file(path, &bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SourceState {
        let at = BinlogPos::at("binlog.000001", 4);
        SourceState::new(Phase::Stream, at)
    }

    #[test]
    fn positions_without_a_gtid_still_load_and_gtids_round_trip() {
        // A state file written before GTIDs were tracked.
        let old = r#"{"phase":"stream","snapshot_start":{"file":"binlog.000001","pos":4},
            "tables":{"users":{"last_key":null,"rows":3,"done":true}},
            "resume":{"file":"binlog.000002","pos":1234}}"#;
        let s: SourceState = serde_json::from_str(old).unwrap();
        assert_eq!(s.resume, BinlogPos::at("binlog.000002", 1234));
        assert_eq!(s.resume.to_string(), "binlog.000002:1234");
        let mut s = s;
        s.resume.gtid = Some(GtidState::Mariadb("0-1-42".parse().unwrap()));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""gtid":{"mariadb":"0-1-42"}"#), "{json}");
        let back: SourceState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.resume, s.resume);
        assert_eq!(back.resume.to_string(), "binlog.000002:1234 (gtid 0-1-42)");
        // The snapshot start had none and still writes none.
        assert!(!json.contains(r#""snapshot_start":{"file":"binlog.000001","pos":4,"gtid""#));
    }

    #[test]
    fn change_rate_is_measured_over_windows_of_a_second_or_more() {
        let mut s = state();
        s.measure_rate(10_000);
        assert_eq!(s.changes_per_sec, 0.0);
        // Saves inside the window do not move it.
        s.changes = 400;
        s.measure_rate(10_500);
        assert_eq!(s.changes_per_sec, 0.0);
        s.changes = 1_000;
        s.measure_rate(12_000);
        assert_eq!(s.changes_per_sec, 500.0);
        s.changes = 1_250;
        s.measure_rate(14_500);
        assert_eq!(s.changes_per_sec, 100.0);
    }

    #[test]
    fn the_rate_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path(), "app");
        let mut s = state();
        save(&path, &mut s).unwrap();
        s.changes = 5;
        s.rate_window_ms -= 2_000;
        save(&path, &mut s).unwrap();
        let back = load(&path).unwrap().unwrap();
        assert!(
            back.changes_per_sec > 0.0 && back.changes_per_sec <= 2.5,
            "{back:?}"
        );
        assert_eq!(back.rate_window_changes, 5);
    }
}
