//! Gradient histograms and the search for a leaf's best split.

use crate::params::Params;

/// Sums of one histogram bin (or of a leaf).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sum {
    pub g: f64,
    pub h: f64,
    pub n: u32,
}

impl Sum {
    fn add(&mut self, o: &Sum) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }

    fn minus(&self, o: &Sum) -> Sum {
        Sum {
            g: self.g - o.g,
            h: self.h - o.h,
            n: self.n.saturating_sub(o.n),
        }
    }
}

/// Where each feature's bins sit in a leaf's histogram.
pub(crate) struct Layout {
    pub offsets: Vec<usize>,
    pub nbins: Vec<usize>,
    pub categorical: Vec<bool>,
    pub total: usize,
}

/// A split as a set of bins that go left (bit `b` of the 256-bit mask).
#[derive(Debug, Clone)]
pub(crate) struct SplitCand {
    pub feature: usize,
    pub gain: f64,
    pub left_bins: [u64; 4],
    pub left: Sum,
    pub right: Sum,
}

pub(crate) fn bit(mask: &[u64; 4], b: u8) -> bool {
    (mask[(b >> 6) as usize] >> (b & 63)) & 1 == 1
}

fn set_bit(mask: &mut [u64; 4], b: usize) {
    mask[b >> 6] |= 1 << (b & 63);
}

/// Below this many (rows × features) a histogram is built on one thread: spawning costs more.
const PARALLEL_MIN_WORK: usize = 200_000;

/// Builds the histograms of `feats` over `rows` (or all rows, in order, when `rows` is None).
/// `gh[i]` is the gradient and hessian of `rows[i]` (of row `i` when `rows` is None). Each
/// feature is summed by one thread in row order, so the result does not depend on `threads`.
pub(crate) fn build(
    bins: &[Vec<u8>],
    layout: &Layout,
    feats: &[usize],
    rows: Option<&[u32]>,
    gh: &[[f32; 2]],
    out: &mut [Sum],
    threads: usize,
) {
    // Disjoint per-feature slices of `out` (feats ascending).
    let mut slices: Vec<(usize, &mut [Sum])> = Vec::with_capacity(feats.len());
    let mut rest = out;
    let mut consumed = 0;
    for &f in feats {
        let (_, tail) = rest.split_at_mut(layout.offsets[f] - consumed);
        let (mine, tail) = tail.split_at_mut(layout.nbins[f]);
        consumed = layout.offsets[f] + layout.nbins[f];
        rest = tail;
        slices.push((f, mine));
    }
    let work = gh.len() * feats.len();
    let threads = threads.min(feats.len()).max(1);
    if threads == 1 || work < PARALLEL_MIN_WORK {
        for (f, h) in slices.iter_mut() {
            one_feature(&bins[*f], rows, gh, h);
        }
        return;
    }
    let per = slices.len().div_ceil(threads);
    std::thread::scope(|s| {
        for chunk in slices.chunks_mut(per) {
            s.spawn(move || {
                for (f, h) in chunk.iter_mut() {
                    one_feature(&bins[*f], rows, gh, h);
                }
            });
        }
    });
}

/// Rows below which one accumulator is used (zeroing four costs more than it saves).
const MULTI_ACC_MIN_ROWS: usize = 4096;

fn one_feature(col: &[u8], rows: Option<&[u32]>, gh: &[[f32; 2]], h: &mut [Sum]) {
    h.fill(Sum::default());
    if gh.len() < MULTI_ACC_MIN_ROWS {
        // Bins are < 256 by construction; a 256-entry scratch avoids bounds checks.
        let mut acc = [[0f64; 2]; 256];
        let mut cnt = [0u32; 256];
        let mut add = |b: u8, x: &[f32; 2]| {
            let b = b as usize;
            acc[b][0] += x[0] as f64;
            acc[b][1] += x[1] as f64;
            cnt[b] += 1;
        };
        match rows {
            Some(rows) => rows
                .iter()
                .zip(gh)
                .for_each(|(r, x)| add(col[*r as usize], x)),
            None => col.iter().zip(gh).for_each(|(b, x)| add(*b, x)),
        }
        for (b, s) in h.iter_mut().enumerate() {
            *s = Sum {
                g: acc[b][0],
                h: acc[b][1],
                n: cnt[b],
            };
        }
        return;
    }
    // Four accumulators, row i going to i % 4: consecutive rows in the same bin no longer wait on
    // each other's store. They are merged in a fixed order, so results stay deterministic.
    let mut acc = [[[0f64; 2]; 256]; 4];
    let mut cnt = [[0u32; 256]; 4];
    let bin_of = |i: usize| -> usize {
        match rows {
            Some(rows) => col[rows[i] as usize] as usize,
            None => col[i] as usize,
        }
    };
    let n = gh.len();
    let mut i = 0;
    while i + 4 <= n {
        for k in 0..4 {
            let b = bin_of(i + k) as u8 as usize;
            let x = gh[i + k];
            acc[k][b][0] += x[0] as f64;
            acc[k][b][1] += x[1] as f64;
            cnt[k][b] += 1;
        }
        i += 4;
    }
    while i < n {
        let b = bin_of(i) as u8 as usize;
        acc[0][b][0] += gh[i][0] as f64;
        acc[0][b][1] += gh[i][1] as f64;
        cnt[0][b] += 1;
        i += 1;
    }
    for (b, s) in h.iter_mut().enumerate() {
        *s = Sum {
            g: ((acc[0][b][0] + acc[1][b][0]) + acc[2][b][0]) + acc[3][b][0],
            h: ((acc[0][b][1] + acc[1][b][1]) + acc[2][b][1]) + acc[3][b][1],
            n: cnt[0][b] + cnt[1][b] + cnt[2][b] + cnt[3][b],
        };
    }
}

