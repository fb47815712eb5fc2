//! Leaf-wise histogram boosting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bins::BinMapper;
use crate::dataset::Dataset;
use crate::error::{GbdtError, Result};
use crate::hist::{self, bit, Layout, Rules, SplitCand, Sum};
use crate::metrics;
use crate::model::{BinNode, BinTree, Model};
use crate::objective;
use crate::params::{Objective, Params};
use crate::rng::Rng;

/// One boosting round, as reported to the progress callback.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Rounds done (1-based).
    pub iteration: u32,
    /// Rounds asked for.
    pub num_trees: u32,
    /// Name of the metrics below: `logloss` (binary) or `ndcg@k` (lambdarank).
    pub metric: String,
    /// The metric on the training rows: every 10th round and the last (it costs a pass over
    /// the training set), else None.
    pub train_metric: Option<f64>,
    /// The metric on the validation rows, when a validation set was given.
    pub valid_metric: Option<f64>,
    /// Time since training started.
    pub elapsed: Duration,
}

/// What a training run did.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Trees kept in the model (the best round when early stopping was on).
    pub trees: u32,
    /// Rounds run.
    pub rounds: u32,
    /// Whether early stopping (or a tree that could not split) ended training.
    pub stopped_early: bool,
    /// Name of the metrics below.
    pub metric: String,
    /// Training metric of the final model.
    pub train_metric: f64,
    /// Validation metric after the last kept tree.
    pub valid_metric: Option<f64>,
    /// Training rows and validation rows.
    pub train_rows: usize,
    /// Validation rows (0 without a validation set).
    pub valid_rows: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Trains a model on `train`, evaluating (and early-stopping) on `valid` when given; `valid`
/// must be built with [`crate::DatasetBuilder::like`] the training set. `progress` is called
/// after every round. Deterministic for a seed: the same inputs give the same model bytes.
pub fn train(
    params: &Params,
    train: &Dataset,
    valid: Option<&Dataset>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Model, TrainReport)> {
    train_impl(params, train, valid, progress).map(|(m, r, _)| (m, r))
}

