//! What the source integration tests share: a data dir with an embedded bus and a lake, one
//! source's config, the source run in process, its topic counted, and the ODS merger run to
//! land the topic and read the table back for comparison with the source system.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    reason = "integration test helpers: a failed step fails the test; not every test file uses every helper"
)]

use std::collections::{BTreeMap, HashSet};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::Log;
use strata_cdc::config::SourceConfig;
use strata_cdc::merge::{read_ods_rows, CdcMerger, CdcTable};
use strata_cdc::state::{self, Phase, SourceState};
use strata_cdc::Position;
use strata_core::cdc::{CdcRecord, Row, TableSchema, Value};
use strata_table::config::LakeOptions;
use strata_table::Lake;
use tokio::sync::watch;

/// How long a test waits for the source before it fails.
pub const WAIT: Duration = Duration::from_secs(120);

/// A data dir with a bus and a lake, and the source's config (parsed and validated); `P` is
/// the source's position type (what its state file holds).
pub struct SourceHarness<P> {
    _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub log: Arc<dyn Log>,
    pub lake: Lake,
    pub config: SourceConfig,
    /// The one table (index, collection) the tests read.
    pub table: String,
    position: PhantomData<P>,
}

impl<P: Position> SourceHarness<P> {
    /// `config` is the `[[sources]]` entry's TOML; `table` the one the tests read.
    pub async fn new(config: &str, table: &str) -> SourceHarness<P> {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let log: Arc<dyn Log> = EmbeddedLog::open(&data.join("bus"), EmbeddedOptions::default())
            .await
            .unwrap();
        let lake = Lake::open(&LakeOptions::new(data.join("lake")))
            .await
            .unwrap();
        let config: SourceConfig = toml::from_str(config).unwrap();
        config.validate().unwrap();
        SourceHarness {
            _dir: dir,
            data,
            log,
            lake,
            config,
            table: table.to_string(),
            position: PhantomData,
        }
    }

    pub fn topic(&self) -> String {
        self.config.topic(&self.table)
    }

    /// The source's saved state.
    pub fn state(&self) -> Option<SourceState<P>> {
        state::load(&state::state_path(&self.data, &self.config.name)).unwrap()
    }

    /// Records on the topic (changes and schema records).
    pub async fn records(&self) -> u64 {
        match self.log.end_offsets(&self.topic()).await {
            Ok(ends) => ends.get(&0).copied().unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// The row changes on the topic (not the schema records, which a restart sends again
    /// when the topic's tail does not show one).
    pub async fn changes(&self) -> u64 {
        let end = self.records().await;
        let mut c = strata_bus::Consumer::range(self.log.clone(), &self.topic(), 0, 0, end)
            .with_limits(8192, 64 << 20);
        let mut n = 0;
        while !c.done() {
            let batch = c.fetch().await.unwrap();
            if batch.is_empty() {
                break;
            }
            n += batch
                .iter()
                .filter(|r| matches!(CdcRecord::from_json(&r.value), Ok(CdcRecord::Change(_))))
                .count() as u64;
        }
        n
    }

    /// Starts the source; stopped by [`Running::stop`].
    pub fn start(&self) -> Running {
        let source = strata_cdc::Source::new(&self.config, self.log.clone(), &self.data).unwrap();
        let (tx, rx) = watch::channel(false);
        Running {
            stop: tx,
            task: tokio::spawn(source.run(rx)),
        }
    }

    /// Waits until the topic holds exactly `n` row changes (more fails at once).
    pub async fn wait_changes(&self, n: u64) {
        let started = Instant::now();
        loop {
            let have = self.changes().await;
            if have >= n {
                assert_eq!(have, n, "more changes on {} than expected", self.topic());
                return;
            }
            if let Some(e) = self.state().and_then(|s| s.last_error) {
                eprintln!("source error so far: {e}");
            }
            assert!(
                started.elapsed() < WAIT,
                "{have} of {n} changes after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the source has saved its state `n` more times after now while streaming
    /// (each increment or stream batch ends with a save).
    pub async fn wait_stream_saves(&self, n: usize) {
        let started = Instant::now();
        let mut last = self.state().map(|s| s.updated_ms).unwrap_or(0);
        let mut seen = 0;
        while seen < n {
            assert!(started.elapsed() < WAIT, "the source saved no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(s) = self.state() {
                if s.phase == Phase::Stream && s.updated_ms > last {
                    last = s.updated_ms;
                    seen += 1;
                }
            }
        }
    }

    /// Applies everything on the bus to the ODS table `ods.<expected>` and reads it back.
    pub async fn ods(&self, schema: &TableSchema, expected: &str) -> Vec<Row> {
        let (tx, rx) = watch::channel(true);
        CdcMerger::new(
            &self.lake,
            self.log.clone(),
            CdcTable::from_sources(std::slice::from_ref(&self.config)),
        )
        .run(rx)
        .await
        .unwrap();
        drop(tx);
        let (ns, name) = self.config.target(&self.table);
        assert_eq!((ns.as_str(), name.as_str()), ("ods", expected));
        let ident = iceberg::TableIdent::new(iceberg::NamespaceIdent::new(ns), name);
        let table = self.lake.load_table(&ident).await.unwrap();
        read_ods_rows(&table, schema).await.unwrap()
    }

    /// The ODS table equals the source's table as the source reads it now (`strata cdc
    /// verify`'s comparison): every document once, every value equal.
    pub async fn assert_ods_equals_source(&self, schema: &TableSchema, expected: &str) -> Vec<Row> {
        let ods = self.ods(schema, expected).await;
        let ids: HashSet<String> = ods.iter().map(|r| r["_id"].canonical()).collect();
        assert_eq!(ids.len(), ods.len(), "an _id landed twice");
        let source = strata_cdc::read_tables(&self.config, &[]).await.unwrap();
        assert_eq!(source.len(), 1);
        let report = strata_cdc::verify::compare(schema, &source[0].1, &ods);
        assert!(report.equal(), "ODS differs from the source: {report:?}");
        ods
    }
}

/// A source running in the background.
pub struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<strata_cdc::Result<()>>,
}

impl Running {
    /// Stops the source; it must have ended without an error.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Rows by their `_id` (a string for both sources).
pub fn by_id(rows: &[Row]) -> BTreeMap<String, &Row> {
    rows.iter()
        .map(|r| match &r["_id"] {
            Value::Str(s) => (s.clone(), r),
            other => panic!("_id {other:?}"),
        })
        .collect()
}
