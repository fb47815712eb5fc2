//! The source's durable progress: `<data>/cdc/<source>.json`, replaced atomically (write,
//! fsync, rename). It says which phase the source is in, where the snapshot started, how far
//! each table's snapshot got and the position (a transaction boundary) to stream from, in the
//! connector's own position type ([`Position`]); older files are migrated on load.
//!
//! It may lag behind what is on the bus (it is written after the bus appends): a restart then
//! re-reads a little, and the source drops streamed changes at or before the last one each
//! topic already holds, so the bus gets every change once. Snapshot chunks re-read after a
//! crash are idempotent upserts for the merger.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::SourceCommon;
use serde::{Deserialize, Serialize};
use strata_core::cdc::Value;

use crate::connector::Position;
use crate::error::{Error, Result};

/// The state file format written now: positions in each connector's own type. Files without
/// a `format` (format 1, written before connectors had typed positions) saved every position
/// as a binlog-shaped `{"file", "pos"}` object; they are migrated on load
/// ([`Position::from_legacy`]) and rewritten by the running source.
pub const FORMAT: u32 = 2;

/// How far one table's snapshot got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: Serialize", deserialize = "P: Deserialize<'de>"))]
pub struct TableSnapshot<P> {
    /// Primary key of the last row appended to the bus (None: none yet).
    pub last_key: Option<Vec<Value>>,
    pub rows: u64,
    pub done: bool,
    /// Where this table's own re-snapshot started (`strata cdc resync`, or a table added to
    /// the config later); None: the source's `snapshot_start`. A re-snapshot puts a truncate
    /// on the topic before its first rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<P>,
    /// Why the source stopped streaming this table (e.g. a row shape it cannot decode): its
    /// changes are passed over until it is re-snapshotted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<P> Default for TableSnapshot<P> {
    fn default() -> Self {
        TableSnapshot {
            last_key: None,
            rows: 0,
            done: false,
            start: None,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Snapshot,
    Stream,
}

/// A source's progress; `P` is its connector's position type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState<P> {
    /// [`FORMAT`] (absent in format-1 files: read as 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub format: u32,
    pub phase: Phase,
    /// Where the snapshot started: streaming begins here after it.
    pub snapshot_start: P,
    pub tables: BTreeMap<String, TableSnapshot<P>>,
    /// Streaming resumes here (the end of the last transaction fully on the bus, or earlier).
    pub resume: P,
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

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Shortest window the change rate is measured over.
pub const RATE_WINDOW_MS: i64 = 1000;

impl<P: Clone> SourceState<P> {
    /// A source that has not read anything yet: its snapshot (or, with `phase` stream, its
    /// stream) starts at `start`.
    pub fn new(phase: Phase, start: P) -> SourceState<P> {
        SourceState {
            format: FORMAT,
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
    pub fn resnapshot(&mut self, table: &str, start: P) {
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

    /// The same progress with every position mapped (e.g. described for `strata cdc status`).
    pub fn map_positions<Q>(self, f: impl Fn(&P) -> Q) -> SourceState<Q> {
        SourceState {
            format: self.format,
            phase: self.phase,
            snapshot_start: f(&self.snapshot_start),
            tables: self
                .tables
                .into_iter()
                .map(|(name, t)| {
                    let start = t.start.as_ref().map(&f);
                    let t = TableSnapshot {
                        last_key: t.last_key,
                        rows: t.rows,
                        done: t.done,
                        start,
                        error: t.error,
                    };
                    (name, t)
                })
                .collect(),
            resume: f(&self.resume),
            changes: self.changes,
            last_commit_ts: self.last_commit_ts,
            last_error: self.last_error,
            updated_ms: self.updated_ms,
            changes_per_sec: self.changes_per_sec,
            rate_window_ms: self.rate_window_ms,
            rate_window_changes: self.rate_window_changes,
        }
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
pub fn due_resnapshots<P: Clone>(
    path: &Path,
    config: &SourceCommon,
    state: &SourceState<P>,
) -> Result<Vec<String>> {
    let mut due = resync_requests(path)?;
    if config.snapshot == crate::config::SnapshotMode::Initial && state.phase == Phase::Stream {
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
pub fn begin_resnapshots<P: Position>(
    path: &Path,
    source: &str,
    state: &mut SourceState<P>,
    due: &[String],
    start: P,
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
pub fn resnapshot_all<P: Position>(
    path: &Path,
    config: &SourceCommon,
    start: P,
    lost: &Error,
) -> Result<()> {
    let mut state =
        load::<P>(path)?.unwrap_or_else(|| SourceState::new(Phase::Stream, start.clone()));
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

/// Reads the state file (None: the source never started). A format-1 file is migrated in
/// memory; [`load_migrating`] also rewrites it.
pub fn load<P: Position>(path: &Path) -> Result<Option<SourceState<P>>> {
    Ok(load_any(path)?.map(|(state, _)| state))
}

/// [`load`], and a format-1 file is rewritten in the current format at once (the running
/// source does this; `strata cdc status` only reads).
pub fn load_migrating<P: Position>(path: &Path) -> Result<Option<SourceState<P>>> {
    let Some((mut state, migrated)) = load_any(path)? else {
        return Ok(None);
    };
    if migrated {
        tracing::info!(state = %path.display(), format = FORMAT, position = %state.resume, "migrated the cdc state file");
        save(path, &mut state)?;
    }
    Ok(Some(state))
}

/// The state and whether it was read from a format-1 file.
fn load_any<P: Position>(path: &Path) -> Result<Option<(SourceState<P>, bool)>> {
    let bad = |message: String| Error::Io {
        context: format!("reading {}", path.display()),
        message: format!("bad state file: {message}"),
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let mut json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let format = json.get("format").and_then(serde_json::Value::as_u64);
    let migrated = format.unwrap_or(1) < u64::from(FORMAT);
    match format {
        None | Some(0 | 1) => migrate_v1::<P>(&mut json).map_err(bad)?,
        Some(f) if f == u64::from(FORMAT) => {}
        Some(f) => {
            return Err(bad(format!(
                "format {f} is newer than this strata reads ({FORMAT})"
            )))
        }
    }
    let state = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
    Ok(Some((state, migrated)))
}

/// Format 1 → 2: every position (`snapshot_start`, `resume`, each table's `start`) into the
/// connector's own type.
fn migrate_v1<P: Position>(json: &mut serde_json::Value) -> std::result::Result<(), String> {
    let convert = |v: &mut serde_json::Value, what: &str| -> std::result::Result<(), String> {
        let p = P::from_legacy(v).map_err(|e| format!("{what}: {e}"))?;
        *v = serde_json::to_value(&p).map_err(|e| e.to_string())?;
        Ok(())
    };
    let obj = json
        .as_object_mut()
        .ok_or_else(|| "not a JSON object".to_string())?;
    for key in ["snapshot_start", "resume"] {
        let v = obj
            .get_mut(key)
            .ok_or_else(|| format!("missing field `{key}`"))?;
        convert(v, key)?;
    }
    if let Some(tables) = obj.get_mut("tables").and_then(|t| t.as_object_mut()) {
        for (name, t) in tables.iter_mut() {
            if let Some(start) = t.get_mut("start").filter(|s| !s.is_null()) {
                convert(start, &format!("tables.{name}.start"))?;
            }
        }
    }
    obj.insert("format".to_string(), serde_json::Value::from(FORMAT));
    Ok(())
}

pub fn save<P: Position>(path: &Path, state: &mut SourceState<P>) -> Result<()> {
    state.format = FORMAT;
    write(path, state)
}

/// Saves `message` as the source's `last_error` in whatever format its state file has (the
/// positions are left as they are: the caller need not know their type). No state file: no-op.
pub fn record_error(path: &Path, message: &str) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    let Ok(mut state) = serde_json::from_slice::<SourceState<serde_json::Value>>(&bytes) else {
        return Ok(());
    };
    state.last_error = Some(message.to_string());
    write(path, &mut state)
}

fn write<P: Serialize + Clone>(path: &Path, state: &mut SourceState<P>) -> Result<()> {
    state.updated_ms = chrono::Utc::now().timestamp_millis();
    state.measure_rate(state.updated_ms);
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::Internal(e.to_string()))?;
    strata_core::fsutil::replace_file(path, &bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mysql::position::BinlogPos;

    fn state() -> SourceState<BinlogPos> {
        let at = BinlogPos::at("binlog.000001", 4);
        SourceState::new(Phase::Stream, at)
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
        let back = load::<BinlogPos>(&path).unwrap().unwrap();
        assert!(
            back.changes_per_sec > 0.0 && back.changes_per_sec <= 2.5,
            "{back:?}"
        );
        assert_eq!(back.rate_window_changes, 5);
    }
}