/// `parent -= child`, feature by feature (histogram subtraction).
pub(crate) fn subtract(parent: &mut [Sum], child: &[Sum], layout: &Layout, feats: &[usize]) {
    for &f in feats {
        let r = layout.offsets[f]..layout.offsets[f] + layout.nbins[f];
        for (p, c) in parent[r.clone()].iter_mut().zip(&child[r]) {
            *p = p.minus(c);
        }
    }
}

/// Split rules taken from the parameters.
pub(crate) struct Rules {
    pub min_data: u32,
    pub min_hess: f64,
    pub lambda: f64,
    pub min_gain: f64,
    pub max_cat_threshold: usize,
    pub max_cat_to_onehot: usize,
    pub cat_smooth: f64,
    pub cat_l2: f64,
    pub min_data_per_group: u32,
}

impl Rules {
    pub(crate) fn new(p: &Params) -> Self {
        Rules {
            min_data: p.min_data_in_leaf.max(1),
            min_hess: p.min_sum_hessian_in_leaf,
            lambda: p.lambda_l2,
            min_gain: p.min_gain_to_split,
            max_cat_threshold: p.max_cat_threshold as usize,
            max_cat_to_onehot: p.max_cat_to_onehot as usize,
            cat_smooth: p.cat_smooth,
            cat_l2: p.cat_l2,
            min_data_per_group: p.min_data_per_group,
        }
    }

    fn ok(&self, l: &Sum, r: &Sum) -> bool {
        l.n >= self.min_data && r.n >= self.min_data && l.h >= self.min_hess && r.h >= self.min_hess
    }
}

fn score(s: &Sum, lambda: f64) -> f64 {
    let d = s.h + lambda;
    if d <= 0.0 {
        0.0
    } else {
        s.g * s.g / d
    }
}

/// The best split of a leaf over `feats`, or None when no split gains more than the rules allow.
/// Ties keep the lower feature (and lower threshold), so the choice is deterministic.
pub(crate) fn best_split(
    hist: &[Sum],
    layout: &Layout,
    feats: &[usize],
    total: &Sum,
    rules: &Rules,
) -> Option<SplitCand> {
    let mut best: Option<SplitCand> = None;
    for &f in feats {
        let h = &hist[layout.offsets[f]..layout.offsets[f] + layout.nbins[f]];
        let cand = if layout.categorical[f] {
            categorical(h, f, total, rules)
        } else {
            numeric(h, f, total, rules)
        };
        if let Some(c) = cand {
            if best.as_ref().is_none_or(|b| c.gain > b.gain) {
                best = Some(c);
            }
        }
    }
    best
}

fn numeric(h: &[Sum], f: usize, total: &Sum, rules: &Rules) -> Option<SplitCand> {
    let nb = h.len();
    if nb < 3 {
        return None;
    }
    let parent = score(total, rules.lambda);
    let missing = h[0];
    let mut best: Option<(f64, usize, bool, Sum, Sum)> = None;
    let dirs: &[bool] = if missing.n > 0 {
        &[false, true]
    } else {
        &[false]
    };
    for &missing_left in dirs {
        let mut left = if missing_left {
            missing
        } else {
            Sum::default()
        };
        for (t, bin) in h.iter().enumerate().take(nb - 1).skip(1) {
            left.add(bin);
            // Thresholds up to the next non-empty bin split this leaf's rows alike; take the
            // highest (as LightGBM does): values unseen in training between the two sides then
            // go left, which generalises better for features that grow over time (counters, ages).
            if h[t + 1].n == 0 {
                continue;
            }
            if left.n < rules.min_data {
                continue;
            }
            let right = total.minus(&left);
            if right.n < rules.min_data {
                break;
            }
            if !rules.ok(&left, &right) {
                continue;
            }
            let gain = score(&left, rules.lambda) + score(&right, rules.lambda) - parent;
            if best.as_ref().is_none_or(|b| gain > b.0) {
                best = Some((gain, t, missing_left, left, right));
            }
        }
    }
    let (gain, t, mut missing_left, left, right) = best?;
    if gain <= rules.min_gain || gain <= 0.0 {
        return None;
    }
    if missing.n == 0 {
        // Nothing was missing in training: send missing values with the larger side.
        missing_left = left.n > right.n;
    }
    let mut mask = [0u64; 4];
    for b in 1..=t {
        set_bit(&mut mask, b);
    }
    if missing_left {
        set_bit(&mut mask, 0);
    }
    Some(SplitCand {
        feature: f,
        gain,
        left_bins: mask,
        left,
        right,
    })
}

