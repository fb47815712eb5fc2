//! Validation metrics: AUC and log loss for binary models, NDCG@k for rankers.

/// Area under the ROC curve of `scores` against `labels` (> 0.5 is positive); tied scores count
/// half. 0.5 when one class is absent.
pub fn auc(scores: &[f32], labels: &[f32]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let (mut neg_below, mut area) = (0f64, 0f64);
    let (mut pos_total, mut neg_total) = (0f64, 0f64);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0f64, 0f64);
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if labels[order[j]] > 0.5 {
                pos += 1.0;
            } else {
                neg += 1.0;
            }
            j += 1;
        }
        area += pos * (neg_below + neg / 2.0);
        neg_below += neg;
        pos_total += pos;
        neg_total += neg;
        i = j;
    }
    if pos_total == 0.0 || neg_total == 0.0 {
        0.5
    } else {
        area / (pos_total * neg_total)
    }
}

/// Mean binary log loss of probabilities `probs` against labels in [0, 1].
pub fn logloss(probs: &[f32], labels: &[f32]) -> f64 {
    let n = probs.len().min(labels.len());
    if n == 0 {
        return 0.0;
    }
    let mut sum = 0.0;
    for (p, y) in probs.iter().zip(labels) {
        let p = (*p as f64).clamp(1e-15, 1.0 - 1e-15);
        let y = *y as f64;
        sum -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
    }
    sum / n as f64
}

/// Mean NDCG@k over query groups (`group_offsets[q]..group_offsets[q + 1]` are the rows of
/// query `q`; empty means one group of all rows). Gain `2^label - 1`; tied scores keep row
/// order; a query with no relevant rows counts as 1.
pub fn ndcg_at(k: usize, scores: &[f32], labels: &[f32], group_offsets: &[u32]) -> f64 {
    let n = scores.len().min(labels.len());
    let whole = [0u32, n as u32];
    let groups = if group_offsets.len() >= 2 {
        group_offsets
    } else {
        &whole
    };
    let gain = |l: f32| (2f64).powf(l as f64) - 1.0;
    let disc = |i: usize| 1.0 / ((i as f64) + 2.0).log2();
    let mut total = 0.0;
    let mut count = 0usize;
    for w in groups.windows(2) {
        let (a, b) = (w[0] as usize, (w[1] as usize).min(n));
        if a >= b {
            continue;
        }
        let mut order: Vec<usize> = (a..b).collect();
        order.sort_by(|x, y| scores[*y].total_cmp(&scores[*x]).then(x.cmp(y)));
        let dcg: f64 = order
            .iter()
            .take(k)
            .enumerate()
            .map(|(i, r)| gain(labels[*r]) * disc(i))
            .sum();
        let mut ideal: Vec<f32> = labels[a..b].to_vec();
        ideal.sort_by(|x, y| y.total_cmp(x));
        let idcg: f64 = ideal
            .iter()
            .take(k)
            .enumerate()
            .map(|(i, l)| gain(*l) * disc(i))
            .sum();
        total += if idcg > 0.0 { dcg / idcg } else { 1.0 };
        count += 1;
    }
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_reversed_and_tied_scores() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
        assert_eq!(auc(&[0.5; 4], &labels), 0.5);
        // One positive above one negative, one tied with the other: (1 + 1 + 1 + 0.5) / 4.
        assert_eq!(auc(&[0.1, 0.5, 0.5, 0.9], &labels), 0.875);
    }

    #[test]
    fn logloss_matches_hand_computation() {
        let l = logloss(&[0.8, 0.3], &[1.0, 0.0]);
        let want = -((0.8f64).ln() + (0.7f64).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6);
    }

    #[test]
    fn ndcg_is_one_for_the_ideal_order_and_lower_otherwise() {
        let labels = [3.0, 2.0, 0.0, 1.0];
        assert!((ndcg_at(10, &[4.0, 3.0, 1.0, 2.0], &labels, &[0, 4]) - 1.0).abs() < 1e-12);
        let worse = ndcg_at(10, &[1.0, 2.0, 4.0, 3.0], &labels, &[0, 4]);
        assert!(worse < 0.7, "{worse}");
        // A group without relevant rows counts as 1.
        let two = ndcg_at(
            10,
            &[1.0, 2.0, 4.0, 3.0, 0.0],
            &[3.0, 2.0, 0.0, 1.0, 0.0],
            &[0, 4, 5],
        );
        assert!((two - (worse + 1.0) / 2.0).abs() < 1e-12);
    }
}
