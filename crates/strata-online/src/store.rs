//! [`OnlineStore`]: versioned feature rows over a [`Backend`]. Lookups read a view's metadata
//! and entries in one atomic read and answer what the published version holds; a sync
//! ([`SyncWriter`]) writes a new version beside it and publishes it with one metadata write.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::backend::{Backend, Entries};
use crate::config::{OnlineConfig, OnlineKind};
use crate::entry::{Entry, SlotState};
use crate::error::{Error, Result};
use crate::meta::{Column, Pending, Published, SourceSnapshots, ViewMeta, FORMAT};
use crate::value::{decode_row, encode_row, Value};

/// How long a sync's lock lasts on Redis without a write renewing it.
const LOCK_LEASE: Duration = Duration::from_secs(600);
/// A sync records its progress in the metadata every this many rows.
const PROGRESS_EVERY: u64 = 50_000;

/// What a lookup found for one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupStatus {
    Present,
    /// Not in the published version (never materialized, or removed from the source).
    NotFound,
}

/// One entity's row in the published version.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub status: LookupStatus,
    /// Event time of the row (µs since the epoch); what TTLs count from.
    pub event_ts: Option<i64>,
    /// The row's values by feature name order of `columns`.
    pub values: Vec<Value>,
    /// The schema the row was written with.
    pub columns: Arc<Vec<Column>>,
}

/// A lookup's answer: the version it read and one [`Lookup`] per key.
#[derive(Debug, Clone)]
pub struct ViewRows {
    /// `None` when the view was never published.
    pub published: Option<Published>,
    pub rows: Vec<Lookup>,
}

/// The versioned online store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OnlineStore {
    backend: Arc<dyn Backend>,
    /// Parsed metadata by view, with the bytes it was parsed from: a lookup re-parses only
    /// when a sync changed them.
    parsed: Arc<Mutex<MetaCache>>,
}

/// Parsed metadata by view, with the bytes it was parsed from.
type MetaCache = HashMap<String, (Vec<u8>, Arc<ParsedMeta>)>;

#[derive(Debug)]
struct ParsedMeta {
    meta: ViewMeta,
    schemas: HashMap<u32, Arc<Vec<Column>>>,
}

/// The canonical key of an entity: its key columns' values as text, joined by U+001F.
pub fn entity_key<S: AsRef<str>>(parts: &[S]) -> Vec<u8> {
    let mut key = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0x1f);
        }
        key.extend_from_slice(p.as_ref().as_bytes());
    }
    key
}