/// [`train`], also returning the final training scores (kept by partition and bin traversal,
/// independent of the flat scorer: the tests compare the two).
fn train_impl(
    params: &Params,
    train: &Dataset,
    valid: Option<&Dataset>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Model, TrainReport, Vec<f64>)> {
    params.validate()?;
    check_data(params, train, "training")?;
    if let Some(v) = valid {
        check_data(params, v, "validation")?;
        if !Arc::ptr_eq(&train.mappers, &v.mappers) && train.mappers != v.mappers {
            return Err(GbdtError::InvalidData(
                "the validation set was not binned like the training set (use DatasetBuilder::like)"
                    .into(),
            ));
        }
    }
    let started = Instant::now();
    let threads = params.worker_threads();
    let n = train.num_rows();
    let nf = train.num_features();
    let layout = layout(&train.mappers);
    let rules = Rules::new(params);
    let mut rng = Rng::new(params.seed);
    let base = objective::base_score(params.objective, &train.labels, train.weights.as_deref());
    let mut scores = vec![base; n];
    let mut valid_scores = valid.map(|v| vec![base; v.num_rows()]);
    let discounts = objective::discounts(max_group(train).max(valid.map_or(0, max_group)) + 1);
    let metric_name = match params.objective {
        Objective::Binary => "logloss".to_string(),
        Objective::Lambdarank => format!("ndcg@{}", params.eval_at),
    };
    let higher_is_better = params.objective == Objective::Lambdarank;

    let mut gh = vec![[0f32; 2]; n];
    let mut grower = Grower::new(train, &layout, &rules, params, threads);
    let mut trees: Vec<BinTree> = Vec::new();
    let mut bag: Option<Vec<u32>> = None;
    let mut out_of_bag: Vec<u32> = Vec::new();
    let all_feats: Vec<usize> = (0..nf).collect();
    let mut best: Option<(usize, f64)> = None; // (trees, valid metric)
    let mut last_valid_metric = None;
    let mut stopped_early = false;
    let mut rounds = 0;

    for it in 0..params.num_trees {
        gradients(params, train, &scores, &discounts, &mut gh, threads);
        if params.bagging_freq > 0 && params.bagging_fraction < 1.0 && it % params.bagging_freq == 0
        {
            let (inb, oob) = draw_bag(train, params, &mut rng);
            bag = Some(inb);
            out_of_bag = oob;
        }
        let feats = if params.feature_fraction < 1.0 {
            sample_features(nf, params.feature_fraction, &mut rng)
        } else {
            all_feats.clone()
        };
        let tree = grower.grow(bag.as_deref(), &feats, &gh, params);
        rounds = it + 1;
        if tree.nodes.is_empty() && it > 0 {
            // Nothing left to split: more rounds would add identical constant trees.
            stopped_early = true;
            break;
        }
        // Training scores: in-bag rows through the grower's partition, the rest by traversal.
        grower.add_leaf_values(&tree, &mut scores);
        for &r in &out_of_bag {
            scores[r as usize] += tree.leaf_values[tree.leaf_of(&train.bins, r as usize)];
        }
        if let (Some(v), Some(vs)) = (valid, valid_scores.as_mut()) {
            add_tree(&tree, &v.bins, vs, threads);
        }
        trees.push(tree);
        let last_round = it + 1 == params.num_trees;
        let train_metric =
            ((it + 1) % 10 == 0 || last_round).then(|| evaluate(params, train, &scores));
        let valid_metric = match (valid, &valid_scores) {
            (Some(v), Some(vs)) => Some(evaluate(params, v, vs)),
            _ => None,
        };
        last_valid_metric = valid_metric;
        progress(&Progress {
            iteration: it + 1,
            num_trees: params.num_trees,
            metric: metric_name.clone(),
            train_metric,
            valid_metric,
            elapsed: started.elapsed(),
        });
        if let Some(vm) = valid_metric {
            let better =
                best.as_ref()
                    .is_none_or(|b| if higher_is_better { vm > b.1 } else { vm < b.1 });
            if better {
                best = Some((trees.len(), vm));
            } else if params.early_stopping_rounds > 0 {
                if let Some(b) = best {
                    if trees.len() - b.0 >= params.early_stopping_rounds as usize {
                        stopped_early = true;
                        break;
                    }
                }
            }
        }
    }
    if params.early_stopping_rounds > 0 {
        if let Some((keep, vm)) = best {
            if keep < trees.len() {
                // Take the dropped trees' values back out of the training scores.
                for t in &trees[keep..] {
                    for (r, s) in scores.iter_mut().enumerate() {
                        *s -= t.leaf_values[t.leaf_of(&train.bins, r)];
                    }
                }
                trees.truncate(keep);
            }
            last_valid_metric = Some(vm);
        }
    }
    let last_train_metric = evaluate(params, train, &scores);
    let model = Model::from_trees(params, train, base, &trees);
    let report = TrainReport {
        trees: trees.len() as u32,
        rounds,
        stopped_early,
        metric: metric_name,
        train_metric: last_train_metric,
        valid_metric: last_valid_metric,
        train_rows: n,
        valid_rows: valid.map_or(0, |v| v.num_rows()),
        elapsed: started.elapsed(),
    };
    Ok((model, report, scores))
}

fn check_data(params: &Params, ds: &Dataset, which: &str) -> Result<()> {
    match params.objective {
        Objective::Binary => {
            if let Some(l) = ds.labels.iter().find(|l| !(0.0..=1.0).contains(*l)) {
                return Err(GbdtError::InvalidData(format!(
                    "{which} label {l} is outside [0, 1] (binary objective)"
                )));
            }
        }
        Objective::Lambdarank => {
            if ds.groups.is_empty() {
                return Err(GbdtError::InvalidData(format!(
                    "the {which} set has no query ids (lambdarank needs them)"
                )));
            }
            if let Some(l) = ds
                .labels
                .iter()
                .find(|l| !(0.0..=31.0).contains(*l) || l.fract() != 0.0)
            {
                return Err(GbdtError::InvalidData(format!(
                    "{which} label {l} is not an integer relevance in 0..=31 (lambdarank)"
                )));
            }
        }
    }
    Ok(())
}

fn max_group(ds: &Dataset) -> usize {
    ds.groups
        .windows(2)
        .map(|w| (w[1] - w[0]) as usize)
        .max()
        .unwrap_or(0)
}

pub(crate) fn layout(mappers: &[BinMapper]) -> Layout {
    let mut offsets = Vec::with_capacity(mappers.len());
    let mut nbins = Vec::with_capacity(mappers.len());
    let mut categorical = Vec::with_capacity(mappers.len());
    let mut total = 0;
    for m in mappers {
        offsets.push(total);
        nbins.push(m.num_bins());
        categorical.push(matches!(m, BinMapper::Categorical { .. }));
        total += m.num_bins();
    }
    Layout {
        offsets,
        nbins,
        categorical,
        total,
    }
}

/// Rows per gradient chunk handed to a thread.
const GRADIENT_CHUNK: usize = 16_384;

