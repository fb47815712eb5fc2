//! Strata's stream consumers: readers of the `events` topic that keep online state current
//! as events arrive, each its own consumer group beside the lake sink's `lake`.
//!
//! - `fields.rs`: an event as the consumers read it (off the bus or out of the lake);
//! - `window.rs`: one aggregate's window state (slices, distinct sketches, last-N) and its
//!   encoding;
//! - `engine.rs`: one stream view — entities, event-time clocks, lateness, expiry timers,
//!   exactly-once bookkeeping;
//! - `runner.rs`: the `realtime` consumer inside `strata serve` (backfill from the lake,
//!   batches from the bus, rows and state into the online store, checkpoints);
//! - `risk/`: `[[risk.rules]]` and the `risk` consumer (blocks onto `risk.blocks`, which every
//!   collector follows; decisions into `ods.ods_risk_decision`; webhook alerts).
//!
//! Stream views are declared in the project's `features/*.toml` with `kind = "stream"`
//! (`strata_features::stream`) and read through the same feature API as batch views.

pub mod engine;
pub mod error;
pub mod fields;
pub mod risk;
pub mod runner;
pub mod window;

pub use engine::{Checkpoint, ViewEngine};
pub use error::{Error, Result};
pub use runner::{Realtime, RealtimeOptions, REALTIME_GROUP};
