//! Index tests: recall against brute force, filters on both search paths, persistence,
//! corrupt files, atomic swap. Brute force here is written independently of the index.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::*;

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

/// `n` vectors around `clusters` random centres; with `vary_norm` their lengths differ.
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64, vary_norm: bool) -> Vec<Vec<f32>> {
    clustered_around(n, dim, clusters, seed, seed, vary_norm)
}

/// Like `clustered`, the centres drawn from `centre_seed`, the points from `seed`.
fn clustered_around(
    n: usize,
    dim: usize,
    clusters: usize,
    centre_seed: u64,
    seed: u64,
    vary_norm: bool,
) -> Vec<Vec<f32>> {
    let mut r = Rng(centre_seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| r.gauss()).collect())
        .collect();
    let mut r = Rng(seed.wrapping_mul(31).wrapping_add(1));
    (0..n)
        .map(|_| {
            let c = &centres[(r.next() % clusters as u64) as usize];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.4 * r.gauss()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let scale = if vary_norm { 0.5 + 1.5 * r.unit() } else { 1.0 };
            v.iter_mut().for_each(|x| *x *= scale / norm);
            v
        })
        .collect()
}

fn schema() -> PayloadSchema {
    PayloadSchema {
        fields: vec![
            FieldDef {
                name: "lang".into(),
                kind: FieldKind::Str,
            },
            FieldDef {
                name: "author".into(),
                kind: FieldKind::Int,
            },
        ],
    }
}

const LANGS: [&str; 4] = ["en", "de", "fr", "ja"];

/// Item i: id 1000 + i, created_at i, lang by i % 4 (ja only on every 40th), author i % 50
/// (missing on every 7th).
fn payload(i: usize) -> Payload {
    let lang = if i % 40 == 3 { "ja" } else { LANGS[i % 3] };
    let mut p = Payload::at(i as i64).with("lang", PayloadValue::Str(lang.into()));
    if !i.is_multiple_of(7) {
        p = p.with("author", PayloadValue::Int((i % 50) as i64));
    }
    p
}

fn build(vectors: &[Vec<f32>], metric: Metric, threads: usize, exact_threshold: usize) -> Index {
    let mut params = IndexParams::new(vectors[0].len(), metric);
    params.schema = schema();
    params.ef_construction = 100;
    params.exact_threshold = exact_threshold;
    let mut b = IndexBuilder::new(params).unwrap();
    for (i, v) in vectors.iter().enumerate() {
        b.add(1000 + i as u64, v, payload(i)).unwrap();
    }
    b.build(threads).unwrap()
}

/// The test's own reading of a filter over item i.
fn passes(i: usize, f: &Filter) -> bool {
    let p = payload(i);
    if f.exclude_ids.contains(&(1000 + i as u64)) {
        return false;
    }
    if f.created_after.is_some_and(|t| p.created_at <= t) {
        return false;
    }
    f.must.iter().all(|c| {
        let v = p.fields.iter().find(|(n, _)| *n == c.field).map(|(_, v)| v);
        match (&c.matches, v) {
            (_, None) => false,
            (Match::Eq(x), Some(v)) => x == v,
            (Match::In(xs), Some(v)) => xs.contains(v),
            (Match::Range(r), Some(PayloadValue::Int(x))) => {
                r.min.is_none_or(|m| *x >= m) && r.max.is_none_or(|m| *x <= m)
            }
            _ => false,
        }
    })
}

fn score(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::Dot => q.iter().zip(v).map(|(a, b)| a * b).sum(),
        Metric::Cosine => {
            let nq = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nv = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            q.iter().zip(v).map(|(a, b)| a * b).sum::<f32>() / (nq * nv)
        }
        Metric::L2 => -q.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
    }
}

fn brute(vectors: &[Vec<f32>], metric: Metric, q: &[f32], k: usize, f: &Filter) -> Vec<u64> {
    let mut all: Vec<(f32, u64)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| passes(*i, f))
        .map(|(i, v)| (score(metric, q, v), 1000 + i as u64))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

fn recall(got: &[Hit], truth: &[u64]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let truth: HashSet<u64> = truth.iter().copied().collect();
    got.iter().filter(|h| truth.contains(&h.id)).count() as f64 / truth.len() as f64
}

