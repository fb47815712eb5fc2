//! The Elasticsearch source's benchmark (issue #28): documents per second for a full export
//! and for an increment, against noida-db (the Elasticsearch API emulator on 127.0.0.1, see
//! `../shared/TEST-SERVERS.md`; not a real Elasticsearch — its own speed bounds every figure).
//!
//! 1. `--docs` documents are bulk-indexed into a fresh index.
//! 2. The peer: the same full read without Strata — a point in time + `search_after` loop
//!    over HTTP that parses every page and keeps nothing (the server's ceiling for this read).
//! 3. The export: the source runs in process on an embedded bus until the topic holds every
//!    document (source → bus); then the ODS merger lands the topic in the lake (bus → ODS).
//! 4. The increment: with the source stopped, `--increment-docs` documents are updated (new
//!    timestamp); the source is started again and timed until the topic holds them (connect,
//!    rebuild the versions already on the bus, read the window); then their landing.
//!
//! `bash bench/run.sh es` (not in the default list). Debug builds are for checking that it
//! runs at a tiny size only (`--docs 2k --increment-docs 200`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value as Json};
use strata_bench::{machine, suite};
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::{Consumer, Log};
use strata_cdc::config::SourceConfig;
use strata_cdc::merge::{CdcMerger, CdcTable};
use strata_core::cdc::CdcRecord;
use strata_table::config::LakeOptions;
use strata_table::Lake;
use tokio::sync::watch;

const INDEX: &str = "bench_docs";

#[derive(Parser, Debug)]
#[command(about = "Elasticsearch source: documents/s for a full export and an increment")]
struct Args {
    /// Documents indexed and exported in full.
    #[arg(long, env = "ES_DOCS", default_value = "200k", value_parser = suite::parse_count)]
    docs: u64,
    /// Documents updated for the increment.
    #[arg(long, env = "ES_INCREMENT_DOCS", default_value = "20k", value_parser = suite::parse_count)]
    increment_docs: u64,
    /// Documents per page (`snapshot_chunk_rows`, at most 10000).
    #[arg(long, env = "ES_PAGE", default_value_t = 5000)]
    page: u64,
    /// `pit`, `scroll` or `auto`.
    #[arg(long, env = "ES_PAGING", default_value = "auto")]
    paging: String,
    /// Longest wait for one phase.
    #[arg(long, env = "ES_TIMEOUT_SECS", default_value_t = 1800)]
    timeout_secs: u64,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// A note on how this run was made, kept in the report.
    #[arg(long, env = "ES_NOTE", default_value = "")]
    note: String,
}

/// Document `i` (about 300 bytes of JSON), stamped `ts_ms`.
fn doc(i: u64, ts_ms: i64) -> Json {
    json!({
        "sku": format!("sku-{i:08}"),
        "title": format!("product number {i} with a longer title to look like a catalogue entry"),
        "price": (i % 10_000) as f64 * 0.25 + 0.99,
        "qty": i % 500,
        "in_stock": !i.is_multiple_of(3),
        "tags": [format!("t{}", i % 7), format!("c{}", i % 13)],
        "seller": {"id": i % 997, "country": if i.is_multiple_of(2) { "DE" } else { "FR" }},
        "updated_at": ts_ms,
    })
}

struct Es {
    url: String,
    http: reqwest::Client,
}

impl Es {
    async fn call(&self, method: reqwest::Method, path: &str, body: String) -> Result<Json> {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = r.status();
        let json: Json = r.json().await.with_context(|| format!("reading {path}"))?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {json}");
        }
        Ok(json)
    }

    /// Indexes documents `range`, document `i` stamped `ts_ms(i)`, in bulk requests of 5,000.
    async fn bulk(&self, range: std::ops::Range<u64>, ts_ms: impl Fn(u64) -> i64) -> Result<()> {
        let ids: Vec<u64> = range.collect();
        for chunk in ids.chunks(5000) {
            let mut body = String::with_capacity(chunk.len() * 400);
            for &i in chunk {
                body.push_str(
                    &json!({"index": {"_index": INDEX, "_id": format!("d{i}")}}).to_string(),
                );
                body.push('\n');
                body.push_str(&doc(i, ts_ms(i)).to_string());
                body.push('\n');
            }
            let answer = self.call(reqwest::Method::POST, "/_bulk", body).await?;
            if answer["errors"] != json!(false) {
                bail!(
                    "bulk indexing failed: {}",
                    answer.to_string().chars().take(500).collect::<String>()
                );
            }
        }
        self.call(
            reqwest::Method::POST,
            &format!("/{INDEX}/_refresh"),
            String::new(),
        )
        .await?;
        Ok(())
    }

    /// The peer: reads every document with a point in time + `search_after`, parsing each
    /// page. Returns how many it read.
    async fn read_all(&self, page: u64) -> Result<u64> {
        let pit = self
            .call(
                reqwest::Method::POST,
                &format!("/{INDEX}/_pit?keep_alive=2m"),
                String::new(),
            )
            .await?;
        let mut pit_id = pit["id"]
            .as_str()
            .context("no point-in-time id")?
            .to_string();
        let mut after: Option<Json> = None;
        let mut n = 0;
        loop {
            let mut body = json!({
                "size": page, "pit": {"id": pit_id, "keep_alive": "2m"},
                "sort": [{"updated_at": {"order": "asc", "missing": "_first"}}, {"_shard_doc": "asc"}],
                "version": true, "seq_no_primary_term": true, "track_total_hits": false,
            });
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let page_json = self
                .call(reqwest::Method::POST, "/_search", body.to_string())
                .await?;
            if let Some(id) = page_json["pit_id"].as_str() {
                pit_id = id.to_string();
            }
            let hits = page_json["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            n += hits.len() as u64;
            if (hits.len() as u64) < page {
                break;
            }
            after = hits.last().map(|h| h["sort"].clone());
        }
        let _ = self
            .call(
                reqwest::Method::DELETE,
                "/_pit",
                json!({"id": pit_id}).to_string(),
            )
            .await;
        Ok(n)
    }
}