fn gradients(
    params: &Params,
    ds: &Dataset,
    scores: &[f64],
    discounts: &[f64],
    gh: &mut [[f32; 2]],
    threads: usize,
) {
    match params.objective {
        Objective::Binary => {
            let weights = ds.weights.as_deref();
            if threads <= 1 || gh.len() < 2 * GRADIENT_CHUNK {
                objective::binary(scores, &ds.labels, weights, 0, gh);
                return;
            }
            let per = gh.len().div_ceil(threads);
            std::thread::scope(|s| {
                for (c, chunk) in gh.chunks_mut(per).enumerate() {
                    let labels = &ds.labels;
                    s.spawn(move || objective::binary(scores, labels, weights, c * per, chunk));
                }
            });
        }
        Objective::Lambdarank => {
            // Queries are independent: split them into contiguous runs, one per thread.
            let groups = &ds.groups;
            let nq = groups.len().saturating_sub(1);
            let per = nq.div_ceil(threads.max(1)).max(1);
            let run = |q0: usize, q1: usize, out: &mut [[f32; 2]]| {
                let base = groups[q0] as usize;
                for q in q0..q1 {
                    let (a, b) = (groups[q] as usize, groups[q + 1] as usize);
                    objective::lambdarank_group(
                        &scores[a..b],
                        &ds.labels[a..b],
                        params,
                        discounts,
                        &mut out[a - base..b - base],
                    );
                }
            };
            if threads <= 1 || gh.len() < 2 * GRADIENT_CHUNK {
                run(0, nq, gh);
                return;
            }
            std::thread::scope(|s| {
                let mut rest = gh;
                let mut q0 = 0;
                while q0 < nq {
                    let q1 = (q0 + per).min(nq);
                    let len = (groups[q1] - groups[q0]) as usize;
                    let (mine, tail) = rest.split_at_mut(len);
                    rest = tail;
                    let run = &run;
                    s.spawn(move || run(q0, q1, mine));
                    q0 = q1;
                }
            });
        }
    }
}

fn add_tree(tree: &BinTree, bins: &[Vec<u8>], scores: &mut [f64], threads: usize) {
    let work = |start: usize, chunk: &mut [f64]| {
        for (i, s) in chunk.iter_mut().enumerate() {
            *s += tree.leaf_values[tree.leaf_of(bins, start + i)];
        }
    };
    if threads <= 1 || scores.len() < 2 * GRADIENT_CHUNK {
        work(0, scores);
        return;
    }
    let per = scores.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (c, chunk) in scores.chunks_mut(per).enumerate() {
            s.spawn(move || work(c * per, chunk));
        }
    });
}

fn evaluate(params: &Params, ds: &Dataset, scores: &[f64]) -> f64 {
    match params.objective {
        Objective::Binary => {
            let probs: Vec<f32> = scores
                .iter()
                .map(|s| objective::sigmoid(*s) as f32)
                .collect();
            metrics::logloss(&probs, &ds.labels)
        }
        Objective::Lambdarank => {
            let s: Vec<f32> = scores.iter().map(|s| *s as f32).collect();
            metrics::ndcg_at(params.eval_at as usize, &s, &ds.labels, &ds.groups)
        }
    }
}

/// A new bag: rows (whole queries for ranking) kept with probability `bagging_fraction`.
fn draw_bag(ds: &Dataset, params: &Params, rng: &mut Rng) -> (Vec<u32>, Vec<u32>) {
    let mut inb = Vec::new();
    let mut oob = Vec::new();
    if ds.groups.is_empty() {
        for r in 0..ds.num_rows() as u32 {
            if rng.next_f64() < params.bagging_fraction {
                inb.push(r);
            } else {
                oob.push(r);
            }
        }
    } else {
        for w in ds.groups.windows(2) {
            let keep = rng.next_f64() < params.bagging_fraction;
            let target = if keep { &mut inb } else { &mut oob };
            target.extend(w[0]..w[1]);
        }
    }
    if inb.is_empty() {
        return ((0..ds.num_rows() as u32).collect(), Vec::new());
    }
    (inb, oob)
}

fn sample_features(nf: usize, fraction: f64, rng: &mut Rng) -> Vec<usize> {
    let k = ((nf as f64 * fraction).round() as usize).clamp(1, nf);
    let mut all: Vec<usize> = (0..nf).collect();
    for i in 0..k {
        let j = i + rng.below(nf - i);
        all.swap(i, j);
    }
    let mut chosen = all[..k].to_vec();
    chosen.sort_unstable();
    chosen
}

