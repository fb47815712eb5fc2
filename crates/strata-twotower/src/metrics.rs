//! Retrieval metrics and an exact (brute-force) top-k, used by validation and benchmarks.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

/// Recall@k: the share of `relevant` found among the first `k` of `ranked` (0 when nothing is
/// relevant).
pub fn recall_at_k(ranked: &[u64], relevant: &HashSet<u64>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let hits = ranked
        .iter()
        .take(k)
        .filter(|id| relevant.contains(id))
        .count();
    hits as f64 / relevant.len() as f64
}

/// NDCG@k with binary relevance: DCG of the first `k` of `ranked` over the DCG of an ideal
/// ranking (0 when nothing is relevant).
pub fn ndcg_at_k(ranked: &[u64], relevant: &HashSet<u64>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let gain = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, id)| relevant.contains(id))
        .map(|(rank, _)| gain(rank))
        .sum();
    let ideal: f64 = (0..relevant.len().min(k)).map(gain).sum();
    dcg / ideal
}

/// A scored candidate, ordered so the heap's top is the worst kept one (lowest score; on ties
/// the larger id), which makes the selection independent of the input order.
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    id: u64,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// "Greater" = worse: lower score, then larger id.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.id.cmp(&other.id))
    }
}

/// The `k` best of `(ids[i], scores[i])`, best first (ties: smaller id first), skipping ids in
/// `exclude` and NaN scores.
pub fn select_top_k(
    ids: &[u64],
    scores: &[f32],
    k: usize,
    exclude: &HashSet<u64>,
) -> Vec<(u64, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
    for (&id, &score) in ids.iter().zip(scores) {
        if score.is_nan() || exclude.contains(&id) {
            continue;
        }
        let cand = Scored { score, id };
        if heap.len() < k {
            heap.push(cand);
        } else if heap.peek().is_some_and(|worst| cand < *worst) {
            heap.pop();
            heap.push(cand);
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|s| (s.id, s.score))
        .collect()
}

/// Exact top-k by dot product: `items` is row-major `ids.len() × user.len()` (what
/// `TwoTower::item_vectors` returns). Best first; ids in `exclude` are skipped.
pub fn top_k(
    user: &[f32],
    items: &[f32],
    ids: &[u64],
    k: usize,
    exclude: &HashSet<u64>,
) -> Vec<(u64, f32)> {
    let dim = user.len().max(1);
    let scores: Vec<f32> = items
        .chunks_exact(dim)
        .map(|row| row.iter().zip(user).map(|(a, b)| a * b).sum())
        .collect();
    let n = scores.len().min(ids.len());
    select_top_k(&ids[..n], &scores[..n], k, exclude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_ndcg_by_hand() {
        let rel: HashSet<u64> = [1, 2, 3, 4].into_iter().collect();
        let ranked = [9, 1, 8, 2];
        assert_eq!(recall_at_k(&ranked, &rel, 2), 0.25);
        assert_eq!(recall_at_k(&ranked, &rel, 4), 0.5);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2() + 1.0 / 5f64.log2();
        assert!((ndcg_at_k(&ranked, &rel, 10) - dcg / idcg).abs() < 1e-12);
        assert_eq!(ndcg_at_k(&[1, 2, 3, 4], &rel, 4), 1.0);
        assert_eq!(recall_at_k(&ranked, &HashSet::new(), 4), 0.0);
    }

    #[test]
    fn top_k_is_exact_ordered_and_excludes() {
        let user = [1.0, 0.0];
        let items = [0.1, 5.0, 0.9, 0.0, 0.5, 0.0, 0.9, 1.0, -1.0, 0.0];
        let ids = [10, 11, 12, 13, 14];
        let got = top_k(&user, &items, &ids, 3, &HashSet::new());
        // 11 and 13 tie at 0.9: the smaller id first.
        assert_eq!(got, vec![(11, 0.9), (13, 0.9), (12, 0.5)]);
        let got = top_k(&user, &items, &ids, 2, &[11].into_iter().collect());
        assert_eq!(got, vec![(13, 0.9), (12, 0.5)]);
        assert_eq!(top_k(&user, &items, &ids, 10, &HashSet::new()).len(), 5);
    }
}