/// Queries drawn around the centres of the data made with `clustered(.., clusters, seed, ..)`
/// (users near the items they like), with fresh noise.
fn queries(dim: usize, n: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    clustered_around(n, dim, clusters, seed, seed ^ 0xABCD, false)
}

fn mean_recall(
    index: &Index,
    vectors: &[Vec<f32>],
    qs: &[Vec<f32>],
    metric: Metric,
    k: usize,
    f: &Filter,
) -> f64 {
    let total: f64 = qs
        .iter()
        .map(|q| {
            let hits = index.search(q, k, f, None).unwrap();
            for h in &hits {
                assert!(
                    passes((h.id - 1000) as usize, f),
                    "hit {} fails the filter",
                    h.id
                );
            }
            recall(&hits, &brute(vectors, metric, q, k, f))
        })
        .sum();
    total / qs.len() as f64
}

#[test]
fn recall_at_10_is_high_for_every_metric() {
    for (metric, vary) in [
        (Metric::Dot, true),
        (Metric::Dot, false),
        (Metric::Cosine, true),
        (Metric::L2, true),
    ] {
        let vectors = clustered(4000, 32, 40, 7, vary);
        let index = build(&vectors, metric, 2, 0);
        let qs = queries(32, 50, 40, 7);
        let r = mean_recall(&index, &vectors, &qs, metric, 10, &Filter::default());
        assert!(r >= 0.95, "{metric:?} (varied norms {vary}): recall@10 {r}");
    }
}

#[test]
fn scores_are_the_metric_of_the_stored_vectors() {
    let vectors = clustered(500, 16, 10, 3, true);
    for metric in [Metric::Dot, Metric::Cosine, Metric::L2] {
        let index = build(&vectors, metric, 1, 0);
        let q = &queries(16, 1, 10, 3)[0];
        for h in index.search(q, 5, &Filter::default(), None).unwrap() {
            let want = score(metric, q, &vectors[(h.id - 1000) as usize]);
            assert!(
                (h.score - want).abs() < 1e-4,
                "{metric:?}: {} vs {want}",
                h.score
            );
        }
    }
}

#[test]
fn exact_search_equals_brute_force_with_any_filter() {
    let vectors = clustered(2000, 16, 20, 11, true);
    let index = build(&vectors, Metric::Dot, 2, 0);
    let q = &queries(16, 1, 20, 11)[0];
    for f in filters(&vectors, q) {
        for k in [1, 10, 3000] {
            let got: Vec<u64> = index
                .exact_search(q, k, &f)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            assert_eq!(
                got,
                brute(&vectors, Metric::Dot, q, k, &f),
                "filter {f:?} k {k}"
            );
        }
    }
}

/// Filters of every kind, including one that excludes the unfiltered top 20.
fn filters(vectors: &[Vec<f32>], q: &[f32]) -> Vec<Filter> {
    let top = brute(vectors, Metric::Dot, q, 20, &Filter::default());
    let s = |x: &str| PayloadValue::Str(x.into());
    vec![
        Filter::default(),
        Filter {
            exclude_ids: top.clone(),
            ..Default::default()
        },
        Filter {
            created_after: Some(vectors.len() as i64 / 2),
            ..Default::default()
        },
        Filter {
            must: vec![FieldCondition::eq("lang", s("de"))],
            ..Default::default()
        },
        Filter {
            must: vec![FieldCondition::one_of("lang", vec![s("en"), s("fr")])],
            ..Default::default()
        },
        Filter {
            must: vec![FieldCondition::range("author", Some(10), Some(29))],
            ..Default::default()
        },
        Filter {
            exclude_ids: top,
            created_after: Some(300),
            must: vec![
                FieldCondition::one_of("lang", vec![s("en"), s("de")]),
                FieldCondition::range("author", Some(5), None),
            ],
        },
        // Selective: ja is on every 40th item, author 3 on every 50th.
        Filter {
            must: vec![FieldCondition::eq("lang", s("ja"))],
            ..Default::default()
        },
        Filter {
            must: vec![
                FieldCondition::eq("lang", s("ja")),
                FieldCondition::eq("author", PayloadValue::Int(3)),
            ],
            ..Default::default()
        },
    ]
}