struct Leaf {
    start: usize,
    end: usize,
    depth: u32,
    sum: Sum,
    hist: Vec<Sum>,
    best: Option<SplitCand>,
    /// The internal node that points at this leaf, and on which side.
    parent: Option<(usize, bool)>,
}

/// Grows one tree at a time; keeps its buffers between trees.
struct Grower<'a> {
    ds: &'a Dataset,
    layout: &'a Layout,
    rules: &'a Rules,
    threads: usize,
    idx: Vec<u32>,
    scratch: Vec<u32>,
    ordered: Vec<[f32; 2]>,
    pool: Vec<Vec<Sum>>,
    /// The leaves of the last tree (segments of `idx`).
    last_segments: Vec<(usize, usize)>,
    max_leaves: usize,
}

impl<'a> Grower<'a> {
    fn new(
        ds: &'a Dataset,
        layout: &'a Layout,
        rules: &'a Rules,
        params: &Params,
        threads: usize,
    ) -> Self {
        Grower {
            ds,
            layout,
            rules,
            threads,
            idx: Vec::new(),
            scratch: vec![0; ds.num_rows()],
            ordered: Vec::with_capacity(ds.num_rows()),
            pool: Vec::new(),
            last_segments: Vec::new(),
            max_leaves: params.num_leaves as usize,
        }
    }

    fn take_hist(&mut self) -> Vec<Sum> {
        self.pool
            .pop()
            .unwrap_or_else(|| vec![Sum::default(); self.layout.total])
    }

    fn hist_of(&mut self, start: usize, end: usize, feats: &[usize], gh: &[[f32; 2]]) -> Vec<Sum> {
        let mut out = self.take_hist();
        let rows = &self.idx[start..end];
        if rows.len() == self.ds.num_rows() {
            // The root without bagging: rows in order, gradients as they are.
            hist::build(
                &self.ds.bins,
                self.layout,
                feats,
                None,
                gh,
                &mut out,
                self.threads,
            );
        } else {
            self.ordered.clear();
            self.ordered.extend(rows.iter().map(|r| gh[*r as usize]));
            hist::build(
                &self.ds.bins,
                self.layout,
                feats,
                Some(rows),
                &self.ordered,
                &mut out,
                self.threads,
            );
        }
        out
    }

    fn can_split(&self, leaf: &Leaf, params: &Params) -> bool {
        (params.max_depth == 0 || leaf.depth < params.max_depth)
            && leaf.sum.n >= 2 * self.rules.min_data
    }

    fn grow(
        &mut self,
        bag: Option<&[u32]>,
        feats: &[usize],
        gh: &[[f32; 2]],
        params: &Params,
    ) -> BinTree {
        self.idx.clear();
        match bag {
            Some(b) => self.idx.extend_from_slice(b),
            None => self.idx.extend(0..self.ds.num_rows() as u32),
        }
        let m = self.idx.len();
        let mut root_sum = Sum::default();
        for r in &self.idx {
            let x = gh[*r as usize];
            root_sum.g += x[0] as f64;
            root_sum.h += x[1] as f64;
        }
        root_sum.n = m as u32;
        let root_hist = self.hist_of(0, m, feats, gh);
        let mut root = Leaf {
            start: 0,
            end: m,
            depth: 0,
            sum: root_sum,
            hist: root_hist,
            best: None,
            parent: None,
        };
        if self.can_split(&root, params) {
            root.best = hist::best_split(&root.hist, self.layout, feats, &root.sum, self.rules);
        }
        let mut leaves = vec![root];
        let mut nodes: Vec<BinNode> = Vec::new();
        while leaves.len() < self.max_leaves {
            let mut pick: Option<(usize, f64)> = None;
            for (i, l) in leaves.iter().enumerate() {
                if let Some(b) = &l.best {
                    if pick.is_none_or(|p| b.gain > p.1) {
                        pick = Some((i, b.gain));
                    }
                }
            }
            let Some((li, _)) = pick else { break };
            let Some(cand) = leaves[li].best.take() else {
                break;
            };
            let (start, end) = (leaves[li].start, leaves[li].end);
            let mid = self.partition(start, end, &cand);
            let node_id = nodes.len();
            let right_leaf = leaves.len();
            nodes.push(BinNode {
                feature: cand.feature as u32,
                left_bins: cand.left_bins,
                left: !(li as i32),
                right: !(right_leaf as i32),
                gain: cand.gain,
            });
            if let Some((p, is_left)) = leaves[li].parent {
                if is_left {
                    nodes[p].left = node_id as i32;
                } else {
                    nodes[p].right = node_id as i32;
                }
            }
            let depth = leaves[li].depth + 1;
            let left_smaller = mid - start <= end - mid;
            let (s0, e0) = if left_smaller {
                (start, mid)
            } else {
                (mid, end)
            };
            let small_hist = self.hist_of(s0, e0, feats, gh);
            let mut big_hist = std::mem::take(&mut leaves[li].hist);
            hist::subtract(&mut big_hist, &small_hist, self.layout, feats);
            let (left_hist, right_hist) = if left_smaller {
                (small_hist, big_hist)
            } else {
                (big_hist, small_hist)
            };
            let mut left = Leaf {
                start,
                end: mid,
                depth,
                sum: cand.left,
                hist: left_hist,
                best: None,
                parent: Some((node_id, true)),
            };
            let mut right = Leaf {
                start: mid,
                end,
                depth,
                sum: cand.right,
                hist: right_hist,
                best: None,
                parent: Some((node_id, false)),
            };
            for l in [&mut left, &mut right] {
                if self.can_split(l, params) {
                    l.best = hist::best_split(&l.hist, self.layout, feats, &l.sum, self.rules);
                }
            }
            leaves[li] = left;
            leaves.push(right);
        }
        let lr = params.learning_rate;
        let lambda = params.lambda_l2;
        let leaf_values = leaves
            .iter()
            .map(|l| {
                let d = l.sum.h + lambda;
                if d > 0.0 {
                    -l.sum.g / d * lr
                } else {
                    0.0
                }
            })
            .collect();
        self.last_segments = leaves.iter().map(|l| (l.start, l.end)).collect();
        for l in leaves {
            self.pool.push(l.hist);
        }
        BinTree { nodes, leaf_values }
    }

