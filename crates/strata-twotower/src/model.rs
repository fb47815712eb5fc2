//! The trained model: weights in plain `Vec<f32>`s, a plain-Rust user tower for serving one
//! request, batch embedding through candle, and save/load.

use std::cell::RefCell;

use candle_core::{Device, Tensor};

use crate::config::{Slot, TowerSpec};
use crate::data::Columns;
use crate::error::{Error, Result};
use crate::prep::NumericPrep;
use crate::rng::{bucket, fnv1a};

/// One dense layer: `y = W·x + b`, `W` row-major `outputs × inputs`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layer {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
}

/// One tower: numeric preprocessing, embedding tables, MLP.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tower {
    pub(crate) spec: TowerSpec,
    pub(crate) prep: NumericPrep,
    /// Hash salt of each categorical feature (from its name, or the table it shares).
    pub(crate) salts: Vec<u64>,
    /// Per categorical feature: `buckets × dim`, row-major. Empty for a feature that reads
    /// another one's table (see `owners`).
    pub(crate) tables: Vec<Vec<f32>>,
    pub(crate) layers: Vec<Layer>,
    /// The first layer's embedding slots (a pool is one).
    pub(crate) slots: Vec<Slot>,
    /// Per categorical: the categorical whose entry of `tables` it reads.
    pub(crate) owners: Vec<usize>,
}

pub(crate) fn salts(spec: &TowerSpec) -> Vec<u64> {
    spec.categorical
        .iter()
        .map(|c| fnv1a(c.table_name().as_bytes()))
        .collect()
}

/// Rows per candle call when embedding many rows.
const CHUNK_ROWS: usize = 4096;

impl Tower {
    pub(crate) fn new(
        spec: TowerSpec,
        prep: NumericPrep,
        tables: Vec<Vec<f32>>,
        layers: Vec<Layer>,
    ) -> Self {
        Tower {
            salts: salts(&spec),
            slots: spec.slots(),
            owners: spec.table_owners(),
            spec,
            prep,
            tables,
            layers,
        }
    }

    /// Embedding row `r` of categorical `c` (read through its owner's table).
    #[inline]
    pub(crate) fn embedding(&self, c: usize, r: usize) -> &[f32] {
        let dim = self.spec.categorical[c].dim;
        &self.tables[self.owners[c]][r * dim..(r + 1) * dim]
    }

    pub(crate) fn input_width(&self) -> usize {
        self.spec.input_width()
    }