/// Counts the document changes on a topic as they arrive (schema records are not
/// documents: a restarted source may send its schema again).
struct Changes {
    log: Arc<dyn Log>,
    topic: String,
    next: u64,
    changes: u64,
}

impl Changes {
    fn new(log: &Arc<dyn Log>, topic: &str) -> Changes {
        Changes {
            log: log.clone(),
            topic: topic.to_string(),
            next: 0,
            changes: 0,
        }
    }

    /// Reads what arrived since the last call; returns the changes counted so far.
    async fn count(&mut self) -> Result<u64> {
        let end = match self.log.end_offsets(&self.topic).await {
            Ok(ends) => ends.get(&0).copied().unwrap_or(0),
            Err(_) => 0,
        };
        if end > self.next {
            let mut c = Consumer::range(self.log.clone(), &self.topic, 0, self.next, end)
                .with_limits(8192, 64 << 20);
            while !c.done() {
                let batch = c.fetch().await.context("reading the topic")?;
                if batch.is_empty() {
                    break;
                }
                self.changes += batch
                    .iter()
                    .filter(|r| matches!(CdcRecord::from_json(&r.value), Ok(CdcRecord::Change(_))))
                    .count() as u64;
            }
            self.next = end;
        }
        Ok(self.changes)
    }

    /// Waits until `n` changes have arrived.
    async fn wait(&mut self, n: u64, limit: Duration) -> Result<()> {
        let started = Instant::now();
        while self.count().await? < n {
            if started.elapsed() > limit {
                bail!(
                    "{}: {} of {n} changes after {limit:?}",
                    self.topic,
                    self.changes
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Applies everything on the bus to the ODS table; returns how long it took.
async fn land(lake: &Lake, log: &Arc<dyn Log>, config: &SourceConfig) -> Result<Duration> {
    let started = Instant::now();
    let (_tx, rx) = watch::channel(true);
    CdcMerger::new(
        lake,
        log.clone(),
        CdcTable::from_sources(std::slice::from_ref(config)),
    )
    .run(rx)
    .await
    .context("landing the topic in the ODS table")?;
    Ok(started.elapsed())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let limit = Duration::from_secs(args.timeout_secs);
    let server = strata_testdb::EsServer::start().context(
        "no noida-db: pip install noida-db into $STRATA_TEST_VENV or set STRATA_NOIDA_BIN",
    )?;
    let es = Es {
        url: server.url(),
        http: reqwest::Client::new(),
    };
    es.call(
        reqwest::Method::PUT,
        &format!("/{INDEX}"),
        json!({"mappings": {"properties": {"updated_at": {"type": "date"}, "sku": {"type": "keyword"}}}}).to_string(),
    )
    .await?;
    // Half a second apart, ending a minute ago: an increment's overlap (1 min) re-reads a
    // hundred or so of them, as a real index's would.
    let newest = chrono::Utc::now().timestamp_millis() - 60_000;
    let n = args.docs as i64;
    eprintln!("indexing {} documents", args.docs);
    let t = Instant::now();
    es.bulk(0..args.docs, |i| newest - (n - i as i64) * 500)
        .await?;
    let bulk = t.elapsed();

    eprintln!("peer: point in time + search_after over HTTP");
    let t = Instant::now();
    let peer_read = es.read_all(args.page).await?;
    let peer = t.elapsed();
    if peer_read != args.docs {
        bail!("the peer read {peer_read} of {} documents", args.docs);
    }

    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = EmbeddedLog::open(&dir.path().join("bus"), EmbeddedOptions::default())
        .await
        .context("opening the embedded bus")?;
    let lake = Lake::open(&LakeOptions::new(dir.path().join("lake")))
        .await
        .context("opening the lake")?;
    let config: SourceConfig = serde_json::from_value(json!({
        "name": "bench", "kind": "elasticsearch", "url": es.url, "tables": [INDEX],
        "timestamp_field": "updated_at", "poll_interval": "100ms", "overlap": "1m",
        "snapshot_chunk_rows": args.page, "paging": args.paging,
        "fields": {"sku": "string", "price": "double", "qty": "long", "seller.id": "long", "in_stock": "boolean"},
    }))
    .context("the source's config")?;
    config.validate()?;
    let topic = config.topic(INDEX);
    let mut changes = Changes::new(&log, &topic);

    eprintln!("strata: full export");
    let source = strata_cdc::Source::new(&config, log.clone(), dir.path())?;
    let (stop, rx) = watch::channel(false);
    let t = Instant::now();
    let task = tokio::spawn(source.run(rx));
    changes.wait(args.docs, limit).await?;
    let export = t.elapsed();
    let export_land = land(&lake, &log, &config).await?;

    // The source is stopped while the documents change, and the increment timed from its
    // restart (connect, rebuild the versions on the bus, read the window) until the topic
    // holds them all.
    let _ = stop.send(true);
    task.await.context("the source task")??;
    eprintln!("strata: increment of {} documents", args.increment_docs);
    let now = chrono::Utc::now().timestamp_millis();
    let m = args.increment_docs as i64;
    es.bulk(0..args.increment_docs, |i| now - (m - i as i64))
        .await?;
    let source = strata_cdc::Source::new(&config, log.clone(), dir.path())?;
    let (stop, rx) = watch::channel(false);
    let t = Instant::now();
    let task = tokio::spawn(source.run(rx));
    changes.wait(args.docs + args.increment_docs, limit).await?;
    let increment = t.elapsed();
    let _ = stop.send(true);
    task.await.context("the source task")??;
    let increment_land = land(&lake, &log, &config).await?;
    let written = changes.count().await?;
    if written != args.docs + args.increment_docs {
        bail!("the topic holds {written} document changes: a document was written twice");
    }

    let report = json!({
        "suite": "es",
        "machine": machine(&format!("noida-db (an Elasticsearch API emulator, not Lucene), the source and the merger share the cores{}{}", if args.note.is_empty() { "" } else { "; " }, args.note)),
        "workload": {"docs": args.docs, "increment_docs": args.increment_docs, "page": args.page, "paging": args.paging},
        "bulk_index_docs_per_sec": rate(args.docs, bulk),
        "peer_pit_read_docs_per_sec": rate(args.docs, peer),
        "export": {
            "source_to_bus_secs": export.as_secs_f64(),
            "source_to_bus_docs_per_sec": rate(args.docs, export),
            "ratio_to_peer": rate(args.docs, export) / rate(args.docs, peer),
            "bus_to_ods_secs": export_land.as_secs_f64(),
            "bus_to_ods_docs_per_sec": rate(args.docs, export_land),
        },
        "increment": {
            "start_to_bus_secs": increment.as_secs_f64(),
            "start_to_bus_docs_per_sec": rate(args.increment_docs, increment),
            "bus_to_ods_secs": increment_land.as_secs_f64(),
            "bus_to_ods_docs_per_sec": rate(args.increment_docs, increment_land),
        },
    });
    let md = markdown(&report);
    let path = suite::write_report(&args.out, "es", &report, &md)?;
    println!("{md}");
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn markdown(r: &Json) -> String {
    let f = |p: &str| r.pointer(p).and_then(Json::as_f64).unwrap_or(f64::NAN);
    let w = &r["workload"];
    format!(
        "# Elasticsearch source\n\n\
         {} documents (pages of {}, paging {}), then {} updated; server: noida-db, an \
         Elasticsearch 8.15 API emulator on 127.0.0.1 (not Lucene: its speed bounds every figure).\n\n\
         | step | seconds | documents/s |\n|---|---:|---:|\n\
         | bulk indexing (setup) | | {:.0} |\n\
         | peer: PIT + search_after read, no Strata | | {:.0} |\n\
         | full export, source → bus | {:.2} | {:.0} ({:.2}× the peer) |\n\
         | full export, bus → ODS (merger) | {:.2} | {:.0} |\n\
         | increment, source start → bus | {:.2} | {:.0} |\n\
         | increment, bus → ODS (merger) | {:.2} | {:.0} |\n",
        w["docs"], w["page"], w["paging"].as_str().unwrap_or("auto"), w["increment_docs"],
        f("/bulk_index_docs_per_sec"),
        f("/peer_pit_read_docs_per_sec"),
        f("/export/source_to_bus_secs"), f("/export/source_to_bus_docs_per_sec"), f("/export/ratio_to_peer"),
        f("/export/bus_to_ods_secs"), f("/export/bus_to_ods_docs_per_sec"),
        f("/increment/start_to_bus_secs"), f("/increment/start_to_bus_docs_per_sec"),
        f("/increment/bus_to_ods_secs"), f("/increment/bus_to_ods_docs_per_sec"),
    )
}