    /// Stable partition of `idx[start..end]` by the split; returns where the right side starts.
    fn partition(&mut self, start: usize, end: usize, cand: &SplitCand) -> usize {
        let col = &self.ds.bins[cand.feature];
        let mut nl = start;
        let mut nr = 0;
        for i in start..end {
            let r = self.idx[i];
            if bit(&cand.left_bins, col[r as usize]) {
                self.idx[nl] = r;
                nl += 1;
            } else {
                self.scratch[nr] = r;
                nr += 1;
            }
        }
        self.idx[nl..end].copy_from_slice(&self.scratch[..nr]);
        nl
    }

    /// Adds the last tree's leaf values to the scores of its in-bag rows.
    fn add_leaf_values(&self, tree: &BinTree, scores: &mut [f64]) {
        for (leaf, (s, e)) in self.last_segments.iter().enumerate() {
            let v = tree.leaf_values[leaf];
            for r in &self.idx[*s..*e] {
                scores[*r as usize] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasetBuilder, FeatureSpec};

    #[test]
    fn flat_scorer_agrees_with_the_binned_reference_traversal() {
        // Numeric with missing values, categorical with rare and missing codes, bagging on.
        let n = 3000;
        let mut state = 1u64;
        let mut u = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32) / (1u64 << 24) as f32
        };
        let mut cols = [Vec::new(), Vec::new(), Vec::new()];
        let mut y = Vec::new();
        for i in 0..n {
            let a = if u() < 0.2 { f32::NAN } else { u() };
            let c = if i % 17 == 0 {
                f32::NAN
            } else {
                (u() * 30.0).floor()
            };
            let b = u() * 100.0;
            let z = a.is_nan() as u8 as f32 + (c as u32 % 3) as f32 * 0.5 + b / 100.0;
            y.push((u() * 3.0 < z) as u8 as f32);
            cols[0].push(a);
            cols[1].push(c);
            cols[2].push(b);
        }
        let params = Params {
            num_trees: 20,
            min_data_per_group: 5,
            bagging_fraction: 0.8,
            bagging_freq: 2,
            ..Params::default()
        };
        let specs = vec![
            FeatureSpec::numeric("a"),
            FeatureSpec::categorical("c"),
            FeatureSpec::numeric("b"),
        ];
        let mut b = DatasetBuilder::new(specs, &params).unwrap();
        let refs: Vec<&[f32]> = cols.iter().map(|c| c.as_slice()).collect();
        b.push_columns(&refs, &y, None, None).unwrap();
        let ds = b.finish().unwrap();
        let (model, _, scores) = train_impl(&params, &ds, None, &mut |_| {}).unwrap();
        assert!(model.feature_importance().iter().all(|f| f.splits > 0));
        for i in 0..n {
            let row = [cols[0][i], cols[1][i], cols[2][i]];
            let flat = model.predict_raw_row(&row).unwrap();
            assert!(
                (flat as f64 - scores[i]).abs() < 1e-4,
                "row {i}: flat {flat} reference {}",
                scores[i]
            );
        }
    }
}