    /// Width of the embeddings: the MLP's output and the direct slots.
    pub(crate) fn output_width(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs) + self.direct_width()
    }

    /// Width of the direct slots, from the slots built at load (`TowerSpec::direct_width`
    /// computes them afresh; this is on the per-request path, which allocates nothing).
    fn direct_width(&self) -> usize {
        self.slots.iter().filter(|s| s.direct).map(|s| s.dim).sum()
    }

    fn max_width(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.outputs)
            .fold(self.input_width(), usize::max)
    }

    /// The embedding row of value `v` of categorical feature `c`.
    #[inline]
    pub(crate) fn row(&self, c: usize, v: u64) -> usize {
        bucket(v, self.salts[c], self.spec.categorical[c].buckets)
    }

    /// Writes one MLP input row (normalised numerics, then each embedding slot that is not
    /// direct) into `x`.
    pub(crate) fn input_row(
        &self,
        numeric: impl Fn(usize) -> f32,
        categorical: impl Fn(usize) -> u64,
        x: &mut [f32],
    ) {
        let n = self.spec.numeric.len();
        for (c, slot) in x[..n].iter_mut().enumerate() {
            *slot = self.prep.apply(c, numeric(c));
        }
        let mut at = n;
        for slot in self.slots.iter().filter(|s| !s.direct) {
            self.slot_into(slot, &categorical, &mut x[at..at + slot.dim]);
            at += slot.dim;
        }
    }

    /// Writes one row's direct slots (appended to the MLP's output) into `x`.
    pub(crate) fn direct_row(&self, categorical: impl Fn(usize) -> u64, x: &mut [f32]) {
        let mut at = 0;
        for slot in self.slots.iter().filter(|s| s.direct) {
            self.slot_into(slot, &categorical, &mut x[at..at + slot.dim]);
            at += slot.dim;
        }
    }

    /// One slot's embedding: the feature's row, or the mean over a pool's members with a
    /// value (0 is missing; none gives zeros).
    fn slot_into(&self, slot: &Slot, categorical: &impl Fn(usize) -> u64, out: &mut [f32]) {
        let first = slot.members.start;
        if self.spec.categorical[first].pool.is_none() {
            out.copy_from_slice(self.embedding(first, self.row(first, categorical(first))));
            return;
        }
        out.fill(0.0);
        let mut count = 0usize;
        for c in slot.members.clone() {
            let v = categorical(c);
            if v == 0 {
                continue;
            }
            count += 1;
            for (o, e) in out.iter_mut().zip(self.embedding(c, self.row(c, v))) {
                *o += e;
            }
        }
        if count > 1 {
            let inv = 1.0 / count as f32;
            out.iter_mut().for_each(|o| *o *= inv);
        }
    }

    /// Input rows `rows` of `cols`, row-major.
    pub(crate) fn input_matrix(&self, cols: &Columns, rows: std::ops::Range<usize>) -> Vec<f32> {
        let width = self.input_width();
        let mut x = vec![0f32; rows.len() * width];
        for (i, r) in rows.enumerate() {
            self.input_row(
                |c| cols.numeric[c][r],
                |c| cols.categorical[c][r],
                &mut x[i * width..(i + 1) * width],
            );
        }
        x
    }

    /// Direct slots of rows `rows` of `cols`, row-major (`None` without direct slots).
    pub(crate) fn direct_matrix(
        &self,
        cols: &Columns,
        rows: std::ops::Range<usize>,
    ) -> Option<Vec<f32>> {
        let width = self.direct_width();
        if width == 0 {
            return None;
        }
        let mut x = vec![0f32; rows.len() * width];
        for (i, r) in rows.enumerate() {
            self.direct_row(
                |c| cols.categorical[c][r],
                &mut x[i * width..(i + 1) * width],
            );
        }
        Some(x)
    }

    /// The MLP and normalisation on one input row, in plain Rust: `a` holds the input and
    /// `a`, `b` (each at least `max_width` long) are scratch; the MLP's output goes to the
    /// start of `out`, `direct` writes the rest (the direct slots), then `out` is normalised.
    fn forward_row<'s>(
        &self,
        mut a: &'s mut [f32],
        mut b: &'s mut [f32],
        out: &mut [f32],
        direct: impl FnOnce(&mut [f32]),
    ) {
        let last = self.layers.len().saturating_sub(1);
        for (l, layer) in self.layers.iter().enumerate() {
            let x = &a[..layer.inputs];
            for (o, y) in b[..layer.outputs].iter_mut().enumerate() {
                let v = layer.b[o] + dot(&layer.w[o * layer.inputs..(o + 1) * layer.inputs], x);
                *y = if l < last { v.max(0.0) } else { v };
            }
            std::mem::swap(&mut a, &mut b);
        }
        let mlp = self.layers.last().map_or(0, |l| l.outputs);
        out[..mlp].copy_from_slice(&a[..mlp]);
        direct(&mut out[mlp..]);
        let norm = (dot(out, out) + NORM_EPS).sqrt();
        for o in out.iter_mut() {
            *o /= norm;
        }
    }

    /// Embeds every row of `cols` (batch path through candle), row-major `rows × dim`.
    pub(crate) fn embed(&self, cols: &Columns, dense: &[(Tensor, Tensor)]) -> Result<Vec<f32>> {
        let rows = column_rows(cols);
        let mut out = Vec::with_capacity(rows * self.output_width());
        let mut start = 0;
        while start < rows {
            let end = (start + CHUNK_ROWS).min(rows);
            let x = self.input_matrix(cols, start..end);
            let x = Tensor::from_vec(x, (end - start, self.input_width()), &Device::Cpu)?;
            let d = match self.direct_matrix(cols, start..end) {
                Some(d) => Some(Tensor::from_vec(
                    d,
                    (end - start, self.direct_width()),
                    &Device::Cpu,
                )?),
                None => None,
            };
            let y = mlp_forward(dense, &x, d.as_ref())?;
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
            start = end;
        }
        Ok(out)
    }

    /// The dense layers as constant tensors (`W` is `outputs × inputs`).
    pub(crate) fn dense_tensors(&self) -> Result<Vec<(Tensor, Tensor)>> {
        self.layers
            .iter()
            .map(|l| {
                Ok((
                    Tensor::from_slice(&l.w, (l.outputs, l.inputs), &Device::Cpu)?,
                    Tensor::from_slice(&l.b, l.outputs, &Device::Cpu)?,
                ))
            })
            .collect()
    }
}

