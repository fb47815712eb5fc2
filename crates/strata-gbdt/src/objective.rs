//! Gradients and hessians of the objectives.

use crate::params::{Objective, Params};

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The starting score: log-odds of the (weighted) mean label for binary, 0 for ranking.
pub(crate) fn base_score(objective: Objective, labels: &[f32], weights: Option<&[f32]>) -> f64 {
    match objective {
        Objective::Binary => {
            let (mut sy, mut sw) = (0f64, 0f64);
            for (i, y) in labels.iter().enumerate() {
                let w = weights.map_or(1.0, |w| w[i] as f64);
                sy += *y as f64 * w;
                sw += w;
            }
            let p = if sw > 0.0 { sy / sw } else { 0.5 };
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            (p / (1.0 - p)).ln()
        }
        Objective::Lambdarank => 0.0,
    }
}

/// Binary log loss gradients for rows `start..start + out.len()`.
pub(crate) fn binary(
    scores: &[f64],
    labels: &[f32],
    weights: Option<&[f32]>,
    start: usize,
    out: &mut [[f32; 2]],
) {
    for (i, o) in out.iter_mut().enumerate() {
        let r = start + i;
        let p = sigmoid(scores[r]);
        let w = weights.map_or(1.0, |w| w[r] as f64);
        let y = labels[r] as f64;
        *o = [
            ((p - y) * w) as f32,
            ((p * (1.0 - p)).max(1e-16) * w) as f32,
        ];
    }
}

/// Lambdarank gradients of one query (`rows` = its row range), written into `out` (same length).
pub(crate) fn lambdarank_group(
    scores: &[f64],
    labels: &[f32],
    params: &Params,
    discounts: &[f64],
    out: &mut [[f32; 2]],
) {
    let n = scores.len();
    out.fill([0.0, 0.0]);
    if n < 2 {
        return;
    }
    let gain = |l: f32| (2f64).powi(l as i32) - 1.0;
    // Ideal DCG at the truncation level.
    let trunc = (params.lambdarank_truncation_level as usize).min(n);
    let mut ideal: Vec<f32> = labels.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let max_dcg: f64 = ideal
        .iter()
        .take(trunc)
        .enumerate()
        .map(|(i, l)| gain(*l) * discounts[i])
        .sum();
    if max_dcg <= 0.0 {
        return;
    }
    let inv_max = 1.0 / max_dcg;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
    let sigma = 1.0;
    let mut g = vec![0f64; n];
    let mut h = vec![0f64; n];
    let mut sum_lambdas = 0.0;
    for i in 0..trunc {
        let di = order[i];
        for (j, &dj) in order.iter().enumerate().skip(i + 1) {
            if labels[di] == labels[dj] {
                continue;
            }
            let (hi, lo, hi_rank, lo_rank) = if labels[di] > labels[dj] {
                (di, dj, i, j)
            } else {
                (dj, di, j, i)
            };
            let delta_score = scores[hi] - scores[lo];
            let gap = gain(labels[hi]) - gain(labels[lo]);
            let disc = (discounts[hi_rank] - discounts[lo_rank]).abs();
            let delta_ndcg = gap * disc * inv_max;
            let p = 1.0 / (1.0 + (sigma * delta_score).exp());
            let lambda = -sigma * p * delta_ndcg;
            let hess = sigma * sigma * p * (1.0 - p) * delta_ndcg;
            g[hi] += lambda;
            g[lo] -= lambda;
            h[hi] += hess;
            h[lo] += hess;
            sum_lambdas -= 2.0 * lambda;
        }
    }
    let norm = if params.lambdarank_norm && sum_lambdas > 0.0 {
        (1.0 + sum_lambdas).log2() / sum_lambdas
    } else {
        1.0
    };
    for (k, o) in out.iter_mut().enumerate() {
        *o = [(g[k] * norm) as f32, (h[k] * norm).max(1e-16) as f32];
    }
}

/// `1 / log2(2 + i)` for ranks `0..n`.
pub(crate) fn discounts(n: usize) -> Vec<f64> {
    (0..n).map(|i| 1.0 / ((i as f64) + 2.0).log2()).collect()
}
