//! Strata's two-tower retrieval model (issue #26).
//!
//! A user tower (user features available online) and an item tower (post features and ids)
//! map their inputs to L2-normalised vectors whose dot product scores a (user, item) pair.
//! Training is softmax cross-entropy over in-batch negatives (plus optional uniformly sampled
//! ones, optional logQ correction), with Adam, on candle's CPU tensors; it is deterministic
//! for a seed and thread count and streams its examples from an [`ExampleSource`] (e.g. a
//! [`SpillFile`]) in bounded memory.
//!
//! Serving: [`TwoTower::user_vector`] runs the user tower in plain Rust (no tensors, no locks);
//! [`TwoTower::item_vectors`] embeds the catalogue for the ANN index.
//!
//! ```no_run
//! # use strata_twotower::*;
//! # fn demo(mut examples: SpillFile, items: ItemTable) -> Result<()> {
//! let cfg = TrainConfig::new(
//!     TowerSpec { numeric: vec!["clicks_7d".into()], categorical: vec![] },
//!     TowerSpec {
//!         numeric: vec!["likes".into()],
//!         categorical: vec![Categorical::new("post_id", 100_000, 32)],
//!     },
//! );
//! let (model, report) = train(&cfg, &mut examples, None, Some(&items), |p| eprintln!("{p:?}"))?;
//! let user = model.user_vector(&[3.0], &[])?;
//! let posts = model.item_vectors(&items.features)?;
//! let best = top_k(&user, &posts, &items.ids, 100, &Default::default());
//! # Ok(()) }
//! ```

mod artifact;
mod config;
mod data;
mod error;
mod metrics;
mod model;
mod prep;
mod rng;
mod spill;
mod train;
mod valid;

pub use artifact::{SPEC_FILE, WEIGHTS_FILE};
pub use config::{Categorical, TowerSpec, TrainConfig};
pub use data::{Batch, Columns, ExampleSource, InMemory, ItemTable};
pub use error::{Error, Result};
pub use metrics::{ndcg_at_k, recall_at_k, select_top_k, top_k};
pub use model::TwoTower;
pub use prep::NumericPrep;
pub use spill::{SpillFile, SpillWriter};
pub use train::{train, EpochReport, Phase, Progress, TrainReport, Validation};
