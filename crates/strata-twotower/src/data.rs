//! Training examples: column-major batches, the source trait the trainer streams from, and an
//! in-memory source (tests, small data). `spill.rs` holds the on-disk source.

use crate::config::TowerSpec;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// One tower's inputs for a run of rows, column-major, in the tower spec's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    /// `numeric[c][row]`: one Vec per numeric feature (NaN: missing).
    pub numeric: Vec<Vec<f32>>,
    /// `categorical[c][row]`: one Vec per categorical feature.
    pub categorical: Vec<Vec<u64>>,
}

impl Columns {
    /// Empty columns shaped for a spec.
    pub fn for_spec(spec: &TowerSpec) -> Self {
        Columns {
            numeric: vec![Vec::new(); spec.numeric.len()],
            categorical: vec![Vec::new(); spec.categorical.len()],
        }
    }

    /// Checks the column counts against the spec and that every column has `rows` values.
    pub fn check(&self, spec: &TowerSpec, side: &str, rows: usize) -> Result<()> {
        if self.numeric.len() != spec.numeric.len() {
            return Err(Error::Input(format!(
                "{side} side has {} numeric columns, the spec declares {}",
                self.numeric.len(),
                spec.numeric.len()
            )));
        }
        if self.categorical.len() != spec.categorical.len() {
            return Err(Error::Input(format!(
                "{side} side has {} categorical columns, the spec declares {}",
                self.categorical.len(),
                spec.categorical.len()
            )));
        }
        for (name, len) in spec
            .numeric
            .iter()
            .zip(self.numeric.iter().map(Vec::len))
            .chain(
                spec.categorical
                    .iter()
                    .map(|c| &c.name)
                    .zip(self.categorical.iter().map(Vec::len)),
            )
        {
            if len != rows {
                return Err(Error::Input(format!(
                    "{side} column {name:?} has {len} values, the batch has {rows} rows"
                )));
            }
        }
        Ok(())
    }

    /// Appends row `row` of `other`.
    pub(crate) fn push_row(&mut self, other: &Columns, row: usize) {
        for (dst, src) in self.numeric.iter_mut().zip(&other.numeric) {
            dst.push(src[row]);
        }
        for (dst, src) in self.categorical.iter_mut().zip(&other.categorical) {
            dst.push(src[row]);
        }
    }
}

/// Interaction examples: row `i` says user `user_id[i]` (described by `user`) interacted
/// positively with item `item_id[i]` (described by `item`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Who interacted (groups validation positives per user; not a model input unless the
    /// user spec declares it as a categorical column too).
    pub user_id: Vec<u64>,
    /// The item (identifies in-batch duplicates, item frequencies for logQ, and the catalogue;
    /// declare it in the item spec too to learn an id embedding).
    pub item_id: Vec<u64>,
    /// The user tower's inputs.
    pub user: Columns,
    /// The item tower's inputs.
    pub item: Columns,
    /// Optional per-row loss weight (default 1).
    pub weight: Option<Vec<f32>>,
}

impl Batch {
    /// An empty batch shaped for the towers.
    pub fn for_specs(user: &TowerSpec, item: &TowerSpec) -> Self {
        Batch {
            user_id: Vec::new(),
            item_id: Vec::new(),
            user: Columns::for_spec(user),
            item: Columns::for_spec(item),
            weight: None,
        }
    }

    pub fn rows(&self) -> usize {
        self.user_id.len()
    }

    /// Every column (and the weights) as long as `user_id`, without a spec.
    pub fn check_lengths(&self) -> Result<()> {
        let rows = self.rows();
        let lens = std::iter::once(self.item_id.len())
            .chain(self.weight.iter().map(Vec::len))
            .chain(self.user.numeric.iter().map(Vec::len))
            .chain(self.user.categorical.iter().map(Vec::len))
            .chain(self.item.numeric.iter().map(Vec::len))
            .chain(self.item.categorical.iter().map(Vec::len));
        for len in lens {
            if len != rows {
                return Err(Error::Input(format!(
                    "ragged batch: a column has {len} values, user_id has {rows}"
                )));
            }
        }
        Ok(())
    }

