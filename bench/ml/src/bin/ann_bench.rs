//! ANN benchmark (issue #26): Strata's vector index against exact search on the same
//! embeddings, with faiss-cpu (HNSW flat) and usearch from PyPI as peers in the same run.
//!
//! Data: clustered synthetic embeddings (seeded): `--clusters` gaussian clusters on the unit
//! sphere in `--dim` dimensions, items and queries drawn around the same centres (users near
//! the items they like). Metric: inner product (what two-tower embeddings use). Every item has
//! `created_at = i`, `bucket = i % 10` and `shard = i % 1000` as payload.
//!
//! Ground truth: `Index::exact_search` (parallel over queries). Our searches run on one thread,
//! one query at a time; so do the peers'. Figures go to `--out/ann-<UTC>.md` (and `.json`).
//!
//!   ann-bench --sizes 100k,1m --python bench/.venv-ml-ann/bin/python

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use strata_ann::{
    FieldCondition, FieldDef, FieldKind, Filter, Index, IndexBuilder, IndexParams, Metric, Payload,
    PayloadSchema, PayloadValue,
};

#[derive(Parser, Debug)]
#[command(about = "Strata's vector index vs exact search and faiss/usearch")]
struct Args {
    /// Index sizes, e.g. `100k,1m`.
    #[arg(long, env = "ANN_SIZES", default_value = "100k")]
    sizes: String,
    /// Queries per size.
    #[arg(long, env = "ANN_QUERIES", default_value_t = 1000)]
    queries: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    #[arg(long, default_value_t = 256)]
    clusters: usize,
    /// Build threads (ours and the peers').
    #[arg(long, env = "ANN_THREADS", default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, env = "ANN_EF_CONSTRUCTION", default_value_t = 100)]
    ef_construction: usize,
    /// k values searched, with the `ef` used for each (same order); a k may repeat with
    /// another ef (an ef sweep: `--k 10,10 --ef 64,128`).
    #[arg(long, env = "ANN_K", default_value = "10,100,1000")]
    k: String,
    #[arg(long, env = "ANN_EF", default_value = "64,128,1500")]
    ef: String,
    /// Python with numpy, faiss-cpu and usearch (bench/python/requirements-ml-ann.txt); no
    /// peer without it.
    #[arg(long)]
    python: Option<PathBuf>,
    #[arg(long, default_value = "bench/python/ann_peer.py")]
    peer_script: PathBuf,
    /// Where vectors, the saved index and the peer's inputs go (a temp dir by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn parse_size(s: &str) -> Result<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = s.strip_suffix('m') {
        (n, 1_000_000)
    } else if let Some(n) = s.strip_suffix('k') {
        (n, 1_000)
    } else {
        (s.as_str(), 1)
    };
    Ok(num
        .parse::<usize>()
        .with_context(|| format!("bad size {s}"))?
        * mult)
}

fn parse_list(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .with_context(|| format!("bad number {x}"))
        })
        .collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// `n` unit vectors around `centres` with per-dimension noise `sigma`, flat.
fn around(centres: &[Vec<f32>], n: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let dim = centres[0].len();
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(n * dim);
    let mut v = vec![0f32; dim];
    for _ in 0..n {
        let c = &centres[(r.next() % centres.len() as u64) as usize];
        for (x, c) in v.iter_mut().zip(c) {
            *x = c + sigma * r.gauss();
        }
        normalize(&mut v);
        out.extend_from_slice(&v);
    }
    out
}