#[test]
fn filtered_graph_walk_returns_only_matches_with_high_recall() {
    let vectors = clustered(4000, 32, 40, 21, true);
    // exact_threshold 0: every filter walks the graph.
    let index = build(&vectors, Metric::Dot, 2, 0);
    let qs = queries(32, 30, 40, 21);
    let q = &qs[0];
    for f in filters(&vectors, q) {
        assert!(matches!(
            index.plan(&f, 10, None).unwrap(),
            SearchPath::Graph { .. } | SearchPath::Empty
        ));
        let r = mean_recall(&index, &vectors, &qs, Metric::Dot, 10, &f);
        assert!(r >= 0.95, "filter {f:?}: recall@10 {r}");
    }
}

#[test]
fn excluding_the_top_hits_returns_the_next_ones() {
    let vectors = clustered(4000, 32, 40, 31, false);
    let index = build(&vectors, Metric::Dot, 2, 0);
    let q = &queries(32, 1, 40, 31)[0];
    let first = index.search(q, 10, &Filter::default(), Some(200)).unwrap();
    let f = Filter {
        exclude_ids: first.iter().map(|h| h.id).collect(),
        ..Default::default()
    };
    let second = index.search(q, 10, &f, Some(200)).unwrap();
    assert_eq!(second.len(), 10);
    assert!(second.iter().all(|h| !f.exclude_ids.contains(&h.id)));
    assert_eq!(
        second.iter().map(|h| h.id).collect::<Vec<_>>(),
        brute(&vectors, Metric::Dot, q, 10, &f)
    );
}

/// The nodes a layer-0 walk from the entry point reaches, in the frozen graph.
fn reachable_on_layer0(index: &Index) -> usize {
    use crate::graph::Links;
    let g = &index.graph;
    let mut seen = vec![false; g.len()];
    let mut stack = vec![g.entry];
    seen[g.entry as usize] = true;
    let mut buf = Vec::new();
    while let Some(x) = stack.pop() {
        g.links(x, 0, &mut buf);
        for &e in &buf {
            if !seen[e as usize] {
                seen[e as usize] = true;
                stack.push(e);
            }
        }
    }
    seen.iter().filter(|&&s| s).count()
}

#[test]
fn every_item_is_reachable_on_layer_zero() {
    // Short link lists, a small candidate list and four threads inserting at once: HNSW's
    // pruning then drops some nodes from every list that held them, and the build links
    // them back (without that, these builds leave several nodes unreachable).
    for seed in [3, 5, 8, 13] {
        let vectors = clustered(4000, 16, 60, seed, true);
        let mut params = IndexParams::new(16, Metric::Dot);
        params.m = 4;
        params.ef_construction = 4;
        let mut b = IndexBuilder::new(params).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            b.add(i as u64, v, Payload::at(0)).unwrap();
        }
        let index = b.build(4).unwrap();
        assert_eq!(reachable_on_layer0(&index), vectors.len(), "seed {seed}");
    }
}

