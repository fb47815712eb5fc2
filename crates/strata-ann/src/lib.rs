//! Strata's vector index (issue #26): an HNSW graph over flat `f32` vectors, with filters
//! applied inside the search and a payload index that answers selective filters exactly.
//!
//! ```ignore
//! let mut params = IndexParams::new(64, Metric::Dot);
//! params.schema.fields.push(FieldDef { name: "lang".into(), kind: FieldKind::Str });
//! let mut b = IndexBuilder::new(params)?;
//! b.add(42, &vector, Payload::at(created_us).with("lang", PayloadValue::Str("en".into())))?;
//! let index = b.build(2)?;
//! index.save(dir)?;                                  // <dir>/index.sann
//! let handle = IndexHandle::new(Arc::new(Index::open(dir)?));
//! let hits = handle.load().search(&query, 100, &filter, None)?;  // Vec<Hit { id, score }>
//! ```
//!
//! Design notes: `docs/adr/0042-own-hnsw-with-payload-index.md`; user-facing behaviour:
//! `docs/vector-index.md`.

mod build;
mod distance;
mod error;
mod filter;
mod graph;
mod handle;
mod index;
mod params;
mod payload;
mod persist;

pub use build::IndexBuilder;
pub use error::{AnnError, Result};
pub use filter::{FieldCondition, Filter, IntRange, Match};
pub use handle::IndexHandle;
pub use index::{Hit, Index, SearchPath};
pub use params::{FieldDef, FieldKind, IndexParams, Metric, Payload, PayloadSchema, PayloadValue};
pub use persist::{index_file, FILE_NAME};

#[cfg(test)]
mod tests;
