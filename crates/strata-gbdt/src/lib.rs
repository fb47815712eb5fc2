//! Gradient-boosted decision trees, histogram-based and leaf-wise (LightGBM's design, our code).
//!
//! - **Data**: [`DatasetBuilder`] takes batches of f32 columns or rows (categorical features as
//!   integer codes, NaN = missing) with labels, optional weights and optional query ids, and
//!   stores them as one byte per value (u8 bins, column-major). Only the first
//!   [`Params::bin_sample_rows`] rows are held as f32, to fit the bins; when rows arrive in
//!   an order that drifts (by date, say), fit the bins from a random sample instead
//!   ([`BinMapper::fit`]) and start with [`DatasetBuilder::with_mappers`]. A validation set is
//!   built with [`DatasetBuilder::like`] the training set.
//! - **Training**: [`train`] grows trees leaf-wise from gradient histograms (the smaller child is
//!   built, the larger is parent minus smaller), learns a default direction for missing values
//!   per split, splits categorical features into category sets (categories ordered by gradient
//!   ratio), bags rows and samples features with a seeded generator, early-stops on the
//!   validation metric and reports each round to a progress callback. Histograms are built on
//!   [`Params::threads`] threads, each feature summed by one thread in row order: the model
//!   bytes depend on the seed and data only, not on the thread count.
//! - **Objectives**: [`Objective::Binary`] (log loss) and [`Objective::Lambdarank`] (NDCG).
//! - **Scoring**: [`Model`] holds all trees as flat arrays over raw values;
//!   [`Model::predict_row`] (a branch-free walk, no allocation) and [`Model::predict_batch`]
//!   (QuickScorer bitvectors for trees of up to 64 leaves, else a lockstep walk; the same bits
//!   as `predict_row`) take raw f32 rows and need no lock. [`Model::to_bytes`]/
//!   [`Model::from_bytes`] save and load it (JSON with a format version).
//! - **Metrics**: [`metrics::auc`], [`metrics::logloss`], [`metrics::ndcg_at`].
//!
//! ```
//! use strata_gbdt::{train, DatasetBuilder, FeatureSpec, Params};
//! let params = Params { num_trees: 5, min_data_in_leaf: 1, ..Params::default() };
//! let mut b = DatasetBuilder::new(vec![FeatureSpec::numeric("x")], &params).unwrap();
//! let x: Vec<f32> = (0..100).map(|i| i as f32).collect();
//! let y: Vec<f32> = x.iter().map(|v| if *v > 50.0 { 1.0 } else { 0.0 }).collect();
//! b.push_columns(&[&x], &y, None, None).unwrap();
//! let data = b.finish().unwrap();
//! let (model, _report) = train(&params, &data, None, &mut |_| {}).unwrap();
//! assert!(model.predict_row(&[80.0]).unwrap() > 0.5);
//! ```

mod bins;
mod dataset;
mod error;
mod hist;
pub mod metrics;
mod model;
mod objective;
mod params;
mod rng;
mod train;

pub use bins::{BinMapper, FeatureKind, FeatureSpec, MAX_CATEGORY_CODE};
pub use dataset::{Dataset, DatasetBuilder};
pub use error::{GbdtError, Result};
pub use model::{FeatureImportance, Model, DEFAULT_TABLE_LIMIT, FORMAT_VERSION};
pub use params::{Objective, Params};
pub use train::{train, Progress, TrainReport};