impl OnlineStore {
    pub fn new(backend: Arc<dyn Backend>) -> OnlineStore {
        OnlineStore {
            backend,
            parsed: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Opens the store `config` names (`data_dir` holds the embedded one).
    pub async fn open(config: &OnlineConfig, data_dir: &Path) -> Result<OnlineStore> {
        config.validate().map_err(Error::Config)?;
        let backend: Arc<dyn Backend> = match config.kind {
            OnlineKind::Embedded => Arc::new(crate::lmdb::LmdbBackend::open(
                &config.embedded_path(data_dir),
                config.max_size_gib,
            )?),
            OnlineKind::Redis => crate::redis::RedisBackend::connect(config).await?,
        };
        Ok(OnlineStore::new(backend))
    }

    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }

    /// The views with metadata in the store.
    pub async fn views(&self) -> Result<Vec<String>> {
        let mut views = self.backend.views().await?;
        views.retain(|v| !crate::stream::is_state_view(v));
        Ok(views)
    }

    /// The view's metadata (`None`: never synced).
    pub async fn meta(&self, view: &str) -> Result<Option<ViewMeta>> {
        let (meta, _) = self.backend.read(view, &[]).await?;
        meta.map(|m| parse_meta(&m).map(|p| p.meta)).transpose()
    }

    /// The version the view has published (`Some(0)`: synced but never published; `None`:
    /// never synced): one metadata read, parsed once per change.
    pub async fn published_version(&self, view: &str) -> Result<Option<u64>> {
        let Some(meta) = self.backend.read(view, &[]).await?.0 else {
            return Ok(None);
        };
        Ok(Some(self.parsed(view, meta)?.meta.published_version()))
    }

    /// The rows of `keys` in the view's published version, in one atomic read.
    pub async fn lookup(&self, view: &str, keys: &[Vec<u8>]) -> Result<ViewRows> {
        let (meta, entries) = self.backend.read(view, keys).await?;
        let Some(meta) = meta else {
            return Ok(ViewRows {
                published: None,
                rows: keys.iter().map(|_| not_found()).collect(),
            });
        };
        let parsed = self.parsed(view, meta)?;
        let published = parsed.meta.published_version();
        let mut rows = Vec::with_capacity(keys.len());
        for entry in entries {
            let Some(bytes) = entry else {
                rows.push(not_found());
                continue;
            };
            let entry = Entry::decode(&bytes)?;
            match entry.visible(published).map(|s| &s.state) {
                Some(SlotState::Row {
                    schema,
                    event_ts,
                    values,
                }) => {
                    let columns = parsed.schemas.get(schema).cloned().ok_or_else(|| {
                        Error::Corrupt(format!("view {view}: a row names unknown schema {schema}"))
                    })?;
                    rows.push(Lookup {
                        status: LookupStatus::Present,
                        event_ts: Some(*event_ts),
                        values: decode_row(values)?,
                        columns,
                    });
                }
                Some(SlotState::Deleted) | None => rows.push(not_found()),
            }
        }
        Ok(ViewRows {
            published: parsed.meta.published.clone(),
            rows,
        })
    }

    /// Like [`OnlineStore::lookup`], decoding only `columns` of each row (by name): for a
    /// caller that needs a few columns of many rows. `rows[k]` is `None` when key `k` is not
    /// in the published version; its values are in the order of `columns` (`Null` where the
    /// row's schema lacks one).
    pub async fn lookup_columns(
        &self,
        view: &str,
        keys: &[Vec<u8>],
        columns: &[&str],
    ) -> Result<Vec<Option<ColumnRow>>> {
        let (meta, entries) = self.backend.read(view, keys).await?;
        let Some(meta) = meta else {
            return Ok(keys.iter().map(|_| None).collect());
        };
        let parsed = self.parsed(view, meta)?;
        let published = parsed.meta.published_version();
        // Positions of the wanted columns, per schema id met.
        let mut positions: Vec<(u32, Vec<Option<usize>>)> = Vec::new();
        let mut out = Vec::with_capacity(keys.len());
        for entry in entries {
            let Some(bytes) = entry else {
                out.push(None);
                continue;
            };
            let Some((schema, event_ts, values)) = crate::entry::visible_row(&bytes, published)?
            else {
                out.push(None);
                continue;
            };
            let at = match positions.iter().position(|(id, _)| *id == schema) {
                Some(i) => i,
                None => {
                    let cols = parsed.schemas.get(&schema).ok_or_else(|| {
                        Error::Corrupt(format!("view {view}: a row names unknown schema {schema}"))
                    })?;
                    let p = columns
                        .iter()
                        .map(|name| cols.iter().position(|c| c.name == *name))
                        .collect();
                    positions.push((schema, p));
                    positions.len() - 1
                }
            };
            let mut row = ColumnRow {
                event_ts,
                values: Vec::with_capacity(columns.len()),
            };
            crate::value::decode_row_at(values, &positions[at].1, &mut row.values)?;
            out.push(Some(row));
        }
        Ok(out)
    }

    /// Every entity of a view's published version with `columns` of its row (by name), in
    /// pages of up to `limit` from `cursor` (`None`: the start); the cursor to continue from,
    /// `None` at the end. On Redis a page may repeat an entity of an earlier page.
    pub async fn scan_columns(
        &self,
        view: &str,
        columns: &[&str],
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<(Vec<u8>, ColumnRow)>, Option<Vec<u8>>)> {
        let Some(meta) = self.backend.read(view, &[]).await?.0 else {
            return Ok((Vec::new(), None));
        };
        let parsed = self.parsed(view, meta)?;
        let published = parsed.meta.published_version();
        let (entries, next) = self.backend.scan(view, cursor, limit).await?;
        let mut positions: Vec<(u32, Vec<Option<usize>>)> = Vec::new();
        let mut out = Vec::with_capacity(entries.len());
        for (key, bytes) in entries {
            let Some((schema, event_ts, values)) = crate::entry::visible_row(&bytes, published)?
            else {
                continue;
            };
            let at = match positions.iter().position(|(id, _)| *id == schema) {
                Some(i) => i,
                None => {
                    let Some(cols) = parsed.schemas.get(&schema) else {
                        continue;
                    };
                    let p = columns
                        .iter()
                        .map(|name| cols.iter().position(|c| c.name == *name))
                        .collect();
                    positions.push((schema, p));
                    positions.len() - 1
                }
            };
            let mut row = ColumnRow {
                event_ts,
                values: Vec::with_capacity(columns.len()),
            };
            crate::value::decode_row_at(values, &positions[at].1, &mut row.values)?;
            out.push((key, row));
        }
        Ok((out, next))
    }

    fn parsed(&self, view: &str, bytes: Vec<u8>) -> Result<Arc<ParsedMeta>> {
        let mut cache = self
            .parsed
            .lock()
            .map_err(|_| Error::Corrupt("metadata cache poisoned".into()))?;
        if let Some((raw, parsed)) = cache.get(view) {
            if *raw == bytes {
                return Ok(parsed.clone());
            }
        }
        let parsed = Arc::new(parse_meta(&bytes)?);
        cache.insert(view.to_string(), (bytes, parsed.clone()));
        Ok(parsed)
    }

    /// Starts a sync of `view` writing rows of `columns`, reading `sources` (the snapshots it
    /// will reflect). `full`: the sync writes every entity, and entities it does not write are
    /// removed when it publishes. Fails when another sync of the view holds its lock.
    pub async fn begin_sync(
        &self,
        view: &str,
        columns: &[Column],
        sources: SourceSnapshots,
        full: bool,
        batch_rows: usize,
    ) -> Result<SyncWriter> {
        // Unique per sync even for two syncs begun in one process at the same instant.
        static SYNCS: AtomicU64 = AtomicU64::new(0);
        let owner = format!(
            "{}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            SYNCS.fetch_add(1, Ordering::Relaxed)
        );
        if !self.backend.try_lock(view, &owner, LOCK_LEASE).await? {
            return Err(Error::Invalid(format!(
                "another sync of view {view} is running (one sync per view at a time)"
            )));
        }
        let mut meta = self.meta(view).await?.unwrap_or_default();
        let version = meta.next_version.max(meta.published_version() + 1);
        if let Some(p) = &meta.pending {
            tracing::warn!(
                view,
                killed_version = p.version,
                version,
                "an earlier sync did not finish: its rows are written over"
            );
        }
        meta.next_version = version + 1;
        let schema = meta.schema_id(columns);
        let mode = if full { "full" } else { "incremental" }.to_string();
        meta.pending = Some(Pending {
            version,
            sources: sources.clone(),
            mode: mode.clone(),
            started_at: Utc::now(),
            written: 0,
            expected: None,
        });
        self.backend.put_meta(view, encode_meta(&meta)?).await?;
        Ok(SyncWriter {
            store: self.clone(),
            view: view.to_string(),
            owner,
            meta,
            version,
            schema,
            full,
            batch_rows: batch_rows.max(1),
            written: 0,
            since_progress: 0,
            renewed: Instant::now(),
        })
    }

    /// Removes the entities `keys` from `view` outright, in every version (erasure).
    pub async fn forget(&self, view: &str, keys: &[Vec<u8>]) -> Result<u64> {
        self.backend.delete(view, keys).await
    }

    /// Removes a view and everything in it.
    pub async fn drop_view(&self, view: &str) -> Result<()> {
        self.backend.drop_view(view).await
    }
}

fn not_found() -> Lookup {
    Lookup {
        status: LookupStatus::NotFound,
        event_ts: None,
        values: Vec::new(),
        columns: Arc::new(Vec::new()),
    }
}

fn parse_meta(bytes: &[u8]) -> Result<ParsedMeta> {
    let meta: ViewMeta =
        serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("view metadata: {e}")))?;
    if meta.format > FORMAT {
        return Err(Error::Corrupt(format!(
            "view metadata format {} is newer than this Strata reads ({FORMAT})",
            meta.format
        )));
    }
    let schemas = meta
        .schemas
        .iter()
        .map(|(id, c)| (*id, Arc::new(c.clone())))
        .collect();
    Ok(ParsedMeta { meta, schemas })
}