fn write_f32(path: &Path, xs: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_u32(path: &Path, xs: &[u32]) -> Result<()> {
    let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// CPU time of this thread: what a query cost, without the time it waited for a core.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// The filters measured: none; 500 excluded ids (each query's exact top 250 plus 250 fixed
/// ones) and `bucket = 3` (10 %); the same exclusions and `shard = 7` (0.1 %).
fn filters(n: usize, top: &[Vec<u64>], q: usize) -> Vec<(&'static str, Filter)> {
    let mut exclude: Vec<u64> = top[q].iter().take(250).copied().collect();
    exclude.extend((0..250u64).map(|j| (j * 7919 + 13) % n as u64));
    vec![
        ("none", Filter::default()),
        (
            "exclude 500 + bucket (10%)",
            Filter {
                exclude_ids: exclude.clone(),
                must: vec![FieldCondition::eq("bucket", PayloadValue::Int(3))],
                ..Default::default()
            },
        ),
        (
            "exclude 500 + shard (0.1%)",
            Filter {
                exclude_ids: exclude,
                must: vec![FieldCondition::eq("shard", PayloadValue::Int(7))],
                ..Default::default()
            },
        ),
    ]
}

/// Exact top-`k` of every query under the filter `make(q)`, on `threads` threads.
fn truth(
    index: &Index,
    queries: &[f32],
    dim: usize,
    k: usize,
    threads: usize,
    make: &(dyn Fn(usize) -> Filter + Sync),
) -> Result<Vec<Vec<u64>>> {
    let nq = queries.len() / dim;
    let chunk = nq.div_ceil(threads.max(1));
    let parts: Vec<Result<Vec<Vec<u64>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..nq)
            .step_by(chunk.max(1))
            .map(|start| {
                s.spawn(move || -> Result<Vec<Vec<u64>>> {
                    (start..(start + chunk).min(nq))
                        .map(|q| {
                            let hits = index.exact_search(
                                &queries[q * dim..(q + 1) * dim],
                                k,
                                &make(q),
                            )?;
                            Ok(hits.iter().map(|h| h.id).collect())
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("a truth thread failed")))
            .collect()
    });
    let mut out = Vec::with_capacity(nq);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

fn recall_at(got: &[u64], truth: &[u64], k: usize) -> f64 {
    let truth = &truth[..k.min(truth.len())];
    if truth.is_empty() {
        return 1.0;
    }
    let set: std::collections::HashSet<u64> = truth.iter().copied().collect();
    got.iter().take(k).filter(|id| set.contains(id)).count() as f64 / truth.len() as f64
}

fn run_size(args: &Args, n: usize, work: &Path) -> Result<Value> {
    let dim = args.dim;
    let ks = parse_list(&args.k)?;
    let efs = parse_list(&args.ef)?;
    if ks.len() != efs.len() {
        bail!("--k and --ef need as many values");
    }
    let kmax = ks.iter().copied().max().unwrap_or(10);
    eprintln!("== {n} items x {dim} dims, {} queries", args.queries);
    let mut r = Rng(2026);
    let centres: Vec<Vec<f32>> = (0..args.clusters)
        .map(|_| {
            let mut c: Vec<f32> = (0..dim).map(|_| r.gauss()).collect();
            normalize(&mut c);
            c
        })
        .collect();
    // Noise per dimension: a cluster's points lie within ~0.6 of its centre.
    let sigma = 0.6 / (dim as f32).sqrt();
    let vectors = around(&centres, n, sigma, 1);
    let queries = around(&centres, args.queries, sigma, 2);

    let mut params = IndexParams::new(dim, Metric::Dot);
    params.m = args.m;
    params.ef_construction = args.ef_construction;
    params.schema = PayloadSchema {
        fields: vec![
            FieldDef {
                name: "bucket".into(),
                kind: FieldKind::Int,
            },
            FieldDef {
                name: "shard".into(),
                kind: FieldKind::Int,
            },
        ],
    };
    let mut b = IndexBuilder::new(params)?;
    for i in 0..n {
        let payload = Payload::at(i as i64)
            .with("bucket", PayloadValue::Int((i % 10) as i64))
            .with("shard", PayloadValue::Int((i % 1000) as i64));
        b.add(i as u64, &vectors[i * dim..(i + 1) * dim], payload)?;
    }
    let t = Instant::now();
    let index = b.build(args.threads)?;
    let build_s = t.elapsed().as_secs_f64();
    eprintln!("built in {build_s:.1} s");
    let dir = work.join(format!("index-{n}"));
    let t = Instant::now();
    index.save(&dir)?;
    let save_s = t.elapsed().as_secs_f64();
    let disk = std::fs::metadata(strata_ann::index_file(&dir))?.len();
    let t = Instant::now();
    let index = Index::open(&dir)?;
    let open_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let top = truth(&index, &queries, dim, kmax, args.threads, &|_| {
        Filter::default()
    })?;
    let mut truths = vec![top.clone()];
    for f in 1..3 {
        truths.push(truth(&index, &queries, dim, kmax, args.threads, &|q| {
            filters(n, &top, q)[f].1.clone()
        })?);
    }
    let truth_s = t.elapsed().as_secs_f64();
    eprintln!("exact top-{kmax} of every query in {truth_s:.1} s");

    let nq = args.queries;
    let mut runs = Vec::new();
    for (fi, name) in [
        "none",
        "exclude 500 + bucket (10%)",
        "exclude 500 + shard (0.1%)",
    ]
    .iter()
    .enumerate()
    {
        for (&k, &ef) in ks.iter().zip(&efs) {
            let path = index.plan(&filters(n, &top, 0)[fi].1, k, Some(ef))?;
            let mut lat = Vec::with_capacity(nq);
            let mut cpu = Vec::with_capacity(nq);
            let mut rec = 0.0;
            for q in 0..nq {
                let f = &filters(n, &top, q)[fi].1;
                let query = &queries[q * dim..(q + 1) * dim];
                let (t, c) = (Instant::now(), thread_cpu());
                let hits = index.search(query, k, f, Some(ef))?;
                lat.push(t.elapsed());
                cpu.push(thread_cpu().saturating_sub(c));
                let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                rec += recall_at(&ids, &truths[fi][q], k);
            }
            lat.sort();
            cpu.sort();
            let run = json!({
                "filter": name, "path": format!("{path:?}"), "k": k, "ef": ef,
                "recall": rec / nq as f64,
                "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99),
                "p99_cpu_ms": percentile(&cpu, 0.99),
            });
            eprintln!("ours {run}");
            runs.push(run);
        }
    }
    // The 10 % filter through the graph walk too (the plan sends it to the exact path when
    // it matches at most exact_threshold items): what the in-walk filter alone gives.
    let mut index = index;
    let threshold = index.params().exact_threshold;
    index.set_search_defaults(index.params().ef_search, 0);
    for (&k, &ef) in ks.iter().zip(&efs) {
        let (mut lat, mut cpu, mut rec) = (Vec::new(), Vec::new(), 0.0);
        for q in 0..nq {
            let f = &filters(n, &top, q)[1].1;
            let query = &queries[q * dim..(q + 1) * dim];
            let (t, c) = (Instant::now(), thread_cpu());
            let hits = index.search(query, k, f, Some(ef))?;
            lat.push(t.elapsed());
            cpu.push(thread_cpu().saturating_sub(c));
            let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
            rec += recall_at(&ids, &truths[1][q], k);
        }
        lat.sort();
        cpu.sort();
        let run = json!({
            "filter": "exclude 500 + bucket (10%), graph walk forced", "k": k, "ef": ef,
            "recall": rec / nq as f64,
            "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99),
            "p99_cpu_ms": percentile(&cpu, 0.99),
        });
        eprintln!("ours {run}");
        runs.push(run);
    }
    index.set_search_defaults(index.params().ef_search, threshold);
    // Exact search's own latency, for scale (100 queries, k = 100, no filter).
    let mut lat = Vec::new();
    for q in 0..nq.min(100) {
        let t = Instant::now();
        index.exact_search(&queries[q * dim..(q + 1) * dim], 100, &Filter::default())?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let exact_p50 = percentile(&lat, 0.5);

    let peer = match &args.python {
        None => json!({"skipped": "no --python given"}),
        Some(py) => run_peer(args, py, work, n, &vectors, &queries, &truths, &top, &ks)
            .unwrap_or_else(|e| json!({"skipped": format!("{e:#}")})),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let plan_selective = index.plan(&filters(n, &top, 0)[2].1, 100, None)?;
    Ok(json!({
        "items": n, "dim": dim, "queries": nq, "m": args.m,
        "ef_construction": args.ef_construction, "threads": args.threads,
        "build_s": build_s, "save_s": save_s, "open_s": open_s, "disk_bytes": disk,
        "memory_bytes": index.memory_bytes(), "truth_s": truth_s,
        "exact_k100_p50_ms": exact_p50,
        "selective_path": format!("{:?}", plan_selective),
        "exact_threshold": index.params().exact_threshold,
        "runs": runs, "peer": peer,
    }))
}

#[allow(clippy::too_many_arguments)]
fn run_peer(
    args: &Args,
    python: &Path,
    work: &Path,
    n: usize,
    vectors: &[f32],
    queries: &[f32],
    truths: &[Vec<Vec<u64>>],
    top: &[Vec<u64>],
    ks: &[usize],
) -> Result<Value> {
    let dir = work.join(format!("peer-{n}"));
    std::fs::create_dir_all(&dir)?;
    write_f32(&dir.join("vectors.f32"), vectors)?;
    write_f32(&dir.join("queries.f32"), queries)?;
    let kmax = ks.iter().copied().max().unwrap_or(10);
    for (fi, t) in truths.iter().enumerate() {
        // Fixed width kmax per query; u32::MAX pads a query with fewer matches.
        let mut flat = Vec::with_capacity(t.len() * kmax);
        for ids in t {
            flat.extend(ids.iter().map(|&x| x as u32));
            flat.extend(std::iter::repeat_n(u32::MAX, kmax - ids.len()));
        }
        write_u32(&dir.join(format!("truth{fi}.u32")), &flat)?;
    }
    let mut excl = Vec::with_capacity(top.len() * 500);
    for q in 0..top.len() {
        let f = &filters(n, top, q)[1].1;
        excl.extend(f.exclude_ids.iter().map(|&x| x as u32));
        excl.extend(std::iter::repeat_n(u32::MAX, 500 - f.exclude_ids.len()));
    }
    write_u32(&dir.join("exclude.u32"), &excl)?;
    eprintln!("running the peers");
    let out = std::process::Command::new(python)
        .arg(&args.peer_script)
        .args(["--dir".into(), dir.display().to_string()])
        .args(["--dim".into(), args.dim.to_string()])
        .args(["--m".into(), args.m.to_string()])
        .args(["--ef-construction".into(), args.ef_construction.to_string()])
        .args(["--threads".into(), args.threads.to_string()])
        .args(["--k".into(), args.k.clone()])
        .args(["--ef".into(), args.ef.clone()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting the python peer")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("the python peer failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading the peer's JSON")
}

fn fmt_bytes(b: u64) -> String {
    format!("{:.0} MB", b as f64 / 1e6)
}

fn report(args: &Args, sizes: &[Value]) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "# ANN benchmark ({})\n\nStrata's HNSW (`strata-ann`) against exact search on the same embeddings, with faiss-cpu \
         `IndexHNSWFlat` and usearch from PyPI as peers in the same run. Inner product, {} clustered unit vectors \
         ({} clusters), {} queries near the same clusters. Build on {} threads; searches on one thread, one query at a time. \
         m = {}, ef_construction = {}; the same m, ef_construction and ef for the peers. Recall@k = share of the exact \
         top-k (same filter) found. Machine: 2 cores shared with other work, so latencies are noisy.\n\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        args.dim,
        args.clusters,
        args.queries,
        args.threads,
        args.m,
        args.ef_construction
    ));
    for s in sizes {
        let n = s["items"].as_u64().unwrap_or(0);
        md.push_str(&format!("## {} items × {} dims\n\n", n, s["dim"]));
        md.push_str(&format!(
            "Build {:.1} s ({} threads); save {:.1} s, open {:.1} s; file {}; memory ~{}. Exact search k=100: p50 {:.2} ms. \
             The 0.1% filter's plan: {} (exact_threshold {}).\n\n",
            s["build_s"].as_f64().unwrap_or(0.0),
            s["threads"],
            s["save_s"].as_f64().unwrap_or(0.0),
            s["open_s"].as_f64().unwrap_or(0.0),
            fmt_bytes(s["disk_bytes"].as_u64().unwrap_or(0)),
            fmt_bytes(s["memory_bytes"].as_u64().unwrap_or(0)),
            s["exact_k100_p50_ms"].as_f64().unwrap_or(0.0),
            s["selective_path"].as_str().unwrap_or(""),
            s["exact_threshold"]
        ));
        md.push_str("| engine | filter | k | ef | recall@k | p50 ms | p99 ms | p99 CPU ms |\n|---|---|---|---|---|---|---|---|\n");
        let row = |md: &mut String, engine: &str, r: &Value| {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {:.4} | {:.3} | {:.3} | {:.3} |\n",
                engine,
                r["filter"].as_str().unwrap_or(""),
                r["k"],
                r["ef"],
                r["recall"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                r["p99_cpu_ms"].as_f64().unwrap_or(0.0)
            ));
        };
        for r in s["runs"].as_array().into_iter().flatten() {
            row(&mut md, "strata-ann", r);
        }
        let peer = &s["peer"];
        if let Some(reason) = peer["skipped"].as_str() {
            md.push_str(&format!("\nPeers skipped: {reason}\n"));
        }
        for engine in ["faiss", "usearch"] {
            let p = &peer[engine];
            if let Some(reason) = p["skipped"].as_str() {
                md.push_str(&format!("| {engine} | skipped: {reason} | | | | | | |\n"));
                continue;
            }
            for r in p["runs"].as_array().into_iter().flatten() {
                row(&mut md, engine, r);
            }
        }
        for engine in ["faiss", "usearch"] {
            if let Some(b) = peer[engine]["build_s"].as_f64() {
                md.push_str(&format!(
                    "\n{engine} {} build: {b:.1} s",
                    peer[engine]["version"]
                ));
            }
        }
        md.push_str("\n\n");
    }
    md.push_str(
        "Targets (issue #26): recall@10 ≥ 0.95, recall@1000 ≥ 0.9, p99 ≤ 2 ms at k=100 and ≤ 10 ms at k=1000. \
         p50/p99 are wall time; p99 CPU is the \
         thread's CPU time (the machine's 2 cores are shared, so a query preempted for a time slice shows in the wall-time \
         p99 and not in CPU time). The peers' latencies include their Python call overhead (a few µs per query). faiss \
         filters through an `IDSelectorBitmap` inside its HNSW walk and finds only part of the true filtered \
         neighbours (checked: the selector itself is honoured); usearch runs unfiltered only. Our filtered rows say \
         which path the plan chose; the \"graph walk forced\" rows run the 10% filter through the graph.\n",
    );
    md
}

fn main() -> Result<()> {
    let args = Args::parse();
    let sizes: Vec<usize> = args
        .sizes
        .split(',')
        .map(parse_size)
        .collect::<Result<_>>()?;
    let tmp;
    let work = match &args.work_dir {
        Some(w) => w.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("ann-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    std::fs::create_dir_all(&work)?;
    let mut results = Vec::new();
    for n in sizes {
        results.push(run_size(&args, n, &work)?);
    }
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    std::fs::create_dir_all(&args.out)?;
    let md = report(&args, &results);
    let md_path = args.out.join(format!("ann-{stamp}.md"));
    std::fs::write(&md_path, &md)?;
    std::fs::write(
        args.out.join(format!("ann-{stamp}.json")),
        serde_json::to_vec_pretty(&json!({"suite": "ann", "sizes": results}))?,
    )?;
    println!("{md}");
    eprintln!("report: {}", md_path.display());
    Ok(())
}