#[test]
fn a_selective_filter_is_answered_exactly() {
    let vectors = clustered(4000, 32, 40, 41, true);
    // One build thread: the same graph every run, so the walk at the end (which must reach
    // all 100 matches from where the descent lands) is checked on a fixed graph.
    let index = build(&vectors, Metric::Dot, 1, 500);
    let q = &queries(32, 1, 40, 41)[0];
    let ja = Filter {
        must: vec![FieldCondition::eq("lang", PayloadValue::Str("ja".into()))],
        ..Default::default()
    };
    // 100 items have lang ja: the scan checks exactly those.
    assert_eq!(
        index.plan(&ja, 10, None).unwrap(),
        SearchPath::Exact { scanned: 100 }
    );
    // lang en (every third item, ~1,300) is above the threshold, but scoring them costs less
    // than a walk that must find 64 of them (~64 × 3 × 32 scores): exact by cost.
    let en = Filter {
        must: vec![FieldCondition::eq("lang", PayloadValue::Str("en".into()))],
        ..Default::default()
    };
    let en_count = (0..4000).filter(|&i| passes(i, &en)).count();
    assert!(en_count > 500);
    assert_eq!(
        index.plan(&en, 10, None).unwrap(),
        SearchPath::Exact { scanned: en_count }
    );
    // Excluding one item leaves 3,999 to match: the walk (about 64 × 32 scores) is cheaper.
    let broad = Filter {
        exclude_ids: vec![1000],
        ..Default::default()
    };
    assert!(matches!(
        index.plan(&broad, 10, None).unwrap(),
        SearchPath::Graph { .. }
    ));
    for f in filters(&vectors, q) {
        let plan = index.plan(&f, 10, None).unwrap();
        if let SearchPath::Exact { .. } = plan {
            for k in [10, 1000] {
                let got: Vec<u64> = index
                    .search(q, k, &f, None)
                    .unwrap()
                    .iter()
                    .map(|h| h.id)
                    .collect();
                assert_eq!(got, brute(&vectors, Metric::Dot, q, k, &f), "filter {f:?}");
            }
        }
    }
    // The exact path with k above the matches returns every match.
    assert_eq!(index.search(q, 1000, &ja, None).unwrap().len(), 100);
    // With the threshold at 0 the same filter walks the graph, and still finds every match.
    let mut index = index;
    index.set_search_defaults(64, 0);
    assert!(matches!(
        index.plan(&ja, 10, None).unwrap(),
        SearchPath::Graph { .. }
    ));
    let got: Vec<u64> = index
        .search(q, 1000, &ja, None)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(got, brute(&vectors, Metric::Dot, q, 1000, &ja));
}

#[test]
fn k_above_the_matches_returns_every_match_on_the_graph_path_too() {
    let vectors = clustered(3000, 16, 30, 51, false);
    let index = build(&vectors, Metric::Dot, 2, 0);
    let q = &queries(16, 1, 30, 51)[0];
    let f = Filter {
        must: vec![
            FieldCondition::eq("lang", PayloadValue::Str("ja".into())),
            FieldCondition::range("author", Some(0), Some(20)),
        ],
        ..Default::default()
    };
    let truth = brute(&vectors, Metric::Dot, q, usize::MAX, &f);
    assert!(!truth.is_empty() && truth.len() < 100);
    let got: Vec<u64> = index
        .search(q, 100, &f, None)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(got, truth);
}

#[test]
fn a_filter_that_matches_nothing_returns_nothing() {
    let vectors = clustered(1000, 16, 10, 61, false);
    let index = build(&vectors, Metric::Dot, 1, 0);
    let q = &queries(16, 1, 10, 61)[0];
    let all = Filter {
        exclude_ids: (1000..2000).collect(),
        ..Default::default()
    };
    assert!(index.search(q, 10, &all, None).unwrap().is_empty());
    let unknown_value = Filter {
        must: vec![FieldCondition::eq("lang", PayloadValue::Str("xx".into()))],
        ..Default::default()
    };
    assert_eq!(
        index.plan(&unknown_value, 10, None).unwrap(),
        SearchPath::Empty
    );
    assert!(index
        .search(q, 10, &unknown_value, None)
        .unwrap()
        .is_empty());
    let empty_in = Filter {
        must: vec![FieldCondition::one_of("author", vec![])],
        ..Default::default()
    };
    assert!(index.search(q, 10, &empty_in, None).unwrap().is_empty());
    let future = Filter {
        created_after: Some(5000),
        ..Default::default()
    };
    assert!(index.search(q, 10, &future, None).unwrap().is_empty());
    assert!(index
        .search(q, 0, &Filter::default(), None)
        .unwrap()
        .is_empty());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut params = IndexParams::new(4, Metric::Cosine);
    params.schema = schema();
    let mut b = IndexBuilder::new(params.clone()).unwrap();
    b.add(1, &[1.0, 0.0, 0.0, 0.0], Payload::at(0)).unwrap();
    let invalid = |r: Result<()>| matches!(r, Err(AnnError::Invalid(_)));
    assert!(invalid(b.add(2, &[1.0, 0.0], Payload::at(0))));
    assert!(invalid(b.add(
        2,
        &[f32::NAN, 0.0, 0.0, 0.0],
        Payload::at(0)
    )));
    assert!(invalid(b.add(2, &[0.0; 4], Payload::at(0))));
    assert!(invalid(b.add(1, &[0.0, 1.0, 0.0, 0.0], Payload::at(0))));
    assert!(invalid(b.add(
        2,
        &[0.0, 1.0, 0.0, 0.0],
        Payload::at(0).with("nope", PayloadValue::Int(1))
    )));
    assert!(invalid(b.add(
        2,
        &[0.0, 1.0, 0.0, 0.0],
        Payload::at(0).with("author", PayloadValue::Str("x".into()))
    )));
    assert_eq!(b.len(), 1);
    let index = b.build(1).unwrap();
    assert!(index
        .search(&[1.0, 0.0], 1, &Filter::default(), None)
        .is_err());
    assert!(index
        .search(&[0.0; 4], 1, &Filter::default(), None)
        .is_err());
    let unknown = Filter {
        must: vec![FieldCondition::eq("nope", PayloadValue::Int(1))],
        ..Default::default()
    };
    let err = index
        .search(&[1.0, 0.0, 0.0, 0.0], 1, &unknown, None)
        .unwrap_err();
    assert_eq!(err.fault(), strata_core::error::Fault::User);
    let range_on_str = Filter {
        must: vec![FieldCondition::range("lang", Some(1), None)],
        ..Default::default()
    };
    assert!(index
        .search(&[1.0, 0.0, 0.0, 0.0], 1, &range_on_str, None)
        .is_err());
    params.m = 1;
    params.dim = 0;
    let msg = IndexBuilder::new(params).unwrap_err().to_string();
    assert!(msg.contains("dim 0") && msg.contains("m 1"), "{msg}");
}