pub(crate) fn encode_meta(meta: &ViewMeta) -> Result<Vec<u8>> {
    serde_json::to_vec(meta).map_err(|e| Error::Corrupt(format!("encoding view metadata: {e}")))
}

/// Some columns of one row ([`OnlineStore::lookup_columns`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRow {
    /// The row's event time (µs).
    pub event_ts: i64,
    pub values: Vec<Value>,
}

/// One row a sync writes: the entity key, its event time (µs) and its values in the sync's
/// column order; `None` values remove the entity.
#[derive(Debug, Clone)]
pub struct SyncRow {
    pub key: Vec<u8>,
    pub event_ts: i64,
    pub values: Option<Vec<Value>>,
}

/// A sync in progress. Nothing it writes is visible until [`SyncWriter::publish`]; dropped
/// or killed, it leaves the published version as it was.
#[derive(Debug)]
pub struct SyncWriter {
    store: OnlineStore,
    view: String,
    owner: String,
    meta: ViewMeta,
    version: u64,
    schema: u32,
    full: bool,
    batch_rows: usize,
    written: u64,
    since_progress: u64,
    /// When the lock was last taken or extended.
    renewed: Instant,
}

impl SyncWriter {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn batch_rows(&self) -> usize {
        self.batch_rows
    }

    /// Records how many rows the sync expects (for progress in `features status`).
    pub async fn expect(&mut self, rows: u64) -> Result<()> {
        if let Some(p) = &mut self.meta.pending {
            p.expected = Some(rows);
        }
        self.store
            .backend
            .put_meta(&self.view, encode_meta(&self.meta)?)
            .await
    }