    /// Shape check against the specs (every column as long as `user_id`, weights finite and
    /// non-negative).
    pub fn check(&self, user: &TowerSpec, item: &TowerSpec) -> Result<()> {
        let rows = self.rows();
        if self.item_id.len() != rows {
            return Err(Error::Input(format!(
                "batch has {rows} user ids but {} item ids",
                self.item_id.len()
            )));
        }
        self.user.check(user, "user", rows)?;
        self.item.check(item, "item", rows)?;
        if let Some(w) = &self.weight {
            if w.len() != rows {
                return Err(Error::Input(format!(
                    "batch has {rows} rows but {} weights",
                    w.len()
                )));
            }
            if w.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
                return Err(Error::Input(
                    "weights must be finite and not negative".into(),
                ));
            }
        }
        Ok(())
    }

    /// Appends row `row` of `other` (same shape).
    pub(crate) fn push_row(&mut self, other: &Batch, row: usize) {
        self.user_id.push(other.user_id[row]);
        self.item_id.push(other.item_id[row]);
        self.user.push_row(&other.user, row);
        self.item.push_row(&other.item, row);
        match (&mut self.weight, &other.weight) {
            (Some(dst), Some(src)) => dst.push(src[row]),
            (Some(dst), None) => dst.push(1.0),
            (None, Some(src)) => {
                let mut w = vec![1.0; self.user_id.len() - 1];
                w.push(src[row]);
                self.weight = Some(w);
            }
            (None, None) => {}
        }
    }

    pub(crate) fn weight(&self, row: usize) -> f32 {
        self.weight.as_ref().map_or(1.0, |w| w[row])
    }
}

/// The item catalogue: every candidate item with its item-tower inputs (what `item_vectors`
/// embeds, what validation ranks, where sampled negatives come from).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemTable {
    pub ids: Vec<u64>,
    pub features: Columns,
}

impl ItemTable {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Where the trainer reads examples from. Each epoch calls `reset` then `next_batch` until
/// `None`; a source may reorder rows between epochs (and should, for SGD).
pub trait ExampleSource: Send {
    /// Starts a new pass over all examples.
    fn reset(&mut self) -> Result<()>;
    /// Up to `max_rows` rows (at least one), or `None` at the end of the pass.
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Batch>>;
}

/// All examples in memory; each pass visits them in a seeded random order (pass 0 in the
/// stored order when `shuffle` is off).
#[derive(Debug, Clone)]
pub struct InMemory {
    data: Batch,
    order: Vec<usize>,
    pos: usize,
    shuffle: Option<u64>,
    passes: u64,
}

impl InMemory {
    /// Rows in the stored order every pass. A ragged batch (columns of different lengths) is
    /// an input error.
    pub fn new(data: Batch) -> Result<Self> {
        data.check_lengths()?;
        let order = (0..data.rows()).collect();
        Ok(InMemory {
            data,
            order,
            pos: 0,
            shuffle: None,
            passes: 0,
        })
    }

    /// Rows in a new random order each pass, fixed by `seed`.
    pub fn shuffled(data: Batch, seed: u64) -> Result<Self> {
        Ok(InMemory {
            shuffle: Some(seed),
            ..InMemory::new(data)?
        })
    }
}

impl ExampleSource for InMemory {
    fn reset(&mut self) -> Result<()> {
        self.pos = 0;
        if let Some(seed) = self.shuffle {
            self.order = (0..self.data.rows()).collect();
            Rng::derive(seed, self.passes).shuffle(&mut self.order);
        }
        self.passes += 1;
        Ok(())
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Batch>> {
        if self.pos >= self.order.len() || max_rows == 0 {
            return Ok(None);
        }
        let end = (self.pos + max_rows).min(self.order.len());
        let mut out = Batch {
            user: Columns {
                numeric: vec![Vec::new(); self.data.user.numeric.len()],
                categorical: vec![Vec::new(); self.data.user.categorical.len()],
            },
            item: Columns {
                numeric: vec![Vec::new(); self.data.item.numeric.len()],
                categorical: vec![Vec::new(); self.data.item.categorical.len()],
            },
            weight: self.data.weight.as_ref().map(|_| Vec::new()),
            ..Batch::default()
        };
        for &row in &self.order[self.pos..end] {
            out.push_row(&self.data, row);
        }
        self.pos = end;
        Ok(Some(out))
    }
}