#[test]
fn an_empty_index_searches_to_nothing_and_round_trips() {
    let index = IndexBuilder::new(IndexParams::new(8, Metric::Dot))
        .unwrap()
        .build(2)
        .unwrap();
    assert!(index
        .search(&[0.5; 8], 10, &Filter::default(), None)
        .unwrap()
        .is_empty());
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path()).unwrap();
    assert!(Index::open(dir.path()).unwrap().is_empty());
}

#[test]
fn save_and_open_give_the_same_answers() {
    let vectors = clustered(2000, 24, 20, 71, true);
    let index = build(&vectors, Metric::Dot, 2, 300);
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path()).unwrap();
    let opened = Index::open(dir.path()).unwrap();
    assert_eq!(opened.params(), index.params());
    assert_eq!(opened.len(), index.len());
    assert_eq!(opened.graph, index.graph);
    assert_eq!(opened.payloads, index.payloads);
    assert_eq!(opened.vector(1005), index.vector(1005));
    for q in queries(24, 10, 20, 71) {
        for f in filters(&vectors, &q) {
            assert_eq!(
                opened.search(&q, 20, &f, None).unwrap(),
                index.search(&q, 20, &f, None).unwrap()
            );
        }
    }
    // Saving again replaces the file and leaves no temporary file.
    opened.save(dir.path()).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
}

#[test]
fn one_build_thread_gives_the_same_graph_every_time() {
    let vectors = clustered(1500, 16, 15, 81, true);
    let a = build(&vectors, Metric::Dot, 1, 0);
    let b = build(&vectors, Metric::Dot, 1, 0);
    assert_eq!(a.graph, b.graph);
}

#[test]
fn a_damaged_file_is_refused_with_a_reason() {
    let vectors = clustered(300, 8, 5, 91, true);
    let index = build(&vectors, Metric::Dot, 1, 0);
    let dir = tempfile::tempdir().unwrap();
    // Missing file: an I/O error, retryable.
    let err = Index::open(dir.path()).unwrap_err();
    assert!(matches!(err, AnnError::Io { .. }) && err.retryable());
    index.save(dir.path()).unwrap();
    let path = index_file(dir.path());
    let good = std::fs::read(&path).unwrap();
    let corrupt = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        match Index::open(dir.path()) {
            Err(AnnError::Corrupt { reason, .. }) => reason,
            other => panic!("expected a corrupt-file error, got {other:?}"),
        }
    };
    // Truncated anywhere.
    for cut in [
        0,
        5,
        12,
        40,
        good.len() / 2,
        good.len() - 13,
        good.len() - 1,
    ] {
        let reason = corrupt(&good[..cut]);
        assert!(!reason.is_empty());
    }
    // A flipped bit anywhere in the body.
    for at in [9, 30, good.len() / 3, good.len() - 20] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        assert!(corrupt(&bad).contains("checksum") || at < 8);
    }
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(corrupt(&magic).contains("magic"));
    // A well-formed file with a link past the last node: the checksum is right, the check
    // of the graph refuses it.
    let mut forged = good[..good.len() - 12].to_vec();
    let at = forged.len() - 8 - 4 * index.graph.upper.len() - 4 * index.graph.layer0.len() + 4;
    forged[at..at + 4].copy_from_slice(&(10_000u32).to_le_bytes());
    let crc = crc32c::crc32c(&forged);
    forged.extend_from_slice(&crc.to_le_bytes());
    forged.extend_from_slice(b"STRATEND");
    assert!(corrupt(&forged).contains("past the last node"));
    // Another format version.
    let mut v2 = good[..good.len() - 12].to_vec();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&v2);
    v2.extend_from_slice(&crc.to_le_bytes());
    v2.extend_from_slice(b"STRATEND");
    assert!(corrupt(&v2).contains("format version 2"));
    // The good bytes still open.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(Index::open(dir.path()).unwrap().len(), 300);
}