    /// Writes one batch. Where a key comes twice (in the batch, or already written by this
    /// sync), the row with the later event time wins, so rows may come in any order.
    pub async fn write(&mut self, rows: Vec<SyncRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.keep_lock(false).await?;
        // Later event time wins inside the batch.
        let mut latest: HashMap<Vec<u8>, SyncRow> = HashMap::with_capacity(rows.len());
        for row in rows {
            match latest.get(&row.key) {
                Some(have) if have.event_ts > row.event_ts => {}
                _ => {
                    latest.insert(row.key.clone(), row);
                }
            }
        }
        let rows: Vec<SyncRow> = latest.into_values().collect();
        let keys: Vec<Vec<u8>> = rows.iter().map(|r| r.key.clone()).collect();
        let (_, existing) = self.store.backend.read(&self.view, &keys).await?;
        let published = self.meta.published_version();
        let mut out: Entries = Vec::with_capacity(rows.len());
        for (row, old) in rows.into_iter().zip(existing) {
            let old = old.map(|b| Entry::decode(&b)).transpose()?;
            if let Some(old) = &old {
                // A later row wins: one this sync wrote already, or — in an incremental sync,
                // which only adds to the published version — the row that version serves (a
                // late-arriving older day must not replace a newer one). A full sync rebuilds
                // the view, so what was published before does not count.
                let have = if old.current.version == self.version {
                    Some(&old.current)
                } else if self.full {
                    None
                } else {
                    old.visible(published)
                };
                if let Some(SlotState::Row { event_ts, .. }) = have.map(|s| &s.state) {
                    if *event_ts > row.event_ts && row.values.is_some() {
                        continue;
                    }
                }
            }
            let state = match &row.values {
                Some(values) => {
                    let mut encoded = Vec::with_capacity(values.len() * 4);
                    encode_row(values, &mut encoded);
                    SlotState::Row {
                        schema: self.schema,
                        event_ts: row.event_ts,
                        values: encoded,
                    }
                }
                None => SlotState::Deleted,
            };
            out.push((
                row.key,
                Entry::next(old, published, self.version, state).encode(),
            ));
        }
        let n = out.len() as u64;
        self.store.backend.put(&self.view, out).await?;
        self.written += n;
        self.since_progress += n;
        if self.since_progress >= PROGRESS_EVERY {
            self.since_progress = 0;
            if let Some(p) = &mut self.meta.pending {
                p.written = self.written;
            }
            self.store
                .backend
                .put_meta(&self.view, encode_meta(&self.meta)?)
                .await?;
        }
        Ok(())
    }

    /// Extends the sync's lock (the Redis lease) when a quarter of it has passed; an error
    /// when the lease ran out and the lock is gone, as another sync may hold it now.
    async fn keep_lock(&mut self, always: bool) -> Result<()> {
        if !always && self.renewed.elapsed() < LOCK_LEASE / 4 {
            return Ok(());
        }
        if !self
            .store
            .backend
            .try_lock(&self.view, &self.owner, LOCK_LEASE)
            .await?
        {
            return Err(Error::Invalid(format!(
                "the sync of view {} lost its lock (its lease ran out): another sync may be \
                 running; this one stops without publishing",
                self.view
            )));
        }
        self.renewed = Instant::now();
        Ok(())
    }