fn categorical(h: &[Sum], f: usize, total: &Sum, rules: &Rules) -> Option<SplitCand> {
    let used: Vec<usize> = (0..h.len()).filter(|b| h[*b].n > 0).collect();
    if used.len() < 2 {
        return None;
    }
    let mut best: Option<(f64, Vec<usize>, Sum, Sum)> = None;
    let mut consider = |gain: f64, set: &[usize], left: Sum, right: Sum| {
        if best.as_ref().is_none_or(|b| gain > b.0) {
            best = Some((gain, set.to_vec(), left, right));
        }
    };
    if used.len() <= rules.max_cat_to_onehot {
        let parent = score(total, rules.lambda);
        for &b in &used {
            let left = h[b];
            let right = total.minus(&left);
            if rules.ok(&left, &right) {
                let gain = score(&left, rules.lambda) + score(&right, rules.lambda) - parent;
                consider(gain, &[b], left, right);
            }
        }
    } else {
        let lambda = rules.lambda + rules.cat_l2;
        let parent = score(total, lambda);
        let mut order: Vec<usize> = used
            .iter()
            .copied()
            .filter(|b| h[*b].n >= rules.min_data_per_group)
            .collect();
        let ratio = |b: usize| h[b].g / (h[b].h + rules.cat_smooth);
        order.sort_by(|a, b| ratio(*a).total_cmp(&ratio(*b)).then(a.cmp(b)));
        let max_k = rules.max_cat_threshold.min(order.len().div_ceil(2));
        for reverse in [false, true] {
            let mut left = Sum::default();
            let mut set = Vec::new();
            for i in 0..max_k {
                let b = if reverse {
                    order[order.len() - 1 - i]
                } else {
                    order[i]
                };
                left.add(&h[b]);
                set.push(b);
                let right = total.minus(&left);
                if right.n < rules.min_data {
                    break;
                }
                if !rules.ok(&left, &right) {
                    continue;
                }
                let gain = score(&left, lambda) + score(&right, lambda) - parent;
                consider(gain, &set, left, right);
            }
        }
    }
    let (gain, set, left, right) = best?;
    if gain <= rules.min_gain || gain <= 0.0 {
        return None;
    }
    let mut mask = [0u64; 4];
    for b in set {
        set_bit(&mut mask, b);
    }
    Some(SplitCand {
        feature: f,
        gain,
        left_bins: mask,
        left,
        right,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::new(&Params {
            min_data_in_leaf: 1,
            ..Params::default()
        })
    }

    #[test]
    fn a_threshold_in_an_empty_gap_sits_at_its_upper_end() {
        let s = |g: f64, n: u32| Sum {
            g,
            h: n as f64 * 0.25,
            n,
        };
        // Bins 2 and 3 are empty in this leaf: thresholds 1, 2 and 3 split it alike.
        let h = [
            s(0.0, 0),
            s(-10.0, 50),
            s(0.0, 0),
            s(0.0, 0),
            s(10.0, 50),
            s(1.0, 5),
        ];
        let total = Sum {
            g: 1.0,
            h: 105.0 * 0.25,
            n: 105,
        };
        let c = numeric(&h, 0, &total, &rules()).unwrap();
        let left: Vec<u8> = (0..6).filter(|b| bit(&c.left_bins, *b)).collect();
        // No missing values in training: missing goes with the larger side (right, 55 rows).
        assert_eq!(left, vec![1, 2, 3]);
        assert_eq!(c.left.n, 50);
    }

    #[test]
    fn four_accumulators_sum_like_one() {
        let n = 10_000;
        let col: Vec<u8> = (0..n).map(|i| ((i * 7) % 5) as u8).collect();
        let gh: Vec<[f32; 2]> = (0..n).map(|i| [(i % 13) as f32 - 6.0, 0.25]).collect();
        let rows: Vec<u32> = (0..n as u32).filter(|r| r % 3 != 0).collect();
        let ordered: Vec<[f32; 2]> = rows.iter().map(|r| gh[*r as usize]).collect();
        for (rows, gh) in [(None, &gh), (Some(rows.as_slice()), &ordered)] {
            let mut h = vec![Sum::default(); 5];
            one_feature(&col, rows, gh, &mut h);
            let mut want = vec![Sum::default(); 5];
            for (i, x) in gh.iter().enumerate() {
                let r = rows.map_or(i, |rows| rows[i] as usize);
                let b = col[r] as usize;
                want[b].g += x[0] as f64;
                want[b].h += x[1] as f64;
                want[b].n += 1;
            }
            for (a, b) in h.iter().zip(&want) {
                assert_eq!(a.n, b.n);
                assert!((a.g - b.g).abs() < 1e-9 && (a.h - b.h).abs() < 1e-9);
            }
        }
    }
}