#[test]
fn searches_during_swaps_see_one_index_version_whole() {
    let vectors = clustered(1500, 16, 15, 101, false);
    let build_at = |base: u64| {
        let mut b = IndexBuilder::new(IndexParams::new(16, Metric::Dot)).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            b.add(base + i as u64, v, Payload::at(0)).unwrap();
        }
        Arc::new(b.build(1).unwrap())
    };
    let (a, b) = (build_at(0), build_at(1_000_000));
    let handle = Arc::new(IndexHandle::new(Arc::clone(&a)));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let qs = Arc::new(queries(16, 20, 15, 101));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (handle, stop, qs, seen) = (
                Arc::clone(&handle),
                Arc::clone(&stop),
                Arc::clone(&qs),
                seen.clone(),
            );
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let index = handle.load();
                    let hits = index
                        .search(&qs[i % qs.len()], 50, &Filter::default(), None)
                        .unwrap();
                    assert_eq!(hits.len(), 50);
                    let low = hits.iter().filter(|h| h.id < 1_000_000).count();
                    assert!(
                        low == 0 || low == hits.len(),
                        "a result mixes two index versions"
                    );
                    seen[(low == 0) as usize].fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    // Swap (an even number of times, so `a` is current at the end) until at least 200 swaps
    // happened and the readers have searched each version 300 times while swaps went on.
    let mut round = 0u64;
    let searched = |v: usize| seen[v].load(Ordering::Relaxed);
    // A reader that panicked stops counting: stop swapping then, its join below reports it.
    let reader_died = || readers.iter().any(|r| r.is_finished());
    while (round < 200 || searched(0) < 300 || searched(1) < 300 || !round.is_multiple_of(2))
        && (!round.is_multiple_of(2) || !reader_died())
    {
        let next = if round.is_multiple_of(2) {
            Arc::clone(&b)
        } else {
            Arc::clone(&a)
        };
        let old = handle.swap(next);
        assert!(Arc::ptr_eq(
            &old,
            if round.is_multiple_of(2) { &a } else { &b }
        ));
        std::thread::yield_now();
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(Arc::ptr_eq(&handle.load(), &a));
}

#[test]
fn filters_read_from_json() {
    let f: Filter = serde_json::from_str(
        r#"{"exclude_ids": [1, 2], "created_after": 17,
            "must": [{"field": "lang", "eq": "en"}, {"field": "author", "in": [7, 9]},
                     {"field": "author", "range": {"min": 10}}]}"#,
    )
    .unwrap();
    assert_eq!(
        f,
        Filter {
            exclude_ids: vec![1, 2],
            created_after: Some(17),
            must: vec![
                FieldCondition::eq("lang", PayloadValue::Str("en".into())),
                FieldCondition::one_of("author", vec![PayloadValue::Int(7), PayloadValue::Int(9)]),
                FieldCondition::range("author", Some(10), None),
            ],
        }
    );
    assert!(serde_json::from_str::<Filter>(r#"{"exclude": [1]}"#).is_err());
    assert_eq!(
        serde_json::from_str::<Filter>("{}").unwrap(),
        Filter::default()
    );
}
