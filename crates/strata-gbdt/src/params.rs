//! Training parameters: names and defaults follow LightGBM's where they mean the same thing.

use serde::{Deserialize, Serialize};

use crate::error::{GbdtError, Result};

/// What the trees are fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Binary classification: labels 0/1 (or in [0, 1]), log loss, sigmoid output.
    #[default]
    Binary,
    /// Learning to rank: integer relevance labels 0..=31 within query groups, NDCG-weighted
    /// pairwise lambdas; the output is an unbounded ranking score.
    Lambdarank,
}

/// Hyper-parameters of one training run. Unknown fields are rejected; every field has a
/// LightGBM-like default, so `{}` is a valid configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// The loss: `binary` or `lambdarank`.
    pub objective: Objective,
    /// Boosting rounds (trees), at most; early stopping may end sooner.
    pub num_trees: u32,
    /// Shrinkage applied to each tree's leaf values.
    pub learning_rate: f64,
    /// Most leaves per tree (trees grow leaf-wise, best gain first). At least 2.
    pub num_leaves: u32,
    /// Deepest a leaf may be; 0 means no limit beyond `num_leaves`.
    pub max_depth: u32,
    /// Fewest training rows in a leaf.
    pub min_data_in_leaf: u32,
    /// Smallest sum of hessians in a leaf.
    pub min_sum_hessian_in_leaf: f64,
    /// L2 regularisation of leaf values.
    pub lambda_l2: f64,
    /// Smallest gain for a split to be made.
    pub min_gain_to_split: f64,
    /// Most histogram bins per feature, the missing-value bin included (2..=255).
    pub max_bin: u32,
    /// Rows buffered to fit the bin boundaries (quantiles, categories) before the rest of the
    /// data streams straight into bins: bounds the memory held as f32.
    pub bin_sample_rows: u32,
    /// Fraction of features each tree may split on (sampled per tree), in (0, 1].
    pub feature_fraction: f64,
    /// Fraction of rows (query groups for lambdarank) each bagging round keeps, in (0, 1].
    pub bagging_fraction: f64,
    /// Redraw the bag every this many trees; 0 disables bagging.
    pub bagging_freq: u32,
    /// Stop when the validation metric has not improved for this many rounds; 0 disables it.
    pub early_stopping_rounds: u32,
    /// Seed of bagging and feature sampling: the same seed, data and parameters give the same
    /// model bytes, whatever `threads` is.
    pub seed: u64,
    /// Worker threads for histograms and gradients; 0 means the machine's core count.
    pub threads: u32,
    /// Categorical: most categories on the left side of a many-vs-many split.
    pub max_cat_threshold: u32,
    /// Categorical: features with at most this many categories use one-vs-rest splits.
    pub max_cat_to_onehot: u32,
    /// Categorical: smoothing added to the hessian when categories are ordered by gradient ratio.
    pub cat_smooth: f64,
    /// Categorical: extra L2 regularisation in the gain of categorical splits.
    pub cat_l2: f64,
    /// Categorical: fewest rows of a category for it to be placed by a many-vs-many split.
    pub min_data_per_group: u32,
    /// Lambdarank: pairs are formed with the top this-many documents of each query.
    pub lambdarank_truncation_level: u32,
    /// Lambdarank: normalise each query's lambdas (LightGBM's `lambdarank_norm`).
    pub lambdarank_norm: bool,
    /// Lambdarank: NDCG cut-off of the validation metric (NDCG@k).
    pub eval_at: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            objective: Objective::Binary,
            num_trees: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            min_sum_hessian_in_leaf: 1e-3,
            lambda_l2: 0.0,
            min_gain_to_split: 0.0,
            max_bin: 255,
            bin_sample_rows: 200_000,
            feature_fraction: 1.0,
            bagging_fraction: 1.0,
            bagging_freq: 0,
            early_stopping_rounds: 0,
            seed: 0,
            threads: 0,
            max_cat_threshold: 32,
            max_cat_to_onehot: 4,
            cat_smooth: 10.0,
            cat_l2: 10.0,
            min_data_per_group: 100,
            lambdarank_truncation_level: 30,
            lambdarank_norm: true,
            eval_at: 10,
        }
    }
}

impl Params {
    /// Checks every field offline and reports all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_string());
            }
        };
        check(self.num_trees >= 1, "num_trees must be at least 1");
        check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning_rate must be a positive number",
        );
        check(
            (2..=131_072).contains(&self.num_leaves),
            "num_leaves must be in 2..=131072",
        );
        check(
            self.min_sum_hessian_in_leaf.is_finite() && self.min_sum_hessian_in_leaf >= 0.0,
            "min_sum_hessian_in_leaf must be >= 0",
        );
        check(
            self.lambda_l2.is_finite() && self.lambda_l2 >= 0.0,
            "lambda_l2 must be >= 0",
        );
        check(
            self.min_gain_to_split.is_finite() && self.min_gain_to_split >= 0.0,
            "min_gain_to_split must be >= 0",
        );
        check(
            (2..=255).contains(&self.max_bin),
            "max_bin must be in 2..=255",
        );
        check(
            self.bin_sample_rows >= 1,
            "bin_sample_rows must be at least 1",
        );
        check(
            self.feature_fraction > 0.0 && self.feature_fraction <= 1.0,
            "feature_fraction must be in (0, 1]",
        );
        check(
            self.bagging_fraction > 0.0 && self.bagging_fraction <= 1.0,
            "bagging_fraction must be in (0, 1]",
        );
        check(self.threads <= 1024, "threads must be at most 1024");
        check(
            self.max_cat_threshold >= 1,
            "max_cat_threshold must be at least 1",
        );
        check(
            self.cat_smooth.is_finite() && self.cat_smooth >= 0.0,
            "cat_smooth must be >= 0",
        );
        check(
            self.cat_l2.is_finite() && self.cat_l2 >= 0.0,
            "cat_l2 must be >= 0",
        );
        check(
            self.lambdarank_truncation_level >= 1,
            "lambdarank_truncation_level must be at least 1",
        );
        check(self.eval_at >= 1, "eval_at must be at least 1");
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GbdtError::InvalidParams(problems.join("; ")))
        }
    }

    /// The worker count actually used.
    pub(crate) fn worker_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.threads as usize
        }
    }
}