    /// Makes the version visible: for a full sync, first removes every entity it did not
    /// write; then one metadata write switches readers over. Returns what was published.
    pub async fn publish(mut self) -> Result<Published> {
        // Only the lock's holder publishes (checked again before the switch).
        self.keep_lock(true).await?;
        let published_before = self.meta.published_version();
        let mut entities: u64 = 0;
        let mut cursor: Option<Vec<u8>> = None;
        // A backend whose scan may return an entry twice (Redis) must not count it twice.
        let mut counted = self.store.backend.scan_may_repeat().then(Fingerprints::new);
        // Count the entities of the new version; roll back what killed syncs left; (full
        // syncs) remove the entities not written.
        loop {
            let (batch, next) = self
                .store
                .backend
                .scan(&self.view, cursor.take(), self.batch_rows)
                .await?;
            let mut rewrites: Entries = Vec::new();
            for (key, bytes) in batch {
                let entry = Entry::decode(&bytes)?;
                if entry.current.version > self.version {
                    return Err(Error::Invalid(format!(
                        "view {}: a newer sync (version {}) wrote while this one (version {}) \
                         ran; this one stops without publishing",
                        self.view, entry.current.version, self.version
                    )));
                }
                let present = if entry.current.version == self.version {
                    matches!(entry.current.state, SlotState::Row { .. })
                } else {
                    let before = entry.visible(published_before).cloned();
                    let visible_row = matches!(
                        before.as_ref().map(|s| &s.state),
                        Some(SlotState::Row { .. })
                    );
                    // Written by a sync that never published (killed): its row must not
                    // become visible with this version, whose number is higher.
                    let killed = entry.current.version > published_before;
                    if self.full {
                        if visible_row || killed {
                            rewrites.push((
                                key.clone(),
                                Entry::next(
                                    Some(entry),
                                    published_before,
                                    self.version,
                                    SlotState::Deleted,
                                )
                                .encode(),
                            ));
                        }
                        false
                    } else {
                        if killed {
                            // Back to what the published version sees, for every version.
                            let rolled_back = match before {
                                Some(slot) => Entry {
                                    current: slot,
                                    previous: None,
                                },
                                None => Entry::next(
                                    Some(entry),
                                    published_before,
                                    self.version,
                                    SlotState::Deleted,
                                ),
                            };
                            rewrites.push((key.clone(), rolled_back.encode()));
                        }
                        visible_row
                    }
                };
                if present && counted.as_mut().is_none_or(|seen| seen.insert(&key)) {
                    entities += 1;
                }
            }
            if !rewrites.is_empty() {
                self.store.backend.put(&self.view, rewrites).await?;
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let pending = self.meta.pending.take();
        let published = Published {
            version: self.version,
            schema: self.schema,
            sources: pending
                .as_ref()
                .map(|p| p.sources.clone())
                .unwrap_or_default(),
            entities,
            written: self.written,
            mode: if self.full { "full" } else { "incremental" }.to_string(),
            started_at: pending.map_or_else(Utc::now, |p| p.started_at),
            published_at: Utc::now(),
        };
        self.meta.published = Some(published.clone());
        self.keep_lock(true).await?;
        self.store
            .backend
            .put_meta(&self.view, encode_meta(&self.meta)?)
            .await?;
        self.store.backend.unlock(&self.view, &self.owner).await?;
        Ok(published)
    }

    /// Gives the sync up (its rows stay invisible) and releases the lock.
    pub async fn abandon(self) -> Result<()> {
        self.store.backend.unlock(&self.view, &self.owner).await
    }
}

/// 128-bit fingerprints of the keys a scan returned, to count each entity once when the
/// backend's scan may repeat an entry: 16 bytes an entity, and two keys would have to agree
/// on two independent 64-bit hashes to be confused.
struct Fingerprints {
    hashers: (RandomState, RandomState),
    seen: HashSet<u128>,
}

impl Fingerprints {
    fn new() -> Fingerprints {
        Fingerprints {
            hashers: (RandomState::new(), RandomState::new()),
            seen: HashSet::new(),
        }
    }

    /// False when `key` was seen before.
    fn insert(&mut self, key: &[u8]) -> bool {
        let a = self.hashers.0.hash_one(key);
        let b = self.hashers.1.hash_one(key);
        self.seen.insert((u128::from(a) << 64) | u128::from(b))
    }
}
