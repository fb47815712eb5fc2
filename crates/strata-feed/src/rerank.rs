//! Diversity after ranking: at most K items per author, and maximal marginal relevance over
//! tag overlap (each next item maximises `λ·score − (1−λ)·max similarity to those chosen`).

use std::collections::HashMap;

use crate::catalog::Catalog;
use crate::config::RerankConfig;

/// Picks `n` of `ranked` (best first, scores in any range) for display.
pub fn rerank(catalog: &Catalog, ranked: &[(u64, f64)], n: usize, c: &RerankConfig) -> Vec<usize> {
    // Scores scaled to [0, 1] so λ trades them against a similarity on the same scale.
    let (lo, hi) = ranked
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, s)| {
            (lo.min(*s), hi.max(*s))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let norm = |s: f64| if hi > lo { (s - lo) / span } else { 1.0 };
    let author = |p: u64| catalog.posts.get(&p).map(|x| x.author);

    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    let mut per_author: HashMap<u64, usize> = HashMap::new();
    let mut taken = vec![false; ranked.len()];
    // Only the head is considered: MMR is quadratic, and items far down the ranking would
    // not be picked anyway.
    let pool = ranked.len().min(n.saturating_mul(10).max(50));
    while chosen.len() < n {
        let mut best: Option<(f64, usize)> = None;
        for i in 0..pool {
            if taken[i] {
                continue;
            }
            let (p, s) = ranked[i];
            if c.max_per_author > 0 {
                if let Some(a) = author(p) {
                    if per_author.get(&a).copied().unwrap_or(0) >= c.max_per_author {
                        continue;
                    }
                }
            }
            let value = if c.mmr_lambda >= 1.0 {
                norm(s)
            } else {
                let sim = chosen
                    .iter()
                    .map(|&j| catalog.similarity(p, ranked[j].0))
                    .fold(0.0, f64::max);
                c.mmr_lambda * norm(s) - (1.0 - c.mmr_lambda) * sim
            };
            // Ties keep the ranker's order.
            if best.is_none_or(|(b, _)| value > b) {
                best = Some((value, i));
            }
        }
        let Some((_, i)) = best else {
            break;
        };
        taken[i] = true;
        if let Some(a) = author(ranked[i].0) {
            *per_author.entry(a).or_default() += 1;
        }
        chosen.push(i);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Post;

    fn catalog(posts: &[(u64, u64, &[u32])]) -> Catalog {
        let mut c = Catalog::default();
        for &(id, author, tags) in posts {
            c.posts.insert(
                id,
                Post {
                    author,
                    created_at: 0,
                    tags: tags.to_vec(),
                },
            );
        }
        c
    }

    #[test]
    fn authors_are_capped_and_order_kept_without_mmr() {
        let c = catalog(&[(1, 7, &[]), (2, 7, &[]), (3, 7, &[]), (4, 8, &[])]);
        let ranked = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.1)];
        let cfg = RerankConfig {
            max_per_author: 2,
            mmr_lambda: 1.0,
        };
        let picked: Vec<u64> = rerank(&c, &ranked, 4, &cfg)
            .into_iter()
            .map(|i| ranked[i].0)
            .collect();
        assert_eq!(
            picked,
            vec![1, 2, 4],
            "the third post of author 7 is left out"
        );
    }

    #[test]
    fn mmr_spreads_topics() {
        // Two near-equal posts on tag 0, one slightly weaker on tag 1.
        let c = catalog(&[(1, 1, &[0]), (2, 2, &[0]), (3, 3, &[1])]);
        let ranked = [(1, 1.0), (2, 0.95), (3, 0.9)];
        let cfg = RerankConfig {
            max_per_author: 0,
            mmr_lambda: 0.5,
        };
        let picked: Vec<u64> = rerank(&c, &ranked, 3, &cfg)
            .into_iter()
            .map(|i| ranked[i].0)
            .collect();
        assert_eq!(picked, vec![1, 3, 2]);
        // λ = 1: the ranker's order.
        let keep = RerankConfig {
            mmr_lambda: 1.0,
            ..cfg
        };
        let picked: Vec<u64> = rerank(&c, &ranked, 3, &keep)
            .into_iter()
            .map(|i| ranked[i].0)
            .collect();
        assert_eq!(picked, vec![1, 2, 3]);
    }
}