/// Added under the square root of the L2 norm (both the candle and the plain-Rust path).
pub(crate) const NORM_EPS: f32 = 1e-12;

/// ReLU MLP, the direct slots (`rows × direct width`) appended to its output, then L2
/// normalisation, on a `rows × inputs` tensor.
pub(crate) fn mlp_forward(
    dense: &[(Tensor, Tensor)],
    x: &Tensor,
    direct: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (l, (w, b)) in dense.iter().enumerate() {
        h = h.matmul(&w.t()?)?.broadcast_add(b)?;
        if l + 1 < dense.len() {
            h = h.relu()?;
        }
    }
    if let Some(d) = direct {
        h = Tensor::cat(&[&h, d], 1)?;
    }
    let norm = h
        .sqr()?
        .sum_keepdim(1)?
        .affine(1.0, f64::from(NORM_EPS))?
        .sqrt()?;
    h.broadcast_div(&norm)
}

/// Dot product with eight accumulators (lets the compiler vectorise).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

thread_local! {
    /// Per-thread scratch of the plain-Rust forward pass (grows once, then reused).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A trained two-tower model. Cheap to share (`Arc<TwoTower>`): serving calls take `&self`
/// and need no lock.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoTower {
    pub(crate) user: Tower,
    pub(crate) item: Tower,
    pub(crate) temperature: f64,
}

impl TwoTower {
    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.user.output_width()
    }

    /// The user tower's inputs, in the order `user_vector` takes them.
    pub fn user_spec(&self) -> &TowerSpec {
        &self.user.spec
    }

    /// The item tower's inputs, in the order `item_vectors` takes them.
    pub fn item_spec(&self) -> &TowerSpec {
        &self.item.spec
    }

    /// The training temperature (scores are `dot / temperature`; ranking needs only the dot).
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// One user's embedding (L2-normalised), in plain Rust: `numeric` and `categorical` in the
    /// user spec's order (NaN: missing). Allocates only the returned vector.
    pub fn user_vector(&self, numeric: &[f32], categorical: &[u64]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.dim()];
        self.user_vector_into(numeric, categorical, &mut out)?;
        Ok(out)
    }

    /// `user_vector` into a caller's buffer of `dim()` floats (no allocation after the first
    /// call on a thread).
    pub fn user_vector_into(
        &self,
        numeric: &[f32],
        categorical: &[u64],
        out: &mut [f32],
    ) -> Result<()> {
        let spec = &self.user.spec;
        if numeric.len() != spec.numeric.len() || categorical.len() != spec.categorical.len() {
            return Err(Error::Input(format!(
                "the user tower takes {} numeric and {} categorical values, got {} and {}",
                spec.numeric.len(),
                spec.categorical.len(),
                numeric.len(),
                categorical.len()
            )));
        }
        if out.len() != self.dim() {
            return Err(Error::Input(format!(
                "output buffer has {} floats, the model's dim is {}",
                out.len(),
                self.dim()
            )));
        }
        let width = self.user.max_width();
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < 2 * width {
                s.resize(2 * width, 0.0);
            }
            let (a, b) = s.split_at_mut(width);
            self.user.input_row(|c| numeric[c], |c| categorical[c], a);
            self.user
                .forward_row(a, b, out, |d| self.user.direct_row(|c| categorical[c], d));
        });
        Ok(())
    }

    /// Embeddings of many users (batch path), row-major `rows × dim`.
    pub fn user_vectors(&self, users: &Columns) -> Result<Vec<f32>> {
        let rows = column_rows(users);
        users.check(&self.user.spec, "user", rows)?;
        self.user.embed(users, &self.user.dense_tensors()?)
    }

    /// Embeddings of items (e.g. every post), row-major `rows × dim`, in the rows' order.
    pub fn item_vectors(&self, items: &Columns) -> Result<Vec<f32>> {
        let rows = column_rows(items);
        items.check(&self.item.spec, "item", rows)?;
        self.item.embed(items, &self.item.dense_tensors()?)
    }
}

pub(crate) fn column_rows(cols: &Columns) -> usize {
    cols.numeric
        .first()
        .map(Vec::len)
        .or_else(|| cols.categorical.first().map(Vec::len))
        .unwrap_or(0)
}
